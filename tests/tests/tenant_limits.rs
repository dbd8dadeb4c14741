//! Per-tenant limits with Mimir's names, from the runtime configuration file, reloaded
//! without a restart: the ingestion rate (429, retried by senders), series per tenant
//! and per metric (400 naming the limit, the rest stored), label names per series. A
//! tenant hammering its limit never costs another tenant a write.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn overrides(small_series: u64) -> String {
    format!(
        "overrides:\n  small:\n    ingestion_rate: 50\n    ingestion_burst_size: 1000\n    max_global_series_per_user: {small_series}\n    max_global_series_per_metric: 40\n    max_label_names_per_series: 5\n"
    )
}

/// `n` series `metric{i="0".."n"}` with one sample each at `t`.
fn many(metric: &str, from: usize, n: usize, t: i64) -> Vec<hearth_proto::prometheus::TimeSeries> {
    (from..from + n)
        .map(|i| {
            series(
                &[("__name__", metric), ("i", &i.to_string())],
                &[(t, i as f64)],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_at_their_limits_hurt_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.yaml");
    std::fs::write(&runtime, overrides(60)).unwrap();
    let flags = [
        "--auth.multitenancy-enabled=true".to_string(),
        format!("--runtime-config.file={}", runtime.display()),
        "--runtime-config.reload-period=200ms".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let h = start_hearth(&dir.path().join("data"), &flags).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = h.url("/api/v1/push");
    let t0 = now_ms() - 60_000;

    // Series per metric: 40 of `a` are stored, the rest refused with 400 naming the
    // limit and the tenant's series.
    // (Up to the limit first: a write's series are admitted group by group, so which
    // of one write's new series pass a limit is not their order in the write.)
    let (status, body) = push_as(&client, &url, "small", many("a", 0, 40, t0)).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = push_as(&client, &url, "small", many("a", 40, 10, t0)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("per-metric series limit of 40"), "{body}");
    let stored = query_as(&client, &h, "small", "count(a)", t0).await;
    assert_eq!(single_value(&stored), Some(40.0));
    // Series per tenant: 60 in all.
    let (status, body) = push_as(&client, &url, "small", many("b", 0, 30, t0)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("per-tenant series limit of 60"), "{body}");
    let stored = query_as(&client, &h, "small", "count({__name__=~\"a|b\"})", t0).await;
    assert_eq!(single_value(&stored), Some(60.0));
    // Existing series keep taking samples at the limit.
    let (status, body) = push_as(&client, &url, "small", many("a", 0, 10, t0 + 1000)).await;
    assert_eq!(status, 204, "{body}");
    // Label names per series.
    let wide = series(
        &[
            ("__name__", "a"),
            ("l1", "1"),
            ("l2", "2"),
            ("l3", "3"),
            ("l4", "4"),
            ("l5", "5"),
        ],
        &[(t0, 1.0)],
    );
    let (status, body) = push_as(&client, &url, "small", vec![wide]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than the limit of 5"), "{body}");

    // The rate: a request above the burst is refused whole with 429, which senders
    // retry; while "small" hammers its bucket, "big" (the defaults) is never refused.
    let small = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let (mut ok, mut limited) = (0, 0);
            for round in 0..60i64 {
                let (status, body) =
                    push_as(&client, &url, "small", many("a", 0, 40, t0 + 2000 + round)).await;
                match status {
                    204 => ok += 1,
                    429 => {
                        assert!(body.contains("ingestion rate limit"), "{body}");
                        limited += 1
                    }
                    other => panic!("small got {other}: {body}"),
                }
            }
            (ok, limited)
        })
    };
    let mut big_rounds = 0i64;
    while !small.is_finished() || big_rounds < 20 {
        let (status, body) = push_as(
            &client,
            &url,
            "big",
            many("a", 0, 500, t0 + big_rounds * 10),
        )
        .await;
        assert_eq!(status, 204, "big, round {big_rounds}: {body}");
        big_rounds += 1;
    }
    let (ok, limited) = small.await.unwrap();
    assert!(
        limited > 0,
        "small never hit its rate limit ({ok} accepted)"
    );
    let big = query_as(
        &client,
        &h,
        "big",
        "count(count_over_time(a[10m]))",
        t0 + 10 * big_rounds,
    )
    .await;
    assert_eq!(single_value(&big), Some(500.0));
    let samples = query_as(
        &client,
        &h,
        "big",
        "sum(count_over_time(a[10m]))",
        t0 + 10 * big_rounds,
    )
    .await;
    assert_eq!(single_value(&samples), Some((500 * big_rounds) as f64));

    // Raising the limit in the file takes effect without a restart.
    std::fs::write(
        &runtime,
        overrides(100).replace(
            "max_global_series_per_metric: 40",
            "max_global_series_per_metric: 0",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = push_as(&client, &url, "small", many("c", 0, 10, t0 + 5000)).await;
        if status == 204 {
            break;
        }
        assert!(
            status == 400 || status == 429,
            "while the reload is pending: {status} {body}"
        );
        assert!(
            Instant::now() < deadline,
            "the raised limit never applied: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let info = get_json(&client, &h.url("/api/v1/status/runtimeinfo")).await;
    assert_eq!(info["data"]["reloadConfigSuccess"], true, "{info}");
    // A broken edit keeps the last good limits and is reported.
    std::fs::write(&runtime, "overrides:\n  small:\n    no_such_limit: 1\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = get_json(&client, &h.url("/api/v1/status/runtimeinfo")).await;
        if info["data"]["reloadConfigSuccess"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a bad runtime configuration was not reported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The last good limits stay (a 429 only means the bucket is refilling).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = push_as(&client, &url, "small", many("c", 10, 10, t0 + 6000)).await;
        if status == 204 {
            break;
        }
        assert_eq!(status, 429, "the last good limits stay: {body}");
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
