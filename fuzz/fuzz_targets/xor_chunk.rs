//! Chunks arrive from other processes (remote-read, blocks, gRPC): decoding any bytes must
//! end in samples or an error, and re-opening a chunk for appends must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hearth_series::chunkenc::decode_all(data);
    if let Ok(mut app) = hearth_series::chunkenc::XorAppender::from_bytes(data) {
        app.append(i64::MAX / 2, 1.0);
    }
});
