//! Tests for the pod network: pure parts and the fake always; the real bridge, namespaces and nft
//! table only as root (skipped with a printed reason otherwise, unless RK3S_TESTS_STRICT=1).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

#[test]
fn veth_names_are_stable_short_and_distinct() {
    let a = veth_name("0d5c3a9e-7f1b-4c1e-9a57-3b2f1e0c9d11");
    assert_eq!(a, veth_name("0d5c3a9e-7f1b-4c1e-9a57-3b2f1e0c9d11"));
    assert_eq!(a.len(), 12);
    assert!(a.starts_with("veth"));
    assert_ne!(a, veth_name("0d5c3a9e-7f1b-4c1e-9a57-3b2f1e0c9d12"));
    // FNV-1a of the empty string: pins the hash so upgrades keep finding old veths.
    assert_eq!(veth_name(""), "veth811c9dc5");
}

#[test]
fn uids_that_could_escape_the_netns_dir_are_refused() {
    for bad in ["", ".", "..", "a/b", "../etc", "a b"] {
        assert!(
            matches!(check_uid(bad), Err(Error::InvalidUid(_))),
            "{bad:?}"
        );
    }
    check_uid("0d5c3a9e-7f1b-4c1e-9a57-3b2f1e0c9d11").unwrap();
}

#[tokio::test]
async fn fake_records_calls_and_keeps_addresses_per_uid() {
    let fake = Fake::new();
    assert!(matches!(
        fake.setup_pod("a").await,
        Err(Error::NotConfigured)
    ));
    let cidr: Ipv4Net = "10.42.1.0/24".parse().unwrap();
    fake.configure_node(cidr).await.unwrap();
    let a = fake.setup_pod("a").await.unwrap();
    let b = fake.setup_pod("b").await.unwrap();
    assert_eq!(a.ip, "10.42.1.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(a.gateway, "10.42.1.1".parse::<Ipv4Addr>().unwrap());
    assert_eq!(a.prefix, 24);
    assert_eq!(a.interface, "eth0");
    assert_eq!(b.ip, "10.42.1.3".parse::<Ipv4Addr>().unwrap());
    assert_eq!(fake.setup_pod("a").await.unwrap(), a);
    assert_eq!(fake.pods().unwrap(), vec!["a".to_string(), "b".to_string()]);
    fake.teardown_pod("a").await.unwrap();
    fake.teardown_pod("unknown").await.unwrap();
    assert_eq!(fake.pods().unwrap(), vec!["b".to_string()]);
    assert_eq!(
        fake.calls(),
        vec![
            Call::SetupPod("a".into()),
            Call::ConfigureNode(cidr),
            Call::SetupPod("a".into()),
            Call::SetupPod("b".into()),
            Call::SetupPod("a".into()),
            Call::TeardownPod("a".into()),
            Call::TeardownPod("unknown".into()),
        ]
    );
}

// ---- root tests -------------------------------------------------------------------------------

/// True if the test may touch the host network; prints why not otherwise.
fn privileged(test: &str) -> bool {
    let strict = std::env::var("RK3S_TESTS_STRICT").is_ok_and(|v| v == "1");
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not root")
    } else if Command::new("nft").arg("--version").output().is_err() {
        Some("nft binary not found")
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) if strict => panic!("{test}: {reason} (RK3S_TESTS_STRICT=1)"),
        Some(reason) => {
            eprintln!("skipping {test}: {reason}");
            false
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn ping_from(netns: &Path, ip: Ipv4Addr) -> bool {
    run(
        "nsenter",
        &[
            &format!("--net={}", netns.display()),
            "/bin/busybox",
            "ping",
            "-c1",
            "-W1",
            &ip.to_string(),
        ],
    )
    .status
    .success()
}

fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).status.success()
}

/// A test node: its own bridge name, nft table, directories and pod CIDR. Drop removes every
/// trace (veths of its pods, netns mounts, the bridge, the table), also when the test failed.
struct TestNode {
    config: Config,
    pod_cidr: Ipv4Net,
    uids: Vec<String>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    fn new() -> TestNode {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 0x10000;
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            bridge: format!("rk3st{id:04x}{n}"),
            netns_dir: dir.path().join("netns"),
            ipam_dir: dir.path().join("ipam"),
            nat_table: format!("rk3s-test-{id}-{n}"),
            cluster_cidr: format!("10.{}.0.0/16", 128 + id % 64).parse().unwrap(),
            mtu: 1500,
        };
        // A /16 per test process and a /24 per test node (the odd /24 above it is kept free for
        // the CIDR-change test), so concurrent tests never share a subnet.
        let pod_cidr = Ipv4Net::new(
            Ipv4Addr::from(u32::from(config.cluster_cidr.network()) + ((n * 2) << 8)),
            24,
        )
        .unwrap();
        TestNode {
            config,
            pod_cidr,
            uids: (0..8).map(|i| format!("test-{id:04x}-{n}-{i}")).collect(),
            _dir: dir,
        }
    }

    fn bridge(&self) -> Bridge {
        Bridge::new(self.config.clone())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for uid in &self.uids {
            let _ = run("ip", &["link", "del", &veth_name(uid)]);
            let _ = netns::remove(&self.config.netns_dir.join(uid));
        }
        let _ = nix::mount::umount2(&self.config.netns_dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = run("ip", &["link", "del", &self.config.bridge]);
        let _ = nat::apply(
            &self.config.nat_table,
            &nat::render_delete(&self.config.nat_table),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_and_the_gateway_and_teardown_removes_everything() {
    if !privileged("two_pods_reach_each_other") {
        return;
    }
    let node = TestNode::new();
    let net = node.bridge();
    net.configure_node(node.pod_cidr).await.unwrap();
    net.configure_node(node.pod_cidr).await.unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    let (ua, ub) = (&node.uids[0], &node.uids[1]);
    let a = net.setup_pod(ua).await.unwrap();
    let b = net.setup_pod(ub).await.unwrap();
    assert_ne!(a.ip, b.ip);
    assert!(node.pod_cidr.contains(&a.ip) && node.pod_cidr.contains(&b.ip));
    assert_eq!(
        a.gateway,
        ipam::Range::new(node.pod_cidr).unwrap().gateway()
    );
    assert_eq!(a.netns, node.config.netns_dir.join(ua));
    assert!(netns::is_netns(&a.netns));
    assert!(link_exists(&veth_name(ua)));
    let details = run("ip", &["-d", "link", "show", "dev", &veth_name(ua)]);
    let details = String::from_utf8_lossy(&details.stdout);
    assert!(
        details.contains(&format!("master {}", node.config.bridge)),
        "{details}"
    );
    assert!(details.contains("hairpin on"), "{details}");

    assert!(ping_from(&a.netns, b.ip), "pod a cannot reach pod b");
    assert!(ping_from(&b.netns, a.ip), "pod b cannot reach pod a");
    assert!(
        ping_from(&a.netns, a.gateway),
        "pod a cannot reach the gateway"
    );

    // Same uid again (kubelet retry, or a restart): same address, still working.
    assert_eq!(net.setup_pod(ua).await.unwrap(), a);
    assert!(ping_from(&a.netns, b.ip));

    let mut pods = net.pods().unwrap();
    pods.sort();
    assert_eq!(pods, vec![ua.clone(), ub.clone()]);

    net.teardown_pod(ua).await.unwrap();
    net.teardown_pod(ub).await.unwrap();
    net.teardown_pod(ub).await.unwrap();
    net.teardown_pod(&node.uids[2]).await.unwrap();
    assert!(!link_exists(&veth_name(ua)));
    assert!(!link_exists(&veth_name(ub)));
    assert!(!a.netns.exists() && !b.netns.exists());
    assert!(net.pods().unwrap().is_empty());
    assert!(
        ipam::Store::new(&node.config.ipam_dir)
            .allocations()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_gives_a_pod_its_address_back_and_repairs_a_half_made_pod() {
    if !privileged("a_restarted_daemon_gives_a_pod_its_address_back") {
        return;
    }
    let node = TestNode::new();
    let (ua, ub) = (&node.uids[0], &node.uids[1]);
    let (a, b) = {
        let net = node.bridge();
        net.configure_node(node.pod_cidr).await.unwrap();
        (
            net.setup_pod(ua).await.unwrap(),
            net.setup_pod(ub).await.unwrap(),
        )
    };
    // Simulate a crash in the middle of pod b's setup: its veth pair is gone.
    assert!(run("ip", &["link", "del", &veth_name(ub)]).status.success());

    let net = node.bridge();
    assert!(matches!(net.setup_pod(ua).await, Err(Error::NotConfigured)));
    net.configure_node(node.pod_cidr).await.unwrap();
    assert_eq!(net.setup_pod(ua).await.unwrap(), a);
    assert_eq!(net.setup_pod(ub).await.unwrap(), b);
    assert!(ping_from(&a.netns, b.ip), "repaired pod b is not reachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rules_live_in_our_table_and_follow_a_cidr_change() {
    if !privileged("node_rules_live_in_our_table") {
        return;
    }
    let node = TestNode::new();
    let net = node.bridge();
    net.configure_node(node.pod_cidr).await.unwrap();
    let a = net.setup_pod(&node.uids[0]).await.unwrap();

    let table = run("nft", &["list", "table", "ip", &node.config.nat_table]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    assert!(
        text.contains(&format!(
            "ip saddr {} ip daddr != {} masquerade",
            node.pod_cidr, node.config.cluster_cidr
        )),
        "{text}"
    );
    assert!(text.contains(&format!("iifname \"{}\" accept", node.config.bridge)));

    // The node gets a new pod CIDR: the bridge address moves, old allocations are dropped, and
    // the pod gets an address in the new CIDR when set up again.
    let new_cidr = Ipv4Net::new(
        Ipv4Addr::from(u32::from(node.pod_cidr.network()) + (1 << 8)),
        24,
    )
    .unwrap();
    net.configure_node(new_cidr).await.unwrap();
    let addr = run(
        "ip",
        &["-4", "-o", "addr", "show", "dev", &node.config.bridge],
    );
    let addr = String::from_utf8_lossy(&addr.stdout);
    let gateway = ipam::Range::new(new_cidr).unwrap().gateway();
    assert!(addr.contains(&format!("{gateway}/24")), "{addr}");
    assert!(!addr.contains(&format!("{}/24", a.gateway)), "{addr}");
    assert!(net.pods().unwrap().contains(&node.uids[0])); // its netns is still there
    let moved = net.setup_pod(&node.uids[0]).await.unwrap();
    assert!(new_cidr.contains(&moved.ip));
    assert!(ping_from(&moved.netns, gateway));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_traffic_leaving_the_cluster_cidr_is_masqueraded() {
    if !privileged("pod_traffic_leaving_the_cluster_cidr_is_masqueraded") {
        return;
    }
    let node = TestNode::new();
    let net = node.bridge();
    net.configure_node(node.pod_cidr).await.unwrap();
    let pod = net.setup_pod(&node.uids[0]).await.unwrap();

    // An "outside" host in its own namespace, linked to the node by a veth on a /30 from the
    // benchmarking range. It has no route back to the pod CIDR, so a reply can only reach the
    // pod if the node rewrote the pod's source address to its own (198.18.x.1).
    let outside = OutsideHost::new(&node);
    let ns = std::fs::File::open(&outside.netns).unwrap();
    netlink::Host::connect()
        .unwrap()
        .create_veth(&outside.veth, "ext0", 1500, &ns)
        .await
        .unwrap();
    let subnet = node.pod_cidr.network().octets()[2];
    let node_ip = format!("198.18.{subnet}.1");
    let outside_ip = format!("198.18.{subnet}.2");
    for args in [
        vec![
            "addr",
            "add",
            &format!("{node_ip}/30"),
            "dev",
            &outside.veth,
        ],
        vec!["link", "set", &outside.veth, "up"],
    ] {
        assert!(run("ip", &args).status.success(), "ip {args:?}");
    }
    let in_outside = format!("--net={}", outside.netns.display());
    for args in [
        vec!["addr", "add", &format!("{outside_ip}/30"), "dev", "ext0"],
        vec!["link", "set", "ext0", "up"],
    ] {
        let mut full = vec![in_outside.as_str(), "ip"];
        full.extend(args.iter().copied());
        assert!(run("nsenter", &full).status.success(), "ip {args:?}");
    }
    // The outside veth was brought up by `ip` just now, without waiting for the kernel's
    // linkwatch (see netlink::wait_oper_up), so allow a few attempts.
    let outside_ip: Ipv4Addr = outside_ip.parse().unwrap();
    assert!(
        (0..3).any(|_| ping_from(&pod.netns, outside_ip)),
        "pod cannot reach a host outside the cluster CIDR"
    );
}

/// A namespace + veth standing in for a machine outside the cluster; removed on drop.
struct OutsideHost {
    netns: PathBuf,
    veth: String,
}

impl OutsideHost {
    fn new(node: &TestNode) -> OutsideHost {
        let netns = node.config.netns_dir.join("outside");
        std::fs::create_dir_all(&node.config.netns_dir).unwrap();
        netns::create(&netns).unwrap();
        OutsideHost {
            netns,
            veth: format!("{}x", node.config.bridge),
        }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.veth]);
        let _ = netns::remove(&self.netns);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_setups_get_distinct_addresses_and_working_links() {
    if !privileged("concurrent_setups_get_distinct_addresses") {
        return;
    }
    let node = TestNode::new();
    let net = node.bridge();
    net.configure_node(node.pod_cidr).await.unwrap();
    let pods = futures_util::future::join_all(node.uids.iter().map(|uid| net.setup_pod(uid)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let ips: BTreeSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), node.uids.len());
    let last = pods.last().unwrap();
    assert!(ping_from(&pods[0].netns, last.ip));
    futures_util::future::join_all(node.uids.iter().map(|uid| net.teardown_pod(uid)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(net.pods().unwrap().is_empty());
}
