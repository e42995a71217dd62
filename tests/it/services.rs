//! The Service proxy and ServiceLB end to end: a real kubelet runs busybox httpd pods, and
//! clients on the host, in a pod and in a network namespace acting as an outside machine reach
//! them through `table inet rk3s`. Node tests: root, one at a time (nextest group `node`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rk3s::dns::wire;
use serde_json::Value;

use crate::kubectl::Cluster;

/// Three httpd pods, each answering with its own hostname (the pod name).
fn deployment(image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: web, containerPort: 8080}}]
"#
    )
}

/// One HTTP GET; the body, trimmed.
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_default())
}

/// A network namespace with a veth to the host, acting as a machine outside the node.
struct Outside {
    name: String,
    host_if: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Outside {
    fn create() -> Outside {
        let o = Outside {
            name: "rk3s-svc-outside".into(),
            host_if: "rk3s-svco0".into(),
        };
        // Leftovers of an interrupted run.
        let _ = Command::new("ip").args(["netns", "del", &o.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &o.host_if])
            .output();
        ip(&["netns", "add", &o.name]);
        ip(&[
            "link", "add", &o.host_if, "type", "veth", "peer", "name", "eth0", "netns", &o.name,
        ]);
        ip(&["addr", "add", "10.250.0.1/30", "dev", &o.host_if]);
        ip(&["link", "set", &o.host_if, "up"]);
        ip(&["-n", &o.name, "addr", "add", "10.250.0.2/30", "dev", "eth0"]);
        ip(&["-n", &o.name, "link", "set", "eth0", "up"]);
        ip(&["-n", &o.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &o.name,
            "route",
            "add",
            "default",
            "via",
            "10.250.0.1",
        ]);
        o
    }

    /// [`get`] from inside the namespace (on a thread that joins it).
    fn get(&self, addr: SocketAddr) -> std::io::Result<String> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            get(addr)
        })
        .join()
        .expect("client thread")
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Removes `table inet rk3s` when the test ends (the proxy never deletes the whole table).
struct Table;

impl Drop for Table {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", "rk3s"])
            .output();
    }
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table's lines, with map elements one per line, sorted: equal for equal rulesets
/// whatever order nft lists elements in, different when anything is duplicated.
fn normalized_table() -> Vec<String> {
    let text = nft(&["list", "table", "inet", "rk3s"]);
    let mut lines: Vec<String> = text
        .replace("elements = {", "\n")
        .split(['\n', ','])
        .map(|l| l.trim().trim_end_matches('}').trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn poll<T>(what: &str, c: &Cluster, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened\n--- table ---\n{}\n--- server log ---\n{}",
            nft(&["list", "table", "inet", "rk3s"]),
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Hostnames answering `n` requests to `addr`.
fn answers(n: usize, mut one: impl FnMut() -> std::io::Result<String>) -> Vec<String> {
    (0..n).filter_map(|_| one().ok()).collect()
}

fn distinct(v: &[String]) -> usize {
    v.iter().collect::<std::collections::BTreeSet<_>>().len()
}

/// The endpoints the ClusterIP of `service` (namespace default, port 80/TCP) picks from: its
/// `service-ips` element names the shared `cluster-pick-N` chain.
fn endpoint_rules(c: &Cluster, service_name: &str) -> usize {
    let ip = service(c, service_name)["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    // One listing for both maps: two would race with the proxy's updates in between.
    let listing = nft(&["list", "table", "inet", "rk3s"]);
    let key = format!("{ip} . tcp . 80 : goto cluster-pick-tcp-");
    let Some((_, rest)) = listing.split_once(&key) else {
        return 0;
    };
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: usize = n.parse().unwrap();
    // Each of the N picks has its target in the endpoint map.
    let present = (0..n)
        .filter(|k| listing.contains(&format!("{ip} . tcp . 80 . {k} : ")))
        .count();
    assert_eq!(present, n, "{listing}");
    n
}

fn service(c: &Cluster, name: &str) -> Value {
    c.json(&["get", "service", name, "-o", "json"])
}

/// Sets `spec.loadBalancerSourceRanges` of the `web` Service (`null` removes them).
fn source_ranges(c: &Cluster, ranges: &str) {
    c.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        &format!(r#"{{"spec":{{"loadBalancerSourceRanges":{ranges}}}}}"#),
    ]);
}

/// The rule of the firewall chain of `service` (namespace default), if it has one.
fn firewall_chain(service: &str) -> Option<String> {
    let listing = nft(&["list", "table", "inet", "rk3s"]);
    let mut lines = listing.lines().map(str::trim);
    lines.find(|l| {
        l.starts_with("chain firewall-") && l.contains(&format!("-default/{service}/"))
    })?;
    lines.next().map(str::to_string)
}

mod proxy {
    #[test]
    fn kubectl_1_33() {
        if let Some((mut c, _registry, image, _dir)) = crate::node::start(33) {
            super::services_reach_pods_through_the_proxy(&mut c, &image);
        }
    }
}

fn services_reach_pods_through_the_proxy(c: &mut Cluster, image: &str) {
    let _table = Table;
    c.ok_in(&["apply", "-f", "-"], Some(&deployment(image)));
    let out = c.run(
        &["rollout", "status", "deployment/web", "--timeout=90s"],
        None,
    );
    assert!(out.status.success(), "{}", c.server_log());
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
        "--type=LoadBalancer",
    ]);
    let svc = service(c, "web");
    let cluster_ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    let node = c.json(&["get", "node", crate::node::NODE, "-o", "json"]);
    let node_ip: Ipv4Addr = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .unwrap()
        .parse()
        .unwrap();

    // ServiceLB: the node's address becomes the LoadBalancer ingress.
    let lb_ip: Ipv4Addr = poll("a LoadBalancer ingress", c, || {
        service(c, "web")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .and_then(|s| s.parse().ok())
    });
    assert_eq!(lb_ip, node_ip);

    // The host reaches the ClusterIP, and requests spread over the three pods.
    let cluster = SocketAddr::from((cluster_ip, 80));
    let seen = poll("three endpoints answering on the ClusterIP", c, || {
        let a = answers(30, || get(cluster));
        (distinct(&a) == 3).then_some(a)
    });
    assert!(seen.iter().all(|h| h.starts_with("web-")), "{seen:?}");
    // NodePort and LoadBalancer address from the host.
    let np = SocketAddr::from((node_ip, node_port));
    assert!(get(np).unwrap().starts_with("web-"));
    assert!(
        get(SocketAddr::from((lb_ip, 80)))
            .unwrap()
            .starts_with("web-")
    );

    // A pod reaches the ClusterIP.
    let pods = c.json(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let first = pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let pod_ip = pods["items"][0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    let body = c.ok(&[
        "exec",
        &first,
        "--",
        // No -T: Debian's static busybox wget crashes with it (the nextest timeout bounds it).
        "wget",
        "-q",
        "-O-",
        &format!("http://{cluster_ip}/"),
    ]);
    assert!(body.trim().starts_with("web-"), "{body}");
    // And by name, through the cluster DNS and the pod's search path.
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let body = c.ok(&[
            "exec",
            &first,
            "--",
            "wget",
            "-q",
            "-O-",
            &format!("http://{name}/"),
        ]);
        assert!(body.trim().starts_with("web-"), "{name}: {body}");
    }

    // An outside machine reaches the NodePort.
    let outside = Outside::create();
    let body = poll("the NodePort from outside", c, || outside.get(np).ok());
    assert!(body.starts_with("web-"), "{body}");

    // loadBalancerSourceRanges: a range holding the outside client lets it reach the
    // LoadBalancer address; a range without it drops its packets (the NodePort stays open, as
    // upstream); without ranges the address is open again.
    let lb = SocketAddr::from((lb_ip, 80));
    source_ranges(c, r#"["10.250.0.0/30"]"#);
    poll("a firewall chain for web", c, || {
        firewall_chain("web").filter(|r| r.contains("10.250.0.0/30"))
    });
    assert!(outside.get(lb).unwrap().starts_with("web-"));
    source_ranges(c, r#"["192.0.2.0/24"]"#);
    poll("the firewall chain with the new range", c, || {
        firewall_chain("web").filter(|r| !r.contains("10.250.0.0/30"))
    });
    let err = outside.get(lb).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(outside.get(np).unwrap().starts_with("web-"));
    source_ranges(c, "null");
    poll("no firewall chain for web", c, || {
        firewall_chain("web").is_none().then_some(())
    });
    assert!(outside.get(lb).unwrap().starts_with("web-"));

    // ClientIP affinity keeps one backend.
    c.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ]);
    poll("affinity rules", c, || {
        nft(&["-t", "list", "table", "inet", "rk3s"])
            .contains("set affinity-")
            .then_some(())
    });
    let sticky = answers(20, || get(cluster));
    assert_eq!(sticky.len(), 20);
    assert_eq!(distinct(&sticky), 1, "{sticky:?}");
    c.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"None"}}"#,
    ]);

    // externalTrafficPolicy Local: with every endpoint on this node the outside client still
    // gets through; with the only endpoint elsewhere, outside traffic is dropped while the
    // host (and pods) still reach it.
    c.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    poll("an externalTrafficPolicy Local chain", c, || {
        nft(&["list", "table", "inet", "rk3s"])
            .contains("fib saddr type local")
            .then_some(())
    });
    assert!(outside.get(np).unwrap().starts_with("web-"));
    let remote = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: remote}}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: remote-1
  labels: {{kubernetes.io/service-name: remote}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["{pod_ip}"]
  nodeName: some-other-node
  conditions: {{ready: true}}
"#
    );
    c.ok_in(&["apply", "-f", "-"], Some(&remote));
    let remote_svc = service(c, "remote");
    let remote_np = SocketAddr::from((
        node_ip,
        remote_svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16,
    ));
    let body = poll("the remote-only service from the host", c, || {
        get(remote_np).ok()
    });
    assert_eq!(body, first);
    let err = outside.get(remote_np).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    // A Service without endpoints is refused at once, not left to time out.
    c.ok(&["create", "service", "clusterip", "empty", "--tcp=80:8080"]);
    let empty_ip: Ipv4Addr = service(c, "empty")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let err = poll("a refusal for the empty service", c, || {
        get(SocketAddr::from((empty_ip, 80)))
            .err()
            .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    // Scaling changes the endpoints in the rules; the last pod reaches itself through its
    // own Service (hairpin).
    assert_eq!(endpoint_rules(c, "web"), 3);
    c.ok(&["scale", "deployment", "web", "--replicas=1"]);
    poll("one endpoint in the rules", c, || {
        (endpoint_rules(c, "web") == 1).then_some(())
    });
    let pods = c.json(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector=status.phase=Running",
        "-o",
        "json",
    ]);
    let last = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .next()
        .unwrap();
    let body = c.ok(&[
        "exec",
        &last,
        "--",
        // No -T: Debian's static busybox wget crashes with it (the nextest timeout bounds it).
        "wget",
        "-q",
        "-O-",
        &format!("http://{cluster_ip}/"),
    ]);
    assert_eq!(body.trim(), last);

    // A restarted server rebuilds the same ruleset, without duplicates, and removes what an
    // earlier run left behind. Compared once the scaled-down pods are gone (terminating
    // endpoints stay in the slices, and so in the hairpin set, until then).
    poll("the scaled-down pods gone from the slices", c, || {
        let slices = c.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]);
        let endpoints: usize = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        (endpoints == 1).then_some(())
    });
    poll("a settled ruleset", c, || {
        let a = normalized_table();
        std::thread::sleep(Duration::from_millis(500));
        (a == normalized_table()).then_some(())
    });
    let before = normalized_table();
    nft(&[
        "add",
        "chain",
        "inet",
        "rk3s",
        "service-STALE-default/gone/tcp/80",
    ]);
    c.kill9_and_restart();
    poll("the stale chain removed by the first sync", c, || {
        (!nft(&["-t", "list", "table", "inet", "rk3s"]).contains("service-STALE")).then_some(())
    });
    assert_eq!(normalized_table(), before);
    assert_eq!(get(SocketAddr::from((cluster_ip, 80))).unwrap(), last);

    udp_service(c, image, &last);
    host_network_endpoint(c, &last, node_ip);
}

/// A Service whose endpoint is the node's own address (as the `kubernetes` Service's and
/// hostNetwork pods' are), served by a plain HTTP server of the test on the host: reached from
/// a pod and from the host through its ClusterIP.
fn host_network_endpoint(c: &Cluster, client: &str, node_ip: Ipv4Addr) {
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    listener.set_nonblocking(true).unwrap();
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ =
                    s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nhost-endpoint\n");
            }
        })
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: on-host}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: on-host-1
  labels: {{kubernetes.io/service-name: on-host}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{node_ip}"]
  nodeName: {node}
  conditions: {{ready: true}}
"#,
        node = crate::node::NODE
    );
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));
    let ip: Ipv4Addr = service(c, "on-host")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = poll("the host endpoint from the host", c, || {
        get(SocketAddr::from((ip, 80))).ok()
    });
    assert_eq!(body, "host-endpoint");
    let body = c.ok(&[
        "exec",
        client,
        "--",
        "wget",
        "-q",
        "-O-",
        &format!("http://{ip}/"),
    ]);
    assert_eq!(body.trim(), "host-endpoint");
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
}

/// What the UDP responder answers to every A query.
const UDP_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// A DNS responder on UDP port 5353 in a pod's network namespace: busybox has no UDP server
/// (its `nc` has no `-u`), so the test serves from inside the pod's namespace instead.
struct Responder {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start(netns: &str) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, queries, path) = (stop.clone(), queries.clone(), netns.to_string());
            std::thread::spawn(move || {
                // The socket belongs to the namespace of the thread that creates it.
                let ns = std::fs::File::open(&path).unwrap();
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let socket = UdpSocket::bind(("0.0.0.0", 5353)).unwrap();
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
                    let answer = if q.qtype == wire::TYPE_A {
                        vec![wire::Record {
                            name: q.name.clone(),
                            ttl: 60,
                            data: wire::Data::A(UDP_ANSWER),
                        }]
                    } else {
                        vec![]
                    };
                    let sections = wire::Sections {
                        answer,
                        ..Default::default()
                    };
                    let out =
                        wire::encode_response(&q, true, false, wire::RCODE_NOERROR, &sections, 512);
                    let _ = socket.send_to(&out, from);
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the UDP responder started");
        Responder {
            stop,
            queries,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One A query over UDP from the host; the first address answered.
fn udp_query(server: SocketAddr) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    socket
        .send_to(
            &wire::encode_query(0x5353, "udp-check.test", wire::TYPE_A),
            server,
        )
        .ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    let r = wire::parse_response(&buf[..n]).ok()?;
    r.answer.iter().find_map(|rec| match rec.data {
        wire::Data::A(ip) => Some(ip),
        _ => None,
    })
}

/// A UDP Service reached through its ClusterIP from the host and from busybox `nslookup` in
/// a pod (`client`).
fn udp_service(c: &Cluster, image: &str, client: &str) {
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: udp-backend, labels: {{app: udp}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: {image}
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Service
metadata: {{name: udp}}
spec:
  selector: {{app: udp}}
  ports: [{{name: dns, port: 53, targetPort: 5353, protocol: UDP}}]
"#
    );
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/udp-backend",
        "--timeout=60s",
    ]);
    let uid = c.ok(&[
        "get",
        "pod",
        "udp-backend",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let responder = Responder::start(&format!("/run/rk3s/netns/{}", uid.trim()));
    let ip: Ipv4Addr = service(c, "udp")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let server = SocketAddr::from((ip, 53));
    let answer = poll("a UDP answer through the ClusterIP", c, || {
        udp_query(server)
    });
    assert_eq!(answer, UDP_ANSWER);
    let out = c.ok(&[
        "exec",
        client,
        "--",
        "nslookup",
        "-type=a",
        "udp-check.test",
        &ip.to_string(),
    ]);
    assert!(out.contains(&UDP_ANSWER.to_string()), "{out}");
    assert!(responder.queries.load(Ordering::Relaxed) >= 2);
}

/// Runs `f` on a thread in a network namespace of its own: the `nft` processes it starts
/// inherit that namespace, so the host's ruleset is never touched.
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare a netns");
        f()
    })
    .join()
    .expect("netns thread")
}

fn can_run_nft() -> bool {
    if !crate::node::is_root() || Command::new("nft").arg("--version").output().is_err() {
        println!("SKIP: needs root and nft");
        return false;
    }
    true
}

mod rules {
    use rk3s::proxy::{self, render};

    use super::*;

    fn svc(name: &str, ip: [u8; 4], endpoints: &[[u8; 4]], affinity: bool) -> render::Service {
        render::Service {
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: Some(Ipv4Addr::from(ip)),
            external_ips: vec![],
            load_balancer_ips: vec![],
            source_ranges: vec![],
            ports: vec![render::ServicePort {
                name: "http".into(),
                protocol: render::Protocol::Tcp,
                port: 80,
                node_port: Some(30000 + u16::from(ip[3])),
                endpoints: endpoints
                    .iter()
                    .map(|e| render::Endpoint {
                        ip: Ipv4Addr::from(*e),
                        port: 8080,
                        ready: true,
                        serving: true,
                        terminating: false,
                        node_name: Some("n1".into()),
                    })
                    .collect(),
            }],
            affinity_timeout: affinity.then_some(60),
            external_local: false,
            internal_local: false,
        }
    }

    fn table(services: Vec<render::Service>) -> render::ServiceTable {
        render::ServiceTable {
            node_name: "n1".into(),
            node_ips: vec![Ipv4Addr::new(192, 0, 2, 1)],
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            skip_cluster_ip: None,
            services,
        }
    }

    /// The proxy's sequence of syncs, checked in the kernel: every incremental update leaves
    /// exactly the table a full sync of the same state writes, and a full sync over an older
    /// table (a restart) removes what the new state no longer has.
    #[test]
    fn incremental_updates_equal_a_full_sync() {
        if !can_run_nft() {
            return;
        }
        let mut steps = vec![
            table(vec![svc(
                "a",
                [10, 43, 0, 11],
                &[[10, 42, 0, 5], [10, 42, 0, 6]],
                false,
            )]),
            table(vec![
                svc(
                    "a",
                    [10, 43, 0, 11],
                    &[[10, 42, 0, 5], [10, 42, 0, 7]],
                    false,
                ),
                svc("b", [10, 43, 0, 12], &[], false),
            ]),
            table(vec![
                svc("a", [10, 43, 0, 11], &[[10, 42, 0, 5]], true),
                svc("b", [10, 43, 0, 12], &[[10, 42, 0, 9]], false),
            ]),
            table(vec![svc("b", [10, 43, 0, 12], &[[10, 42, 0, 9]], false)]),
        ];
        // loadBalancerSourceRanges appear on b, change, and go with a.
        for (step, ranges) in [(2, "10.250.0.0/30"), (3, "203.0.113.0/24")] {
            let b = steps[step]
                .services
                .iter_mut()
                .find(|s| s.name == "b")
                .unwrap();
            b.load_balancer_ips = vec![Ipv4Addr::new(192, 0, 2, 50)];
            b.source_ranges = vec![ranges.parse().unwrap()];
        }
        let (incremental, full) = in_fresh_netns(move || {
            let mut rendered = render::Rendered::new();
            let mut incremental = Vec::new();
            for (i, t) in steps.iter().enumerate() {
                rendered.update(t);
                if i == 0 {
                    proxy::full_sync(&mut rendered).unwrap();
                } else {
                    proxy::incremental_sync(&mut rendered).unwrap();
                }
                incremental.push(normalized_table());
            }
            // A restart: the first state's leftovers meet a full sync of the last state
            // (which lists the table), and a periodic resync over it (which does not).
            let mut full = Vec::new();
            for t in &steps {
                nft(&["delete", "table", "inet", "rk3s"]);
                let mut first = render::Rendered::new();
                first.update(&steps[0]);
                proxy::full_sync(&mut first).unwrap();
                let mut restarted = render::Rendered::new();
                restarted.update(t);
                proxy::full_sync(&mut restarted).unwrap();
                proxy::full_sync(&mut restarted).unwrap();
                full.push(normalized_table());
            }
            (incremental, full)
        });
        for (i, (a, b)) in incremental.iter().zip(&full).enumerate() {
            assert_eq!(a, b, "step {i}");
        }
        assert!(full[1].iter().any(|l| l.contains("reject")));
        assert!(full[2].iter().any(|l| l.starts_with("set affinity-")));
        assert!(full[2].iter().any(|l| l.contains("10.250.0.0/30")));
        assert!(full[3].iter().any(|l| l.contains("203.0.113.0/24")));
        assert!(!full[3].iter().any(|l| l.contains("10.250.0.0/30")));
        assert!(!full[3].iter().any(|l| l.contains("/a/")));
    }

    /// The golden files are valid nft input, and the rejection of a service without
    /// endpoints sits where the kernel accepts `reject` (filter hooks). Each is loaded twice:
    /// the second time nft reads the table's maps back from the kernel, which fails for map
    /// types nft 1.0.6 cannot parse back (a `th dport` typeof).
    #[test]
    fn golden_scripts_load_into_the_kernel() {
        if !can_run_nft() {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/proxy");
        for name in [
            "cluster-ip.nft",
            "no-endpoints.nft",
            "nodeport-lb-affinity.nft",
            "source-ranges.nft",
            "traffic-policy-local.nft",
        ] {
            let path = dir.join(name);
            let out = in_fresh_netns(move || {
                let load = || {
                    Command::new("nft")
                        .arg("-f")
                        .arg(&path)
                        .output()
                        .expect("run nft")
                };
                let first = load();
                if first.status.success() {
                    load()
                } else {
                    first
                }
            });
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

mod validation {
    #[test]
    fn kubectl_1_33() {
        if let Some(c) = crate::kubectl::Cluster::start_api_only(33) {
            super::source_ranges_are_validated(&c);
        }
    }
}

fn lb_service(name: &str, ty: &str, ranges: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: {ty}\n  \
         ports: [{{port: 80}}]\n  loadBalancerSourceRanges: {ranges}\n"
    )
}

/// `spec.loadBalancerSourceRanges` as upstream validates it: 422 naming the entry (with
/// upstream's capital L), only for LoadBalancer Services; space padding, IPv6 and IPv4 octets
/// with leading zeros (Go's sloppy parser) pass.
fn source_ranges_are_validated(c: &Cluster) {
    let err = c.fails(
        &["create", "-f", "-"],
        Some(&lb_service(
            "bad",
            "LoadBalancer",
            r#"["10.0.0.0/8", "10.1.2.3", "bogus/8"]"#,
        )),
    );
    assert!(err.contains("The Service \"bad\" is invalid"), "{err}");
    for (i, v) in [(1, "10.1.2.3"), (2, "bogus/8")] {
        assert!(
            err.contains(&format!(
                "spec.LoadBalancerSourceRanges[{i}]: Invalid value: \"{v}\": must be a valid \
                 CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            )),
            "{err}"
        );
    }
    assert!(!err.contains("[0]"), "{err}");

    let err = c.fails(
        &["create", "-f", "-"],
        Some(&lb_service("plain", "ClusterIP", r#"["10.0.0.0/8"]"#)),
    );
    assert!(
        err.contains(
            "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is \
             'LoadBalancer'"
        ),
        "{err}"
    );

    c.ok_in(
        &["create", "-f", "-"],
        Some(&lb_service(
            "good",
            "LoadBalancer",
            r#"[" 10.250.0.0/30 ", "2001:db8::/64", "010.1.0.0/16"]"#,
        )),
    );
    let err = c.fails(
        &[
            "patch",
            "service",
            "good",
            "-p",
            r#"{"spec":{"loadBalancerSourceRanges":["10.0.0.0/33"]}}"#,
        ],
        None,
    );
    assert!(
        err.contains("spec.LoadBalancerSourceRanges[0]: Invalid value: \"10.0.0.0/33\""),
        "{err}"
    );
    let stored = c.json(&["get", "service", "good", "-o", "json"]);
    assert_eq!(
        stored["spec"]["loadBalancerSourceRanges"][1],
        "2001:db8::/64"
    );
}
