//! Per-shard-group self-metrics of an ingester node, gathered at scrape time (a
//! prometheus-client `Collector`): each replica's role, term, log positions, apply lag,
//! head size, leader changes, commit latency and snapshots, labelled by `group`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hearth_ingester::replication::IngesterNode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;

pub struct ReplicaCollector(pub Arc<IngesterNode>);

impl std::fmt::Debug for ReplicaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaCollector")
    }
}

type Labels = [(&'static str, String); 1];

/// One gauge family: `name` per group.
fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, u64, u64>(v, None)?;
    }
    Ok(())
}

impl Collector for ReplicaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let replicas: Vec<_> = self.0.replicas().collect();
        let states: Vec<_> = replicas.iter().map(|r| (r.state(), r.stats())).collect();
        let label = |g: u32| -> Labels { [("group", g.to_string())] };
        let gauge_rows = |f: &dyn Fn(&hearth_core::shard::ReplicaState) -> Option<i64>| {
            states
                .iter()
                .filter_map(|(s, _)| f(s).map(|v| (label(s.group), v)))
                .collect::<Vec<_>>()
        };
        gauges(
            &mut encoder,
            "hearth_raft_leader",
            "Whether this node's replica leads the shard group (1) or not (0)",
            &gauge_rows(&|s| Some((s.role == "leader") as i64)),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_term",
            "The shard group's Raft term as this replica knows it",
            &gauge_rows(&|s| Some(s.term as i64)),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_last_log_index",
            "Index of the newest entry in this replica's log",
            &gauge_rows(&|s| s.last_log_index.map(|v| v as i64)),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_applied_index",
            "Index of the newest entry this replica applied to its head",
            &gauge_rows(&|s| s.applied_index.map(|v| v as i64)),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_apply_lag_entries",
            "Entries in this replica's log not applied yet",
            &gauge_rows(&|s| {
                Some(
                    s.last_log_index
                        .unwrap_or(0)
                        .saturating_sub(s.applied_index.unwrap_or(0)) as i64,
                )
            }),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_millis_since_quorum_ack",
            "A leader's time since a quorum of its group last acknowledged it (leaders only)",
            &gauge_rows(&|s| {
                s.millis_since_quorum_ack
                    .filter(|_| s.role == "leader")
                    .map(|v| v as i64)
            }),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_head_series",
            "Series in this replica's head",
            &gauge_rows(&|s| Some(s.head_series as i64)),
        )?;
        gauges(
            &mut encoder,
            "hearth_raft_snapshot_bytes",
            "Bytes of the newest snapshot this replica built or installed",
            &states
                .iter()
                .map(|(s, st)| {
                    (
                        label(s.group),
                        st.snapshot_bytes.load(Ordering::Relaxed) as i64,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let count = |f: &dyn Fn(&hearth_ingester::replication::ReplicaStats) -> u64| {
            states
                .iter()
                .map(|(s, st)| (label(s.group), f(st)))
                .collect::<Vec<_>>()
        };
        counters(
            &mut encoder,
            "hearth_raft_leader_changes",
            "Times this replica saw its shard group's leader change",
            &count(&|st| st.leader_changes.load(Ordering::Relaxed)),
        )?;
        counters(
            &mut encoder,
            "hearth_raft_snapshots_built",
            "Snapshots this replica built (after each shipped block, and when its log grows)",
            &count(&|st| st.snapshots_built.load(Ordering::Relaxed)),
        )?;
        counters(
            &mut encoder,
            "hearth_raft_snapshots_installed",
            "Snapshots this replica received from its leader and installed",
            &count(&|st| st.snapshots_installed.load(Ordering::Relaxed)),
        )?;
        let mut m = encoder.encode_descriptor(
            "hearth_raft_commit_seconds",
            "Seconds from a write reaching the leader's proposer to its entry being committed on a quorum and applied",
            None,
            MetricType::Histogram,
        )?;
        for (s, st) in &states {
            st.commit_seconds
                .encode(m.encode_family(&label(s.group))?)?;
        }
        let mut m = encoder.encode_descriptor(
            "hearth_raft_snapshot_build_seconds",
            "Seconds to write a snapshot of the replica's head out",
            None,
            MetricType::Histogram,
        )?;
        for (s, st) in &states {
            st.snapshot_build_seconds
                .encode(m.encode_family(&label(s.group))?)?;
        }
        Ok(())
    }
}
