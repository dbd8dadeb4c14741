//! Queries arrive from any HTTP client: reading one (Hearth's Prometheus-faithful error
//! reader, then promql-parser for what it accepts) must end in an AST or an error,
//! never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        let _ = hearth_promql::Engine::parse(q);
    }
});
