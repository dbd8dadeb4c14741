//! `hearth import prometheus-tsdb <dir>`: every block of a Prometheus data directory
//! into the bucket, with progress on stdout.

use std::path::Path;
use std::time::Instant;

use hearth_storage::promblock::{block_dirs, import_block};

use crate::config::Config;

pub async fn prometheus_tsdb(cfg: &Config, dir: &Path, tenant: &str) -> anyhow::Result<()> {
    let tenant = hearth_core::Tenant::new(tenant).map_err(|e| anyhow::anyhow!(e))?;
    let dirs = if dir.join("meta.json").is_file() {
        vec![dir.to_path_buf()]
    } else {
        block_dirs(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
    };
    if dirs.is_empty() {
        anyhow::bail!(
            "{}: no Prometheus blocks (directories with meta.json and index)",
            dir.display()
        );
    }
    let bucket = hearth_storage::open_bucket(&cfg.bucket())?;
    let store = hearth_storage::BucketStore::new(bucket.clone());
    let writer =
        hearth_storage::BlockWriter::new(bucket).with_sample_encoding(cfg.sample_encoding());
    store.sync().await?;
    println!(
        "importing {} Prometheus blocks from {} as tenant {tenant}",
        dirs.len(),
        dir.display()
    );
    let started = Instant::now();
    let (mut series, mut samples, mut skipped) = (0usize, 0u64, 0usize);
    for (i, d) in dirs.iter().enumerate() {
        let t = Instant::now();
        let done = import_block(&store, &writer, &tenant, d).await?;
        match &done.block {
            Some(meta) => println!(
                "[{}/{}] {} -> {}: {} series, {} samples, {:.1}s",
                i + 1,
                dirs.len(),
                done.prometheus_ulid,
                meta.ulid,
                done.series,
                done.samples,
                t.elapsed().as_secs_f64()
            ),
            None => println!(
                "[{}/{}] {}: imported before, skipped",
                i + 1,
                dirs.len(),
                done.prometheus_ulid
            ),
        }
        series += done.series;
        samples += done.samples;
        skipped += done.skipped_chunks;
    }
    println!(
        "done: {series} series, {samples} samples in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!("; {skipped} native-histogram chunks left out (not supported yet)")
        } else {
            String::new()
        }
    );
    Ok(())
}
