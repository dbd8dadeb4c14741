//! The ingester's gRPC messages come off the network: a push in WriteBatch's flat form
//! (offsets into a buffer of label bytes, packed samples) must decode (prost) and
//! rebuild into a checked batch or an error, never a panic, an out-of-bounds read or an
//! unbounded allocation; and every series of a batch that was accepted must be
//! readable.
#![no_main]

use hearth_proto::ingester as ip;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ip::PushRequest::decode(data) {
        if let Ok(batch) = hearth_rpc::ingester_server::batch_from_wire(r) {
            for s in batch.iter() {
                let _ = s.labels.to_labels();
                let _ = s.samples.len();
            }
        }
    }
    let _ = ip::TsdbStatusRequest::decode(data);
    let _ = ip::MetadataRequest::decode(data);
});
