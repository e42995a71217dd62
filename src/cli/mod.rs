//! The command line: clap definitions, config-file merging, logging, and dispatch to the
//! components. This is the only module that reads flags, environment variables and
//! `/etc/rk3s/config.yaml`; components get typed `Config`s built here.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::data_dir::DataDir;
use crate::store::{self, grpc};
use crate::{apiserver, controllers, data_dir, dns, kubelet, netpol, proxy, scheduler, server};

/// How often controllers reconcile everything without watch events.
const CONTROLLER_RESYNC: Duration = Duration::from_secs(30);
/// Where shims keep container state and pods their network namespaces (tmpfs: gone at boot).
const RUN_DIR: &str = "/run/rk3s";

mod check_config;
mod config;
pub mod killall;

#[derive(Parser, Debug)]
#[command(
    name = "rk3s",
    version = concat!("version v", env!("CARGO_PKG_VERSION")),
    about = "A lightweight, Kubernetes-compatible distribution in one binary",
    propagate_version = true
)]
struct Cli {
    /// More log output: -v for debug, -vv for trace.
    #[arg(short = 'v', action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "human",
        env = "RK3S_LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    /// Config file (YAML; keys are the long flag names).
    #[arg(long, env = "RK3S_CONFIG_FILE", default_value = config::DEFAULT_PATH, global = true)]
    config: PathBuf,
    /// Where rk3s keeps its state.
    #[arg(long, env = "RK3S_DATA_DIR", default_value = data_dir::DEFAULT, global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a server node: the datastore (and, as they are built, the control plane and a node).
    Server(Box<ServerArgs>),
    /// Run only the etcd-compatible datastore (like kine).
    Datastore(DatastoreArgs),
    /// Save, list and restore snapshots of the embedded datastore.
    EtcdSnapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Import, list and remove this node's container images (safe while the server runs).
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Check that the kernel has what rk3s needs.
    CheckConfig,
    /// Stop rk3s and every container it runs, and remove its network setup, mounts and pod
    /// cgroups from this machine; the data dir is kept.
    Killall(KillallArgs),
}

#[derive(clap::Args, Debug)]
struct KillallArgs {
    /// The cluster DNS address the server put on this host (removed from `lo`).
    #[arg(long, env = "RK3S_CLUSTER_DNS", default_value = "10.43.0.10")]
    cluster_dns: std::net::Ipv4Addr,
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Import image tarballs: docker-archive or OCI image layout, as .tar, .tar.gz or .tar.zst.
    Import {
        /// The tarballs.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List images like `crictl images`: IMAGE, TAG, IMAGE ID, SIZE.
    Ls {
        /// Only print image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images by reference or image id (refused while a container uses one).
    Rm {
        /// References (`busybox:1.36`) or image ids (`sha256:…` or a unique prefix).
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct StoreArgs {
    /// How hard a commit waits for the disk: full (no acknowledged write is lost) or normal.
    #[arg(long, env = "RK3S_DATASTORE_SYNC", default_value = "full")]
    datastore_sync: store::SyncMode,
    /// How often the datastore compacts old revisions (e.g. 30s, 5m, 1h; 0 turns it off).
    #[arg(long, env = "RK3S_DATASTORE_COMPACT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    datastore_compact_interval: Duration,
    /// How many revisions compaction keeps.
    #[arg(long, env = "RK3S_DATASTORE_COMPACT_RETENTION", default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..))]
    datastore_compact_retention: i64,
}

impl StoreArgs {
    fn config(&self, endpoint: store::Endpoint) -> store::Config {
        store::Config {
            endpoint,
            sync: self.datastore_sync,
            compaction_interval: self.datastore_compact_interval,
            compaction_retention: self.datastore_compact_retention,
        }
    }
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Datastore: sqlite:///PATH (default: <data-dir>/server/db/state.db).
    #[arg(long, env = "RK3S_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<store::Endpoint>,
    /// Also serve the etcd v3 API here (e.g. http://127.0.0.1:2379); the unix socket
    /// <data-dir>/server/etcd.sock is always served.
    #[arg(long, env = "RK3S_ETCD_LISTEN")]
    etcd_listen: Option<grpc::Listen>,
    #[command(flatten)]
    store: StoreArgs,
    /// The port of the Kubernetes API (HTTPS).
    #[arg(long, env = "RK3S_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    https_listen_port: u16,
    /// The address the Kubernetes API listens on.
    #[arg(long, env = "RK3S_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The node's IP, advertised as the `kubernetes` Service endpoint (default: the address
    /// of the default route's interface).
    #[arg(long, env = "RK3S_NODE_IP")]
    node_ip: Option<std::net::IpAddr>,
    /// An extra name or IP for the API's serving certificate (repeatable).
    #[arg(long = "tls-san", env = "RK3S_TLS_SAN", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Where to write the admin kubeconfig.
    #[arg(
        long,
        env = "RK3S_KUBECONFIG_OUTPUT",
        default_value = "/etc/rk3s/rk3s.yaml"
    )]
    write_kubeconfig: PathBuf,
    /// The kubeconfig's file mode (octal).
    #[arg(long, env = "RK3S_KUBECONFIG_MODE", default_value = "0600", value_parser = parse_mode)]
    write_kubeconfig_mode: u32,
    /// The IPv4 range of Service ClusterIPs.
    #[arg(long, env = "RK3S_SERVICE_CIDR", default_value = "10.43.0.0/16", value_parser = parse_service_cidr)]
    service_cidr: apiserver::admission::ServiceCidr,
    /// The cluster's DNS domain.
    #[arg(long, env = "RK3S_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Do not run the controller-manager (its controllers and its leader election).
    #[arg(long, env = "RK3S_DISABLE_CONTROLLER_MANAGER")]
    disable_controller_manager: bool,
    /// The IPv4 range pod addresses come from; each node gets a /24 of it.
    #[arg(long, env = "RK3S_CLUSTER_CIDR", default_value = "10.42.0.0/16", value_parser = parse_cluster_cidr)]
    cluster_cidr: controllers::ipam::Cidr,
    /// Do not run the scheduler (its loop and its leader election).
    #[arg(long, env = "RK3S_DISABLE_SCHEDULER")]
    disable_scheduler: bool,
    /// Do not run the kubelet: this server runs no pods and registers no Node.
    #[arg(long, env = "RK3S_DISABLE_AGENT")]
    disable_agent: bool,
    /// The Node's name (default: the hostname).
    #[arg(long, env = "RK3S_NODE_NAME")]
    node_name: Option<String>,
    /// A label of this Node, KEY=VALUE (repeatable).
    #[arg(long = "node-label", env = "RK3S_NODE_LABEL", value_delimiter = ',', value_parser = parse_label)]
    node_label: Vec<(String, String)>,
    /// A taint of this Node, KEY[=VALUE]:EFFECT (repeatable).
    #[arg(long = "node-taint", env = "RK3S_NODE_TAINT", value_delimiter = ',', value_parser = parse_taint)]
    node_taint: Vec<k8s_openapi::api::core::v1::Taint>,
    /// The cluster DNS address pods resolve through.
    #[arg(long, env = "RK3S_CLUSTER_DNS", default_value = "10.43.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// The resolv.conf whose nameservers the cluster DNS forwards other names to (k3s's
    /// `--resolv-conf`; a file listing only systemd-resolved's stub is replaced by resolved's
    /// own list).
    #[arg(long, env = "RK3S_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The registries file (k3s format: mirrors, rewrites, auth, TLS).
    #[arg(
        long,
        env = "RK3S_PRIVATE_REGISTRY",
        default_value = "/etc/rk3s/registries.yaml"
    )]
    private_registry: PathBuf,
    /// A kubelet setting, KEY=VALUE (repeatable), as k3s's `--kubelet-arg`: eviction-hard,
    /// eviction-soft, eviction-soft-grace-period, eviction-minimum-reclaim,
    /// eviction-max-pod-grace-period, eviction-pressure-transition-period, kube-reserved,
    /// system-reserved, max-pods.
    #[arg(long = "kubelet-arg", env = "RK3S_KUBELET_ARG", value_parser = parse_kubelet_arg)]
    kubelet_arg: Vec<(String, String)>,
    /// Built-in components not to run (comma-separated or repeated), as k3s's `--disable`.
    #[arg(long, env = "RK3S_DISABLE", value_delimiter = ',', value_enum)]
    disable: Vec<Component>,
}

/// The built-in components `--disable` can turn off (k3s's packaged addons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Component {
    /// The default StorageClass `local-path` and its provisioner.
    LocalStorage,
    /// metrics.k8s.io (`kubectl top`).
    Metrics,
    /// The cluster DNS server, its kube-dns Service and its interface.
    Dns,
    /// NetworkPolicy enforcement (k3s's embedded network-policy controller).
    NetworkPolicy,
    /// The built-in LoadBalancer (k3s's ServiceLB / klipper-lb).
    Servicelb,
}

impl Component {
    fn disabled(list: &[Component]) -> server::Disabled {
        server::Disabled {
            local_storage: list.contains(&Component::LocalStorage),
            metrics: list.contains(&Component::Metrics),
            dns: list.contains(&Component::Dns),
            network_policy: list.contains(&Component::NetworkPolicy),
            servicelb: list.contains(&Component::Servicelb),
        }
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_kubelet_arg(s: &str) -> Result<(String, String), String> {
    let s = s.trim().trim_start_matches("--");
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    kubelet::eviction::Config::check_arg(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_taint(s: &str) -> Result<k8s_openapi::api::core::v1::Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not KEY[=VALUE]:EFFECT"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{s:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok(k8s_openapi::api::core::v1::Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

fn parse_cluster_cidr(s: &str) -> Result<controllers::ipam::Cidr, String> {
    let cidr: controllers::ipam::Cidr = s.parse()?;
    if cidr.len > 24 {
        return Err(format!("{s:?} is smaller than one node's /24"));
    }
    Ok(cidr)
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not a file mode (octal, e.g. 0600 or 644)"))
}

fn parse_service_cidr(s: &str) -> Result<apiserver::admission::ServiceCidr, String> {
    apiserver::admission::ServiceCidr::parse(s)
}

#[derive(Args, Debug)]
struct DatastoreArgs {
    /// Datastore: sqlite:///PATH (default: <data-dir>/server/db/state.db).
    #[arg(long, env = "RK3S_ENDPOINT")]
    endpoint: Option<store::Endpoint>,
    /// Where to serve the etcd v3 API: http://IP:PORT or unix:///PATH.
    #[arg(long, env = "RK3S_LISTEN", default_value = "http://127.0.0.1:2379")]
    listen: grpc::Listen,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Take an online, consistent snapshot into <data-dir>/server/db/snapshots/.
    Save {
        /// Snapshot name prefix (the file is NAME-<unix time>).
        #[arg(long, env = "RK3S_ETCD_SNAPSHOT_NAME", default_value = "on-demand")]
        name: String,
    },
    /// List snapshots with size and revision.
    Ls,
    /// Replace the database with a snapshot (the server must be stopped).
    Restore {
        /// The snapshot file (a path, or a name in the snapshots directory).
        file: PathBuf,
    },
}

/// Parses `30s`, `5m`, `1h30m`, `250ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h30m or 0");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The entry point of the binary.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match parse(argv) {
        Ok(cli) => cli,
        Err(Failure::Clap(e)) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
        Err(Failure::Config(msg)) => {
            eprintln!("rk3s: error: {msg}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.verbose, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rk3s: error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, skipping a cause that its parent already printed.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        // Skip a cause that only repeats the previous message, also when it adds a prefix
        // ("database x: disk I/O error" caused by "Error code 10: disk I/O error").
        let repeats = parts.last().is_some_and(|p| {
            let tail = p.rsplit(": ").next().unwrap_or(p);
            p.ends_with(&msg) || msg.ends_with(tail)
        });
        if repeats {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

enum Failure {
    Clap(clap::Error),
    Config(String),
}

/// Parses the command line, then fills every value that neither a flag nor an environment
/// variable set from the config file (precedence: flags > env > file > defaults).
fn parse(argv: Vec<OsString>) -> Result<Cli, Failure> {
    let mut cmd = Cli::command();
    cmd.build();
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(Failure::Clap)?;
    let config_path = matches
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let explicit = matches!(
        matches.value_source("config"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    let extra =
        config::args_from_file(&cmd, &matches, &config_path, explicit).map_err(Failure::Config)?;
    let matches = if extra.is_empty() {
        matches
    } else {
        let mut all = argv.clone();
        all.extend(extra.iter().map(|(_, a)| a.clone()));
        match cmd.clone().try_get_matches_from(&all) {
            Ok(m) => m,
            Err(e) => return Err(blame(&cmd, &argv, &extra, &config_path, e)),
        }
    };
    Cli::from_arg_matches(&matches).map_err(Failure::Clap)
}

/// The command line parsed alone but not with the file's values: find the key whose value the
/// flag's own parser rejects and report it with the file, in one line.
fn blame(
    cmd: &clap::Command,
    argv: &[OsString],
    extra: &[(String, OsString)],
    file: &std::path::Path,
    combined: clap::Error,
) -> Failure {
    for (key, arg) in extra {
        let mut one = argv.to_vec();
        one.push(arg.clone());
        if let Err(e) = cmd.clone().try_get_matches_from(&one) {
            let detail = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| first_line(&e));
            let value = arg.to_string_lossy();
            let value = value.split_once('=').map_or("", |(_, v)| v);
            return Failure::Config(format!(
                "{}: key {key:?}: invalid value {value:?}: {detail}",
                file.display()
            ));
        }
    }
    Failure::Config(format!("{}: {}", file.display(), first_line(&combined)))
}

fn first_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Only fails if a subscriber is already installed (tests); logging then goes there.
    let _ = result;
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::new(&cli.data_dir);
    let default_endpoint = || store::Endpoint::Sqlite(data_dir.state_db());
    match cli.command {
        Command::Server(args) => {
            let node_ip = args.node_ip.unwrap_or_else(server::default_node_ip);
            let mut tls_sans = args.tls_san.clone();
            tls_sans.push(node_ip.to_string());
            tls_sans.push(server::hostname());
            let node_name = args.node_name.clone().unwrap_or_else(server::hostname);
            let eviction = kubelet::eviction::Config::from_kubelet_args(&args.kubelet_arg)
                .map_err(|e| anyhow::anyhow!("--kubelet-arg: {e}"))?;
            let kubelet = (!args.disable_agent).then(|| kubelet::Config {
                node_name: node_name.clone(),
                node_ip,
                labels: args.node_label.iter().cloned().collect(),
                taints: args.node_taint.clone(),
                control_plane: true,
                data_dir: data_dir.clone(),
                log_dir: PathBuf::from("/var/log/pods"),
                run_dir: PathBuf::from(RUN_DIR),
                cluster_dns: args.cluster_dns,
                cluster_domain: args.cluster_domain.clone(),
                private_registry: args.private_registry.clone(),
                version: apiserver::KUBERNETES_VERSION.to_string(),
                eviction,
            });
            let disable = Component::disabled(&args.disable);
            // The DNS server runs in every node process (next to the kubelet), like k3s's
            // CoreDNS pod runs on a node.
            let dns = (!args.disable_agent && !disable.dns).then(|| dns::Config {
                cluster_dns: args.cluster_dns,
                cluster_domain: args.cluster_domain.clone(),
                resolv_conf: args.resolv_conf.clone(),
                port: 53,
                interface: Some(dns::INTERFACE.to_string()),
                resync: CONTROLLER_RESYNC,
            });
            let netpol = (!args.disable_agent && !disable.network_policy).then(|| netpol::Config {
                node_name: node_name.clone(),
                // The built-in DNS server's address stands for the kube-dns pods in egress
                // policies; without it the address is an ordinary Service's.
                cluster_dns: (!disable.dns).then_some(args.cluster_dns),
                resync: CONTROLLER_RESYNC,
            });
            let cluster_net = args.cluster_cidr.net().context("the cluster CIDR")?;
            let proxy = (!args.disable_agent).then(|| proxy::Config {
                node_name: node_name.clone(),
                node_ips: match node_ip {
                    std::net::IpAddr::V4(ip) if !ip.is_loopback() => vec![ip],
                    _ => Vec::new(),
                },
                cluster_cidr: cluster_net,
                // The built-in DNS server answers at the cluster DNS address itself; without
                // it the address is an ordinary Service's (a user's CoreDNS).
                skip_cluster_ip: (!disable.dns).then_some(args.cluster_dns),
                resync: CONTROLLER_RESYNC,
            });
            let config = server::Config {
                disable,
                dns,
                netpol,
                proxy,
                kubelet,
                cluster_cidr: args.cluster_cidr,
                store: args
                    .store
                    .config(args.datastore_endpoint.unwrap_or_else(default_endpoint)),
                etcd_listen: args.etcd_listen,
                // A stable identity (the node name) lets a restarted server take its own
                // Leases back at once.
                identity: server::hostname(),
                controllers: (!args.disable_controller_manager).then_some(controllers::Config {
                    resync: CONTROLLER_RESYNC,
                    cluster_cidr: args.cluster_cidr,
                    // Filled in by the server once the PKI is loaded.
                    root_ca: String::new(),
                    storage_dir: data_dir.storage(),
                    local_storage: !disable.local_storage,
                    servicelb: !disable.servicelb,
                }),
                scheduler: (!args.disable_scheduler).then(|| scheduler::Config {
                    identity: server::hostname(),
                }),
                data_dir: data_dir.clone(),
                node_ip,
                apiserver: apiserver::Config {
                    bind_address: args.bind_address,
                    https_port: args.https_listen_port,
                    tls_dir: data_dir.tls_dir(),
                    tls_sans,
                    cluster_domain: args.cluster_domain,
                    service_cidr: args.service_cidr,
                    write_kubeconfig: Some(args.write_kubeconfig),
                    write_kubeconfig_mode: args.write_kubeconfig_mode,
                },
            };
            runtime()?.block_on(server::run(config))?;
        }
        Command::Datastore(args) => {
            let config = server::DatastoreConfig {
                store: args
                    .store
                    .config(args.endpoint.unwrap_or_else(default_endpoint)),
                listen: args.listen,
            };
            runtime()?.block_on(server::run_datastore(config))?;
        }
        Command::EtcdSnapshot { command } => snapshot(&data_dir, command)?,
        Command::Images { command } => return images(&data_dir, command),
        Command::Killall(args) => {
            if !nix::unistd::geteuid().is_root() {
                anyhow::bail!("killall needs root (it stops containers and changes the network)");
            }
            let plan = killall::Plan {
                data_dir: data_dir.clone(),
                run_dir: PathBuf::from(RUN_DIR),
                cluster_dns: args.cluster_dns,
                grace: std::time::Duration::from_secs(10),
            };
            let outcome = runtime()?.block_on(killall::run(&plan));
            for line in &outcome.done {
                println!("{line}");
            }
            for line in &outcome.failed {
                eprintln!("rk3s killall: {line}");
            }
            if !outcome.failed.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::CheckConfig => {
            let machine = check_config::Machine::read();
            let (lines, ok) = check_config::report(&machine);
            for line in lines {
                println!("{line}");
            }
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot(data_dir: &DataDir, command: SnapshotCommand) -> anyhow::Result<()> {
    let dir = data_dir.snapshots_dir();
    match command {
        SnapshotCommand::Save { name } => {
            let s = store::snapshot::save(&data_dir.state_db(), &dir, Some(&name))?;
            println!(
                "snapshot {} saved: {} bytes at revision {}",
                s.path.display(),
                s.size,
                s.revision
            );
        }
        SnapshotCommand::Ls => {
            println!("{:<40} {:>12} {:>10}  CREATED", "NAME", "SIZE", "REVISION");
            for s in store::snapshot::list(&dir)? {
                let created = s
                    .created
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                println!(
                    "{:<40} {:>12} {:>10}  {}",
                    s.name,
                    s.size,
                    s.revision,
                    rfc3339(created)
                );
            }
        }
        SnapshotCommand::Restore { file } => {
            let path = if file.exists() || file.components().count() > 1 {
                file
            } else {
                dir.join(&file)
            };
            store::snapshot::restore(&path, &data_dir.state_db())
                .with_context(|| format!("restoring {}", path.display()))?;
            println!(
                "restored {} into {}",
                path.display(),
                data_dir.state_db().display()
            );
        }
    }
    Ok(())
}

/// `rk3s images …`: works on the image store directly; the store's file lock and the
/// kubelet's reload of changed metadata make it safe while `rk3s server` runs. Each failing
/// argument is reported on one line and the others still go on; the exit code is 1 if any
/// failed.
fn images(data_dir: &DataDir, command: ImagesCommand) -> anyhow::Result<ExitCode> {
    let service = kubelet::images::ImageService::open(
        &data_dir.agent(),
        kubelet::images::Registries::empty(),
    )
    .context("opening the image store")?;
    let mut failed = false;
    match command {
        ImagesCommand::Import { files } => {
            for file in files {
                match service.import(&file) {
                    Ok(images) => {
                        for i in images {
                            println!("imported {} ({})", i.reference, i.id);
                        }
                    }
                    Err(e) => {
                        eprintln!("rk3s: error: {e}");
                        failed = true;
                    }
                }
            }
        }
        ImagesCommand::Ls { quiet } => {
            let images = service.list();
            if quiet {
                let mut seen = std::collections::BTreeSet::new();
                for i in images {
                    if seen.insert(i.id.clone()) {
                        println!("{}", i.id);
                    }
                }
            } else {
                print!("{}", images_table(&images));
            }
        }
        ImagesCommand::Rm { images } => {
            for name in images {
                match service.remove(&name) {
                    Ok(removed) => {
                        for r in removed {
                            println!("Deleted: {r}");
                        }
                    }
                    Err(e) => {
                        eprintln!("rk3s: error: {e}");
                        failed = true;
                    }
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `crictl images` table: repository, tag, the first 13 characters of the image id and
/// the size in decimal units.
fn images_table(images: &[kubelet::images::Image]) -> String {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            let (repo, tag) = split_reference(&i.reference);
            let hex = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
            [
                repo.to_string(),
                tag.to_string(),
                hex.chars().take(13).collect(),
                human_size(i.size),
            ]
        })
        .collect();
    let header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}   {:<w1$}   {:<w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); a digest reference has the tag `<none>`.
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((repo, _)) = reference.split_once('@') {
        return (repo, "<none>");
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "<none>"),
    }
}

/// Sizes as Docker's `units.HumanSize` prints them (4 significant digits, decimal units).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // `%.4g`: four significant digits without trailing zeros.
    let digits = if size >= 1000.0 {
        0
    } else if size >= 100.0 {
        1
    } else if size >= 10.0 {
        2
    } else {
        3
    };
    let mut text = format!("{size:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp (civil-from-days, no time zone data needed).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn image_sizes_and_names_print_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_270_000), "4.27MB");
        assert_eq!(human_size(123_456_789_000), "123.5GB");
        assert_eq!(
            split_reference("docker.io/library/busybox:1.36"),
            ("docker.io/library/busybox", "1.36")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x", "<none>")
        );
        assert_eq!(
            split_reference("docker.io/x@sha256:ab"),
            ("docker.io/x", "<none>")
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
