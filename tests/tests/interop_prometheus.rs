//! Interop with a real Prometheus (Debian package `prometheus`), Hearth in one process:
//! see common/interop.rs for the scenario.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hearth(&dir.path().join("hearth-data"), &[]).await;
    let compared =
        interop::answers_match_prometheus(dir.path(), &h.url("/api/v1/push"), &h.url("")).await;
    assert!(compared >= 22, "{compared} answers compared");
}
