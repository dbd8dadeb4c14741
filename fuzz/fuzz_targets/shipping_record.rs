//! Shipping records come off the log and, in entries, off the network: a damaged
//! record must decode to an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hearth_ingester::record::decode_control(data);
});
