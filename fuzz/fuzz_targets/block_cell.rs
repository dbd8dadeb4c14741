//! Cells of a block's chunks file come back from the bucket: any bytes must decode to
//! chunks or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hearth_storage::block::cell::decode(data, 1_700_000_000_000);
});
