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
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML configuration file; the same settings as the flags (see docs/configuration.md).
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for the HTTP API, remote-write and /metrics [default: 127.0.0.1:9009].
    #[arg(long = "web.listen-address", value_name = "HOST:PORT", global = true)]
    pub listen_address: Option<String>,

    /// Directory for the write-ahead log and head checkpoints [default: ./data].
    #[arg(long = "storage.path", value_name = "DIR", global = true)]
    pub storage_path: Option<PathBuf>,

    /// Which role to run: all (every role in one process), store-gateway or compactor
    /// [default: all]. The distributor, ingester and querier roles arrive with the cluster.
    #[arg(long = "target", value_name = "ROLE", global = true)]
    pub target: Option<String>,

    /// Enable the admin API (POST /api/v1/admin/tsdb/delete_series), as Prometheus'
    /// flag of that name [default: false].
    #[arg(long = "web.enable-admin-api", value_name = "BOOL", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_admin_api: Option<bool>,

    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long = "log.level", value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Log format: logfmt (human-readable) or json [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT", global = true)]
    pub log_format: Option<String>,

    /// Honour the X-Scope-OrgID header (multi-tenancy, as Cortex and Mimir). When off,
    /// every request belongs to tenant `anonymous` [default: false].
    #[arg(long = "auth.multitenancy-enabled", value_name = "BOOL", global = true)]
    pub multitenancy: Option<bool>,

    /// Accept samples up to this far behind the newest one, out of order (Prometheus'
    /// out_of_order_time_window); 0 turns it off [default: 0s].
    #[arg(
        long = "storage.tsdb.out-of-order-time-window",
        value_name = "DURATION",
        global = true
    )]
    pub ooo_window: Option<String>,

    /// Block range of the head: chunks never span it, and in-order samples older than
    /// half of it behind the newest are out of bounds [default: 2h].
    #[arg(
        long = "storage.tsdb.block-duration",
        value_name = "DURATION",
        global = true
    )]
    pub block_duration: Option<String>,

    /// Write a head checkpoint after this many bytes of write-ahead log [default: 256MiB].
    #[arg(
        long = "storage.tsdb.checkpoint-after-bytes",
        value_name = "BYTES",
        global = true
    )]
    pub checkpoint_after_bytes: Option<u64>,

    /// Largest decompressed remote-write body accepted; larger gets 413 [default: 10485760].
    #[arg(
        long = "distributor.max-recv-msg-size",
        value_name = "BYTES",
        global = true
    )]
    pub max_recv_msg_size: Option<usize>,

    /// How far back an instant selector looks for a sample [default: 5m].
    #[arg(long = "query.lookback-delta", value_name = "DURATION", global = true)]
    pub lookback_delta: Option<String>,

    /// Most samples one query may load [default: 50000000].
    #[arg(long = "query.max-samples", value_name = "N", global = true)]
    pub max_samples: Option<usize>,

    /// Longest a query may run [default: 2m].
    #[arg(long = "query.timeout", value_name = "DURATION", global = true)]
    pub query_timeout: Option<String>,

    /// Queries evaluated at once; more wait for a slot [default: 20].
    #[arg(long = "query.max-concurrency", value_name = "N", global = true)]
    pub max_concurrency: Option<usize>,

    /// Drop __name__ only when a query finishes, so label_replace/label_join can still read
    /// it (Prometheus' experimental promql-delayed-name-removal) [default: false].
    #[arg(
        long = "query.delayed-name-removal",
        value_name = "BOOL",
        global = true
    )]
    pub delayed_name_removal: Option<bool>,
    /// Where blocks go: filesystem, s3, gcs, azure or memory [default: filesystem].
    #[arg(long = "blocks-storage.backend", value_name = "VALUE", global = true)]
    pub backend: Option<String>,

    /// Bucket directory of the filesystem backend [default: <storage.path>/bucket].
    #[arg(
        long = "blocks-storage.filesystem.dir",
        value_name = "DIR",
        global = true
    )]
    pub fs_dir: Option<PathBuf>,

    /// S3 endpoint (host:port or URL); empty for AWS itself.
    #[arg(
        long = "blocks-storage.s3.endpoint",
        value_name = "VALUE",
        global = true
    )]
    pub s3_endpoint: Option<String>,

    /// S3 bucket name.
    #[arg(
        long = "blocks-storage.s3.bucket-name",
        value_name = "VALUE",
        global = true
    )]
    pub s3_bucket: Option<String>,

    /// S3 region.
    #[arg(long = "blocks-storage.s3.region", value_name = "VALUE", global = true)]
    pub s3_region: Option<String>,

    /// S3 access key id; empty: the standard AWS environment.
    #[arg(
        long = "blocks-storage.s3.access-key-id",
        value_name = "VALUE",
        global = true
    )]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(
        long = "blocks-storage.s3.secret-access-key",
        value_name = "VALUE",
        global = true
    )]
    pub s3_secret_access_key: Option<String>,

    /// Plain HTTP to the S3 endpoint [default: false].
    #[arg(
        long = "blocks-storage.s3.insecure",
        value_name = "BOOL",
        global = true
    )]
    pub s3_insecure: Option<bool>,

    /// GCS bucket name.
    #[arg(
        long = "blocks-storage.gcs.bucket-name",
        value_name = "VALUE",
        global = true
    )]
    pub gcs_bucket: Option<String>,

    /// GCS service account key file; empty: the standard Google environment.
    #[arg(
        long = "blocks-storage.gcs.service-account-path",
        value_name = "VALUE",
        global = true
    )]
    pub gcs_service_account: Option<String>,

    /// Azure storage account name.
    #[arg(
        long = "blocks-storage.azure.account-name",
        value_name = "VALUE",
        global = true
    )]
    pub azure_account: Option<String>,

    /// Azure storage account key.
    #[arg(
        long = "blocks-storage.azure.account-key",
        value_name = "VALUE",
        global = true
    )]
    pub azure_key: Option<String>,

    /// Azure container name.
    #[arg(
        long = "blocks-storage.azure.container-name",
        value_name = "VALUE",
        global = true
    )]
    pub azure_container: Option<String>,

    /// Azure endpoint (for emulators such as Azurite); empty for Azure itself.
    #[arg(
        long = "blocks-storage.azure.endpoint",
        value_name = "VALUE",
        global = true
    )]
    pub azure_endpoint: Option<String>,

    /// How often the ingester checks for head data to ship as blocks [default: 1m].
    #[arg(
        long = "blocks-storage.tsdb.ship-interval",
        value_name = "DURATION",
        global = true
    )]
    pub ship_interval: Option<String>,

    /// How often the bucket is listed for new and deleted blocks [default: 1m].
    #[arg(
        long = "blocks-storage.bucket-store.sync-interval",
        value_name = "DURATION",
        global = true
    )]
    pub sync_interval: Option<String>,

    /// A store gateway lists the bucket itself instead of trusting a bucket index older than this (is the compactor running?) [default: 1h].
    #[arg(
        long = "blocks-storage.bucket-store.bucket-index.max-stale-period",
        value_name = "DURATION",
        global = true
    )]
    pub index_max_stale: Option<String>,

    /// Address the gRPC server listens on (the store gateway's Store service) [default: 127.0.0.1:9095].
    #[arg(
        long = "server.grpc-listen-address",
        value_name = "HOST:PORT",
        global = true
    )]
    pub grpc_listen_address: Option<String>,

    /// The store gateways, comma-separated `id=host:port` (their gRPC addresses). A store gateway serves the blocks the ring gives its id; the querier asks them for history instead of reading the bucket itself. Empty: one process reads the bucket [default: empty].
    #[arg(
        long = "store-gateway.sharding-ring.members",
        value_name = "ID=ADDR,...",
        global = true
    )]
    pub gateway_members: Option<String>,

    /// This store gateway's id in the ring [default: the first member].
    #[arg(
        long = "store-gateway.sharding-ring.instance-id",
        value_name = "ID",
        global = true
    )]
    pub gateway_instance: Option<String>,

    /// How many store gateways serve each block; the querier tolerates this many minus one failing [default: 1].
    #[arg(
        long = "store-gateway.sharding-ring.replication-factor",
        value_name = "N",
        global = true
    )]
    pub gateway_rf: Option<usize>,

    /// Bytes of chunk pages kept in memory by the bucket store (0: none) [default: 536870912].
    #[arg(
        long = "blocks-storage.bucket-store.chunk-pages-cache-size",
        value_name = "BYTES",
        global = true
    )]
    pub page_cache: Option<u64>,

    /// Bytes of opened blocks' labels and postings kept in memory by the bucket store; the least used are read again when needed [default: 1073741824].
    #[arg(
        long = "blocks-storage.bucket-store.labels-cache-size",
        value_name = "BYTES",
        global = true
    )]
    pub labels_cache: Option<u64>,

    /// How blocks store samples: xor (Prometheus XOR chunks, as parquet-common) or decimal-delta (about a third smaller, read back as XOR) [default: xor].
    #[arg(
        long = "blocks-storage.block-sample-encoding",
        value_name = "VALUE",
        global = true
    )]
    pub sample_encoding: Option<String>,
    /// Block ranges the compactor merges up to, comma-separated, smallest first (the first is the block duration) [default: 2h,12h,24h].
    #[arg(long = "compactor.block-ranges", value_name = "VALUE", global = true)]
    pub compactor_ranges: Option<String>,

    /// How often the compactor runs [default: 1h].
    #[arg(
        long = "compactor.compaction-interval",
        value_name = "DURATION",
        global = true
    )]
    pub compactor_interval: Option<String>,

    /// How long a replaced or expired block stays (marked) before it is deleted, so queries reading it finish [default: 12h].
    #[arg(
        long = "compactor.deletion-delay",
        value_name = "DURATION",
        global = true
    )]
    pub compactor_deletion_delay: Option<String>,

    /// Write 5m and 1h downsampled copies of blocks of the largest range (Thanos' downsampling) [default: true].
    #[arg(
        long = "compactor.downsampling-enabled",
        value_name = "BOOL",
        global = true
    )]
    pub downsampling: Option<bool>,

    /// Delete blocks older than this; 0 keeps everything [default: 0].
    #[arg(
        long = "compactor.blocks-retention-period",
        value_name = "DURATION",
        global = true
    )]
    pub retention: Option<String>,
}

/// Commands besides running the server.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Bring history from elsewhere into the bucket.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ImportSource {
    /// Import the blocks of a Prometheus data directory (its index and chunks format)
    /// into the configured bucket as Hearth blocks. Runs again safely: blocks imported
    /// before are skipped. Prometheus' head (wal/) is not read: stop Prometheus, or let
    /// it cut its head into blocks, first.
    PrometheusTsdb {
        /// The Prometheus data directory (--storage.tsdb.path), or one block directory.
        dir: PathBuf,
        /// The tenant the history belongs to.
        #[arg(long = "tenant", default_value = "anonymous")]
        tenant: String,
    },
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
    #[serde(rename = "web.enable-admin-api")]
    pub enable_admin_api: Option<bool>,
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
    #[serde(rename = "blocks-storage.backend")]
    pub backend: Option<String>,
    #[serde(rename = "blocks-storage.filesystem.dir")]
    pub fs_dir: Option<PathBuf>,
    #[serde(rename = "blocks-storage.s3.endpoint")]
    pub s3_endpoint: Option<String>,
    #[serde(rename = "blocks-storage.s3.bucket-name")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "blocks-storage.s3.region")]
    pub s3_region: Option<String>,
    #[serde(rename = "blocks-storage.s3.access-key-id")]
    pub s3_access_key_id: Option<String>,
    #[serde(rename = "blocks-storage.s3.secret-access-key")]
    pub s3_secret_access_key: Option<String>,
    #[serde(rename = "blocks-storage.s3.insecure")]
    pub s3_insecure: Option<bool>,
    #[serde(rename = "blocks-storage.gcs.bucket-name")]
    pub gcs_bucket: Option<String>,
    #[serde(rename = "blocks-storage.gcs.service-account-path")]
    pub gcs_service_account: Option<String>,
    #[serde(rename = "blocks-storage.azure.account-name")]
    pub azure_account: Option<String>,
    #[serde(rename = "blocks-storage.azure.account-key")]
    pub azure_key: Option<String>,
    #[serde(rename = "blocks-storage.azure.container-name")]
    pub azure_container: Option<String>,
    #[serde(rename = "blocks-storage.azure.endpoint")]
    pub azure_endpoint: Option<String>,
    #[serde(rename = "blocks-storage.tsdb.ship-interval")]
    pub ship_interval: Option<String>,
    #[serde(rename = "blocks-storage.bucket-store.sync-interval")]
    pub sync_interval: Option<String>,
    #[serde(rename = "blocks-storage.bucket-store.chunk-pages-cache-size")]
    pub page_cache: Option<u64>,
    #[serde(rename = "blocks-storage.bucket-store.labels-cache-size")]
    pub labels_cache: Option<u64>,
    #[serde(rename = "blocks-storage.block-sample-encoding")]
    pub sample_encoding: Option<String>,
    #[serde(rename = "blocks-storage.bucket-store.bucket-index.max-stale-period")]
    pub index_max_stale: Option<String>,
    #[serde(rename = "server.grpc-listen-address")]
    pub grpc_listen_address: Option<String>,
    #[serde(rename = "store-gateway.sharding-ring.members")]
    pub gateway_members: Option<String>,
    #[serde(rename = "store-gateway.sharding-ring.instance-id")]
    pub gateway_instance: Option<String>,
    #[serde(rename = "store-gateway.sharding-ring.replication-factor")]
    pub gateway_rf: Option<usize>,
    #[serde(rename = "compactor.block-ranges")]
    pub compactor_ranges: Option<String>,
    #[serde(rename = "compactor.compaction-interval")]
    pub compactor_interval: Option<String>,
    #[serde(rename = "compactor.deletion-delay")]
    pub compactor_deletion_delay: Option<String>,
    #[serde(rename = "compactor.blocks-retention-period")]
    pub retention: Option<String>,
    #[serde(rename = "compactor.downsampling-enabled")]
    pub downsampling: Option<bool>,
    /// Per-tenant retention, overriding compactor.blocks-retention-period (YAML only).
    #[serde(rename = "compactor.tenant-retention-periods")]
    pub tenant_retention: Option<BTreeMap<String, String>>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: String,
    pub storage_path: PathBuf,
    pub target: String,
    pub enable_admin_api: bool,
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
    pub bucket: hearth_storage::BucketConfig,
    pub ship_interval_ms: i64,
    pub sync_interval_ms: i64,
    pub page_cache_bytes: u64,
    pub labels_cache_bytes: u64,
    pub sample_encoding: hearth_storage::block::cell::SampleEncoding,
    pub index_max_stale_ms: i64,
    pub grpc_listen_address: String,
    /// (id, gRPC address) of every store gateway; empty when the bucket is read in-process.
    pub gateway_members: Vec<(String, String)>,
    pub gateway_instance: String,
    pub gateway_rf: usize,
    pub compactor_ranges_ms: Vec<i64>,
    pub compactor_interval_ms: i64,
    pub compactor_deletion_delay_ms: i64,
    pub retention_ms: i64,
    pub downsampling: bool,
    pub tenant_retention_ms: BTreeMap<String, i64>,
    pub raw_yaml: String,
}

fn duration(name: &str, v: &str) -> anyhow::Result<i64> {
    if v == "0" {
        return Ok(0);
    }
    hearth_querier::params::parse_prom_duration(v)
        .ok_or_else(|| anyhow::anyhow!("{name}: {v:?} is not a duration like 30s, 5m or 2h"))
}

/// `id=host:port,...` -> pairs; ids must be distinct.
fn parse_members(v: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('=') else {
            anyhow::bail!("store-gateway.sharding-ring.members: {item:?} is not id=host:port");
        };
        let (id, addr) = (id.trim(), addr.trim());
        if id.is_empty() || addr.is_empty() {
            anyhow::bail!("store-gateway.sharding-ring.members: {item:?} is not id=host:port");
        }
        if out.iter().any(|(i, _)| i == id) {
            anyhow::bail!("store-gateway.sharding-ring.members: id {id:?} appears twice");
        }
        out.push((id.to_string(), addr.to_string()));
    }
    Ok(out)
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
            enable_admin_api: pick!(enable_admin_api, false),
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
            bucket: hearth_storage::BucketConfig::default(),
            ship_interval_ms: duration(
                "blocks-storage.tsdb.ship-interval",
                &pick!(ship_interval, "1m".to_string()),
            )?,
            sync_interval_ms: duration(
                "blocks-storage.bucket-store.sync-interval",
                &pick!(sync_interval, "1m".to_string()),
            )?,
            page_cache_bytes: pick!(page_cache, 512 << 20),
            labels_cache_bytes: pick!(labels_cache, 1 << 30),
            sample_encoding: match pick!(sample_encoding, "xor".to_string()).as_str() {
                "xor" => hearth_storage::block::cell::SampleEncoding::Xor,
                "decimal-delta" => hearth_storage::block::cell::SampleEncoding::DecimalDelta,
                other => anyhow::bail!(
                    "blocks-storage.block-sample-encoding must be xor or decimal-delta, not {other:?}"
                ),
            },
            index_max_stale_ms: duration(
                "blocks-storage.bucket-store.bucket-index.max-stale-period",
                &pick!(index_max_stale, "1h".to_string()),
            )?,
            grpc_listen_address: pick!(grpc_listen_address, "127.0.0.1:9095".to_string()),
            gateway_members: parse_members(&pick!(gateway_members, String::new()))?,
            gateway_instance: pick!(gateway_instance, String::new()),
            gateway_rf: pick!(gateway_rf, 1),
            compactor_ranges_ms: pick!(compactor_ranges, "2h,12h,24h".to_string())
                .split(',')
                .map(|r| duration("compactor.block-ranges", r.trim()))
                .collect::<anyhow::Result<_>>()?,
            compactor_interval_ms: duration(
                "compactor.compaction-interval",
                &pick!(compactor_interval, "1h".to_string()),
            )?,
            compactor_deletion_delay_ms: duration(
                "compactor.deletion-delay",
                &pick!(compactor_deletion_delay, "12h".to_string()),
            )?,
            retention_ms: duration(
                "compactor.blocks-retention-period",
                &pick!(retention, "0s".to_string()),
            )?,
            downsampling: pick!(downsampling, true),
            tenant_retention_ms: file
                .tenant_retention
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(t, d)| Ok((t, duration("compactor.tenant-retention-periods", &d)?)))
                .collect::<anyhow::Result<_>>()?,
            raw_yaml,
        };
        let mut cfg = cfg;
        if cfg
            .compactor_ranges_ms
            .windows(2)
            .any(|w| w[1] <= w[0] || w[1] % w[0] != 0)
            || cfg.compactor_ranges_ms.first() != Some(&cfg.block_duration_ms)
        {
            anyhow::bail!(
                "compactor.block-ranges must start at storage.tsdb.block-duration and grow by whole multiples"
            );
        }
        if cfg.compactor_interval_ms <= 0 {
            anyhow::bail!("compactor.compaction-interval must be positive");
        }
        let b = &mut cfg.bucket;
        b.backend = pick!(backend, "filesystem".to_string())
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        b.filesystem.dir = pick!(fs_dir, cfg.storage_path.join("bucket"));
        b.s3.endpoint = pick!(s3_endpoint, String::new());
        b.s3.bucket_name = pick!(s3_bucket, String::new());
        b.s3.region = pick!(s3_region, String::new());
        b.s3.access_key_id = pick!(s3_access_key_id, String::new());
        b.s3.secret_access_key = pick!(s3_secret_access_key, String::new());
        b.s3.insecure = pick!(s3_insecure, false);
        b.gcs.bucket_name = pick!(gcs_bucket, String::new());
        b.gcs.service_account_path = pick!(gcs_service_account, String::new());
        b.azure.account_name = pick!(azure_account, String::new());
        b.azure.account_key = pick!(azure_key, String::new());
        b.azure.container_name = pick!(azure_container, String::new());
        b.azure.endpoint = pick!(azure_endpoint, String::new());
        if cfg.ship_interval_ms <= 0 || cfg.sync_interval_ms <= 0 {
            anyhow::bail!("blocks-storage intervals must be positive");
        }
        if cfg.block_duration_ms <= 0 {
            anyhow::bail!("storage.tsdb.block-duration must be positive");
        }
        if !["all", "store-gateway", "compactor"].contains(&cfg.target.as_str()) {
            anyhow::bail!(
                "target {:?} is not available yet: this build runs all (every role in one process), \
                 store-gateway or compactor; the separate distributor, ingester and querier roles \
                 arrive with the cluster",
                cfg.target
            );
        }
        if cfg.gateway_rf == 0 {
            anyhow::bail!("store-gateway.sharding-ring.replication-factor must be at least 1");
        }
        if cfg.gateway_instance.is_empty() {
            if let Some((id, _)) = cfg.gateway_members.first() {
                cfg.gateway_instance = id.clone();
            }
        }
        if cfg.target == "store-gateway"
            && !cfg.gateway_members.is_empty()
            && !cfg
                .gateway_members
                .iter()
                .any(|(id, _)| *id == cfg.gateway_instance)
        {
            anyhow::bail!(
                "store-gateway.sharding-ring.instance-id {:?} is not one of store-gateway.sharding-ring.members",
                cfg.gateway_instance
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
        m.insert(
            "web.enable-admin-api".into(),
            self.enable_admin_api.to_string(),
        );
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
        let b = &self.bucket;
        let backend = match b.backend {
            hearth_storage::Backend::Filesystem => "filesystem",
            hearth_storage::Backend::S3 => "s3",
            hearth_storage::Backend::Gcs => "gcs",
            hearth_storage::Backend::Azure => "azure",
            hearth_storage::Backend::Memory => "memory",
        };
        m.insert("blocks-storage.backend".into(), backend.into());
        m.insert(
            "blocks-storage.filesystem.dir".into(),
            b.filesystem.dir.display().to_string(),
        );
        m.insert("blocks-storage.s3.endpoint".into(), b.s3.endpoint.clone());
        m.insert(
            "blocks-storage.s3.bucket-name".into(),
            b.s3.bucket_name.clone(),
        );
        m.insert("blocks-storage.s3.region".into(), b.s3.region.clone());
        m.insert(
            "blocks-storage.s3.access-key-id".into(),
            b.s3.access_key_id.clone(),
        );
        // Secrets are never shown, as Prometheus hides them.
        let secret = |v: &str| {
            if v.is_empty() {
                String::new()
            } else {
                "<secret>".into()
            }
        };
        m.insert(
            "blocks-storage.s3.secret-access-key".into(),
            secret(&b.s3.secret_access_key),
        );
        m.insert(
            "blocks-storage.s3.insecure".into(),
            b.s3.insecure.to_string(),
        );
        m.insert(
            "blocks-storage.gcs.bucket-name".into(),
            b.gcs.bucket_name.clone(),
        );
        m.insert(
            "blocks-storage.gcs.service-account-path".into(),
            b.gcs.service_account_path.clone(),
        );
        m.insert(
            "blocks-storage.azure.account-name".into(),
            b.azure.account_name.clone(),
        );
        m.insert(
            "blocks-storage.azure.account-key".into(),
            secret(&b.azure.account_key),
        );
        m.insert(
            "blocks-storage.azure.container-name".into(),
            b.azure.container_name.clone(),
        );
        m.insert(
            "blocks-storage.azure.endpoint".into(),
            b.azure.endpoint.clone(),
        );
        m.insert(
            "blocks-storage.tsdb.ship-interval".into(),
            ms(self.ship_interval_ms),
        );
        m.insert(
            "blocks-storage.bucket-store.sync-interval".into(),
            ms(self.sync_interval_ms),
        );
        m.insert(
            "blocks-storage.bucket-store.chunk-pages-cache-size".into(),
            self.page_cache_bytes.to_string(),
        );
        m.insert(
            "blocks-storage.bucket-store.labels-cache-size".into(),
            self.labels_cache_bytes.to_string(),
        );
        m.insert(
            "blocks-storage.block-sample-encoding".into(),
            match self.sample_encoding {
                hearth_storage::block::cell::SampleEncoding::Xor => "xor",
                hearth_storage::block::cell::SampleEncoding::DecimalDelta => "decimal-delta",
            }
            .into(),
        );
        m.insert(
            "blocks-storage.bucket-store.bucket-index.max-stale-period".into(),
            ms(self.index_max_stale_ms),
        );
        m.insert(
            "server.grpc-listen-address".into(),
            self.grpc_listen_address.clone(),
        );
        m.insert(
            "store-gateway.sharding-ring.members".into(),
            self.gateway_members
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        m.insert(
            "store-gateway.sharding-ring.instance-id".into(),
            self.gateway_instance.clone(),
        );
        m.insert(
            "store-gateway.sharding-ring.replication-factor".into(),
            self.gateway_rf.to_string(),
        );
        m.insert(
            "compactor.block-ranges".into(),
            self.compactor_ranges_ms
                .iter()
                .map(|r| ms(*r))
                .collect::<Vec<_>>()
                .join(","),
        );
        m.insert(
            "compactor.compaction-interval".into(),
            ms(self.compactor_interval_ms),
        );
        m.insert(
            "compactor.deletion-delay".into(),
            ms(self.compactor_deletion_delay_ms),
        );
        m.insert(
            "compactor.blocks-retention-period".into(),
            ms(self.retention_ms),
        );
        m.insert(
            "compactor.downsampling-enabled".into(),
            self.downsampling.to_string(),
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
        // Blocks storage: Mimir's names, on the command line and in the file.
        std::fs::write(
            &path,
            "blocks-storage.backend: s3\nblocks-storage.s3.bucket-name: b\nblocks-storage.s3.insecure: true\n",
        )
        .unwrap();
        let flags = Flags::parse_from([
            "hearth",
            "--config.file",
            path.to_str().unwrap(),
            "--blocks-storage.s3.endpoint=127.0.0.1:9000",
        ]);
        let c = Config::resolve(&flags).unwrap();
        assert_eq!(c.bucket.backend, hearth_storage::Backend::S3);
        assert_eq!(c.bucket.s3.bucket_name, "b");
        assert_eq!(c.bucket.s3.endpoint, "127.0.0.1:9000");
        assert!(c.bucket.s3.insecure);
        let c = Config::resolve(&Flags::parse_from(["hearth"])).unwrap();
        assert_eq!(c.bucket.backend, hearth_storage::Backend::Filesystem);
        assert_eq!(c.bucket.filesystem.dir, PathBuf::from("./data/bucket"));
        let bad = Flags::parse_from(["hearth", "--blocks-storage.backend=tape"]);
        assert!(Config::resolve(&bad).is_err());
        // The store-gateway ring.
        let c = Config::resolve(&Flags::parse_from([
            "hearth",
            "--target=store-gateway",
            "--store-gateway.sharding-ring.members=gw-1=127.0.0.1:9095, gw-2=127.0.0.1:9096",
            "--store-gateway.sharding-ring.instance-id=gw-2",
        ]))
        .unwrap();
        assert_eq!(c.gateway_members.len(), 2);
        assert_eq!(
            c.gateway_members[1],
            ("gw-2".into(), "127.0.0.1:9096".into())
        );
        assert_eq!(c.gateway_instance, "gw-2");
        for bad in [
            "--store-gateway.sharding-ring.members=gw-1",
            "--store-gateway.sharding-ring.members=a=x,a=y",
            "--store-gateway.sharding-ring.replication-factor=0",
        ] {
            assert!(
                Config::resolve(&Flags::parse_from(["hearth", bad])).is_err(),
                "{bad}"
            );
        }
        assert!(Config::resolve(&Flags::parse_from([
            "hearth",
            "--target=store-gateway",
            "--store-gateway.sharding-ring.members=gw-1=h:1",
            "--store-gateway.sharding-ring.instance-id=gw-9",
        ]))
        .is_err());
    }
}
