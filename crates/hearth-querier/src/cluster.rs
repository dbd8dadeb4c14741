//! `/api/v1/status/cluster`: the cluster's ingester nodes and shard groups as the nodes
//! report them (`IngesterStatus::replicas`): which node answered, and per group its
//! leader, term and every replica's role, applied index, lag behind the newest log
//! index of the group, head size and shipped watermark (and head digests when asked).

use std::collections::BTreeMap;

use hearth_core::shard::{NodeReplicas, ReplicaState};
use serde_json::{json, Value};

/// The status page's `data`, from every node's answer.
pub fn cluster_view(nodes: &[NodeReplicas]) -> Value {
    let mut groups: BTreeMap<u32, Vec<(&str, &ReplicaState)>> = BTreeMap::new();
    for n in nodes {
        for r in &n.replicas {
            groups.entry(r.group).or_default().push((&n.node, r));
        }
    }
    let node_list: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.node,
                "up": n.error.is_none(),
                "error": n.error,
                "replicas": n.replicas.len(),
                "leads": n.replicas.iter().filter(|r| r.role == "leader").count(),
            })
        })
        .collect();
    let group_list: Vec<Value> = groups
        .into_iter()
        .map(|(g, mut replicas)| {
            replicas.sort_by_key(|(_, r)| r.replica);
            // The leader of the highest term (a deposed leader may not know it yet).
            let leader = replicas
                .iter()
                .filter(|(_, r)| r.role == "leader")
                .max_by_key(|(_, r)| r.term);
            let newest = replicas.iter().filter_map(|(_, r)| r.last_log_index).max();
            let list: Vec<Value> = replicas
                .iter()
                .map(|(node, r)| {
                    let lag = match (newest, r.applied_index) {
                        (Some(n), Some(a)) => Some(n.saturating_sub(a)),
                        (Some(n), None) => Some(n),
                        _ => None,
                    };
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    v["node"] = json!(node);
                    v["lag"] = json!(lag);
                    v
                })
                .collect();
            json!({
                "group": g,
                "leader": leader.map(|(_, r)| r.replica),
                "leaderNode": leader.map(|(n, _)| *n),
                "term": replicas.iter().map(|(_, r)| r.term).max(),
                "replicas": list,
            })
        })
        .collect();
    json!({"nodes": node_list, "groups": group_list})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(
        group: u32,
        replica: u64,
        role: &str,
        term: u64,
        applied: u64,
        last: u64,
    ) -> ReplicaState {
        ReplicaState {
            group,
            replica,
            role: role.into(),
            term,
            applied_index: Some(applied),
            last_log_index: Some(last),
            ..ReplicaState::default()
        }
    }

    #[test]
    fn groups_name_their_leader_and_each_replica_its_lag() {
        let nodes = vec![
            NodeReplicas {
                node: "a".into(),
                error: None,
                // A deposed leader of term 2 that has not heard of term 3 yet.
                replicas: vec![replica(0, 1, "leader", 2, 10, 10)],
            },
            NodeReplicas {
                node: "b".into(),
                error: None,
                replicas: vec![replica(0, 2, "leader", 3, 12, 14)],
            },
            NodeReplicas {
                node: "c".into(),
                error: Some("unreachable".into()),
                replicas: vec![],
            },
        ];
        let v = cluster_view(&nodes);
        assert_eq!(v["nodes"][2]["up"], false);
        assert_eq!(v["nodes"][1]["leads"], 1);
        let g = &v["groups"][0];
        assert_eq!(g["leader"], 2);
        assert_eq!(g["leaderNode"], "b");
        assert_eq!(g["term"], 3);
        assert_eq!(g["replicas"][0]["lag"], 4);
        assert_eq!(g["replicas"][1]["lag"], 2);
        assert_eq!(g["replicas"][1]["appliedIndex"], 12);
    }
}
