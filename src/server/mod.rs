//! `rk3s server` and `rk3s datastore`: wire the components of a server node together and run
//! them until a termination signal arrives.

use anyhow::Context;
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::store::{self, Store, grpc};

/// Everything `rk3s server` needs, built by `cli` from flags, env and the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: DataDir,
    pub store: store::Config,
    /// Extra etcd v3 endpoint (`--etcd-listen`); the unix socket under the data dir is always served.
    pub etcd_listen: Option<grpc::Listen>,
}

/// Everything `rk3s datastore` needs: the store alone, served on one endpoint (like kine).
#[derive(Debug, Clone)]
pub struct DatastoreConfig {
    pub store: store::Config,
    pub listen: grpc::Listen,
}

/// How long open requests get to finish after SIGTERM before connections are cut.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `rk3s server` until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server_dir = config.data_dir.server();
    std::fs::create_dir_all(&server_dir)
        .with_context(|| format!("creating {}", server_dir.display()))?;
    let store = Store::open(&config.store)?;
    let mut listens = vec![grpc::Listen::Unix(config.data_dir.etcd_socket())];
    listens.extend(config.etcd_listen.clone());
    serve_until_signal(store, listens).await
}

/// Runs `rk3s datastore` until SIGINT/SIGTERM.
pub async fn run_datastore(config: DatastoreConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.store)?;
    serve_until_signal(store, vec![config.listen]).await
}

fn url(listen: &grpc::Listen) -> String {
    match listen {
        grpc::Listen::Tcp(addr) => format!("http://{addr}"),
        grpc::Listen::Unix(path) => format!("unix://{}", path.display()),
    }
}

async fn serve_until_signal(store: Store, listens: Vec<grpc::Listen>) -> anyhow::Result<()> {
    let member = grpc::Member {
        name: hostname(),
        client_urls: listens.iter().map(url).collect(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listen in listens {
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let what = url(&listen);
        let serve = grpc::serve(store.clone(), listen, member.clone(), shutdown);
        tasks.spawn(async move { serve.await.with_context(|| format!("serving {what}")) });
    }
    let mut result = Ok(());
    tokio::select! {
        sig = shutdown_signal() => {
            tracing::info!(signal = sig?, "shutting down");
        }
        Some(done) = tasks.join_next() => {
            // A listener failed (e.g. the address is in use): stop everything and report it.
            result = done.context("server task panicked")?;
        }
    }
    let _ = stop_tx.send(true);
    // Unary requests finish within the grace period; long-lived streams (watches, lease
    // keep-alives) would hold a graceful shutdown forever, so they are cut after it, as etcd
    // does. Clients reconnect to the next server.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "listener stopped with an error")
                }
                Err(e) => tracing::warn!(error = %e, "listener task failed"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::info!("closing the remaining client streams");
        tasks.shutdown().await;
    }
    // Leave only the database file behind: the WAL is folded in and removed.
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store");
    }
    result
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "default".into())
}
