//! The `hearth` binary: parses flags and the YAML file, starts the roles of the target
//! as modules (`modules`: each role in dependency order, joined in-process through the
//! same service traits a cluster uses over gRPC) and serves them (`server`). With no
//! arguments every role runs in one process on the embedded default (data under
//! ./data, 127.0.0.1:9009).

mod cluster_cli;
mod config;
mod import;
mod metrics;
mod modules;
mod raft_metrics;
mod runtime_config;
mod server;

use std::time::{Duration, Instant};

use tracing::info;

use crate::config::{ClusterAction, Command, Config, ImportSource};

/// How long background work that does not yield may go on once the server stopped.
const SHUTDOWN_BACKGROUND: Duration = Duration::from_secs(3);

/// Libraries whose info lines are their internals, kept to warnings unless `log.level`
/// names them (`--log.level=info,openraft=info`): openraft logs every replayed chunk
/// of a group's log at start, thousands of lines on a node of 16 groups.
const QUIET_LIBRARIES: [&str; 4] = ["h2", "hyper", "tower", "openraft"];

fn init_tracing(cfg: &Config) -> anyhow::Result<()> {
    let mut directives = cfg.log_level.clone();
    for lib in QUIET_LIBRARIES {
        if !cfg.log_level.contains(lib) {
            directives.push_str(&format!(",{lib}=warn"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|e| anyhow::anyhow!("log.level {:?}: {e}", cfg.log_level))?;
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cfg = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        // Help and version requests, and bad flags, as the parser answers them.
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("hearth: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hearth")
        // Query parsing and evaluation recurse on the expression tree (bounded by
        // hearth_promql::syntax::MAX_NESTING); 16 MiB of (lazily committed) stack per
        // thread covers the deepest accepted query in debug builds too.
        .thread_stack_size(16 << 20)
        .build()?;
    let result = rt.block_on(async move {
        match cfg.command.clone() {
            Some(Command::Import {
                source: ImportSource::PrometheusTsdb { dir, tenant },
            }) => import::prometheus_tsdb(&cfg, &dir, &tenant).await,
            Some(Command::Cluster {
                action: ClusterAction::Status { url, digests },
            }) => {
                let url = url.unwrap_or_else(|| format!("http://{}", cfg.listen_address));
                cluster_cli::status(&url, digests).await
            }
            None => run(cfg).await,
        }
    });
    // Background work (a block upload, a compaction, a query's evaluation) is dropped
    // at its next await; work that does not yield gets a few seconds, so SIGTERM stops
    // the process within 10 s whatever it was doing. Nothing acknowledged depends on
    // it: writes are in the log before they are acknowledged.
    rt.shutdown_timeout(SHUTDOWN_BACKGROUND);
    result
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    info!(version = env!("CARGO_PKG_VERSION"), target = %cfg.target, storage = %cfg.storage_path.display(), "starting hearth");
    // The per-tenant limits every role reads: the flags' defaults and the runtime
    // configuration file's overrides, reloaded while running.
    let runtime = runtime_config::RuntimeConfig::start(
        cfg.runtime_config_path(),
        cfg.default_limits(),
        cfg.runtime_config_reload.std(),
    )?;
    let mut ctx = modules::Context::new(cfg.clone(), runtime);
    let running = modules::start(&mut ctx).await?;
    server::serve(&cfg, running, started).await
}
