//! The ingester's gRPC messages come off the network: a push in WriteBatch's flat form
//! (offsets into a buffer of label bytes, packed samples), alone or as a replicated
//! node's write of one shard group, must decode (prost) and rebuild into a checked
//! batch or an error, never a panic, an out-of-bounds read or an unbounded allocation;
//! and every series of a batch that was accepted must be readable and split by group.
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
    if let Ok(g) = ip::GroupPushRequest::decode(data) {
        if let Some(Ok(batch)) = g.write.map(hearth_rpc::ingester_server::batch_from_wire) {
            let tenant = hearth_core::Tenant::anonymous();
            let parts = hearth_core::shard::split_by_group(&tenant, &batch, g.group % 64 + 1);
            assert_eq!(parts.iter().map(|(_, p)| p.len()).sum::<usize>(), batch.len());
        }
    }
    let _ = ip::TsdbStatusRequest::decode(data);
    let _ = ip::MetadataRequest::decode(data);
});
