//! `rk3s server` and `rk3s datastore`: wire the components of a server node together and run
//! them until a termination signal arrives.

use anyhow::Context;
use tokio::sync::watch;

use std::net::IpAddr;
use std::sync::Arc;

use crate::apiserver::{self, Api};
use crate::data_dir::DataDir;
use crate::pki::{self, Pki};
use crate::store::{self, Store, grpc};
use crate::{controllers, dns, kubelet, leader, netpol, network, proxy, scheduler};

/// Everything `rk3s server` needs, built by `cli` from flags, env and the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: DataDir,
    pub store: store::Config,
    /// Extra etcd v3 endpoint (`--etcd-listen`); the unix socket under the data dir is always served.
    pub etcd_listen: Option<grpc::Listen>,
    /// This node's address (the `kubernetes` Service endpoint).
    pub node_ip: IpAddr,
    pub apiserver: apiserver::Config,
    /// This server's identity in the controller-manager's leader election (the node name).
    pub identity: String,
    /// The controller-manager's settings; `None` with `--disable-controller-manager`.
    pub controllers: Option<controllers::Config>,
    /// The scheduler's settings; `None` with `--disable-scheduler`.
    pub scheduler: Option<scheduler::Config>,
    /// The kubelet's settings; `None` with `--disable-agent`.
    pub kubelet: Option<kubelet::Config>,
    /// The cluster DNS; `None` with `--disable-agent` or `--disable=dns`.
    pub dns: Option<dns::Config>,
    /// The Service proxy's settings; `None` with `--disable-agent` (it runs with the kubelet).
    pub proxy: Option<proxy::Config>,
    /// `--cluster-cidr`: the pod network masquerades traffic leaving it.
    pub cluster_cidr: controllers::ipam::Cidr,
    /// The built-in components `--disable` turned off.
    pub disable: Disabled,
    /// The NetworkPolicy controller of this node; `None` without the agent or with
    /// `--disable=network-policy`.
    pub netpol: Option<netpol::Config>,
}

/// `--disable=…`: which built-in components (k3s's packaged addons) do not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disabled {
    /// No default StorageClass `local-path` and no provisioner.
    pub local_storage: bool,
    /// metrics.k8s.io is not served.
    pub metrics: bool,
    /// No cluster DNS server, no kube-dns Service, no `rk3s-dns` interface.
    pub dns: bool,
    /// NetworkPolicies are not enforced (and rules of an earlier run are removed).
    pub network_policy: bool,
    /// No built-in LoadBalancer: LoadBalancer Services keep an empty status.
    pub servicelb: bool,
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
    let (api, api_task, server_ca) = start_apiserver(&config, store.clone()).await?;
    if !config.disable.local_storage {
        ensure_local_storage(&api).await?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut elected = tokio::task::JoinSet::new();
    // The controllers and the scheduler talk to the API in-process, each as its upstream user,
    // and each runs only while this server holds its Lease.
    if let Some(mut c) = config.controllers.clone() {
        // The CA that signed the serving certificate is what pods use to verify the API.
        c.root_ca = server_ca;
        let client = apiserver::local::client(api.clone(), apiserver::local::controller_manager());
        let start = {
            let client = client.clone();
            move || controllers::start(&client, &c)
        };
        let identity = config.identity.clone();
        elected.spawn(leader::run(
            client,
            controllers::LEASE,
            identity,
            stop_rx.clone(),
            start,
        ));
    }
    if let Some(s) = config.scheduler.clone() {
        let client = apiserver::local::client(api.clone(), apiserver::local::scheduler());
        let identity = s.identity;
        let start = {
            let (client, identity) = (client.clone(), identity.clone());
            move || scheduler::start(&client, &identity)
        };
        elected.spawn(leader::run(
            client,
            scheduler::LEASE,
            identity,
            stop_rx,
            start,
        ));
    }
    let kubelet_task = match config.kubelet.clone() {
        Some(k) => Some(start_kubelet(&config, k, &api).await?),
        None => None,
    };
    let dns_task = match config.dns.clone() {
        Some(d) => Some(start_dns(&api, d).await),
        None => None,
    };
    let netpol_task = start_netpol(&config, &api).await;
    let proxy_task = config.proxy.clone().map(|p| {
        let client = apiserver::local::client(api.clone(), apiserver::local::node(&p.node_name));
        tokio::spawn(proxy::run(client, p))
    });
    let result = serve_until_signal(store, listens, stop_tx).await;
    if let Some(t) = kubelet_task {
        t.abort();
    }
    if let Some(t) = dns_task {
        t.abort();
    }
    if let Some(t) = netpol_task {
        t.abort();
    }
    if let Some(t) = proxy_task {
        t.abort();
    }
    elected.abort_all();
    api_task.abort();
    result
}

/// Creates the default StorageClass `local-path` that k3s's local-storage addon installs,
/// unless it exists: a user's edits are kept, and a deleted class comes back at the next start,
/// as k3s re-applies its addons.
async fn ensure_local_storage(api: &Arc<Api>) -> anyhow::Result<()> {
    use k8s_openapi::api::storage::v1::StorageClass;
    let client = apiserver::local::client(api.clone(), apiserver::local::controller_manager());
    let classes: kube::Api<StorageClass> = kube::Api::all(client);
    let class = controllers::localpath::default_class();
    match classes.create(&Default::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the local-path StorageClass"),
    }
}

/// Creates the `kube-system/kube-dns` Service (kept if it exists: a user's edits stay) and
/// starts the cluster DNS server. A DNS that cannot start (port 53 taken, no upstreams file) is
/// logged, not fatal: the rest of the node still works, as a crashing CoreDNS pod would leave it.
async fn start_dns(api: &Arc<Api>, d: dns::Config) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::core::v1::Service;
    let client = apiserver::local::client(api.clone(), apiserver::local::controller_manager());
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "kube-system");
    match services
        .create(&Default::default(), &dns::kube_dns_service(d.cluster_dns))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "creating the kube-dns Service"),
    }
    tokio::spawn(async move {
        if let Err(e) = dns::run(client, d).await {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "the cluster dns did not start");
        }
    })
}

/// Starts this server's kubelet (its node), talking to the API in-process as
/// `system:node:<name>`, with its log endpoint registered in the API server.
async fn start_kubelet(
    config: &Config,
    k: kubelet::Config,
    api: &Arc<Api>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let agent = config.data_dir.agent();
    let registries = kubelet::images::Registries::load(&k.private_registry)
        .with_context(|| format!("reading {}", k.private_registry.display()))?;
    let images = kubelet::images::ImageService::open(&agent, registries)
        .context("opening the image store")?;
    let exe = std::fs::read_link("/proc/self/exe").context("finding the rk3s binary")?;
    let runtime =
        kubelet::runtime::Local::new(agent.join("containers"), k.run_dir.join("containers"), exe)
            .context("preparing the container runtime")?;
    let cluster_cidr = config.cluster_cidr.net().context("the cluster CIDR")?;
    let network = network::Bridge::new(network::Config {
        bridge: "rk3s0".into(),
        netns_dir: k.run_dir.join("netns"),
        ipam_dir: agent.join("ipam"),
        nat_table: "rk3s-podnet".into(),
        cluster_cidr,
        mtu: 1500,
    });
    let client = apiserver::local::client(api.clone(), apiserver::local::node(&k.node_name));
    let node_name = k.node_name.clone();
    let kubelet = kubelet::Kubelet::new(
        client,
        k,
        Arc::new(images),
        Arc::new(runtime),
        Arc::new(network),
    );
    api.register_kubelet(&node_name, kubelet::logs::router(kubelet.clone()));
    Ok(tokio::spawn(kubelet.run()))
}

/// Starts the NetworkPolicy controller of this node (as the node's user, like the kubelet), or
/// with `--disable=network-policy` removes the rules an earlier run left: a controller that is
/// off must not keep enforcing stale policies.
async fn start_netpol(config: &Config, api: &Arc<Api>) -> Option<tokio::task::JoinHandle<()>> {
    let k = config.kubelet.as_ref()?;
    match &config.netpol {
        Some(n) => {
            let client =
                apiserver::local::client(api.clone(), apiserver::local::node(&k.node_name));
            Some(tokio::spawn(netpol::run(client, n.clone())))
        }
        None => {
            if let Err(e) = netpol::remove().await {
                tracing::warn!(error = %e, "removing the network policy rules of an earlier run");
            }
            None
        }
    }
}

/// Starts the Kubernetes API: PKI, bootstrap objects, the HTTPS listener, then the kubeconfig
/// (written last, so a client that finds it can connect).
async fn start_apiserver(
    config: &Config,
    store: Store,
) -> anyhow::Result<(Arc<Api>, tokio::task::JoinHandle<()>, String)> {
    let a = &config.apiserver;
    let service_ip = IpAddr::V4(a.service_cidr.nth(1));
    let sans = pki::Sans::standard(&a.cluster_domain, service_ip, &a.tls_sans);
    let pki = Pki::load_or_create(&a.tls_dir, &sans)?;
    let mut api = Api::new(store, a);
    // Orphan and Foreground deletion wait for the garbage collector, which runs with the
    // controller-manager.
    api.garbage_collector = config.controllers.is_some();
    api.metrics = !config.disable.metrics;
    let api = Arc::new(api);
    api.bootstrap(config.node_ip, a.https_port)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "creating the default namespaces and services: {}",
                e.message
            )
        })?;
    let tls = apiserver::serve::tls_config(&pki)?;
    let addr = std::net::SocketAddr::new(a.bind_address, a.https_port);
    let listener = apiserver::serve::bind(addr).await?;
    tracing::info!(%addr, "Kubernetes API listening");
    let task = tokio::spawn(apiserver::serve::serve(api.clone(), listener, tls));
    if let Some(path) = &a.write_kubeconfig {
        let host = if a.bind_address.is_unspecified() {
            "127.0.0.1".to_string()
        } else if a.bind_address.is_ipv6() {
            format!("[{}]", a.bind_address)
        } else {
            a.bind_address.to_string()
        };
        let kubeconfig = pki.admin_kubeconfig(&format!("https://{host}:{}", a.https_port));
        pki::write_file(path, &kubeconfig, a.write_kubeconfig_mode)
            .with_context(|| format!("writing the kubeconfig {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote kubeconfig");
    }
    Ok((api, task, pki.server_ca.cert_pem.clone()))
}

/// The address of the interface that holds the default route (IPv4), else 127.0.0.1.
pub fn default_node_ip() -> IpAddr {
    // A UDP "connect" picks the source address the kernel would route with; nothing is sent.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Runs `rk3s datastore` until SIGINT/SIGTERM.
pub async fn run_datastore(config: DatastoreConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.store)?;
    serve_until_signal(store, vec![config.listen], watch::channel(false).0).await
}

fn url(listen: &grpc::Listen) -> String {
    match listen {
        grpc::Listen::Tcp(addr) => format!("http://{addr}"),
        grpc::Listen::Unix(path) => format!("unix://{}", path.display()),
    }
}

/// Serves the etcd endpoints until a signal; `stop_tx` turns true at shutdown, for the listeners
/// and whatever else the caller subscribed (the controllers).
async fn serve_until_signal(
    store: Store,
    listens: Vec<grpc::Listen>,
    stop_tx: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let member = grpc::Member {
        name: hostname(),
        client_urls: listens.iter().map(url).collect(),
    };
    let stop_rx = stop_tx.subscribe();
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

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "default".into())
}
