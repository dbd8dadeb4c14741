//! Where CPU-heavy work runs: never on the async worker threads that accept writes and
//! answer queries, so a compaction's Parquet encoding or a query's chunk decoding never
//! delays a remote-write acknowledgement queued behind it.
//!
//! Two bounded pools:
//! - **background** (shipping, verification, compaction, downsampling): a few dedicated
//!   threads, half the cores (at least one), run at a lower OS priority (nice 10) so
//!   the scheduler prefers everything else when the cores are busy;
//! - **foreground** (decoding blocks for queries): the calling thread, taken out of the
//!   async workers while it works (its queued tasks move to another worker), at most
//!   four per core at once (they also wait for object storage while they decode).
//!
//! Work is handed over as a future and driven on the pool's thread with the runtime's
//! handle, so its I/O still goes through the runtime while its computation stays off
//! the workers.

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::{oneshot, Semaphore};

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Set while a pool thread runs work: work it hands over again runs in place (a
    /// pool waiting on itself would deadlock once its threads are all waiting).
    static IN_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` marked as pool work.
fn as_pool_work<T>(f: impl FnOnce() -> T) -> T {
    IN_POOL.with(|c| c.set(true));
    let out = f();
    IN_POOL.with(|c| c.set(false));
    out
}

fn in_pool() -> bool {
    IN_POOL.with(|c| c.get())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

struct Background {
    tx: Mutex<mpsc::Sender<Job>>,
}

fn background_pool() -> &'static Background {
    static POOL: OnceLock<Background> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..(cores() / 2).max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hearth-bg-{i}"))
                .stack_size(16 << 20)
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a background thread failed");
            }
        }
        Background { tx: Mutex::new(tx) }
    })
}

/// Lowers this thread's scheduling priority (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Runs `fut` to completion on a background thread and returns its output. Panics in
/// the work come back as panics here.
pub async fn background<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if in_pool() {
        return fut.await;
    }
    let handle = Handle::current();
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            as_pool_work(|| handle.block_on(fut))
        }));
        let _ = tx.send(out);
    });
    let sent = background_pool()
        .tx
        .lock()
        .map(|t| t.send(job).is_ok())
        .unwrap_or(false);
    assert!(sent, "the background pool has no threads");
    match rx.await {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("a background thread stopped"),
    }
}

fn foreground_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(4 * cores()))
}

/// Runs `fut` to completion with its thread taken out of the async workers (tokio's
/// `block_in_place`: the worker's other tasks move to another thread), at most four
/// per core at once, and returns its output. On a current-thread runtime (tests) it
/// simply runs in place.
pub async fn foreground<F: Future>(fut: F) -> F::Output {
    let handle = Handle::current();
    if in_pool() || handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return fut.await;
    }
    let _permit = foreground_permits()
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::block_in_place(|| as_pool_work(|| handle.block_on(fut)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_work_runs_on_its_threads() {
        let (name, v) =
            background(async { (std::thread::current().name().map(String::from), 7) }).await;
        assert_eq!(v, 7);
        assert!(name.unwrap().starts_with("hearth-bg-"));
        let panicked = tokio::spawn(background(async { panic!("boom") })).await;
        assert!(panicked.is_err());
        // Work handed over from pool work runs in place, never waiting on the pool.
        let nested = background(async {
            let outer = std::thread::current().id();
            let inner = background(async { std::thread::current().id() }).await;
            let fg = foreground(async { std::thread::current().id() }).await;
            (outer == inner, outer == fg)
        })
        .await;
        assert_eq!(nested, (true, true));
    }

    /// With one async worker, foreground work that keeps its thread busy still lets
    /// the runtime's other tasks run: its worker was handed over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn foreground_work_frees_its_worker() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        tokio::spawn(async move { r.store(true, Ordering::SeqCst) });
        let seen = foreground(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ran.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            ran.load(Ordering::SeqCst)
        })
        .await;
        assert!(
            seen,
            "the spawned task never ran while foreground work held the thread"
        );
    }
}
