//! The roles as modules, composed by target, as Mimir's `modules.go` composes its
//! services: each role has one `start` that takes what it depends on from the
//! [`Context`] (the configuration, the per-tenant limits, the bucket, and the roles
//! already started in this process) and returns a [`Module`]: the HTTP routes and gRPC
//! services it serves, how it says it is ready, what it says as it stops, and the parts
//! /metrics reads.
//!
//! Roles are started in dependency order. A role that another role in the same
//! process provides is used in-process through its service trait (`Ingester`,
//! `Queryable`, `IngesterStatus`); otherwise through the same trait's gRPC client. So
//! `--target=all` is every role joined in one process, never a second implementation.

pub mod compactor;
pub mod distributor;
pub mod ingester;
pub mod querier;
pub mod store_gateway;

use std::sync::Arc;

use axum::Router;
use hearth_core::{IngesterStatus, Queryable};
use hearth_querier::merge::TimeRange;
use hearth_storage::BucketStore;
use object_store::ObjectStore;

use crate::config::Config;
use crate::metrics::Parts;
use crate::runtime_config::RuntimeConfig;

/// A role this binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingester,
    StoreGateway,
    Compactor,
    Distributor,
    Querier,
}

impl Role {
    /// The order roles start in: every role after what it may use in-process.
    pub const ORDER: [Role; 5] = [
        Role::Ingester,
        Role::StoreGateway,
        Role::Compactor,
        Role::Distributor,
        Role::Querier,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingester => "ingester",
            Role::StoreGateway => "store-gateway",
            Role::Compactor => "compactor",
            Role::Distributor => "distributor",
            Role::Querier => "querier",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ORDER.into_iter().find(|r| r.name() == s)
    }
}

/// Whether a role is ready to serve.
pub type ReadyFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A started role.
#[derive(Default)]
pub struct Module {
    pub http: Option<Router>,
    pub grpc: Option<tonic::service::Routes>,
    pub ready: Option<ReadyFn>,
    /// Says what the role abandons as the process stops.
    pub stopping: Option<Box<dyn FnOnce() + Send>>,
    pub metrics: Parts,
}

/// The ingester node started in this process when it is the only one (a cluster of
/// one), for the distributor and querier beside it to use in-process.
#[derive(Clone)]
pub struct LocalIngester {
    pub node: Arc<hearth_ingester::replication::IngesterNode>,
}

/// History served in this process (the store gateway's blocks).
#[derive(Clone)]
pub struct LocalHistory {
    pub queryable: Arc<dyn Queryable>,
    pub range: TimeRange,
}

/// What roles take from each other and from the configuration.
pub struct Context {
    pub cfg: Config,
    pub runtime: RuntimeConfig,
    /// Whether every role runs here (the embedded default).
    pub all: bool,
    bucket: Option<Arc<dyn ObjectStore>>,
    bucket_store: Option<Arc<BucketStore>>,
    pub ingester: Option<LocalIngester>,
    pub history: Option<LocalHistory>,
}

impl Context {
    pub fn new(cfg: Config, runtime: RuntimeConfig) -> Context {
        let all = cfg.roles().len() == Role::ORDER.len();
        Context {
            cfg,
            runtime,
            all,
            bucket: None,
            bucket_store: None,
            ingester: None,
            history: None,
        }
    }

    /// The object storage blocks live in (opened once per process).
    pub fn bucket(&mut self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        if let Some(b) = &self.bucket {
            return Ok(b.clone());
        }
        let b = hearth_storage::open_bucket(&self.cfg.bucket())?;
        self.bucket = Some(b.clone());
        Ok(b)
    }

    /// The bucket's blocks as this process reads them, found by listing the bucket and
    /// synced every sync interval: one per process, shared by the roles that read
    /// blocks in-process (the compactor, and the querier when no store gateway serves).
    pub async fn bucket_store(&mut self) -> anyhow::Result<Arc<BucketStore>> {
        if let Some(s) = &self.bucket_store {
            return Ok(s.clone());
        }
        let bucket = self.bucket()?;
        let store = Arc::new(
            BucketStore::with_page_cache(bucket, self.cfg.page_cache_bytes)
                .with_labels_cache(self.cfg.labels_cache_bytes),
        );
        crate::server::spawn_bucket_sync(store.clone(), self.cfg.sync_interval.std(), true).await;
        self.bucket_store = Some(store.clone());
        Ok(store)
    }

    /// The writer of blocks, for the roles that make them.
    pub fn block_writer(&mut self) -> anyhow::Result<Arc<hearth_storage::BlockWriter>> {
        let bucket = self.bucket()?;
        let pages = self.bucket_store.as_ref().and_then(|s| s.page_cache());
        Ok(Arc::new(
            hearth_storage::BlockWriter::new(bucket)
                .with_sample_encoding(self.cfg.sample_encoding())
                .with_page_cache(pages),
        ))
    }

    /// The ingesters' status answers: the in-process ingester's, or every remote
    /// ingester's of the ring, as one.
    pub fn ingester_status(&self) -> anyhow::Result<Arc<dyn IngesterStatus>> {
        if let Some(i) = &self.ingester {
            return Ok(i.node.clone());
        }
        let mut members: Vec<(String, Arc<dyn IngesterStatus>)> = Vec::new();
        for (id, addr) in &self.cfg.ingester_members.0 {
            members.push((
                format!("{id} ({addr})"),
                Arc::new(hearth_rpc::RemoteIngester::connect_lazy(addr)?),
            ));
        }
        Ok(Arc::new(hearth_querier::IngestersStatus::new(members)))
    }
}

/// Starts the roles of the configured target, in dependency order.
pub async fn start(ctx: &mut Context) -> anyhow::Result<Vec<(Role, Module)>> {
    let roles = ctx.cfg.roles();
    let mut out = Vec::new();
    for role in Role::ORDER {
        if !roles.contains(&role) {
            continue;
        }
        let m = match role {
            Role::Ingester => ingester::start(ctx).await?,
            Role::StoreGateway => store_gateway::start(ctx).await?,
            Role::Compactor => compactor::start(ctx).await?,
            Role::Distributor => distributor::start(ctx).await?,
            Role::Querier => querier::start(ctx).await?,
        };
        tracing::info!(role = role.name(), "role started");
        out.push((role, m));
    }
    Ok(out)
}
