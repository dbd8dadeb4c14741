//! The remote-write decoder faces the network: any body, either protocol, must give a
//! batch or an error, never a panic or an unbounded allocation.
#![no_main]

use hearth_distributor::{decode_request, Limits, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let (proto, body) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (Protocol::V2, rest),
        Some((_, rest)) => (Protocol::V1, rest),
        None => return,
    };
    // As sent: snappy-compressed.
    let _ = decode_request(proto, body, 1 << 20, &limits);
    // And the protobuf decoder itself, behind a valid snappy frame.
    let framed = snap::raw::Encoder::new().compress_vec(body).unwrap();
    let _ = decode_request(proto, &framed, 1 << 20, &limits);
});
