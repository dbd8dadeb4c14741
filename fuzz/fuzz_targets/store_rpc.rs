//! The store gateway's gRPC messages come off the network: any bytes must decode (prost)
//! and convert (matchers, tenant, series labels and chunks) to values or errors, never
//! a panic; and the per-tenant bucket index and tombstones, read back from the bucket,
//! must parse or fail cleanly.
#![no_main]

use hearth_proto::storage as sp;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = sp::SelectRequest::decode(data) {
        let _ = hearth_rpc::convert::matchers_from_wire(&r.matchers);
        let _ = hearth_rpc::convert::tenant_from_wire(&r.tenant);
        let _ = hearth_rpc::convert::hints_from_wire(r.hints);
    }
    if let Ok(r) = sp::SelectResponse::decode(data) {
        if let Ok(s) = hearth_rpc::convert::series_from_wire(r) {
            if let hearth_core::SeriesData::Chunks(cs) = &s.data {
                for c in cs {
                    let _ = hearth_series::chunkenc::decode_all(&c.data);
                }
            }
        }
    }
    let _ = serde_json::from_slice::<hearth_storage::bucket_index::BucketIndex>(data);
});
