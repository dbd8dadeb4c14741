//! Compiles every wire contract in proto/ with protox (pure Rust, no `protoc` needed).
use std::path::PathBuf;

fn main() {
    // Read at run time: a build script binary reused from another checkout (a shared
    // CARGO_TARGET_DIR) must look at this checkout's proto/, not the one it was built in.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = PathBuf::from(manifest).join("../../proto");
    let files = [
        "prometheus/types.proto",
        "prometheus/remote.proto",
        "io/prometheus/write/v2/types.proto",
        "hearth/storage.proto",
        "hearth/ingester.proto",
        "hearth/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root]).expect("proto/ must compile");
    // Messages through prost, Hearth's services (`hearth.storage.Store`,
    // `hearth.ingester.Ingester`, `hearth.raft.Raft`) through tonic.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)
        .expect("prost and tonic code generation");
}
