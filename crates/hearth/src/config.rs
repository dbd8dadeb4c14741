//! Configuration: Prometheus-style flags, also settable in a YAML file given by
//! `--config.file`. A flag given on the command line wins over the file; the file wins
//! over the default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

/// Hearth: a horizontally scalable, Prometheus-compatible metrics backend.
///
/// With no arguments every role runs in one process on the embedded default: data
/// under ./data, listening on 127.0.0.1:9009.
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "hearth", version, about, long_about = None)]
pub struct Flags {
    /// YAML configuration file; the same settings as the flags (see docs/configuration.md).
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for the HTTP API, remote-write and /metrics [default: 127.0.0.1:9009].
    #[arg(long = "web.listen-address", value_name = "HOST:PORT")]
    pub listen_address: Option<String>,

    /// Directory for the write-ahead log and head checkpoints [default: ./data].
    #[arg(long = "storage.path", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,

    /// Which role to run: all (every role in one process) [default: all].
    /// The single roles (distributor, ingester, querier, ...) arrive with the cluster.
    #[arg(long = "target", value_name = "ROLE")]
    pub target: Option<String>,

    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: logfmt (human-readable) or json [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Honour the X-Scope-OrgID header (multi-tenancy, as Cortex and Mimir). When off,
    /// every request belongs to tenant `anonymous` [default: false].
    #[arg(long = "auth.multitenancy-enabled", value_name = "BOOL")]
    pub multitenancy: Option<bool>,

    /// Accept samples up to this far behind the newest one, out of order (Prometheus'
    /// out_of_order_time_window); 0 turns it off [default: 0s].
    #[arg(
        long = "storage.tsdb.out-of-order-time-window",
        value_name = "DURATION"
    )]
    pub ooo_window: Option<String>,

    /// Block range of the head: chunks never span it, and in-order samples older than
    /// half of it behind the newest are out of bounds [default: 2h].
    #[arg(long = "storage.tsdb.block-duration", value_name = "DURATION")]
    pub block_duration: Option<String>,

    /// Write a head checkpoint after this many bytes of write-ahead log [default: 256MiB].
    #[arg(long = "storage.tsdb.checkpoint-after-bytes", value_name = "BYTES")]
    pub checkpoint_after_bytes: Option<u64>,

    /// Largest decompressed remote-write body accepted; larger gets 413 [default: 10485760].
    #[arg(long = "distributor.max-recv-msg-size", value_name = "BYTES")]
    pub max_recv_msg_size: Option<usize>,

    /// How far back an instant selector looks for a sample [default: 5m].
    #[arg(long = "query.lookback-delta", value_name = "DURATION")]
    pub lookback_delta: Option<String>,

    /// Most samples one query may load [default: 50000000].
    #[arg(long = "query.max-samples", value_name = "N")]
    pub max_samples: Option<usize>,

    /// Longest a query may run [default: 2m].
    #[arg(long = "query.timeout", value_name = "DURATION")]
    pub query_timeout: Option<String>,

    /// Queries evaluated at once; more wait for a slot [default: 20].
    #[arg(long = "query.max-concurrency", value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Drop __name__ only when a query finishes, so label_replace/label_join can still read
    /// it (Prometheus' experimental promql-delayed-name-removal) [default: false].
    #[arg(long = "query.delayed-name-removal", value_name = "BOOL")]
    pub delayed_name_removal: Option<bool>,
}

/// The YAML file: the same keys as the flags, without the leading dashes.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(rename = "web.listen-address")]
    pub listen_address: Option<String>,
    #[serde(rename = "storage.path")]
    pub storage_path: Option<PathBuf>,
    pub target: Option<String>,
    #[serde(rename = "log.level")]
    pub log_level: Option<String>,
    #[serde(rename = "log.format")]
    pub log_format: Option<String>,
    #[serde(rename = "auth.multitenancy-enabled")]
    pub multitenancy: Option<bool>,
    #[serde(rename = "storage.tsdb.out-of-order-time-window")]
    pub ooo_window: Option<String>,
    #[serde(rename = "storage.tsdb.block-duration")]
    pub block_duration: Option<String>,
    #[serde(rename = "storage.tsdb.checkpoint-after-bytes")]
    pub checkpoint_after_bytes: Option<u64>,
    #[serde(rename = "distributor.max-recv-msg-size")]
    pub max_recv_msg_size: Option<usize>,
    #[serde(rename = "query.lookback-delta")]
    pub lookback_delta: Option<String>,
    #[serde(rename = "query.max-samples")]
    pub max_samples: Option<usize>,
    #[serde(rename = "query.timeout")]
    pub query_timeout: Option<String>,
    #[serde(rename = "query.max-concurrency")]
    pub max_concurrency: Option<usize>,
    #[serde(rename = "query.delayed-name-removal")]
    pub delayed_name_removal: Option<bool>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: String,
    pub storage_path: PathBuf,
    pub target: String,
    pub log_level: String,
    pub log_format: String,
    pub multitenancy: bool,
    pub ooo_window_ms: i64,
    pub block_duration_ms: i64,
    pub checkpoint_after_bytes: u64,
    pub max_recv_msg_size: usize,
    pub lookback_delta_ms: i64,
    pub max_samples: usize,
    pub query_timeout_ms: i64,
    pub max_concurrency: usize,
    pub delayed_name_removal: bool,
    pub raw_yaml: String,
}

fn duration(name: &str, v: &str) -> anyhow::Result<i64> {
    if v == "0" {
        return Ok(0);
    }
    hearth_querier::params::parse_prom_duration(v)
        .ok_or_else(|| anyhow::anyhow!("{name}: {v:?} is not a duration like 30s, 5m or 2h"))
}

impl Config {
    pub fn resolve(flags: &Flags) -> anyhow::Result<Config> {
        let (file, raw_yaml) = match &flags.config_file {
            Some(p) => {
                let raw = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
                let f: FileConfig = if raw.trim().is_empty() {
                    FileConfig::default()
                } else {
                    serde_yaml_ng::from_str(&raw)
                        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", p.display()))?
                };
                (f, raw)
            }
            None => (FileConfig::default(), String::new()),
        };
        macro_rules! pick {
            ($f:ident, $d:expr) => {
                flags.$f.clone().or(file.$f.clone()).unwrap_or_else(|| $d)
            };
        }
        let cfg = Config {
            listen_address: pick!(listen_address, "127.0.0.1:9009".to_string()),
            storage_path: pick!(storage_path, PathBuf::from("./data")),
            target: pick!(target, "all".to_string()),
            log_level: pick!(log_level, "info".to_string()),
            log_format: pick!(log_format, "logfmt".to_string()),
            multitenancy: pick!(multitenancy, false),
            ooo_window_ms: duration(
                "storage.tsdb.out-of-order-time-window",
                &pick!(ooo_window, "0s".to_string()),
            )?,
            block_duration_ms: duration(
                "storage.tsdb.block-duration",
                &pick!(block_duration, "2h".to_string()),
            )?,
            checkpoint_after_bytes: pick!(checkpoint_after_bytes, 256 << 20),
            max_recv_msg_size: pick!(max_recv_msg_size, 10 << 20),
            lookback_delta_ms: duration(
                "query.lookback-delta",
                &pick!(lookback_delta, "5m".to_string()),
            )?,
            max_samples: pick!(max_samples, 50_000_000),
            query_timeout_ms: duration("query.timeout", &pick!(query_timeout, "2m".to_string()))?,
            max_concurrency: pick!(max_concurrency, 20),
            delayed_name_removal: pick!(delayed_name_removal, false),
            raw_yaml,
        };
        if cfg.block_duration_ms <= 0 {
            anyhow::bail!("storage.tsdb.block-duration must be positive");
        }
        if !["all"].contains(&cfg.target.as_str()) {
            anyhow::bail!(
                "target {:?} is not available yet: this build runs every role in one process (--target=all); \
                 the separate distributor, ingester and querier roles arrive with the cluster",
                cfg.target
            );
        }
        match cfg.log_format.as_str() {
            "logfmt" | "json" => {}
            other => anyhow::bail!("log.format must be logfmt or json, not {other:?}"),
        }
        Ok(cfg)
    }

    /// Every setting by its flag name, for /api/v1/status/flags.
    pub fn flag_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let ms = |v: i64| format!("{}s", v as f64 / 1000.0);
        m.insert("web.listen-address".into(), self.listen_address.clone());
        m.insert(
            "storage.path".into(),
            self.storage_path.display().to_string(),
        );
        m.insert("target".into(), self.target.clone());
        m.insert("log.level".into(), self.log_level.clone());
        m.insert("log.format".into(), self.log_format.clone());
        m.insert(
            "auth.multitenancy-enabled".into(),
            self.multitenancy.to_string(),
        );
        m.insert(
            "storage.tsdb.out-of-order-time-window".into(),
            ms(self.ooo_window_ms),
        );
        m.insert(
            "storage.tsdb.block-duration".into(),
            ms(self.block_duration_ms),
        );
        m.insert(
            "storage.tsdb.checkpoint-after-bytes".into(),
            self.checkpoint_after_bytes.to_string(),
        );
        m.insert(
            "distributor.max-recv-msg-size".into(),
            self.max_recv_msg_size.to_string(),
        );
        m.insert("query.lookback-delta".into(), ms(self.lookback_delta_ms));
        m.insert("query.max-samples".into(), self.max_samples.to_string());
        m.insert("query.timeout".into(), ms(self.query_timeout_ms));
        m.insert(
            "query.max-concurrency".into(),
            self.max_concurrency.to_string(),
        );
        m.insert(
            "query.delayed-name-removal".into(),
            self.delayed_name_removal.to_string(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("hearth-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.yaml");
        std::fs::write(
            &path,
            "web.listen-address: 127.0.0.1:1234\nstorage.path: /tmp/x\nquery.lookback-delta: 1m\n",
        )
        .unwrap();
        let flags = Flags::parse_from([
            "hearth",
            "--config.file",
            path.to_str().unwrap(),
            "--storage.path",
            "/tmp/y",
        ]);
        let c = Config::resolve(&flags).unwrap();
        assert_eq!(c.listen_address, "127.0.0.1:1234");
        assert_eq!(c.storage_path, PathBuf::from("/tmp/y"));
        assert_eq!(c.lookback_delta_ms, 60_000);
        assert_eq!(c.max_recv_msg_size, 10 << 20);
        std::fs::write(&path, "nonsense-key: 1\n").unwrap();
        assert!(Config::resolve(&flags).is_err());
        let bad = Flags::parse_from(["hearth", "--target", "ingester"]);
        assert!(Config::resolve(&bad).is_err());
    }
}
