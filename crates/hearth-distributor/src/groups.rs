//! The replicated ingesters a distributor writes to, as one `Ingester`: a write is split
//! by shard group (`hearth_core::shard`), each group's part goes to the node whose
//! replica leads the group, all parts at once, and the write is acknowledged only when
//! every part is committed on its group's quorum.
//!
//! Leaders move (a node dies, a partition heals, an election), so each group's leader
//! is a guess the router keeps and corrects: a replica that does not lead names the one
//! it believes does, and the part goes there at once; with no leader named (an election
//! is under way) or a node unreachable, the part waits a little and tries the group's
//! next replica, until `retry_for` has passed (then 503, and the sender retries the
//! whole write). Retrying is safe: a part whose entry did commit is, the second time,
//! exact duplicates, which the head stores once. Nothing is acknowledged that is not
//! committed, because only a leader's answer after apply is a success.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_core::shard::{split_by_group, GroupIngester, GroupPushError, Placement};
use hearth_core::{
    Ingester, PushError, PushOutcome, Tenant, WriteBatch, NOT_STORED, OUTCOME_UNKNOWN,
};
use tracing::debug;

/// How long a part keeps looking for its group's leader, and how long it waits between
/// tries when nobody is named.
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// Past this, a part that found no leader answers 503. Elections take one to three
    /// election timeouts (0.75-1.5 s each) on a loaded machine.
    pub retry_for: Duration,
    /// The wait before trying another replica when no leader is named.
    pub backoff: Duration,
    /// How long one replica may take to answer before the part goes to the next: a
    /// paused or unreachable node answers nothing, and a leader that lost its quorum
    /// answers within its lease. A part sent again after a timeout is harmless: an
    /// exact duplicate sample is a no-op.
    pub attempt_timeout: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            retry_for: Duration::from_secs(10),
            backoff: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(3),
        }
    }
}

pub struct GroupRouter {
    /// (name, node) per member, in the cluster's member order.
    members: Vec<(String, Arc<dyn GroupIngester>)>,
    placement: Placement,
    /// Per group: the member believed to lead it.
    leaders: Vec<AtomicUsize>,
    opts: RouterOptions,
}

impl GroupRouter {
    /// A router over the cluster's ingester nodes, listed in the member order every node
    /// was given, placing groups as the nodes do.
    pub fn new(
        members: Vec<(String, Arc<dyn GroupIngester>)>,
        groups: u32,
        replication_factor: usize,
        opts: RouterOptions,
    ) -> GroupRouter {
        let placement = Placement::new(members.len(), groups, replication_factor);
        let leaders = (0..placement.groups())
            .map(|g| AtomicUsize::new(placement.members_of(g)[0]))
            .collect();
        GroupRouter {
            members,
            placement,
            leaders,
            opts,
        }
    }

    /// The member this router sends `group`'s writes to now.
    pub fn leader_of(&self, group: u32) -> usize {
        self.leaders[group as usize].load(Ordering::Relaxed)
    }

    /// Pushes the part of a group with one replica (the single process): there is no
    /// other replica to try, so no copy is kept for a retry, and its answer stands.
    async fn push_alone(
        &self,
        group: u32,
        tenant: &Tenant,
        part: WriteBatch,
    ) -> Result<PushOutcome, PushError> {
        let target = self.placement.members_of(group)[0];
        let (name, node) = &self.members[target];
        let attempt = tokio::time::timeout(
            self.opts.attempt_timeout,
            node.push_group(group, tenant, part),
        );
        match attempt.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(GroupPushError::NotLeader { .. })) => Err(PushError::Unavailable(format!(
                "group {group} has no leader yet (asked {name}); retry"
            ))),
            Ok(Err(GroupPushError::Push(e))) => Err(e),
            Err(_) => Err(PushError::Unavailable(format!(
                "{name} did not answer within {:?}; the write's outcome is unknown, retry",
                self.opts.attempt_timeout
            ))),
        }
    }

    /// Pushes one group's part to its leader, following leader changes.
    async fn push_part(
        &self,
        group: u32,
        tenant: &Tenant,
        part: &WriteBatch,
    ) -> Result<PushOutcome, PushError> {
        let replicas = self.placement.members_of(group);
        let deadline = Instant::now() + self.opts.retry_for;
        let mut target = self.leader_of(group);
        // Hints followed without waiting: stale hints could otherwise bounce a part
        // between two replicas as fast as the network allows.
        let mut hops = 0;
        loop {
            let (name, node) = &self.members[target];
            let last;
            // A copy per attempt: the part may have to go to another replica.
            let attempt = tokio::time::timeout(
                self.opts.attempt_timeout,
                node.push_group(group, tenant, part.clone()),
            );
            let answer = attempt.await.unwrap_or_else(|_| {
                Err(PushError::Unavailable(format!(
                    "{name} did not answer within {:?} (the write's outcome is unknown)",
                    self.opts.attempt_timeout
                ))
                .into())
            });
            let next = match answer {
                Ok(out) => {
                    self.leaders[group as usize].store(target, Ordering::Relaxed);
                    return Ok(out);
                }
                // A named leader is tried at once, if it is one of the group's replicas.
                Err(GroupPushError::NotLeader {
                    leader: Some(r), ..
                }) if replicas.contains(&Placement::member_of_replica(r))
                    && Placement::member_of_replica(r) != target =>
                {
                    last = format!("group {group}: {name} named replica {r} as leader");
                    hops += 1;
                    (hops <= replicas.len()).then(|| Placement::member_of_replica(r))
                }
                Err(GroupPushError::NotLeader { .. }) => {
                    last = format!("group {group} has no leader now (asked {name})");
                    None
                }
                Err(GroupPushError::Push(PushError::Unavailable(m))) => {
                    last = m;
                    None
                }
                // Over a limit, or a bad request: retrying elsewhere would not help.
                Err(GroupPushError::Push(e)) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(PushError::Unavailable(format!(
                    "no leader of group {group} took the write within {:?}: {last}",
                    self.opts.retry_for
                )));
            }
            target = match next {
                Some(m) => m,
                None => {
                    debug!(group, %last, "looking for the group's leader");
                    hops = 0;
                    tokio::time::sleep(self.opts.backoff).await;
                    // The group's next replica: a leader elected meanwhile answers, or
                    // names the leader.
                    let at = replicas.iter().position(|m| *m == target).unwrap_or(0);
                    replicas[(at + 1) % replicas.len()]
                }
            };
        }
    }
}

#[async_trait]
impl Ingester for GroupRouter {
    async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError> {
        let parts = split_by_group(tenant, &batch, self.placement.groups());
        drop(batch);
        let answers = if self.placement.replication_factor() == 1 {
            let calls = parts
                .into_iter()
                .map(|(g, part)| self.push_alone(g, tenant, part));
            futures::future::join_all(calls).await
        } else {
            let calls = parts
                .iter()
                .map(|(g, part)| self.push_part(*g, tenant, part));
            futures::future::join_all(calls).await
        };
        // A group that refused its part ("not stored") speaks for that part only: the
        // write as a whole is not stored only when no other part was stored or may be
        // (an outcome unknown, a timeout). Otherwise its outcome is unknown, whichever
        // group's message is passed on.
        let nothing_stored = answers.iter().all(|a| match a {
            Ok(o) => o.samples_written == 0,
            Err(e) => e.not_stored(),
        });
        PushOutcome::combine(answers.into_iter().map(|a| match a {
            Err(PushError::Unavailable(m)) if !nothing_stored && m.contains(NOT_STORED) => {
                Err(PushError::Unavailable(format!(
                    "{} (other shard groups' parts may be stored: the write's {OUTCOME_UNKNOWN}, retry)",
                    m.replace(NOT_STORED, "was refused")
                )))
            }
            other => other,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::{Labels, Sample};
    use std::sync::Mutex;

    /// A node that leads the groups it is told to and names `named` otherwise; counts
    /// the pushes it answered.
    struct FakeNode {
        member: usize,
        leads: Mutex<Vec<u32>>,
        named: Mutex<Option<usize>>,
        down: Mutex<bool>,
        /// Takes calls and never answers (a paused process).
        paused: Mutex<bool>,
        /// Per group, the 503 it answers instead of taking the part.
        refuses: Mutex<std::collections::HashMap<u32, String>>,
        answered: AtomicUsize,
        calls: AtomicUsize,
    }

    impl FakeNode {
        fn new(member: usize) -> Arc<FakeNode> {
            Arc::new(FakeNode {
                member,
                leads: Mutex::new(vec![]),
                named: Mutex::new(None),
                down: Mutex::new(false),
                paused: Mutex::new(false),
                refuses: Mutex::new(Default::default()),
                answered: AtomicUsize::new(0),
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl GroupIngester for FakeNode {
        async fn push_group(
            &self,
            group: u32,
            _tenant: &Tenant,
            batch: WriteBatch,
        ) -> Result<PushOutcome, GroupPushError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if *self.paused.lock().unwrap() {
                return std::future::pending().await;
            }
            if *self.down.lock().unwrap() {
                return Err(PushError::Unavailable(format!("node {} is down", self.member)).into());
            }
            if let Some(m) = self.refuses.lock().unwrap().get(&group) {
                return Err(PushError::Unavailable(m.clone()).into());
            }
            if self.leads.lock().unwrap().contains(&group) {
                self.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(PushOutcome {
                    samples_written: batch.sample_count(),
                    ..Default::default()
                });
            }
            Err(GroupPushError::NotLeader {
                group,
                leader: self
                    .named
                    .lock()
                    .unwrap()
                    .map(|m| Placement::replica_id(m, group)),
            })
        }
    }

    fn write() -> WriteBatch {
        let series: Vec<_> = (0..32)
            .map(|i| {
                (
                    Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]),
                    vec![Sample::new(1, 1.0)],
                )
            })
            .collect();
        WriteBatch::from_series(&series)
    }

    fn router(nodes: &[Arc<FakeNode>], groups: u32) -> GroupRouter {
        GroupRouter::new(
            nodes
                .iter()
                .map(|n| {
                    (
                        format!("n{}", n.member),
                        n.clone() as Arc<dyn GroupIngester>,
                    )
                })
                .collect(),
            groups,
            3,
            RouterOptions {
                retry_for: Duration::from_millis(500),
                backoff: Duration::from_millis(10),
                attempt_timeout: Duration::from_millis(100),
            },
        )
    }

    /// A write is answered "not stored" only when no part of it is or may be stored:
    /// one group's refusal beside another's unknown outcome (or stored part) makes the
    /// whole write's outcome unknown, whichever group's message is passed on.
    #[tokio::test]
    async fn a_refused_part_beside_one_that_may_be_stored_leaves_the_outcome_unknown() {
        let node = FakeNode::new(0);
        *node.leads.lock().unwrap() = vec![0, 1, 2, 3];
        let router = GroupRouter::new(
            vec![("n0".into(), node.clone() as Arc<dyn GroupIngester>)],
            4,
            1,
            RouterOptions::default(),
        );
        let refusal =
            |g: u32| format!("group {g}: the disk is full; the write {NOT_STORED}, retry");
        let unknown = format!("group 0: the disk is full; the write's {OUTCOME_UNKNOWN}, retry");
        let tenant = Tenant::anonymous();
        let answer = |refuses: Vec<(u32, String)>| {
            *node.refuses.lock().unwrap() = refuses.into_iter().collect();
            router.push(&tenant, write())
        };
        // Every part refused: not stored (the last group's message).
        let e = answer((0..4).map(|g| (g, refusal(g))).collect())
            .await
            .unwrap_err();
        assert!(e.not_stored(), "{e}");
        // Group 0's outcome unknown, the rest refused: unknown.
        let mut mixed: Vec<_> = (1..4).map(|g| (g, refusal(g))).collect();
        mixed.push((0, unknown.clone()));
        let e = answer(mixed).await.unwrap_err();
        assert!(!e.not_stored(), "{e}");
        assert!(e.to_string().contains(OUTCOME_UNKNOWN), "{e}");
        // Group 0 stored its part, the rest refused: unknown.
        let e = answer((1..4).map(|g| (g, refusal(g))).collect())
            .await
            .unwrap_err();
        assert!(!e.not_stored(), "{e}");
        assert!(e.to_string().contains(OUTCOME_UNKNOWN), "{e}");
    }

    #[tokio::test]
    async fn a_group_of_one_replica_is_asked_once_and_its_answer_stands() {
        let node = FakeNode::new(0);
        let alone = |n: &Arc<FakeNode>| {
            GroupRouter::new(
                vec![("n0".into(), n.clone() as Arc<dyn GroupIngester>)],
                4,
                1,
                RouterOptions {
                    retry_for: Duration::from_secs(30),
                    ..RouterOptions::default()
                },
            )
        };
        *node.leads.lock().unwrap() = vec![0, 1, 2, 3];
        let out = alone(&node)
            .push(&Tenant::anonymous(), write())
            .await
            .unwrap();
        assert_eq!(out.samples_written, 32);
        // A refusal (a full disk) and no leader yet are 503 at once, not retried for
        // `retry_for`: nobody else could take the part.
        *node.down.lock().unwrap() = true;
        let calls = node.calls.load(Ordering::Relaxed);
        let e = alone(&node)
            .push(&Tenant::anonymous(), write())
            .await
            .unwrap_err();
        assert!(
            matches!(e, PushError::Unavailable(ref m) if m.contains("is down")),
            "{e}"
        );
        *node.down.lock().unwrap() = false;
        node.leads.lock().unwrap().clear();
        let e = alone(&node)
            .push(&Tenant::anonymous(), write())
            .await
            .unwrap_err();
        assert!(
            matches!(e, PushError::Unavailable(ref m) if m.contains("no leader yet")),
            "{e}"
        );
        assert_eq!(
            node.calls.load(Ordering::Relaxed) - calls,
            8,
            "one call per group each"
        );
    }

    #[tokio::test]
    async fn parts_follow_a_named_leader_and_the_router_remembers_it() {
        let nodes: Vec<_> = (0..3).map(FakeNode::new).collect();
        // Member 2 leads every group; the others name it.
        *nodes[2].leads.lock().unwrap() = vec![0, 1, 2, 3];
        *nodes[0].named.lock().unwrap() = Some(2);
        *nodes[1].named.lock().unwrap() = Some(2);
        let r = router(&nodes, 4);
        let out = r.push(&Tenant::anonymous(), write()).await.unwrap();
        assert_eq!(out.samples_written, 32);
        assert_eq!(nodes[2].answered.load(Ordering::Relaxed), 4);
        assert!((0..4).all(|g| r.leader_of(g) == 2));
    }

    #[tokio::test]
    async fn an_election_and_a_dead_node_are_waited_out_then_the_new_leader_takes_it() {
        let nodes: Vec<_> = (0..3).map(FakeNode::new).collect();
        // Group 0's expected leader (member 0) is down; member 1 knows no leader yet,
        // member 2 leads.
        *nodes[0].down.lock().unwrap() = true;
        *nodes[2].leads.lock().unwrap() = vec![0];
        let r = router(&nodes, 1);
        let out = r.push(&Tenant::anonymous(), write()).await.unwrap();
        assert_eq!(out.samples_written, 32);
        assert_eq!(r.leader_of(0), 2);
    }

    #[tokio::test]
    async fn a_paused_leader_is_given_up_on_and_the_next_replica_takes_the_part() {
        let nodes: Vec<_> = (0..3).map(FakeNode::new).collect();
        // Member 0 was the leader and is paused (it takes the call and never answers);
        // member 1 was elected meanwhile.
        *nodes[0].paused.lock().unwrap() = true;
        *nodes[1].leads.lock().unwrap() = vec![0];
        let r = router(&nodes, 1);
        let out = r.push(&Tenant::anonymous(), write()).await.unwrap();
        assert_eq!(out.samples_written, 32);
        assert_eq!(r.leader_of(0), 1);
        assert_eq!(nodes[0].calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn no_leader_within_the_retry_window_is_a_503_and_nothing_is_acknowledged() {
        let nodes: Vec<_> = (0..3).map(FakeNode::new).collect();
        let r = router(&nodes, 2);
        let e = r.push(&Tenant::anonymous(), write()).await.unwrap_err();
        assert!(matches!(e, PushError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("no leader of group"), "{e}");
    }

    #[tokio::test]
    async fn stale_hints_naming_each_other_are_not_followed_in_a_tight_loop() {
        let nodes: Vec<_> = (0..3).map(FakeNode::new).collect();
        *nodes[0].named.lock().unwrap() = Some(1);
        *nodes[1].named.lock().unwrap() = Some(0);
        *nodes[2].named.lock().unwrap() = Some(0);
        let r = router(&nodes, 1);
        let e = r.push(&Tenant::anonymous(), write()).await.unwrap_err();
        assert!(matches!(e, PushError::Unavailable(_)), "{e:?}");
        // 500 ms at a 10 ms backoff: about 50 rounds of a few calls each.
        let calls: usize = nodes.iter().map(|n| n.calls.load(Ordering::Relaxed)).sum();
        assert!(calls < 400, "{calls} calls");
    }

    #[tokio::test]
    async fn a_limit_is_not_retried_elsewhere() {
        struct Limited;
        #[async_trait]
        impl GroupIngester for Limited {
            async fn push_group(
                &self,
                _: u32,
                _: &Tenant,
                _: WriteBatch,
            ) -> Result<PushOutcome, GroupPushError> {
                Err(PushError::RateLimited("over the series limit".into()).into())
            }
        }
        let r = GroupRouter::new(
            vec![("l".into(), Arc::new(Limited) as Arc<dyn GroupIngester>)],
            1,
            1,
            RouterOptions::default(),
        );
        let e = r.push(&Tenant::anonymous(), write()).await.unwrap_err();
        assert!(matches!(e, PushError::RateLimited(_)));
    }
}
