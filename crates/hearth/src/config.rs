//! Configuration: Prometheus-style flags, also settable in a YAML file given by
//! `--config.file`. Every setting is declared once, as a field of [`Settings`]: its
//! flag, its YAML key (the same name), its default, its help text and how
//! /api/v1/status/flags shows it. A flag given on the command line wins over the file;
//! the file wins over the default.
//!
//! The file is read into flags placed before the command line's, so one parser checks
//! both: an unknown key is an error naming the key, a bad value the same error as on
//! the command line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{CommandFactory, FromArgMatches, Parser};
use hearth_core::duration::{format_duration_ms, parse_duration};
use serde::{Serialize, Serializer};

use crate::modules::Role;

/// Shard groups a cluster may have, at most: each is a Raft group with its own timers
/// and head on every node that holds it.
pub const MAX_SHARD_GROUPS: u32 = 1024;

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `2d`); `0` is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub i64);

impl Dur {
    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        parse_duration(s.trim()).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration_ms(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Comma-separated durations, smallest first (`2h,12h,24h`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurList(pub Vec<i64>);

impl FromStr for DurList {
    type Err = String;
    fn from_str(s: &str) -> Result<DurList, String> {
        s.split(',')
            .map(|r| r.parse::<Dur>().map(Dur::ms))
            .collect::<Result<_, _>>()
            .map(DurList)
    }
}

impl Serialize for DurList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let parts: Vec<String> = self.0.iter().map(|&ms| format_duration_ms(ms)).collect();
        s.serialize_str(&parts.join(","))
    }
}

/// Members of a static ring: `id=host:port,...`, ids distinct.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members(pub Vec<(String, String)>);

impl Members {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ids(&self) -> Vec<String> {
        self.0.iter().map(|(id, _)| id.clone()).collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|(i, _)| i == id)
    }
}

impl FromStr for Members {
    type Err = String;
    fn from_str(v: &str) -> Result<Members, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((id, addr)) = item.split_once('=') else {
                return Err(format!("{item:?} is not id=host:port"));
            };
            let (id, addr) = (id.trim(), addr.trim());
            if id.is_empty() || addr.is_empty() {
                return Err(format!("{item:?} is not id=host:port"));
            }
            if out.iter().any(|(i, _)| i == id) {
                return Err(format!("id {id:?} appears twice"));
            }
            out.push((id.to_string(), addr.to_string()));
        }
        Ok(Members(out))
    }
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let parts: Vec<String> = self.0.iter().map(|(id, a)| format!("{id}={a}")).collect();
        s.serialize_str(&parts.join(","))
    }
}

/// A credential: shown as `<secret>` (when set), as Prometheus hides secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<secret>"
        })
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Secret, String> {
        Ok(Secret(s.to_string()))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<secret>" })
    }
}

/// Hearth: a horizontally scalable, Prometheus-compatible metrics backend.
///
/// With no arguments every role runs in one process on the embedded default: data
/// under ./data, listening on 127.0.0.1:9009.
#[derive(Parser, Debug, Clone)]
#[command(name = "hearth", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML configuration file; the same settings as the flags (see docs/configuration.md).
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,
}

/// Every setting of every role. The field's flag and YAML key are the same name.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Settings {
    /// Address to listen on for the HTTP API, remote-write and /metrics.
    #[arg(
        long = "web.listen-address",
        value_name = "HOST:PORT",
        global = true,
        default_value = "127.0.0.1:9009"
    )]
    #[serde(rename = "web.listen-address")]
    pub listen_address: String,

    /// Directory for the write-ahead log and head checkpoints.
    #[arg(
        long = "storage.path",
        value_name = "DIR",
        global = true,
        default_value = "./data"
    )]
    #[serde(rename = "storage.path")]
    pub storage_path: PathBuf,

    /// Which roles to run, comma-separated: all (every role in one process), or distributor, ingester, querier, store-gateway, compactor.
    #[arg(
        long = "target",
        value_name = "ROLE,...",
        global = true,
        default_value = "all"
    )]
    #[serde(rename = "target")]
    pub target: String,

    /// Enable the admin API (POST /api/v1/admin/tsdb/delete_series), as Prometheus' flag of that name.
    #[arg(long = "web.enable-admin-api", value_name = "BOOL", global = true, default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(rename = "web.enable-admin-api")]
    pub enable_admin_api: bool,

    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        global = true,
        default_value = "info"
    )]
    #[serde(rename = "log.level")]
    pub log_level: String,

    /// Log format: logfmt (human-readable) or json.
    #[arg(long = "log.format", value_name = "FORMAT", global = true, default_value = "logfmt", value_parser = ["logfmt", "json"])]
    #[serde(rename = "log.format")]
    pub log_format: String,

    /// Honour the X-Scope-OrgID header (multi-tenancy, as Cortex and Mimir). When off, every request belongs to tenant `anonymous`.
    #[arg(long = "auth.multitenancy-enabled", value_name = "BOOL", global = true, default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(rename = "auth.multitenancy-enabled")]
    pub multitenancy: bool,

    /// Accept samples up to this far behind the newest one out of order (Prometheus' out_of_order_time_window), also below what was already shipped to blocks; 0 turns it off.
    #[arg(
        long = "storage.tsdb.out-of-order-time-window",
        value_name = "DURATION",
        global = true,
        default_value = "0s"
    )]
    #[serde(rename = "storage.tsdb.out-of-order-time-window")]
    pub ooo_window: Dur,

    /// Block range of the head: chunks never span it, and in-order samples older than half of it behind the newest are out of bounds.
    #[arg(
        long = "storage.tsdb.block-duration",
        value_name = "DURATION",
        global = true,
        default_value = "2h"
    )]
    #[serde(rename = "storage.tsdb.block-duration")]
    pub block_duration: Dur,

    /// Write a head checkpoint after this many bytes of write-ahead log.
    #[arg(
        long = "storage.tsdb.checkpoint-after-bytes",
        value_name = "BYTES",
        global = true,
        default_value = "268435456"
    )]
    #[serde(rename = "storage.tsdb.checkpoint-after-bytes")]
    pub checkpoint_after_bytes: u64,

    /// Largest decompressed remote-write body accepted; larger gets 413.
    #[arg(
        long = "distributor.max-recv-msg-size",
        value_name = "BYTES",
        global = true,
        default_value = "10485760"
    )]
    #[serde(rename = "distributor.max-recv-msg-size")]
    pub max_recv_msg_size: usize,

    /// Samples per second a tenant may push (Mimir's name; per tenant: ingestion_rate in the runtime configuration). Above it, 429.
    #[arg(
        long = "distributor.ingestion-rate-limit",
        value_name = "N",
        global = true,
        default_value = "10000"
    )]
    #[serde(rename = "distributor.ingestion-rate-limit")]
    pub ingestion_rate: f64,

    /// Samples a tenant may push at once above its rate (per tenant: ingestion_burst_size).
    #[arg(
        long = "distributor.ingestion-burst-size",
        value_name = "N",
        global = true,
        default_value = "200000"
    )]
    #[serde(rename = "distributor.ingestion-burst-size")]
    pub ingestion_burst_size: u64,

    /// Series a tenant may have in the ingesters, 0 for no limit (per tenant: max_global_series_per_user). New series above it get 400.
    #[arg(
        long = "ingester.max-global-series-per-user",
        value_name = "N",
        global = true,
        default_value = "150000"
    )]
    #[serde(rename = "ingester.max-global-series-per-user")]
    pub max_series_per_user: u64,

    /// Series a tenant may have per metric name, 0 for no limit (per tenant: max_global_series_per_metric).
    #[arg(
        long = "ingester.max-global-series-per-metric",
        value_name = "N",
        global = true,
        default_value = "0"
    )]
    #[serde(rename = "ingester.max-global-series-per-metric")]
    pub max_series_per_metric: u64,

    /// Most label names one series may have (per tenant: max_label_names_per_series).
    #[arg(
        long = "validation.max-label-names-per-series",
        value_name = "N",
        global = true,
        default_value = "30"
    )]
    #[serde(rename = "validation.max-label-names-per-series")]
    pub max_label_names_per_series: usize,

    /// Longest label name in bytes (per tenant: max_label_name_length).
    #[arg(
        long = "validation.max-length-label-name",
        value_name = "N",
        global = true,
        default_value = "1024"
    )]
    #[serde(rename = "validation.max-length-label-name")]
    pub max_label_name_length: usize,

    /// Longest label value in bytes (per tenant: max_label_value_length).
    #[arg(
        long = "validation.max-length-label-value",
        value_name = "N",
        global = true,
        default_value = "2048"
    )]
    #[serde(rename = "validation.max-length-label-value")]
    pub max_label_value_length: usize,

    /// How far after the receiving clock a sample's timestamp may be; later samples get 400 (per tenant: creation_grace_period).
    #[arg(
        long = "validation.create-grace-period",
        value_name = "DURATION",
        global = true,
        default_value = "10m"
    )]
    #[serde(rename = "validation.create-grace-period")]
    pub creation_grace_period: Dur,

    /// YAML file of per-tenant limits (`overrides: {tenant: {ingestion_rate: ...}}`, Mimir's format), reloaded while running.
    #[arg(
        long = "runtime-config.file",
        value_name = "PATH",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "runtime-config.file")]
    pub runtime_config_file: String,

    /// How often the runtime configuration file is read again.
    #[arg(
        long = "runtime-config.reload-period",
        value_name = "DURATION",
        global = true,
        default_value = "10s"
    )]
    #[serde(rename = "runtime-config.reload-period")]
    pub runtime_config_reload: Dur,

    /// How far back an instant selector looks for a sample.
    #[arg(
        long = "query.lookback-delta",
        value_name = "DURATION",
        global = true,
        default_value = "5m"
    )]
    #[serde(rename = "query.lookback-delta")]
    pub lookback_delta: Dur,

    /// Most samples one query may load (422 above).
    #[arg(
        long = "query.max-samples",
        value_name = "N",
        global = true,
        default_value = "50000000"
    )]
    #[serde(rename = "query.max-samples")]
    pub max_samples: usize,

    /// Longest a query may run.
    #[arg(
        long = "query.timeout",
        value_name = "DURATION",
        global = true,
        default_value = "2m"
    )]
    #[serde(rename = "query.timeout")]
    pub query_timeout: Dur,

    /// Queries evaluated at once; more wait for a slot.
    #[arg(
        long = "query.max-concurrency",
        value_name = "N",
        global = true,
        default_value = "20"
    )]
    #[serde(rename = "query.max-concurrency")]
    pub max_concurrency: usize,

    /// Drop __name__ only when a query finishes, so label_replace/label_join can still read it (Prometheus' experimental promql-delayed-name-removal).
    #[arg(long = "query.delayed-name-removal", value_name = "BOOL", global = true, default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(rename = "query.delayed-name-removal")]
    pub delayed_name_removal: bool,

    /// Where blocks go: filesystem, s3, gcs, azure or memory.
    #[arg(long = "blocks-storage.backend", value_name = "VALUE", global = true, default_value = "filesystem", value_parser = ["filesystem", "s3", "gcs", "azure", "memory"])]
    #[serde(rename = "blocks-storage.backend")]
    pub backend: String,

    /// Bucket directory of the filesystem backend [empty: <storage.path>/bucket].
    #[arg(
        long = "blocks-storage.filesystem.dir",
        value_name = "DIR",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.filesystem.dir")]
    pub fs_dir: String,

    /// S3 endpoint (host:port or URL); empty for AWS itself.
    #[arg(
        long = "blocks-storage.s3.endpoint",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.s3.endpoint")]
    pub s3_endpoint: String,

    /// S3 bucket name.
    #[arg(
        long = "blocks-storage.s3.bucket-name",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.s3.bucket-name")]
    pub s3_bucket: String,

    /// S3 region.
    #[arg(
        long = "blocks-storage.s3.region",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.s3.region")]
    pub s3_region: String,

    /// S3 access key id; empty: the standard AWS environment.
    #[arg(
        long = "blocks-storage.s3.access-key-id",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.s3.access-key-id")]
    pub s3_access_key_id: String,

    /// S3 secret access key.
    #[arg(
        long = "blocks-storage.s3.secret-access-key",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.s3.secret-access-key")]
    pub s3_secret_access_key: Secret,

    /// Plain HTTP to the S3 endpoint.
    #[arg(long = "blocks-storage.s3.insecure", value_name = "BOOL", global = true, default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(rename = "blocks-storage.s3.insecure")]
    pub s3_insecure: bool,

    /// GCS bucket name.
    #[arg(
        long = "blocks-storage.gcs.bucket-name",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.gcs.bucket-name")]
    pub gcs_bucket: String,

    /// GCS service account key file; empty: the standard Google environment.
    #[arg(
        long = "blocks-storage.gcs.service-account-path",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.gcs.service-account-path")]
    pub gcs_service_account: String,

    /// Azure storage account name.
    #[arg(
        long = "blocks-storage.azure.account-name",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.azure.account-name")]
    pub azure_account: String,

    /// Azure storage account key.
    #[arg(
        long = "blocks-storage.azure.account-key",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.azure.account-key")]
    pub azure_key: Secret,

    /// Azure container name.
    #[arg(
        long = "blocks-storage.azure.container-name",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.azure.container-name")]
    pub azure_container: String,

    /// Azure endpoint (for emulators such as Azurite); empty for Azure itself.
    #[arg(
        long = "blocks-storage.azure.endpoint",
        value_name = "VALUE",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "blocks-storage.azure.endpoint")]
    pub azure_endpoint: String,

    /// How often the ingester checks for head data to ship as blocks.
    #[arg(
        long = "blocks-storage.tsdb.ship-interval",
        value_name = "DURATION",
        global = true,
        default_value = "1m"
    )]
    #[serde(rename = "blocks-storage.tsdb.ship-interval")]
    pub ship_interval: Dur,

    /// How often the bucket is listed for new and deleted blocks.
    #[arg(
        long = "blocks-storage.bucket-store.sync-interval",
        value_name = "DURATION",
        global = true,
        default_value = "1m"
    )]
    #[serde(rename = "blocks-storage.bucket-store.sync-interval")]
    pub sync_interval: Dur,

    /// A store gateway lists the bucket itself instead of trusting a bucket index older than this (is the compactor running?).
    #[arg(
        long = "blocks-storage.bucket-store.bucket-index.max-stale-period",
        value_name = "DURATION",
        global = true,
        default_value = "1h"
    )]
    #[serde(rename = "blocks-storage.bucket-store.bucket-index.max-stale-period")]
    pub index_max_stale: Dur,

    /// Bytes of chunk pages kept in memory by the bucket store (0: none).
    #[arg(
        long = "blocks-storage.bucket-store.chunk-pages-cache-size",
        value_name = "BYTES",
        global = true,
        default_value = "536870912"
    )]
    #[serde(rename = "blocks-storage.bucket-store.chunk-pages-cache-size")]
    pub page_cache_bytes: u64,

    /// Bytes of opened blocks' labels and postings kept in memory by the bucket store; the least used are read again when needed.
    #[arg(
        long = "blocks-storage.bucket-store.labels-cache-size",
        value_name = "BYTES",
        global = true,
        default_value = "1073741824"
    )]
    #[serde(rename = "blocks-storage.bucket-store.labels-cache-size")]
    pub labels_cache_bytes: u64,

    /// How blocks store samples: xor (Prometheus XOR chunks, as parquet-common) or decimal-delta (about a third smaller, read back as XOR).
    #[arg(long = "blocks-storage.block-sample-encoding", value_name = "VALUE", global = true, default_value = "xor", value_parser = ["xor", "decimal-delta"])]
    #[serde(rename = "blocks-storage.block-sample-encoding")]
    pub sample_encoding: String,

    /// Address the gRPC server listens on (the store gateway's Store service).
    #[arg(
        long = "server.grpc-listen-address",
        value_name = "HOST:PORT",
        global = true,
        default_value = "127.0.0.1:9095"
    )]
    #[serde(rename = "server.grpc-listen-address")]
    pub grpc_listen_address: String,

    /// The ingesters, comma-separated `id=host:port` (their gRPC addresses). Distributors split each write by the ring over them; queriers ask every one for recent data. Empty: the ingester runs in this process.
    #[arg(
        long = "ingester.ring.members",
        value_name = "ID=ADDR,...",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "ingester.ring.members")]
    pub ingester_members: Members,

    /// This ingester's id in ingester.ring.members (an ingester of a cluster must name itself).
    #[arg(
        long = "ingester.ring.instance-id",
        value_name = "ID",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "ingester.ring.instance-id")]
    pub ingester_instance: String,

    /// How many ingesters hold each shard group (its Raft voters); a group takes writes while a majority of them is up. At most the number of ingesters.
    #[arg(
        long = "ingester.ring.replication-factor",
        value_name = "N",
        global = true,
        default_value = "3"
    )]
    #[serde(rename = "ingester.ring.replication-factor")]
    pub ingester_rf: usize,

    /// How many shard groups the series are split into, fixed when the cluster is created (each is one Raft group; its replicas are spread over the ingesters). 0: 16 in a cluster, 4 in a single process.
    #[arg(
        long = "ingester.shard-groups",
        value_name = "N",
        global = true,
        default_value = "0"
    )]
    #[serde(rename = "ingester.shard-groups")]
    pub shard_groups: u32,

    /// Where this ingester dials its peers' Raft traffic instead of their ring address, comma-separated `id=host:port` (a proxy between nodes, as deploy/local/cluster.sh uses to cut a node off). Empty: the ring addresses.
    #[arg(
        long = "ingester.raft.peer-routes",
        value_name = "ID=ADDR,...",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "ingester.raft.peer-routes")]
    pub raft_peer_routes: Members,

    /// The store gateways, comma-separated `id=host:port` (their gRPC addresses). A store gateway serves the blocks the ring gives its id; the querier asks them for history instead of reading the bucket itself. Empty: one process reads the bucket.
    #[arg(
        long = "store-gateway.sharding-ring.members",
        value_name = "ID=ADDR,...",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "store-gateway.sharding-ring.members")]
    pub gateway_members: Members,

    /// This store gateway's id in the ring [empty: the first member].
    #[arg(
        long = "store-gateway.sharding-ring.instance-id",
        value_name = "ID",
        global = true,
        default_value = ""
    )]
    #[serde(rename = "store-gateway.sharding-ring.instance-id")]
    pub gateway_instance: String,

    /// How many store gateways serve each block; the querier tolerates this many minus one failing.
    #[arg(
        long = "store-gateway.sharding-ring.replication-factor",
        value_name = "N",
        global = true,
        default_value = "1"
    )]
    #[serde(rename = "store-gateway.sharding-ring.replication-factor")]
    pub gateway_rf: usize,

    /// Block ranges the compactor merges up to, comma-separated, smallest first (the first is the block duration).
    #[arg(
        long = "compactor.block-ranges",
        value_name = "VALUE",
        global = true,
        default_value = "2h,12h,24h"
    )]
    #[serde(rename = "compactor.block-ranges")]
    pub compactor_ranges: DurList,

    /// How often the compactor runs.
    #[arg(
        long = "compactor.compaction-interval",
        value_name = "DURATION",
        global = true,
        default_value = "1h"
    )]
    #[serde(rename = "compactor.compaction-interval")]
    pub compactor_interval: Dur,

    /// How long a replaced or expired block stays (marked) before it is deleted, so queries reading it finish.
    #[arg(
        long = "compactor.deletion-delay",
        value_name = "DURATION",
        global = true,
        default_value = "12h"
    )]
    #[serde(rename = "compactor.deletion-delay")]
    pub compactor_deletion_delay: Dur,

    /// Write 5m and 1h downsampled copies of blocks of the largest range (Thanos' downsampling).
    #[arg(long = "compactor.downsampling-enabled", value_name = "BOOL", global = true, default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    #[serde(rename = "compactor.downsampling-enabled")]
    pub downsampling: bool,

    /// Delete blocks older than this; 0 keeps everything (per tenant: compactor_blocks_retention_period in the runtime configuration).
    #[arg(
        long = "compactor.blocks-retention-period",
        value_name = "DURATION",
        global = true,
        default_value = "0s"
    )]
    #[serde(rename = "compactor.blocks-retention-period")]
    pub retention: Dur,
}

/// Commands besides running the server.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Bring history from elsewhere into the bucket.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Look at a cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClusterAction {
    /// The ingester nodes and every shard group's replicas (role, term, applied index,
    /// lag, head size, shipped watermark), as a querier's /api/v1/status/cluster has them.
    Status {
        /// A querier's HTTP address [default: this configuration's web.listen-address].
        #[arg(long = "url")]
        url: Option<String>,
        /// Also each replica's head digest (replicas of a group at the same applied
        /// index must agree); reads every sample of every head.
        #[arg(long = "digests")]
        digests: bool,
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

/// The resolved configuration: the settings, the command, and the file they came from.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub command: Option<Command>,
    pub config_file: Option<PathBuf>,
    /// The YAML file as given (for /api/v1/status/config); empty without one.
    pub raw_yaml: String,
}

impl std::ops::Deref for Config {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// `all`, or roles separated by commas.
fn parse_roles(target: &str) -> anyhow::Result<Vec<Role>> {
    let mut roles = Vec::new();
    for name in target.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            return Ok(Role::ORDER.to_vec());
        }
        let Some(r) = Role::parse(name) else {
            anyhow::bail!(
                "target: unknown role {name:?} (all, distributor, ingester, querier, store-gateway, compactor)"
            );
        };
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    if roles.is_empty() {
        anyhow::bail!("target: no role given");
    }
    Ok(roles)
}

/// The long names of every setting (the YAML keys the file may use).
fn setting_names() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|n| n != "config.file" && n != "help" && n != "version")
        .collect()
}

/// A YAML scalar as the text a flag takes.
fn scalar(key: &str, v: &serde_yaml_ng::Value) -> anyhow::Result<String> {
    use serde_yaml_ng::Value;
    Ok(match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar(key, i))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        _ => anyhow::bail!("{key}: expected a value, not a mapping"),
    })
}

/// The file's settings as flags, to be placed before the command line's.
fn file_args(path: &Path) -> anyhow::Result<(Vec<String>, String)> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    if raw.trim().is_empty() {
        return Ok((Vec::new(), raw));
    }
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&raw)
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
    let serde_yaml_ng::Value::Mapping(map) = doc else {
        anyhow::bail!("{}: expected a mapping of settings", path.display());
    };
    let known = setting_names();
    let mut args = Vec::new();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            anyhow::bail!("{}: keys must be strings", path.display());
        };
        if !known.iter().any(|n| n == key) {
            anyhow::bail!(
                "{}: unknown setting {key:?} (docs/configuration.md lists every setting)",
                path.display()
            );
        }
        args.push(format!("--{key}={}", scalar(key, &v)?));
    }
    Ok((args, raw))
}

/// Why the configuration was not read: the parser's own answer (a bad flag, or a
/// request for help or the version, which it prints itself), or a bad setting.
#[derive(Debug)]
pub enum ConfigError {
    Cli(clap::Error),
    Invalid(anyhow::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Cli(e) => write!(f, "{e}"),
            ConfigError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl From<anyhow::Error> for ConfigError {
    fn from(e: anyhow::Error) -> ConfigError {
        ConfigError::Invalid(e)
    }
}

impl Config {
    /// Parses the command line (with the file it names), then checks the settings.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        // First pass: only to find the file.
        let first = Cli::try_parse_from(&args).map_err(ConfigError::Cli)?;
        let (extra, raw_yaml) = match &first.config_file {
            Some(p) => file_args(p)?,
            None => (Vec::new(), String::new()),
        };
        let mut all: Vec<std::ffi::OsString> = Vec::with_capacity(args.len() + extra.len());
        all.extend(args.first().cloned());
        all.extend(extra.into_iter().map(Into::into));
        all.extend(args.iter().skip(1).cloned());
        let matches = Cli::command()
            .try_get_matches_from(all)
            .map_err(ConfigError::Cli)?;
        let cli = Cli::from_arg_matches(&matches).map_err(ConfigError::Cli)?;
        let cfg = Config {
            settings: cli.settings,
            command: cli.command,
            config_file: cli.config_file,
            raw_yaml,
        };
        Ok(cfg.check()?)
    }

    fn check(mut self) -> anyhow::Result<Config> {
        let s = &mut self.settings;
        let ranges = &s.compactor_ranges.0;
        if ranges.windows(2).any(|w| w[1] <= w[0] || w[1] % w[0] != 0)
            || ranges.first() != Some(&s.block_duration.ms())
        {
            anyhow::bail!(
                "compactor.block-ranges must start at storage.tsdb.block-duration and grow by whole multiples"
            );
        }
        for (name, d) in [
            ("compactor.compaction-interval", s.compactor_interval),
            ("blocks-storage.tsdb.ship-interval", s.ship_interval),
            ("blocks-storage.bucket-store.sync-interval", s.sync_interval),
            ("storage.tsdb.block-duration", s.block_duration),
            ("runtime-config.reload-period", s.runtime_config_reload),
        ] {
            if d.ms() <= 0 {
                anyhow::bail!("{name} must be positive");
            }
        }
        let roles = parse_roles(&s.target)?;
        let has = |r: Role| roles.contains(&r);
        if roles.len() < Role::ORDER.len() {
            for r in [Role::Distributor, Role::Querier] {
                if has(r) && !has(Role::Ingester) && s.ingester_members.is_empty() {
                    anyhow::bail!(
                        "target {}: a {} without an ingester in the process needs ingester.ring.members",
                        s.target,
                        r.name()
                    );
                }
            }
            if has(Role::Ingester) && has(Role::StoreGateway) {
                anyhow::bail!(
                    "target {}: run the ingester and the store gateway as separate processes (both serve the Store service), or every role with all",
                    s.target
                );
            }
        }
        if !s.ingester_members.is_empty() {
            let n = s.ingester_members.0.len();
            if s.ingester_rf == 0 || s.ingester_rf > n {
                anyhow::bail!(
                    "ingester.ring.replication-factor is {} but there are {n} ingesters in ingester.ring.members: it must be between 1 and {n}",
                    s.ingester_rf
                );
            }
            if s.shard_groups > MAX_SHARD_GROUPS {
                anyhow::bail!("ingester.shard-groups must be at most {MAX_SHARD_GROUPS}");
            }
            if has(Role::Ingester) && !s.ingester_members.contains(&s.ingester_instance) {
                anyhow::bail!(
                    "target {}: an ingester of a cluster needs ingester.ring.instance-id, one of ingester.ring.members ({})",
                    s.target,
                    s.ingester_members.ids().join(", ")
                );
            }
            if let Some((id, _)) = s
                .raft_peer_routes
                .0
                .iter()
                .find(|(id, _)| !s.ingester_members.contains(id))
            {
                anyhow::bail!(
                    "ingester.raft.peer-routes: {id:?} is not one of ingester.ring.members"
                );
            }
            if roles.len() == Role::ORDER.len() {
                anyhow::bail!(
                    "target all runs the ingester in this process: ingester.ring.members is for a cluster of separate processes"
                );
            }
        }
        if s.gateway_rf == 0 {
            anyhow::bail!("store-gateway.sharding-ring.replication-factor must be at least 1");
        }
        if s.gateway_instance.is_empty() {
            if let Some((id, _)) = s.gateway_members.0.first() {
                s.gateway_instance = id.clone();
            }
        }
        if s.target == "store-gateway"
            && !s.gateway_members.is_empty()
            && !s.gateway_members.contains(&s.gateway_instance)
        {
            anyhow::bail!(
                "store-gateway.sharding-ring.instance-id {:?} is not one of store-gateway.sharding-ring.members",
                s.gateway_instance
            );
        }
        if !s.ingestion_rate.is_finite() || s.ingestion_rate < 0.0 {
            anyhow::bail!("distributor.ingestion-rate-limit must be a number >= 0");
        }
        Ok(self)
    }

    /// The bucket, from the blocks-storage settings.
    pub fn bucket(&self) -> hearth_storage::BucketConfig {
        let s = &self.settings;
        hearth_storage::BucketConfig {
            backend: s.backend.parse().expect("checked by the flag parser"),
            filesystem: hearth_storage::bucket::FilesystemConfig {
                dir: self.bucket_dir(),
            },
            s3: hearth_storage::bucket::S3Config {
                endpoint: s.s3_endpoint.clone(),
                bucket_name: s.s3_bucket.clone(),
                region: s.s3_region.clone(),
                access_key_id: s.s3_access_key_id.clone(),
                secret_access_key: s.s3_secret_access_key.0.clone(),
                insecure: s.s3_insecure,
            },
            gcs: hearth_storage::bucket::GcsConfig {
                bucket_name: s.gcs_bucket.clone(),
                service_account_path: s.gcs_service_account.clone(),
            },
            azure: hearth_storage::bucket::AzureConfig {
                account_name: s.azure_account.clone(),
                account_key: s.azure_key.0.clone(),
                container_name: s.azure_container.clone(),
                endpoint: s.azure_endpoint.clone(),
            },
        }
    }

    /// The filesystem bucket's directory: the flag, else `<storage.path>/bucket`.
    pub fn bucket_dir(&self) -> PathBuf {
        if self.fs_dir.is_empty() {
            self.storage_path.join("bucket")
        } else {
            PathBuf::from(&self.fs_dir)
        }
    }

    pub fn sample_encoding(&self) -> hearth_storage::block::cell::SampleEncoding {
        match self.settings.sample_encoding.as_str() {
            "decimal-delta" => hearth_storage::block::cell::SampleEncoding::DecimalDelta,
            _ => hearth_storage::block::cell::SampleEncoding::Xor,
        }
    }

    /// Every tenant's limits unless the runtime configuration overrides them.
    pub fn default_limits(&self) -> hearth_core::TenantLimits {
        let s = &self.settings;
        hearth_core::TenantLimits {
            ingestion_rate: s.ingestion_rate,
            ingestion_burst_size: s.ingestion_burst_size,
            max_global_series_per_user: s.max_series_per_user,
            max_global_series_per_metric: s.max_series_per_metric,
            max_label_names_per_series: s.max_label_names_per_series,
            max_label_name_length: s.max_label_name_length,
            max_label_value_length: s.max_label_value_length,
            creation_grace_period_ms: s.creation_grace_period.ms(),
            compactor_blocks_retention_period_ms: s.retention.ms(),
        }
    }

    /// Every setting by its flag name, for /api/v1/status/flags (secrets hidden).
    /// The shard groups the series are split into: as set, or 16 in a cluster and 4 in a
    /// single process (one node holding every group at replication factor 1).
    pub fn shard_groups(&self) -> u32 {
        match self.shard_groups {
            0 if self.ingester_members.is_empty() => 4,
            0 => 16,
            n => n,
        }
    }

    /// The replication factor of the shard groups: 1 in a single process.
    pub fn ingester_rf(&self) -> usize {
        if self.ingester_members.is_empty() {
            1
        } else {
            self.ingester_rf
        }
    }

    pub fn flag_map(&self) -> BTreeMap<String, String> {
        let v = serde_json::to_value(&self.settings).expect("settings serialize");
        let mut m: BTreeMap<String, String> = v
            .as_object()
            .expect("settings are an object")
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        m.insert(
            "blocks-storage.filesystem.dir".into(),
            self.bucket_dir().display().to_string(),
        );
        m.insert(
            "config.file".into(),
            self.config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        m
    }

    /// The roles to run, in no particular order (`all`: every role).
    pub fn roles(&self) -> Vec<Role> {
        parse_roles(&self.target).unwrap_or_default()
    }

    /// The runtime configuration file, if one is set.
    pub fn runtime_config_path(&self) -> Option<PathBuf> {
        (!self.runtime_config_file.is_empty()).then(|| PathBuf::from(&self.runtime_config_file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(std::iter::once("hearth").chain(args.iter().copied()))
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.yaml");
        let file = path.to_str().unwrap();
        std::fs::write(
            &path,
            "web.listen-address: 127.0.0.1:1234\nstorage.path: /tmp/x\nquery.lookback-delta: 1m\n",
        )
        .unwrap();
        let c = parse(&["--config.file", file, "--storage.path", "/tmp/y"]).unwrap();
        assert_eq!(c.listen_address, "127.0.0.1:1234");
        assert_eq!(c.storage_path, PathBuf::from("/tmp/y"));
        assert_eq!(c.lookback_delta.ms(), 60_000);
        assert_eq!(c.max_recv_msg_size, 10 << 20);
        std::fs::write(&path, "nonsense-key: 1\n").unwrap();
        let e = parse(&["--config.file", file]).unwrap_err().to_string();
        assert!(e.contains("unknown setting \"nonsense-key\""), "{e}");
        assert!(parse(&["--target", "warehouse"]).is_err());
        assert!(
            parse(&["--target", "querier"]).is_err(),
            "a querier needs ingesters"
        );
        let c = parse(&[
            "--target=distributor,querier",
            "--ingester.ring.members=ingester-1=127.0.0.1:9095",
            "--ingester.ring.replication-factor=1",
        ])
        .unwrap();
        assert_eq!(c.roles(), vec![Role::Distributor, Role::Querier]);
        // A cluster: RF within the members, an ingester names itself, routes name members.
        let three = "--ingester.ring.members=i1=127.0.0.1:1,i2=127.0.0.1:2,i3=127.0.0.1:3";
        let e = parse(&[
            "--target=distributor",
            "--ingester.ring.members=i1=127.0.0.1:1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("replication-factor is 3 but there are 1"), "{e}");
        let e = parse(&["--target=ingester", three])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs ingester.ring.instance-id"), "{e}");
        let c = parse(&[
            "--target=ingester",
            three,
            "--ingester.ring.instance-id=i2",
            "--ingester.raft.peer-routes=i1=127.0.0.1:7,i3=127.0.0.1:8",
        ])
        .unwrap();
        assert_eq!((c.ingester_rf, c.shard_groups()), (3, 16));
        assert_eq!(c.raft_peer_routes.0.len(), 2);
        let e = parse(&[
            "--target=ingester",
            three,
            "--ingester.ring.instance-id=i2",
            "--ingester.raft.peer-routes=i9=h:1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"i9\" is not one of"), "{e}");
        assert!(
            parse(&[three, "--ingester.ring.instance-id=i1"]).is_err(),
            "all is not a cluster member"
        );
        assert!(parse(&[
            "--target=distributor",
            three,
            "--ingester.shard-groups=1025"
        ])
        .is_err());
        assert_eq!(parse(&[]).unwrap().roles().len(), 5);
        assert_eq!(parse(&[]).unwrap().shard_groups(), 4);
        assert!(parse(&["--target=ingester,store-gateway"]).is_err());
        // Blocks storage: Mimir's names, on the command line and in the file.
        std::fs::write(
            &path,
            "blocks-storage.backend: s3\nblocks-storage.s3.bucket-name: b\nblocks-storage.s3.insecure: true\n",
        )
        .unwrap();
        let c = parse(&[
            "--config.file",
            file,
            "--blocks-storage.s3.endpoint=127.0.0.1:9000",
        ])
        .unwrap();
        let b = c.bucket();
        assert_eq!(b.backend, hearth_storage::Backend::S3);
        assert_eq!(b.s3.bucket_name, "b");
        assert_eq!(b.s3.endpoint, "127.0.0.1:9000");
        assert!(b.s3.insecure);
        let c = parse(&[]).unwrap();
        assert_eq!(c.bucket().backend, hearth_storage::Backend::Filesystem);
        assert_eq!(c.bucket().filesystem.dir, PathBuf::from("./data/bucket"));
        assert!(parse(&["--blocks-storage.backend=tape"]).is_err());
        // A bad value in the file is the flag's own error.
        std::fs::write(&path, "query.timeout: soon\n").unwrap();
        assert!(parse(&["--config.file", file]).is_err());
        // Lists in YAML are comma-separated flags.
        std::fs::write(&path, "compactor.block-ranges: [2h, 12h]\n").unwrap();
        let c = parse(&["--config.file", file]).unwrap();
        assert_eq!(c.compactor_ranges.0, vec![7_200_000, 43_200_000]);
        // The store-gateway ring.
        let c = parse(&[
            "--target=store-gateway",
            "--store-gateway.sharding-ring.members=gw-1=127.0.0.1:9095, gw-2=127.0.0.1:9096",
            "--store-gateway.sharding-ring.instance-id=gw-2",
        ])
        .unwrap();
        assert_eq!(c.gateway_members.0.len(), 2);
        assert_eq!(
            c.gateway_members.0[1],
            ("gw-2".into(), "127.0.0.1:9096".into())
        );
        assert_eq!(c.gateway_instance, "gw-2");
        for bad in [
            "--store-gateway.sharding-ring.members=gw-1",
            "--store-gateway.sharding-ring.members=a=x,a=y",
            "--store-gateway.sharding-ring.replication-factor=0",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse(&[
            "--target=store-gateway",
            "--store-gateway.sharding-ring.members=gw-1=h:1",
            "--store-gateway.sharding-ring.instance-id=gw-9",
        ])
        .is_err());
    }

    #[test]
    fn flags_page_hides_secrets_and_shows_every_setting() {
        let c = parse(&[
            "--blocks-storage.s3.secret-access-key=hush",
            "--web.enable-admin-api",
            "--compactor.blocks-retention-period=30d",
        ])
        .unwrap();
        let m = c.flag_map();
        assert_eq!(m["blocks-storage.s3.secret-access-key"], "<secret>");
        assert_eq!(m["blocks-storage.azure.account-key"], "");
        assert_eq!(m["web.enable-admin-api"], "true");
        assert_eq!(m["compactor.blocks-retention-period"], "30d");
        assert_eq!(m["storage.tsdb.block-duration"], "2h");
        for name in setting_names() {
            assert!(m.contains_key(&name), "{name} missing from the flags page");
        }
    }

    /// docs/configuration.md lists every setting with its default, and nothing else.
    #[test]
    fn configuration_doc_matches_the_settings() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let mut documented: BTreeMap<String, String> = BTreeMap::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[1].starts_with('`') {
                continue;
            }
            let name = cells[1].split('`').nth(1).unwrap().to_string();
            documented.insert(name, cells[2].trim_matches('`').to_string());
        }
        let cmd = Cli::command();
        for a in cmd.get_arguments() {
            let Some(name) = a.get_long() else { continue };
            if ["help", "version"].contains(&name) {
                continue;
            }
            let default = a
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().to_string())
                .unwrap_or_default();
            let got = documented
                .remove(name)
                .unwrap_or_else(|| panic!("{name} is not in docs/configuration.md"));
            if !default.is_empty() {
                assert_eq!(got, default, "default of {name} in docs/configuration.md");
            }
        }
        assert!(
            documented.is_empty(),
            "docs/configuration.md lists settings that do not exist: {documented:?}"
        );
    }
}
