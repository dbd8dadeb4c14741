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
