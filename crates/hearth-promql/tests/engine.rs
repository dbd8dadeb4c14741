//! Targeted engine checks beyond the corpus: limit_ratio's stable partition, limits.

use std::sync::Arc;

use hearth_core::{Labels, Sample, Tenant, WriteBatch};
use hearth_ingester::{Head, HeadOptions, HeadQueryable};
use hearth_promql::{Engine, EngineOptions, QueryError, QueryValue};

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

/// Range selectors skip the chunks no step's window looks at (`rate(x[5m])` every
/// hour reads about a sixth of a day's chunks): every window must still see exactly
/// its samples. Checked against sums computed from the samples themselves, for
/// windows shorter and longer than a chunk, steps that do and do not align with
/// chunks, offsets, `@` and a subquery (which is not skipped).
#[tokio::test]
async fn range_selectors_skip_only_chunks_outside_every_window() {
    const MIN: i64 = 60_000;
    // One day at 15 s with jitter: 120-sample chunks of about 30 minutes.
    let samples: Vec<Sample> = (0..5760)
        .map(|k| Sample::new(k * 15_000 + (k % 7) * 100, k as f64))
        .collect();
    let head = Arc::new(Head::new(HeadOptions::default()));
    head.apply(
        &Tenant::anonymous(),
        &WriteBatch::from_series(&[(Labels::from_pairs(&[("__name__", "m")]), samples.clone())]),
    );
    let e = Engine::new(Arc::new(HeadQueryable(head)), EngineOptions::default());
    let sum_in = |lo: i64, hi: i64| -> Option<f64> {
        let w: Vec<f64> = samples
            .iter()
            .filter(|s| s.t > lo && s.t <= hi)
            .map(|s| s.v)
            .collect();
        (!w.is_empty()).then(|| w.iter().sum())
    };
    let points = |out: QueryValue| -> Vec<(i64, f64)> {
        match out {
            QueryValue::Matrix(m) if m.is_empty() => Vec::new(),
            QueryValue::Matrix(m) => {
                assert_eq!(m.len(), 1);
                m[0].samples.iter().map(|s| (s.t, s.v)).collect()
            }
            other => panic!("{other:?}"),
        }
    };
    let mut checked = 0;
    for (range, offset, step, start) in [
        (5 * MIN, 0, 60 * MIN, 60 * MIN),
        (7 * MIN, 0, 60 * MIN, 61 * MIN + 7_000),
        (31 * MIN, 0, 60 * MIN, 45 * MIN),
        (5 * MIN, 13 * MIN, 60 * MIN, 90 * MIN),
        (45 * MIN, 0, 97 * MIN, 50 * MIN),
        (MIN, 0, 17 * MIN + 3_000, 2 * MIN),
    ] {
        let q = if offset > 0 {
            format!(
                "sum_over_time(m[{}s] offset {}s)",
                range / 1000,
                offset / 1000
            )
        } else {
            format!("sum_over_time(m[{}s])", range / 1000)
        };
        let expr = Engine::parse(&q).unwrap();
        let end = 24 * 60 * MIN;
        let got = points(
            e.range(&Tenant::anonymous(), &expr, start, end, step)
                .await
                .unwrap()
                .value,
        );
        let mut want = Vec::new();
        let mut t = start;
        while t <= end {
            if let Some(v) = sum_in(t - offset - range, t - offset) {
                want.push((t, v));
            }
            t += step;
        }
        assert_eq!(got, want, "{q} from {start} every {step}");
        checked += want.len();
    }
    assert!(checked > 100, "{checked}");

    // `@` pins every step's window to one time.
    let expr = Engine::parse("sum_over_time(m[5m] @ 36000)").unwrap();
    let got = points(
        e.range(&Tenant::anonymous(), &expr, 0, 10 * 60 * MIN, 60 * MIN)
            .await
            .unwrap()
            .value,
    );
    let v = sum_in(36_000_000 - 5 * MIN, 36_000_000).unwrap();
    assert_eq!(got.len(), 11);
    assert!(got.iter().all(|p| p.1 == v));

    // In a subquery the inner selector is evaluated every 10 minutes, not at the
    // outer steps: nothing may be skipped there.
    let expr = Engine::parse("max_over_time(sum_over_time(m[1m])[30m:10m])").unwrap();
    let got = points(
        e.range(&Tenant::anonymous(), &expr, 120 * MIN, 600 * MIN, 120 * MIN)
            .await
            .unwrap()
            .value,
    );
    let mut want = Vec::new();
    for t in (120..=600).step_by(120).map(|m| m as i64 * MIN) {
        let inner: Vec<f64> = (1..=3)
            .filter_map(|k| {
                let at = (t - 30 * MIN) / (10 * MIN) * (10 * MIN) + k * 10 * MIN;
                sum_in(at - MIN, at)
            })
            .collect();
        want.push((t, inner.into_iter().fold(f64::MIN, f64::max)));
    }
    assert_eq!(got, want);
}

/// A source of many series that counts how many were pulled from it.
struct Counting {
    series: usize,
    pulled: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl hearth_core::Queryable for Counting {
    async fn select(
        &self,
        _: &Tenant,
        _: &[hearth_core::Matcher],
        _: i64,
        _: i64,
        _: &hearth_core::SelectHints,
    ) -> Result<hearth_core::SeriesStream, hearth_core::StorageError> {
        let pulled = self.pulled.clone();
        let it = (0..self.series).map(move |i| {
            pulled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(hearth_core::Series {
                labels: Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{i:08}"))]),
                data: hearth_core::SeriesData::Samples(
                    (0..50).map(|k| Sample::new(k * 1_000, 1.0)).collect(),
                ),
            })
        });
        Ok(Box::pin(futures::stream::iter(it)))
    }
    async fn label_names(
        &self,
        _: &Tenant,
        _: &[hearth_core::Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, hearth_core::StorageError> {
        Ok(vec![])
    }
    async fn label_values(
        &self,
        _: &Tenant,
        _: &str,
        _: &[hearth_core::Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, hearth_core::StorageError> {
        Ok(vec![])
    }
}

/// A query stops as soon as what it fetched passes `query.max-samples`: it does not
/// read the rest of its sources first (instant selectors count a series each, range
/// selectors their samples).
#[tokio::test]
async fn max_samples_stops_the_fetch() {
    for (q, limit) in [("count(m)", 1_000), ("sum(count_over_time(m[1m]))", 5_000)] {
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let e = Engine::new(
            Arc::new(Counting {
                series: 100_000,
                pulled: pulled.clone(),
            }),
            EngineOptions {
                max_samples: limit,
                ..EngineOptions::default()
            },
        );
        let expr = Engine::parse(q).unwrap();
        match e.instant(&Tenant::anonymous(), &expr, 49_000).await {
            Err(QueryError::TooManySamples(_)) => {}
            other => panic!("{q}: want too many samples, got {other:?}"),
        }
        let n = pulled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            n <= limit + 1,
            "{q}: {n} series read for a limit of {limit}"
        );
    }
}
