//! Targeted engine checks beyond the corpus: limit_ratio's stable partition, limits.

use std::sync::Arc;

use hearth_core::{Labels, Sample, Tenant, WriteBatch};
use hearth_promql::{Engine, EngineOptions, QueryError, QueryValue};
use hearth_tsdb::{Head, HeadOptions, HeadQueryable};

fn engine(opts: EngineOptions) -> Engine {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let series: Vec<(Labels, Vec<Sample>)> = (0..200)
        .map(|i| {
            (
                Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                (0..20)
                    .map(|k| Sample::new(k * 15_000, (i * k) as f64))
                    .collect(),
            )
        })
        .collect();
    head.apply(&Tenant::anonymous(), &WriteBatch::from_series(&series));
    Engine::new(Arc::new(HeadQueryable(head)), opts)
}

async fn count(e: &Engine, q: &str) -> usize {
    let expr = Engine::parse(q).unwrap();
    match e
        .instant(&Tenant::anonymous(), &expr, 200_000)
        .await
        .unwrap()
        .value
    {
        QueryValue::Vector(v) => v.len(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn limit_ratio_partitions_the_series() {
    let e = engine(EngineOptions::default());
    let a = count(&e, "limit_ratio(0.3, m)").await;
    let b = count(&e, "limit_ratio(-0.7, m)").await;
    assert_eq!(a + b, 200, "r and -(1-r) select complementary sets");
    assert!(a > 20 && a < 100, "about 30% of 200: {a}");
    assert_eq!(count(&e, "limit_ratio(1, m)").await, 200);
    assert_eq!(count(&e, "limit_ratio(0, m)").await, 0);
    assert_eq!(count(&e, "m and limit_ratio(0.3, m)").await, a);
    assert_eq!(count(&e, "limitk(7, m)").await, 7);
}

#[tokio::test]
async fn max_samples_is_enforced() {
    let e = engine(EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    });
    let expr = Engine::parse("sum(m)").unwrap();
    match e.instant(&Tenant::anonymous(), &expr, 200_000).await {
        Err(QueryError::TooManySamples(_)) => {}
        other => panic!("want too many samples, got {other:?}"),
    }
    let expr = Engine::parse("count_over_time(m[10m])").unwrap();
    assert!(matches!(
        e.instant(&Tenant::anonymous(), &expr, 200_000).await,
        Err(QueryError::TooManySamples(_))
    ));
}

#[tokio::test]
async fn delayed_name_removal_keeps_names_until_the_end() {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let series: Vec<(Labels, Vec<Sample>)> = ["metric_total", "another_metric_total"]
        .iter()
        .map(|n| {
            (
                Labels::from_pairs(&[("__name__", *n), ("env", "1")]),
                (0..3)
                    .map(|k| Sample::new(k * 300_000, (k * 60) as f64))
                    .collect(),
            )
        })
        .collect();
    head.apply(&Tenant::anonymous(), &WriteBatch::from_series(&series));
    let q = Engine::parse(
        r#"label_replace(rate({env="1"}[10m]), "my_name", "rate_$1", "__name__", "(.+)")"#,
    )
    .unwrap();
    let delayed = Engine::new(
        Arc::new(HeadQueryable(head.clone())),
        EngineOptions {
            delayed_name_removal: true,
            ..EngineOptions::default()
        },
    );
    match delayed
        .instant(&Tenant::anonymous(), &q, 600_000)
        .await
        .unwrap()
        .value
    {
        QueryValue::Vector(v) => {
            let mut names: Vec<String> = v.iter().map(|s| s.0.to_string()).collect();
            names.sort();
            assert_eq!(
                names,
                [
                    r#"{env="1", my_name="rate_another_metric_total"}"#,
                    r#"{env="1", my_name="rate_metric_total"}"#
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // Without it (Prometheus' default) the names go at once and the two series collide.
    let immediate = Engine::new(Arc::new(HeadQueryable(head)), EngineOptions::default());
    assert!(matches!(
        immediate.instant(&Tenant::anonymous(), &q, 600_000).await,
        Err(QueryError::Execution(_))
    ));
}

#[tokio::test]
async fn info_adds_target_info_data_labels() {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
    let pts = |v: f64| {
        (0..5)
            .map(|k| Sample::new(k * 60_000, v))
            .collect::<Vec<_>>()
    };
    let series = vec![
        (
            l(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a"),
                ("code", "200"),
            ]),
            pts(10.0),
        ),
        (
            l(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "b"),
                ("code", "200"),
            ]),
            pts(20.0),
        ),
        (
            l(&[
                ("__name__", "target_info"),
                ("job", "api"),
                ("instance", "a"),
                ("k8s_cluster", "east"),
                ("version", "1.2"),
            ]),
            pts(1.0),
        ),
        (
            l(&[
                ("__name__", "build_info"),
                ("job", "api"),
                ("instance", "b"),
                ("revision", "abc"),
            ]),
            pts(1.0),
        ),
    ];
    head.apply(&Tenant::anonymous(), &WriteBatch::from_series(&series));
    let e = Engine::new(Arc::new(HeadQueryable(head)), EngineOptions::default());
    let run = |q: &'static str| {
        let e = &e;
        async move {
            let expr = Engine::parse(q).unwrap();
            match e
                .instant(&Tenant::anonymous(), &expr, 240_000)
                .await
                .unwrap()
                .value
            {
                QueryValue::Vector(mut v) => {
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                    v.into_iter()
                        .map(|(l, _, v)| format!("{l} {v}"))
                        .collect::<Vec<_>>()
                }
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        run("info(http_requests_total)").await,
        [
            r#"http_requests_total{code="200", instance="a", job="api", k8s_cluster="east", version="1.2"} 10"#,
            r#"http_requests_total{code="200", instance="b", job="api"} 20"#,
        ]
    );
    // A selector limits the labels and drops series without them.
    assert_eq!(
        run(r#"info(http_requests_total, {k8s_cluster=~".+"})"#).await,
        [r#"http_requests_total{code="200", instance="a", job="api", k8s_cluster="east"} 10"#]
    );
    // Another info metric by name.
    assert_eq!(
        run(r#"info(http_requests_total, {__name__="build_info"})"#).await,
        [
            r#"http_requests_total{code="200", instance="a", job="api"} 10"#,
            r#"http_requests_total{code="200", instance="b", job="api", revision="abc"} 20"#,
        ]
    );
}

#[test]
fn parse_errors_at_the_end_carry_prometheus_positions() {
    let msg = |q: &str| Engine::parse(q).unwrap_err().to_string();
    assert_eq!(msg("sum("), "1:5: parse error: unclosed left parenthesis");
    assert_eq!(
        msg("up{"),
        "1:4: parse error: unexpected end of input inside braces"
    );
    assert_eq!(
        msg("sum(\n  rate(x[5m])"),
        "2:14: parse error: unclosed left parenthesis"
    );
}
