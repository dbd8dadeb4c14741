//! The load generator's data: node_exporter-like series (100 metric families per
//! instance, counters and gauges, one sample every 15 s), shared by the load generator
//! and the block format measurement.

#![allow(dead_code)]

use hearth_proto::prometheus as pb;

const METRICS: &[(&str, bool)] = &[
    ("node_cpu_seconds_total", true),
    ("node_network_receive_bytes_total", true),
    ("node_network_transmit_bytes_total", true),
    ("node_disk_read_bytes_total", true),
    ("node_disk_written_bytes_total", true),
    ("node_disk_io_time_seconds_total", true),
    ("node_memory_MemAvailable_bytes", false),
    ("node_memory_Cached_bytes", false),
    ("node_filesystem_avail_bytes", false),
    ("http_request_duration_seconds_bucket", true),
];

/// `le` bounds of the histogram family (10 buckets, `mode` replaced by `le`).
const LE: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

/// One series: labels and a value generator state.
pub struct SeriesGen {
    pub labels: Vec<pb::Label>,
    counter: bool,
    value: f64,
    seed: u64,
    scale: f64,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

pub fn make_series(n: usize) -> Vec<SeriesGen> {
    // 1000 series an instance: 10 families x 100 label combinations.
    (0..n)
        .map(|i| {
            let inst = i / 1000;
            let within = i % 1000;
            let (name, counter) = METRICS[within / 100];
            let k = within % 100;
            const MODES: [&str; 10] = [
                "user",
                "system",
                "idle",
                "iowait",
                "irq",
                "softirq",
                "steal",
                "nice",
                "guest",
                "guest_nice",
            ];
            let bucket = name.ends_with("_bucket");
            let label = |n: &str, v: String| pb::Label {
                name: n.into(),
                value: v,
            };
            let mut labels = vec![
                label("__name__", name.into()),
                label("cpu", (k / 10).to_string()),
                label("instance", format!("host-{inst:05}.example.org:9100")),
                label("job", format!("node-{}", inst % 4)),
                if bucket {
                    label("le", LE[k % 10].into())
                } else {
                    label("mode", MODES[k % 10].into())
                },
            ];
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            // Buckets grow faster the wider they are, so counts stay roughly cumulative.
            let scale = if bucket { (k % 10 + 1) as f64 } else { 1.0 };
            SeriesGen {
                labels,
                counter,
                value: (i % 977) as f64 * 13.0 * scale,
                seed: i as u64 * 2654435761 + 1,
                scale,
            }
        })
        .collect()
}

pub fn next_value(s: &mut SeriesGen) -> f64 {
    let r = xorshift(&mut s.seed);
    if s.counter {
        // Counters grow by realistic, often integral, increments.
        s.value += (r % 5000) as f64 * if r.is_multiple_of(3) { 1.0 } else { 0.01 } * s.scale;
    } else {
        s.value = (s.value + ((r % 2001) as f64 - 1000.0) * 0.5).abs();
    }
    s.value
}
