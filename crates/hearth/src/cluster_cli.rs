//! `hearth cluster status`: a querier's /api/v1/status/cluster as tables, one of the
//! ingester nodes and one row per shard-group replica.

use std::fmt::Write;

use serde_json::Value;

pub async fn status(url: &str, digests: bool) -> anyhow::Result<()> {
    let base = if url.contains("://") {
        url.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    };
    let endpoint = format!("{base}/api/v1/status/cluster?digests={digests}");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let resp = client
        .get(&endpoint)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{endpoint}: {e}"))?;
    let code = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{endpoint}: {code}: not JSON ({e})"))?;
    if body["status"] != "success" {
        anyhow::bail!("{endpoint}: {code}: {}", body["error"]);
    }
    print!("{}", render(&body["data"]));
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The tables, as printed.
pub fn render(data: &Value) -> String {
    let mut out = String::new();
    let nodes = data["nodes"].as_array().cloned().unwrap_or_default();
    if nodes.is_empty() {
        out.push_str("no ingester node answered\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<32} {:<5} {:>8} {:>6}  ERROR",
        "NODE", "UP", "REPLICAS", "LEADS"
    );
    for n in &nodes {
        let _ = writeln!(
            out,
            "{:<32} {:<5} {:>8} {:>6}  {}",
            text(&n["node"]),
            if n["up"] == true { "yes" } else { "no" },
            text(&n["replicas"]),
            text(&n["leads"]),
            if n["error"].is_null() {
                String::new()
            } else {
                text(&n["error"])
            },
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>5} {:>6} {:<32} {:<10} {:>9} {:>5} {:>8} {:>15}  DIGEST",
        "GROUP", "TERM", "REPLICA ON", "ROLE", "APPLIED", "LAG", "SERIES", "SHIPPED BEFORE"
    );
    for g in data["groups"].as_array().cloned().unwrap_or_default() {
        for r in g["replicas"].as_array().cloned().unwrap_or_default() {
            let digest = match &r["digest"] {
                Value::Null => String::new(),
                d => format!(
                    "{}/{}/{}",
                    text(&d["series"]),
                    text(&d["samples"]),
                    text(&d["hash"])
                ),
            };
            let _ = writeln!(
                out,
                "{:>5} {:>6} {:<32} {:<10} {:>9} {:>5} {:>8} {:>15}  {}",
                text(&g["group"]),
                text(&r["term"]),
                text(&r["node"]),
                text(&r["role"]),
                text(&r["appliedIndex"]),
                text(&r["lag"]),
                text(&r["headSeries"]),
                text(&r["shippedWatermarkMs"]),
                digest,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_down_and_a_group_show_in_the_tables() {
        let data = serde_json::json!({
            "nodes": [
                {"node": "i1 (127.0.0.1:1)", "up": true, "error": null, "replicas": 1, "leads": 1},
                {"node": "i2 (127.0.0.1:2)", "up": false, "error": "unreachable", "replicas": 0, "leads": 0}
            ],
            "groups": [{"group": 0, "leader": 7, "term": 3, "replicas": [
                {"node": "i1 (127.0.0.1:1)", "role": "leader", "term": 3, "appliedIndex": 42,
                 "lag": 0, "headSeries": 10, "shippedWatermarkMs": null,
                 "digest": {"series": 10, "samples": 20, "hash": "00000000000000ff"}}
            ]}]
        });
        let t = render(&data);
        assert!(t.contains("i2 (127.0.0.1:2)                 no"), "{t}");
        assert!(t.contains("unreachable"), "{t}");
        assert!(t.contains("leader"), "{t}");
        assert!(t.contains("10/20/00000000000000ff"), "{t}");
    }
}
