//! Compiles every wire contract in proto/ with protox (pure Rust, no `protoc` needed).
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "prometheus/types.proto",
        "prometheus/remote.proto",
        "io/prometheus/write/v2/types.proto",
        "hearth/storage.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root]).expect("proto/ must compile");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost code generation");
}
