//! Log records are read back after crashes: a damaged record must decode to an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hearth_ingester::record::decode_write(data);
});
