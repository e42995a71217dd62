//! The cluster DNS, end to end: `rk3s server` with its kubelet serves the cluster zone at
//! 10.43.0.10 (the `rk3s-dns` interface), pods resolve Services through their search path, the
//! host queries every record type over UDP and TCP, and names outside the zone are forwarded to
//! a test upstream that runs in a network namespace this test creates (reached through the
//! server's `--resolv-conf`). Root only; nextest group `node`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rk3s::dns::wire::{self, Data, Response};

use crate::kubectl::Cluster;
use crate::node::{NODE, is_root, wait_node_ready, wait_pod};
use crate::support::registry::Registry;

const CLUSTER_DNS: &str = "10.43.0.10";
/// The test upstream's address inside its namespace, and the host end of the veth.
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(10, 254, 53, 2);
const HOST_IP: &str = "10.254.53.1/30";
/// The one name the test upstream knows, and its address.
const UPSTREAM_NAME: &str = "upstream.rk3s-test";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DNS server in its own network namespace that answers one name (A 192.0.2.53, TTL 60)
/// and NXDOMAIN for everything else; counts the queries it got.
struct Upstream {
    netns: String,
    veth: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    queries: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let id = std::process::id();
        let netns = format!("rk3s-dnst-{id}");
        let veth = format!("rdt{id}h");
        let peer = format!("rdt{id}n");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &netns,
        ]);
        ip(&["addr", "add", HOST_IP, "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{UPSTREAM_IP}/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, queries, path) =
                (stop.clone(), queries.clone(), format!("/run/netns/{netns}"));
            std::thread::spawn(move || {
                // The socket belongs to the namespace of the thread that creates it.
                let ns = std::fs::File::open(&path).unwrap();
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let socket = UdpSocket::bind((UPSTREAM_IP, 53)).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(q) = wire::parse_query(&buf[..n]) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let known = q.name == UPSTREAM_NAME;
                    let s = wire::Sections {
                        answer: if known && q.qtype == wire::TYPE_A {
                            vec![wire::Record {
                                name: q.name.clone(),
                                ttl: 60,
                                data: Data::A(UPSTREAM_ANSWER),
                            }]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    };
                    let rcode = if known {
                        wire::RCODE_NOERROR
                    } else {
                        wire::RCODE_NXDOMAIN
                    };
                    let out = wire::encode_response(&q, true, false, rcode, &s, 512);
                    let _ = socket.send_to(&out, from);
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the test upstream started");
        Upstream {
            netns,
            veth,
            stop,
            thread: Some(thread),
            queries,
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

/// Whether the cluster DNS address is local (on `rk3s-dns`, or on `lo` when the kernel has no
/// dummy links): only then do queries to it stay on this machine.
fn address_is_local() -> bool {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {CLUSTER_DNS}/32"))
}

fn wait_address_local(c: &Cluster) {
    c.eventually("the cluster dns address on this host", address_is_local);
}

/// Removes the cluster DNS address from the host when dropped (the killed server leaves it).
struct RemoveAddress;

impl Drop for RemoveAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "rk3s-dns"])
            .output();
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{CLUSTER_DNS}/32"), "dev", "lo"])
            .output();
    }
}

fn server() -> SocketAddr {
    SocketAddr::new(CLUSTER_DNS.parse().unwrap(), 53)
}

/// One query over UDP, retried on timeout.
fn query(name: &str, qtype: u16) -> Response {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for attempt in 0..3u16 {
        let id = 0x4000 + attempt;
        socket
            .send_to(&wire::encode_query(id, name, qtype), server())
            .unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let r = wire::parse_response(&buf[..n]).unwrap();
            assert_eq!(r.id, id);
            return r;
        }
    }
    panic!("no answer from {CLUSTER_DNS} for {name}");
}

/// One query over TCP.
fn query_tcp(name: &str, qtype: u16) -> Response {
    let mut s = TcpStream::connect_timeout(&server(), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = wire::encode_query(9, name, qtype);
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).unwrap();
    wire::parse_response(&buf).unwrap()
}

fn data(r: &Response) -> Vec<Data> {
    r.answer.iter().map(|r| r.data.clone()).collect()
}

fn a(ip: &str) -> Data {
    Data::A(ip.parse().unwrap())
}

/// Polls until the answer for `name` satisfies `check` (the zone follows the API within a
/// moment of an EndpointSlice change).
fn eventually_answers(
    c: &Cluster,
    name: &str,
    qtype: u16,
    check: impl Fn(&Response) -> bool,
) -> Response {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = query(name, qtype);
        if check(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name} (type {qtype}) never answered as expected; last: {r:?}\n--- server log ---\n{}",
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn reverse(ip: &str) -> String {
    let o: Ipv4Addr = ip.parse().unwrap();
    let o = o.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

fn manifest(image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext}}
spec: {{type: ExternalName, externalName: {UPSTREAM_NAME}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web-0, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    command: [httpd, -f, -p, "8080"]
    ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: db-0, labels: {{app: db}}}}
spec:
  terminationGracePeriodSeconds: 1
  hostname: db-0
  subdomain: db
  containers:
  - name: main
    image: {image}
    command: [sleep, "3600"]
"#
    )
}

fn running(v: &serde_json::Value) -> bool {
    crate::node::phase(v) == "Running" && v["status"]["podIP"].is_string()
}

mod records_and_forwarding {
    #[test]
    fn kubectl_1_33() {
        super::records_and_forwarding();
    }
}

fn records_and_forwarding() {
    if !is_root() {
        if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
            panic!("the dns tests need root and RK3S_TESTS_STRICT=1");
        }
        println!("SKIP: the dns tests need root");
        return;
    }
    let _cleanup = RemoveAddress;
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {UPSTREAM_IP}\n")).unwrap();
    let Some(registry) = Registry::start(dir.path()) else {
        return;
    };
    let image = registry.push_busybox("busybox:1");
    let Some(c) = Cluster::start_with(
        33,
        &[
            "--enable-agent",
            &format!("--node-name={NODE}"),
            &format!("--resolv-conf={}", resolv.display()),
        ],
    ) else {
        return;
    };
    wait_node_ready(&c);
    wait_address_local(&c);

    // The kube-dns Service clients look for.
    let kube_dns = c.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(kube_dns["spec"]["clusterIP"], CLUSTER_DNS);
    assert_eq!(kube_dns["metadata"]["labels"]["k8s-app"], "kube-dns");

    c.ok_in(&["apply", "-f", "-"], Some(&manifest(&image)));
    let web_pod = wait_pod(&c, "web-0", "Running", running);
    let db_pod = wait_pod(&c, "db-0", "Running", running);
    let web_pod_ip = web_pod["status"]["podIP"].as_str().unwrap().to_string();
    let db_ip = db_pod["status"]["podIP"].as_str().unwrap().to_string();
    let web_ip = c
        .json(&["get", "service", "web"])
        .pointer("/spec/clusterIP")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string();

    // A for a ClusterIP service, over UDP and TCP.
    let r = eventually_answers(&c, "web.default.svc.cluster.local", wire::TYPE_A, |r| {
        r.rcode == 0 && !r.answer.is_empty()
    });
    assert!(r.aa);
    assert_eq!(data(&r), [a(&web_ip)]);
    assert_eq!(r.answer[0].ttl, 5);
    let t = query_tcp("web.default.svc.cluster.local", wire::TYPE_A);
    assert_eq!(data(&t), [a(&web_ip)]);

    // Headless: the endpoints, and the pod's hostname.subdomain record.
    let r = eventually_answers(&c, "db.default.svc.cluster.local", wire::TYPE_A, |r| {
        !r.answer.is_empty()
    });
    assert_eq!(data(&r), [a(&db_ip)]);
    let r = query("db-0.db.default.svc.cluster.local", wire::TYPE_A);
    assert_eq!(data(&r), [a(&db_ip)]);

    // SRV for named ports: the service name, and one per endpoint for headless services,
    // with the target's address as an additional record.
    let r = eventually_answers(
        &c,
        "_http._tcp.web.default.svc.cluster.local",
        wire::TYPE_SRV,
        |r| !r.answer.is_empty(),
    );
    assert_eq!(
        data(&r),
        [Data::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.default.svc.cluster.local".into()
        }]
    );
    let r = query("_pg._tcp.db.default.svc.cluster.local", wire::TYPE_SRV);
    assert_eq!(
        data(&r),
        [Data::Srv {
            priority: 0,
            weight: 100,
            port: 5432,
            target: "db-0.db.default.svc.cluster.local".into()
        }]
    );
    assert_eq!(
        r.additional
            .iter()
            .map(|r| r.data.clone())
            .collect::<Vec<_>>(),
        [a(&db_ip)]
    );

    // Pod records (pods insecure: the name is the address).
    let pod_name = format!("{}.default.pod.cluster.local", db_ip.replace('.', "-"));
    assert_eq!(data(&query(&pod_name, wire::TYPE_A)), [a(&db_ip)]);

    // PTR for the ClusterIP, a hostname endpoint and a plain endpoint.
    assert_eq!(
        data(&query(&reverse(&web_ip), wire::TYPE_PTR)),
        [Data::Ptr("web.default.svc.cluster.local".into())]
    );
    assert_eq!(
        data(&query(&reverse(&db_ip), wire::TYPE_PTR)),
        [Data::Ptr("db-0.db.default.svc.cluster.local".into())]
    );
    let r = eventually_answers(&c, &reverse(&web_pod_ip), wire::TYPE_PTR, |r| {
        !r.answer.is_empty()
    });
    assert_eq!(
        data(&r),
        [Data::Ptr(format!(
            "{}.web.default.svc.cluster.local",
            web_pod_ip.replace('.', "-")
        ))]
    );

    // Forwarding: a name outside the zone goes to the upstream in the namespace, and the
    // second query is served from the cache.
    let before = upstream.queries();
    let r = query(UPSTREAM_NAME, wire::TYPE_A);
    assert_eq!(r.rcode, wire::RCODE_NOERROR);
    assert_eq!(data(&r), [a(&UPSTREAM_ANSWER.to_string())]);
    let after_first = upstream.queries();
    assert!(after_first > before, "the upstream was not asked");
    let r = query(UPSTREAM_NAME, wire::TYPE_A);
    assert_eq!(data(&r), [a(&UPSTREAM_ANSWER.to_string())]);
    assert_eq!(upstream.queries(), after_first, "the answer was not cached");
    let r = query("unknown.rk3s-test", wire::TYPE_A);
    assert_eq!(r.rcode, wire::RCODE_NXDOMAIN);

    // ExternalName: the CNAME, completed with the target's address from upstream (cached).
    let r = query("ext.default.svc.cluster.local", wire::TYPE_A);
    assert_eq!(
        data(&r),
        [
            Data::Cname(UPSTREAM_NAME.into()),
            a(&UPSTREAM_ANSWER.to_string())
        ]
    );

    // NXDOMAIN with CoreDNS's SOA; NODATA (with the SOA) for a name with other types.
    let r = query("nope.default.svc.cluster.local", wire::TYPE_A);
    assert_eq!(r.rcode, wire::RCODE_NXDOMAIN);
    assert!(r.answer.is_empty());
    match &r.authority[..] {
        [soa] => match &soa.data {
            Data::Soa {
                mname,
                rname,
                refresh,
                retry,
                expire,
                minimum,
                ..
            } => {
                assert_eq!(soa.name, "cluster.local");
                assert_eq!(mname, "ns.dns.cluster.local");
                assert_eq!(rname, "hostmaster.cluster.local");
                assert_eq!(
                    (*refresh, *retry, *expire, *minimum),
                    (7200, 1800, 86400, 5)
                );
            }
            other => panic!("not an SOA: {other:?}"),
        },
        other => panic!("authority: {other:?}"),
    }
    let r = query("web.default.svc.cluster.local", wire::TYPE_AAAA);
    assert_eq!(r.rcode, wire::RCODE_NOERROR);
    assert!(r.answer.is_empty());
    assert_eq!(r.authority.len(), 1);

    // A pod with dnsPolicy ClusterFirst resolves the service by its short, namespaced and
    // full names through its search path and ndots:5. busybox's `ping` resolves with libc
    // (getaddrinfo applies both) and prints the address; its TTL of 1 keeps the echo request
    // from going past this host. busybox's `nslookup` applies the search list to names
    // without a dot only, so it checks the short and the full name.
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let out = c.run(
            &[
                "exec", "db-0", "--", "busybox", "ping", "-c", "1", "-W", "1", "-t", "1", name,
            ],
            None,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("({web_ip})")),
            "ping {name} in the pod: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in ["web", "web.default.svc.cluster.local"] {
        let out = c.run(&["exec", "db-0", "--", "nslookup", name], None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&web_ip),
            "nslookup {name} in the pod: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let resolv_conf = c.ok(&["exec", "db-0", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv_conf.contains(&format!("nameserver {CLUSTER_DNS}")));
    assert!(
        resolv_conf.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
    );
    assert!(resolv_conf.contains("options ndots:5"));

    // Deleting the service removes its names.
    c.ok(&["delete", "service", "web"]);
    eventually_answers(&c, "web.default.svc.cluster.local", wire::TYPE_A, |r| {
        r.rcode == wire::RCODE_NXDOMAIN
    });
    drop(c);
    drop(upstream);
}

mod disabled {
    #[test]
    fn kubectl_1_33() {
        super::disabled();
    }
}

/// `--disable=dns`: no kube-dns Service and nothing answers at the cluster DNS address.
fn disabled() {
    if !is_root() {
        println!("SKIP: the dns tests need root");
        return;
    }
    let Some(c) = Cluster::start_with(
        33,
        &[
            "--enable-agent",
            &format!("--node-name={NODE}"),
            "--disable=dns",
        ],
    ) else {
        return;
    };
    wait_node_ready(&c);
    let out = c.run(&["get", "service", "kube-dns", "-n", "kube-system"], None);
    assert!(!out.status.success(), "kube-dns exists with --disable=dns");
    // Make the address local ourselves (so the query cannot leave the machine): nothing may
    // answer on it.
    let _cleanup = RemoveAddress;
    if !address_is_local() {
        ip(&["addr", "add", &format!("{CLUSTER_DNS}/32"), "dev", "lo"]);
    }
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = socket.send_to(
        &wire::encode_query(1, "kubernetes.default.svc.cluster.local", wire::TYPE_A),
        server(),
    );
    let mut buf = [0u8; 512];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "something answered DNS with --disable=dns"
    );
}
