//! The bucket: which object store blocks live in, built from Mimir-named settings
//! (`--blocks-storage.backend`, `--blocks-storage.s3.endpoint`, ...).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on local disk: the embedded default (./data/bucket).
    #[default]
    Filesystem,
    /// Amazon S3 or any S3-compatible server (MinIO, Ceph, moto, ...).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// In memory, gone at exit: for tests and trials.
    Memory,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "filesystem" => Ok(Backend::Filesystem),
            "s3" => Ok(Backend::S3),
            "gcs" => Ok(Backend::Gcs),
            "azure" => Ok(Backend::Azure),
            "memory" => Ok(Backend::Memory),
            other => Err(format!(
                "unknown blocks storage backend {other:?}: filesystem, s3, gcs, azure or memory"
            )),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `host[:port]` or a URL; empty for AWS itself.
    pub endpoint: String,
    pub bucket_name: String,
    pub region: String,
    /// Empty: the standard AWS environment (AWS_ACCESS_KEY_ID, profiles, instance roles).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Plain HTTP to the endpoint.
    pub insecure: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket_name: String,
    /// Empty: the standard Google environment (GOOGLE_APPLICATION_CREDENTIALS, ...).
    pub service_account_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    pub account_name: String,
    pub account_key: String,
    pub container_name: String,
    /// Empty for Azure itself; set for Azurite and other emulators.
    pub endpoint: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    pub dir: PathBuf,
}

/// Where blocks are stored: the `blocks_storage` section of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketConfig {
    pub backend: Backend,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("blocks storage: {0}")]
    Config(String),
    #[error("blocks storage: {0}")]
    Store(#[from] object_store::Error),
}

/// Retries with exponential backoff for every request: a bucket that is briefly away
/// costs latency, not errors. Longer outages surface to the caller, which keeps its data
/// and tries again later.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(30),
    }
}

/// Opens the configured bucket.
pub fn open_bucket(cfg: &BucketConfig) -> Result<Arc<dyn ObjectStore>, BucketError> {
    let required = |v: &str, name: &str| {
        if v.is_empty() {
            Err(BucketError::Config(format!("{name} must be set")))
        } else {
            Ok(())
        }
    };
    Ok(match cfg.backend {
        Backend::Memory => Arc::new(InMemory::new()),
        Backend::Filesystem => {
            let dir = &cfg.filesystem.dir;
            std::fs::create_dir_all(dir).map_err(|e| {
                BucketError::Config(format!("cannot create {}: {e}", dir.display()))
            })?;
            Arc::new(LocalFileSystem::new_with_prefix(dir)?)
        }
        Backend::S3 => {
            let s3 = &cfg.s3;
            required(&s3.bucket_name, "blocks-storage.s3.bucket-name")?;
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&s3.bucket_name)
                .with_retry(retry())
                .with_allow_http(s3.insecure);
            if !s3.region.is_empty() {
                b = b.with_region(&s3.region);
            }
            if !s3.endpoint.is_empty() {
                // S3-compatible servers are addressed path-style, as Mimir does.
                let url = if s3.endpoint.contains("://") {
                    s3.endpoint.clone()
                } else if s3.insecure {
                    format!("http://{}", s3.endpoint)
                } else {
                    format!("https://{}", s3.endpoint)
                };
                b = b
                    .with_endpoint(url)
                    .with_virtual_hosted_style_request(false);
            }
            if !s3.access_key_id.is_empty() {
                b = b
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key);
            }
            Arc::new(b.build()?)
        }
        Backend::Gcs => {
            let g = &cfg.gcs;
            required(&g.bucket_name, "blocks-storage.gcs.bucket-name")?;
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&g.bucket_name)
                .with_retry(retry());
            if !g.service_account_path.is_empty() {
                b = b.with_service_account_path(&g.service_account_path);
            }
            Arc::new(b.build()?)
        }
        Backend::Azure => {
            let a = &cfg.azure;
            required(&a.container_name, "blocks-storage.azure.container-name")?;
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(&a.container_name)
                .with_retry(retry());
            if !a.account_name.is_empty() {
                b = b.with_account(&a.account_name);
            }
            if !a.account_key.is_empty() {
                b = b.with_access_key(&a.account_key);
            }
            if !a.endpoint.is_empty() {
                b = b.with_endpoint(a.endpoint.clone()).with_allow_http(true);
            }
            Arc::new(b.build()?)
        }
    })
}
