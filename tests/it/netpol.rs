//! NetworkPolicy enforcement end to end: `rk3s server` with its kubelet runs busybox pods with
//! httpd, and `wget` in client pods shows what a matrix of policies allows (pod IPs), then what
//! egress policies allow of the node itself and of the cluster DNS (`nslookup`). Root only; one
//! at a time (nextest group `node`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rk3s::netpol::render;

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::node::start;

/// Removes the `netpol*` objects of `table inet rk3s` when the test ends, however it ends (the
/// server is killed without cleaning up, and the table outlives it).
struct TableCleanup;

impl Drop for TableCleanup {
    fn drop(&mut self) {
        let Ok(out) = Command::new("nft")
            .args(["-t", "list", "table", "inet", "rk3s"])
            .output()
        else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        let mut chains = Vec::new();
        let mut sets = Vec::new();
        for line in listing.lines() {
            let line = line.trim().trim_end_matches('{').trim();
            if let Some(n) = line.strip_prefix("chain netpol") {
                chains.push(format!("netpol{n}"));
            } else if let Some(n) = line.strip_prefix("set netpol") {
                sets.push(format!("netpol{n}"));
            }
        }
        let mut script = String::new();
        for c in &chains {
            script.push_str(&format!("flush chain inet rk3s {c}\n"));
        }
        for c in &chains {
            script.push_str(&format!("delete chain inet rk3s {c}\n"));
        }
        for s in &sets {
            script.push_str(&format!("delete set inet rk3s {s}\n"));
        }
        if script.is_empty() {
            return;
        }
        let _ = Command::new("sh")
            .args(["-c", &format!("printf '%s' '{script}' | nft -f -")])
            .status();
    }
}

/// Serves "ok" on ports 80 and 8080 (port 80 named `http`), labelled `labels`.
fn pod_yaml(ns: &str, name: &str, labels: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "mkdir -p /www && echo ok > /www/index.html && httpd -p 80 -h /www && httpd -p 8080 -h /www && exec sleep 3600"]
    ports: [{{name: http, containerPort: 80}}, {{name: alt, containerPort: 8080}}]
---
"#
    )
}

/// The pod's IP once it runs.
fn running_ip(c: &Cluster, ns: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.run(&["get", "pod", "-n", ns, name, "-o", "json"], None);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["status"]["phase"] == "Running"
            && let Some(ip) = v["status"]["podIP"].as_str()
        {
            return ip.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "pod {ns}/{name} never ran: {}\n{}",
            v["status"],
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `wget` in pod `ns/from` gets the page at `ip:port` (a dropped connection fails
/// within two seconds), with what wget printed. `timeout` bounds it rather than `wget -T`,
/// which crashes (SIGSEGV) in Debian's static busybox 1.35.
fn reaches(c: &Cluster, (ns, from): (&str, &str), ip: &str, port: u16) -> (bool, String) {
    let url = format!("http://{ip}:{port}/");
    let out = c.run(
        &[
            "exec", "-n", ns, from, "--", "busybox", "timeout", "2", "wget", "-q", "-O", "-", &url,
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && stdout.trim() == "ok";
    (
        ok,
        format!(
            "{}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits until `from` reaches (or no longer reaches) `ip:port`, as policy changes apply
/// asynchronously.
fn expect(c: &Cluster, from: (&str, &str), ip: &str, port: u16, allowed: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, detail) = reaches(c, from, ip, port);
        if ok == allowed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}/{} {} {ip}:{port} ({detail})\n--- nft ---\n{}\n--- server log ---\n{}",
            from.0,
            from.1,
            if allowed {
                "never reached"
            } else {
                "still reaches"
            },
            String::from_utf8_lossy(
                &Command::new("nft")
                    .args(["list", "table", "inet", "rk3s"])
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            ),
            c.server_log()
        );
    }
}

fn apply(c: &Cluster, yaml: &str) {
    c.ok_in(&["apply", "-f", "-"], Some(yaml));
}

fn delete_policies(c: &Cluster) {
    for ns in ["np-a", "np-b"] {
        c.ok(&["delete", "networkpolicy", "--all", "-n", ns]);
    }
}

/// Policy behaviour does not depend on the kubectl version: the newest only.
#[test]
fn policy_matrix_kubectl_1_33() {
    // Declared first, so dropped after the server is gone (nothing re-adds the objects).
    let _cleanup = TableCleanup;
    if let Some((c, _r, image, _dir)) = start(33) {
        policy_matrix(&c, &image);
    }
}

fn policy_matrix(c: &Cluster, image: &str) {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: np-a, labels: {team: a}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: np-b, labels: {team: b}}\n---\n",
    );
    for (ns, name, labels) in [
        ("np-a", "web", "app: web"),
        ("np-a", "client", "role: client"),
        ("np-a", "other", "role: other"),
        ("np-b", "client", "role: client"),
        ("np-b", "other", "role: other"),
    ] {
        yaml.push_str(&pod_yaml(ns, name, labels, image));
    }
    apply(c, &yaml);
    let web = running_ip(c, "np-a", "web");
    let a_other = running_ip(c, "np-a", "other");
    let b_other = running_ip(c, "np-b", "other");
    for (ns, name) in [("np-a", "client"), ("np-b", "client")] {
        running_ip(c, ns, name);
    }
    let (a_client, a_oth, b_client, b_oth) = (
        ("np-a", "client"),
        ("np-a", "other"),
        ("np-b", "client"),
        ("np-b", "other"),
    );

    // No policy: everything is allowed.
    expect(c, a_client, &web, 80, true);
    expect(c, b_client, &web, 80, true);
    expect(c, b_client, &a_other, 8080, true);

    // Default-deny ingress in np-a blocks pods of both namespaces; the node itself still
    // reaches its pods (kubelet probes).
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-all, namespace: np-a}\n\
         spec: {podSelector: {}, policyTypes: [Ingress]}\n",
    );
    expect(c, a_client, &web, 80, false);
    expect(c, b_client, &web, 80, false);
    let addr: SocketAddr = format!("{web}:80").parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(),
        "the node no longer reaches its pod {addr}"
    );
    // Pods not selected by any policy are unaffected (np-b has none).
    expect(c, a_client, &b_other, 80, true);

    // Allow from a podSelector: same-namespace clients only.
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: from-clients, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n\
         \x20 ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]\n",
    );
    expect(c, a_client, &web, 80, true);
    expect(c, a_oth, &web, 80, false);
    expect(c, b_client, &web, 80, false);

    // Allow from a namespaceSelector (additive to the policy above).
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: from-team-b, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n\
         \x20 ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]\n",
    );
    expect(c, b_client, &web, 80, true);
    expect(c, b_oth, &web, 80, true);
    expect(c, a_client, &web, 80, true);
    expect(c, a_oth, &web, 80, false);

    // namespaceSelector and podSelector in one peer: both must match.
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: from-team-b, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n\
         \x20 ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {role: client}}}]}]\n",
    );
    expect(c, b_oth, &web, 80, false);
    expect(c, b_client, &web, 80, true);

    // ipBlock with except: the pod network minus np-b/other.
    delete_policies(c);
    apply(
        c,
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: from-block, namespace: np-a}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n\
             \x20 ingress: [{{from: [{{ipBlock: {{cidr: 10.42.0.0/16, except: [{b_other}/32]}}}}]}}]\n"
        ),
    );
    expect(c, b_oth, &web, 80, false);
    expect(c, b_client, &web, 80, true);
    expect(c, a_oth, &web, 80, true);

    // Port-restricted allow (a named port): 80 is open, 8080 is not.
    delete_policies(c);
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: http-only, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n\
         \x20 ingress: [{ports: [{port: http, protocol: TCP}]}]\n",
    );
    expect(c, a_client, &web, 8080, false);
    expect(c, a_client, &web, 80, true);
    expect(c, b_client, &web, 80, true);

    // Egress: default-deny in np-b, then allow to np-a/web only.
    delete_policies(c);
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-egress, namespace: np-b}\n\
         spec: {podSelector: {}, policyTypes: [Egress]}\n",
    );
    expect(c, b_client, &web, 80, false);
    expect(c, b_client, &a_other, 80, false);
    // Ingress into np-b is not affected by an egress-only policy.
    expect(c, a_client, &b_other, 80, true);
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: to-web, namespace: np-b}\n\
         spec:\n  podSelector: {matchLabels: {role: client}}\n  policyTypes: [Egress]\n\
         \x20 egress: [{to: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: web}}}], ports: [{port: 80, endPort: 81}]}]\n",
    );
    expect(c, b_client, &web, 80, true);
    expect(c, b_client, &web, 8080, false);
    expect(c, b_client, &a_other, 80, false);
    expect(c, b_oth, &web, 80, false);

    // Deleting the policies restores access.
    delete_policies(c);
    expect(c, b_client, &web, 80, true);
    expect(c, b_oth, &a_other, 8080, true);
}

/// The `netpol*` object names of `table inet rk3s` (empty when the table is missing).
fn netpol_objects() -> Vec<String> {
    let out = Command::new("nft")
        .args(["-t", "list", "table", "inet", "rk3s"])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches('{').trim();
            let name = l
                .strip_prefix("chain ")
                .or_else(|| l.strip_prefix("set "))?;
            name.starts_with("netpol").then(|| name.to_string())
        })
        .collect()
}

/// A start removes what an earlier run left (a set no policy needs), and a server started with
/// `--disable=network-policy` removes every `netpol*` object and adds none.
#[test]
fn stale_objects_go_at_start_and_all_go_when_disabled() {
    let _cleanup = TableCleanup;
    if crate::node::is_root() {
        // What an earlier run could have left: a set of a policy deleted since.
        let seeded = Command::new("nft")
            .arg("add table inet rk3s ; add set inet rk3s netpol-0000000000000000-pods { type ipv4_addr ; }")
            .status()
            .expect("run nft");
        assert!(seeded.success());
    }
    let Some((c, _r, _image, _dir)) = start(33) else {
        return;
    };
    c.eventually(
        "the stale set removed and the forward chain in place",
        || {
            let objects = netpol_objects();
            objects.iter().any(|o| o == "netpol-forward")
                && !objects.iter().any(|o| o == "netpol-0000000000000000-pods")
        },
    );
    drop(c);
    let node = format!("--node-name={}", crate::node::NODE);
    let Some(c) = Cluster::start_with(33, &["--enable-agent", &node, "--disable=network-policy"])
    else {
        return;
    };
    crate::node::wait_node_ready(&c);
    c.eventually("no netpol objects with --disable=network-policy", || {
        netpol_objects().is_empty()
    });
}

/// An HTTP server of the test on the host (every address, as a hostNetwork pod's would be),
/// answering "ok" to every request, until dropped.
struct HostServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostServer {
    fn start() -> HostServer {
        let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
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
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
            })
        };
        HostServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `nslookup name` in pod `ns/from` gives (or no longer gives) `ip`. `timeout`
/// bounds a lookup whose queries are dropped.
fn expect_resolves(c: &Cluster, (ns, from): (&str, &str), name: &str, ip: &str, allowed: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.run(
            &[
                "exec", "-n", ns, from, "--", "busybox", "timeout", "3", "nslookup", name,
            ],
            None,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // busybox's nslookup also tries the search list (and fails there with NXDOMAIN, exit
        // status 1): the answer line is what counts.
        let ok = stdout.contains(&format!("Address: {ip}"));
        if ok == allowed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{from}: nslookup {name} {} ({}: {stdout}{})\n--- nft ---\n{}\n--- server log ---\n{}",
            if allowed {
                "never resolved"
            } else {
                "still resolves"
            },
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(
                &Command::new("nft")
                    .args(["list", "table", "inet", "rk3s"])
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            ),
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn egress_to_the_node_and_the_cluster_dns_kubectl_1_33() {
    let _cleanup = TableCleanup;
    if let Some((c, _r, image, _dir)) = start(33) {
        egress_to_the_node_and_the_cluster_dns(&c, &image);
    }
}

/// On k3s an egress-isolated pod reaches neither the node nor CoreDNS unless a policy allows
/// it; here the node's own addresses and the node-local cluster DNS behave the same.
fn egress_to_the_node_and_the_cluster_dns(c: &Cluster, image: &str) {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: np-d}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: np-d}\n\
         spec: {selector: {app: web}, ports: [{port: 80}]}\n---\n",
    );
    yaml.push_str(&pod_yaml("np-d", "web", "app: web", image));
    yaml.push_str(&pod_yaml("np-d", "client", "role: client", image));
    apply(c, &yaml);
    let web = running_ip(c, "np-d", "web");
    running_ip(c, "np-d", "client");
    let client = ("np-d", "client");
    let service_ip = c.ok(&[
        "get",
        "service",
        "-n",
        "np-d",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let node = c.json(&["get", "node", crate::node::NODE]);
    let node_ip: Ipv4Addr = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no InternalIP: {node}"));
    let host = HostServer::start();
    let node_addr = node_ip.to_string();

    // No policy: the Service resolves and the node's address is reached.
    expect_resolves(c, client, "web", &service_ip, true);
    expect(c, client, &node_addr, host.port, true);

    // Default-deny egress: neither the cluster DNS nor the node.
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-egress, namespace: np-d}\n\
         spec: {podSelector: {}, policyTypes: [Egress]}\n",
    );
    expect_resolves(c, client, "web", &service_ip, false);
    expect(c, client, &node_addr, host.port, false);
    // The node's own connections to its pods still get their replies (kubelet probes).
    let addr: SocketAddr = format!("{web}:80").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("the node no longer reaches its pod {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.ends_with("ok\n"), "{reply}");

    // The standard allow-DNS policy: egress to the kube-dns pods of kube-system on port 53.
    apply(
        c,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: allow-dns, namespace: np-d}\n\
         spec:\n  podSelector: {}\n  policyTypes: [Egress]\n\
         \x20 egress:\n  - to:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}\n\
         \x20     podSelector: {matchLabels: {k8s-app: kube-dns}}\n\
         \x20   ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
    );
    expect_resolves(c, client, "web", &service_ip, true);
    expect(c, client, &node_addr, host.port, false);

    // An ipBlock of the node's address allows the node.
    apply(
        c,
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: to-node, namespace: np-d}}\n\
             spec:\n  podSelector: {{matchLabels: {{role: client}}}}\n  policyTypes: [Egress]\n\
             \x20 egress: [{{to: [{{ipBlock: {{cidr: {node_ip}/32}}}}]}}]\n"
        ),
    );
    expect(c, client, &node_addr, host.port, true);
    // Removing the DNS policy blocks the lookups again; the node stays allowed.
    c.ok(&["delete", "networkpolicy", "-n", "np-d", "allow-dns"]);
    expect_resolves(c, client, "web", &service_ip, false);
    expect(c, client, &node_addr, host.port, true);
}

/// The rendered full sync and an incremental change load into a kernel: applied in a network
/// namespace of their own (a scratch `inet rk3s` table), then listed back.
#[test]
fn rendered_scripts_load_into_the_kernel() {
    if !crate::node::is_root() {
        println!("SKIP: loading nftables needs root");
        return;
    }
    let namespaces = [
        ("np".to_string(), Default::default()),
        (
            "kube-system".to_string(),
            [(
                "kubernetes.io/metadata.name".to_string(),
                "kube-system".to_string(),
            )]
            .into(),
        ),
    ]
    .into();
    let pod = |name: &str, ip: Ipv4Addr| render::Pod {
        namespace: "np".into(),
        name: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        ip,
        node: "n1".into(),
        ports: Vec::new(),
    };
    let policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy> =
        serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "np", "name": "allow-dns"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": "dns-tcp", "protocol": "TCP"}]}]}},
            {"metadata": {"namespace": "np", "name": "web"},
             "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                      "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.42.0.0/16"]}}]}]}}
        ]))
        .unwrap();
    let first = [pod("web", Ipv4Addr::new(10, 42, 0, 5))];
    let second = [
        pod("web", Ipv4Addr::new(10, 42, 0, 5)),
        pod("client", Ipv4Addr::new(10, 42, 0, 6)),
    ];
    let rendered = |pods: &[render::Pod]| {
        render::render(&render::Cluster {
            node: "n1",
            policies: &policies,
            pods,
            namespaces: &namespaces,
            cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
        })
    };
    let full = render::full_script(&rendered(&first), &render::Existing::default());
    let diff = render::diff_script(&rendered(&first), &rendered(&second));
    let script = format!("{full}{diff}");
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", "nft -f - && nft list table inet rk3s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing.contains("type filter hook input priority filter; policy accept;"),
        "{listing}"
    );
    assert!(listing.contains("10.43.0.10"), "{listing}");
    assert!(listing.contains("10.42.0.6"), "{listing}");
}
