//! Hearth's wire contracts: the Rust types of every message in `proto/`.
//!
//! This room owns nothing but generated code: Prometheus remote-write 1.0 and remote-read
//! (`prometheus`), remote-write 2.0 (`io.prometheus.write.v2`) and Hearth's own data seam
//! messages (`hearth.storage`). It may not hold logic; conversions live with their users.
//! Modules nest as the proto packages do, so cross-package references resolve.

#![allow(clippy::all, missing_docs)]

/// `prometheus.*`: remote-write 1.0 and remote-read.
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

pub mod io {
    pub mod prometheus {
        pub mod write {
            /// `io.prometheus.write.v2.*`: remote-write 2.0.
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
            }
        }
    }
}

pub mod hearth {
    /// `hearth.storage.*`: the `Queryable` seam as messages.
    pub mod storage {
        include!(concat!(env!("OUT_DIR"), "/hearth.storage.rs"));
    }
}

pub use hearth::storage;
pub use io::prometheus::write::v2 as write_v2;
