//! The core model of Hearth: what a series is and how every room asks for one.
//!
//! This room owns labels, label matchers, samples, tenants, the staleness marker and the
//! one data seam, the [`Queryable`] trait, plus the ingest seam [`Ingester`], the
//! per-tenant limits (`limits`) and where CPU-heavy work runs (`cpu`, bounded pools off
//! the async workers). It is plain data, traits and those pools: it may not do I/O,
//! know about storage formats, HTTP or Raft.

pub mod batch;
pub mod cpu;
pub mod deletion;
pub mod duration;
pub mod labels;
pub mod limits;
pub mod matcher;
pub mod queryable;
pub mod ring;
pub mod sample;
pub mod shard;
pub mod tenant;

pub use batch::{
    hash_label_bytes, ArenaLabel, ArenaSeries, BatchSeries, LabelsRef, WireForm, WriteBatch,
};
pub use deletion::Deletion;
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use limits::{Overrides, TenantLimits};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use queryable::{
    ChunkEncoding, EncodedChunk, Ingester, IngesterStatus, MetricMetadata, PushError, PushOutcome,
    Queryable, SelectHints, Series, SeriesData, SeriesStream, StorageError, TsdbStatus, NOT_STORED,
    OUTCOME_UNKNOWN,
};
pub use ring::Ring;
pub use sample::{is_stale_nan, Sample, STALE_NAN_BITS};
pub use tenant::{tenant_from_header, Tenant, DEFAULT_TENANT, TENANT_HEADER};
