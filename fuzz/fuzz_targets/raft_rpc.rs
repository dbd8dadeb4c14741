//! Raft messages between ingesters come off the network: an AppendEntries request must
//! decode (prost), and each of its entries (the log's own form: a log id, a tag and a
//! batch of writes in WriteBatch's flat form) rebuild into an entry or an error, never a
//! panic, an out-of-bounds read or an unbounded allocation. The same bytes are tried as
//! one stored entry, as the log engine reads them back.
#![no_main]

use bytes::Bytes;
use hearth_ingester::replication::log_store::decode_entry;
use hearth_ingester::replication::ShardConfig;
use hearth_proto::raft as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = pb::AppendEntriesRequest::decode(data) {
        for e in r.entries {
            let _ = decode_entry::<ShardConfig>(Bytes::from(e));
        }
        let _ = serde_json::from_slice::<openraft::Vote<u64>>(&r.vote);
    }
    let _ = pb::SnapshotChunk::decode(data);
    let _ = decode_entry::<ShardConfig>(Bytes::copy_from_slice(data));
});
