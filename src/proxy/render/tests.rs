//! Golden tests of the rendered nft text. The files live in tests/data/proxy/; after an
//! intended change, regenerate them with `RK3S_UPDATE_GOLDEN=1 cargo nextest run -E
//! 'test(/proxy::render/)'` and review the diff.

use std::path::PathBuf;

use super::*;

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/proxy")
        .join(name);
    if std::env::var_os("RK3S_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(text, want, "{} differs", path.display());
}

fn ep(ip: &str, node: &str) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        node_name: Some(node.to_string()),
    }
}

fn terminating(mut e: Endpoint) -> Endpoint {
    e.ready = false;
    e.terminating = true;
    e
}

fn web(eps: Vec<Endpoint>) -> Service {
    Service {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: Some("10.43.0.20".parse().unwrap()),
        external_ips: vec![],
        load_balancer_ips: vec![],
        source_ranges: vec![],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            endpoints: eps,
        }],
        affinity_timeout: None,
        external_local: false,
        internal_local: false,
    }
}

fn table(services: Vec<Service>) -> ServiceTable {
    ServiceTable {
        node_name: "n1".into(),
        node_ips: vec!["192.0.2.1".parse().unwrap()],
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        skip_cluster_ip: Some("10.43.0.10".parse().unwrap()),
        services,
    }
}

fn full(t: &ServiceTable) -> String {
    full_script(&render(t), &Existing::default())
}

#[test]
fn hash_matches_kube_proxy_encoding() {
    // base32 of SHA-256("") starts with "4OYMIQUY" (e3b0c442 98fc…).
    assert_eq!(hash8(""), "4OYMIQUY");
    assert_eq!(hash8("default/web/tcp/http").len(), 8);
}

#[test]
fn cluster_ip_service_with_three_endpoints() {
    let t = table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.6", "n1"),
        ep("10.42.0.7", "n2"),
    ])]);
    golden("cluster-ip.nft", &full(&t));
}

#[test]
fn service_without_endpoints_is_rejected() {
    let mut udp = web(vec![]);
    udp.name = "dns-like".into();
    udp.cluster_ip = Some("10.43.0.30".parse().unwrap());
    udp.ports[0].protocol = Protocol::Udp;
    udp.ports[0].port = 53;
    udp.ports[0].node_port = Some(30053);
    let t = table(vec![web(vec![]), udp]);
    golden("no-endpoints.nft", &full(&t));
}

#[test]
fn nodeport_lb_external_ip_affinity_and_sctp() {
    let mut s = web(vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    s.ports[0].node_port = Some(30080);
    s.external_ips = vec!["198.51.100.7".parse().unwrap()];
    s.load_balancer_ips = vec!["192.0.2.1".parse().unwrap()];
    s.affinity_timeout = Some(600);
    s.ports.push(ServicePort {
        name: "sctp".into(),
        protocol: Protocol::Sctp,
        port: 9999,
        node_port: None,
        endpoints: vec![Endpoint {
            port: 9999,
            ..ep("10.42.0.5", "n1")
        }],
    });
    golden("nodeport-lb-affinity.nft", &full(&table(vec![s])));
}

#[test]
fn traffic_policies_local() {
    let mut etp = web(vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    etp.name = "etp".into();
    etp.ports[0].node_port = Some(30081);
    etp.external_local = true;
    // Only remote endpoints: external traffic is dropped, pods and the host still get through.
    let mut etp_remote = web(vec![ep("10.42.0.6", "n2")]);
    etp_remote.name = "etp-remote".into();
    etp_remote.cluster_ip = Some("10.43.0.22".parse().unwrap());
    etp_remote.ports[0].node_port = Some(30082);
    etp_remote.external_local = true;
    let mut itp = web(vec![ep("10.42.0.6", "n2")]);
    itp.name = "itp".into();
    itp.cluster_ip = Some("10.43.0.21".parse().unwrap());
    itp.internal_local = true;
    golden(
        "traffic-policy-local.nft",
        &full(&table(vec![etp, etp_remote, itp])),
    );
}

/// The DNAT targets the ClusterIP 10.43.0.20:80 picks from: the endpoint map's elements for
/// its key when it goes to a shared picker, else the rules of its own chain.
fn targets(rs: &Ruleset) -> Vec<String> {
    let key = "10.43.0.20 . tcp . 80";
    let chain = rs.maps["service-ips"].elements[key]
        .value
        .strip_prefix("goto ")
        .unwrap()
        .to_string();
    if let Some(n) = chain.strip_prefix("cluster-pick-tcp-") {
        let n: usize = n.parse().unwrap();
        return (0..n)
            .map(|k| {
                let target = &rs.maps["cluster-endpoints-tcp"].elements[&format!("{key} . {k}")];
                target.value.replace(" . ", ":")
            })
            .collect();
    }
    rs.chains[&chain]
        .rules
        .iter()
        .filter_map(|r| r.split_once("dnat ip to ").map(|(_, t)| t.to_string()))
        .collect()
}

#[test]
fn terminating_endpoints_are_used_only_without_ready_ones() {
    let mixed = render(&table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        terminating(ep("10.42.0.6", "n1")),
    ])]));
    assert_eq!(targets(&mixed), ["10.42.0.5:8080"]);

    let draining = render(&table(vec![web(vec![
        terminating(ep("10.42.0.5", "n1")),
        Endpoint {
            serving: false,
            ..terminating(ep("10.42.0.6", "n1"))
        },
    ])]));
    assert_eq!(targets(&draining), ["10.42.0.5:8080"]);
}

#[test]
fn endpoints_are_picked_through_the_shared_maps() {
    let rs = render(&table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.6", "n1"),
        ep("10.42.0.7", "n1"),
    ])]));
    assert_eq!(
        rs.maps["service-ips"].elements["10.43.0.20 . tcp . 80"].value,
        "goto cluster-pick-tcp-3"
    );
    assert_eq!(
        targets(&rs),
        ["10.42.0.5:8080", "10.42.0.6:8080", "10.42.0.7:8080"]
    );
    assert_eq!(
        rs.chains["cluster-pick-tcp-3"].rules,
        [
            "ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
            "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map \
             @cluster-endpoints-tcp"
        ]
    );
    // The Service itself has no chain, and the picker marks traffic from outside the pod
    // network in place of the `cluster-ips` set.
    assert!(!rs.chains.keys().any(|c| c.contains("/web/")));
    assert!(rs.maps["cluster-ips"].elements.is_empty());
}

#[test]
fn endpoints_beyond_the_shared_pickers_are_picked_uniformly_by_a_cascade() {
    let eps: Vec<Endpoint> = (0..=SHARED_PICK_MAX)
        .map(|i| ep(&format!("10.42.1.{}", i + 1), "n1"))
        .collect();
    let rs = render(&table(vec![web(eps)]));
    let chain = rs.maps["service-ips"].elements["10.43.0.20 . tcp . 80"]
        .value
        .strip_prefix("goto ")
        .unwrap()
        .to_string();
    let n = SHARED_PICK_MAX + 1;
    let rules = &rs.chains[&chain].rules;
    assert_eq!(rules.len(), n);
    // 1/n, then 1/(n-1) of the remaining (n-1)/n, …, then the rest: 1/n each.
    assert_eq!(
        rules[0],
        format!("numgen random mod {n} == 0 meta l4proto tcp dnat ip to 10.42.1.1:8080")
    );
    assert_eq!(
        rules[n - 2],
        format!(
            "numgen random mod 2 == 0 meta l4proto tcp dnat ip to 10.42.1.{}:8080",
            n - 1
        )
    );
    assert_eq!(
        rules[n - 1],
        format!("meta l4proto tcp dnat ip to 10.42.1.{n}:8080")
    );
    assert!(rs.maps["cluster-endpoints-tcp"].elements.is_empty());
}

#[test]
fn cluster_dns_address_and_headless_services_get_no_rules() {
    let mut dns = web(vec![ep("10.42.0.9", "n1")]);
    dns.cluster_ip = Some("10.43.0.10".parse().unwrap());
    let mut headless = web(vec![ep("10.42.0.9", "n1")]);
    headless.cluster_ip = None;
    assert_eq!(render(&table(vec![dns, headless])), render(&table(vec![])));
}

#[test]
fn stale_objects_are_deleted_but_netpol_objects_are_kept() {
    let existing = parse_listing(
        "table inet rk3s {\n\
         \tset affinity-OLD {\n\t\ttype ipv4_addr\n\t}\n\
         \tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n\
         \tchain services {\n\t}\n\
         \tchain service-OLD-default/gone/tcp/80 {\n\t}\n\
         \tchain netpol-ingress {\n\t}\n\
         \tset netpol-ips {\n\t}\n\
         }\n",
    );
    assert!(existing.chains.contains("service-OLD-default/gone/tcp/80"));
    let script = full_script(&render(&table(vec![])), &existing);
    assert!(script.contains("flush chain inet rk3s service-OLD-default/gone/tcp/80\n"));
    assert!(script.contains("flush chain inet rk3s services\n"));
    assert!(script.contains("delete chain inet rk3s service-OLD-default/gone/tcp/80\n"));
    assert!(script.contains("delete set inet rk3s affinity-OLD\n"));
    assert!(!script.contains("netpol"));
    assert!(!script.contains("delete map"));
    assert!(!script.contains("flush table") && !script.contains("delete table"));
}

/// The incremental script from `before` (as applied) to `after`.
fn diff(before: &ServiceTable, after: &ServiceTable) -> String {
    let mut r = Rendered::new();
    r.update(before);
    r.mark_applied();
    r.update(after);
    r.diff_script().unwrap()
}

#[test]
fn incremental_update_sends_only_the_changed_objects() {
    let before = table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.6", "n1"),
    ])]);
    let after = table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.7", "n1"),
    ])]);
    assert_eq!(diff(&before, &before), "");
    golden("incremental.nft", &diff(&before, &after));
    // Removing a service with chains of its own deletes them after the map element pointing
    // at them.
    let mut affine = web(vec![ep("10.42.0.5", "n1")]);
    affine.affinity_timeout = Some(60);
    let script = diff(&table(vec![affine]), &table(vec![]));
    let del_elem = script.find("delete element inet rk3s service-ips").unwrap();
    let del_chain = script.find("delete chain").unwrap();
    assert!(del_elem < del_chain, "{script}");
    // Rules go in with their chain: nft 1.0.6 lists every chain of the ruleset before an
    // `add rule` or `add element`, which costs 25 ms on a 10,000-Service table.
    assert!(!script.contains("add rule") && !script.contains("add element"));
}

#[test]
fn nothing_is_diffed_before_a_sync_succeeded() {
    let mut r = Rendered::new();
    r.update(&table(vec![web(vec![ep("10.42.0.5", "n1")])]));
    assert_eq!(r.diff_script(), None);
    assert_eq!(r.applied_objects(), None);
    r.mark_applied();
    assert_eq!(r.diff_script().as_deref(), Some(""));
    assert!(r.applied_objects().unwrap().chains.contains("services"));
    r.forget_applied();
    assert_eq!(r.diff_script(), None);
}

/// A sequence of tables that changes endpoints, affinity (and its timeout), traffic policy,
/// NodePorts, a contested externalIP, the node's addresses and the cluster CIDR.
fn steps() -> Vec<ServiceTable> {
    let mut a = web(vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    a.ports[0].node_port = Some(30080);
    a.external_ips = vec!["198.51.100.7".parse().unwrap()];
    let mut b = web(vec![ep("10.42.0.6", "n2")]);
    b.name = "b".into();
    b.cluster_ip = Some("10.43.0.21".parse().unwrap());
    b.external_ips = vec!["198.51.100.7".parse().unwrap()];
    let mut t1 = table(vec![a.clone(), b.clone()]);
    let mut a2 = a.clone();
    a2.affinity_timeout = Some(60);
    a2.ports[0].endpoints.push(ep("10.42.0.8", "n1"));
    let t2 = table(vec![b.clone(), a2.clone()]);
    let mut a3 = a2.clone();
    a3.affinity_timeout = Some(120);
    a3.external_local = true;
    let mut t3 = table(vec![a3.clone(), b.clone()]);
    t3.node_ips.push("192.0.2.2".parse().unwrap());
    let mut t4 = table(vec![b.clone()]);
    t4.cluster_cidr = "10.40.0.0/14".parse().unwrap();
    let mut b5 = b.clone();
    b5.ports[0].endpoints.clear();
    t1.services.reverse();
    vec![t1, t2, t3, t4, table(vec![b5, a]), table(vec![])]
}

#[test]
fn cached_rendering_equals_a_fresh_one() {
    let mut r = Rendered::new();
    for (i, t) in steps().iter().enumerate() {
        r.update(t);
        assert_eq!(r.ruleset(), &render(t), "step {i}");
    }
}

#[test]
fn contested_elements_go_to_the_first_service_and_pass_on_when_it_goes() {
    let t = &steps()[0];
    let rs = render(t);
    let key = "198.51.100.7 . tcp . 80";
    let held = &rs.maps["service-ips"].elements[key];
    assert_eq!(held.owner.1, "b");
    // b's single endpoint, through the shared external picker.
    assert_eq!(held.value, "goto external-pick-tcp-1");
    assert_eq!(
        rs.maps["cluster-endpoints-tcp"].elements[&format!("{key} . 0")].value,
        "10.42.0.6 . 8080"
    );
    let mut without_b = t.clone();
    without_b.services.retain(|s| s.name != "b");
    let script = diff(t, &without_b);
    assert!(
        script
            .lines()
            .any(|l| l.starts_with("delete element inet rk3s service-ips {") && l.contains(key)),
        "{script}"
    );
    // web (two endpoints) takes the element over.
    assert!(
        script.contains(&format!("{key} : goto external-pick-tcp-2")),
        "{script}"
    );
    assert!(
        script.contains(&format!("{key} . 0 : 10.42.0.5 . 8080")),
        "{script}"
    );
}

#[test]
fn only_changed_services_are_rendered_again() {
    let t = &steps()[0];
    let mut r = Rendered::new();
    r.update(t);
    r.mark_applied();
    let mut changed = t.clone();
    let a = changed
        .services
        .iter_mut()
        .find(|s| s.name == "web")
        .unwrap();
    a.ports[0].endpoints[0].ip = "10.42.0.9".parse().unwrap();
    r.update(&changed);
    let script = r.diff_script().unwrap();
    // Only web's elements: its ClusterIP, externalIP and NodePort keys in the endpoint map.
    assert!(
        script.contains("10.43.0.20 . tcp . 80 . 1 : 10.42.0.9 . 8080")
            && !script.contains("10.43.0.21"),
        "{script}"
    );
    assert!(script.contains("10.42.0.9 . 10.42.0.9"), "{script}");
    assert!(!script.contains("chain"), "{script}");
}

#[test]
fn a_full_sync_flushes_only_what_exists() {
    let rs = render(&table(vec![web(vec![ep("10.42.0.5", "n1")])]));
    let fresh = full_script(&rs, &Existing::default());
    assert!(
        !fresh.contains("flush") && !fresh.contains("delete"),
        "{fresh}"
    );
    let existing = parse_listing(
        "table inet rk3s {\n\tmap service-ips {\n\t}\n\tset hairpin-endpoints {\n\t}\n\tchain services {\n\t}\n}\n",
    );
    let again = full_script(&rs, &existing);
    assert!(
        again.contains("flush chain inet rk3s services\n"),
        "{again}"
    );
    assert!(
        again.contains("flush map inet rk3s service-ips\n"),
        "{again}"
    );
    assert!(
        again.contains("flush set inet rk3s hairpin-endpoints\n"),
        "{again}"
    );
    assert!(
        !again.contains("flush map inet rk3s service-nodeports"),
        "{again}"
    );
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// A LoadBalancer Service on a VIP (not one of the node's addresses) with source ranges.
fn limited(ranges: &[&str]) -> Service {
    let mut s = web(vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    s.ports[0].node_port = Some(30080);
    s.load_balancer_ips = vec!["198.51.100.10".parse().unwrap()];
    s.external_ips = vec!["198.51.100.7".parse().unwrap()];
    s.source_ranges = ranges.iter().map(|r| net(r)).collect();
    s
}

#[test]
fn load_balancer_source_ranges() {
    // A range holding the node's address lets the LB VIP through as a source too; ranges are
    // merged. The NodePort and the externalIP are not limited.
    let tcp = limited(&["203.0.113.0/25", "203.0.113.128/25", "192.0.2.0/24"]);
    // UDP and SCTP ports of a Service whose ranges do not hold the node: only the ranges.
    let mut other = web(vec![ep("10.42.0.7", "n1")]);
    other.name = "dns-like".into();
    other.cluster_ip = Some("10.43.0.30".parse().unwrap());
    other.load_balancer_ips = vec!["198.51.100.11".parse().unwrap()];
    other.source_ranges = vec![net("10.250.0.0/30")];
    other.ports[0].protocol = Protocol::Udp;
    other.ports[0].port = 53;
    other.ports.push(ServicePort {
        name: "sctp".into(),
        protocol: Protocol::Sctp,
        port: 9999,
        node_port: None,
        endpoints: vec![Endpoint {
            port: 9999,
            ..ep("10.42.0.7", "n1")
        }],
    });
    // Ranges without a load balancer address: nothing to limit.
    let mut no_lb = limited(&["203.0.113.0/24"]);
    no_lb.name = "no-lb".into();
    no_lb.cluster_ip = Some("10.43.0.31".parse().unwrap());
    no_lb.load_balancer_ips.clear();
    no_lb.external_ips.clear();
    let t = table(vec![tcp, other, no_lb]);
    let rs = render(&t);
    let fw = &rs.maps["firewall-ips"].elements;
    let keys: Vec<&str> = fw.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "198.51.100.10 . tcp . 80",
            "198.51.100.11 . sctp . 9999",
            "198.51.100.11 . udp . 53"
        ]
    );
    let chain = fw["198.51.100.10 . tcp . 80"]
        .value
        .strip_prefix("goto ")
        .unwrap();
    assert_eq!(
        rs.chains[chain].rules,
        ["ip saddr != { 192.0.2.0/24, 198.51.100.10, 203.0.113.0/24 } drop"]
    );
    golden("source-ranges.nft", &full(&t));
}

#[test]
fn a_change_of_source_ranges_rewrites_only_the_firewall_chain() {
    let before = table(vec![limited(&["203.0.113.0/24"])]);
    let after = table(vec![limited(&["203.0.113.0/24", "10.250.0.0/30"])]);
    let script = diff(&before, &after);
    assert_eq!(script.lines().count(), 2, "{script}");
    assert!(script.lines().all(|l| l.contains(" firewall-")), "{script}");
    assert!(script.contains("{ ip saddr != { 10.250.0.0/30, 203.0.113.0/24 } drop ; }"));
    // Order and duplicates do not matter.
    let same = table(vec![limited(&["203.0.113.0/24", "203.0.113.0/24"])]);
    assert_eq!(diff(&before, &same), "");
    // Dropping the ranges removes the element, then the chain; nothing else changes.
    let open = diff(&before, &table(vec![limited(&[])]));
    let lines: Vec<&str> = open.lines().collect();
    assert_eq!(lines.len(), 3, "{open}");
    assert!(lines[0].starts_with("delete element inet rk3s firewall-ips {"));
    assert!(lines[1].starts_with("flush chain inet rk3s firewall-"));
    assert!(lines[2].starts_with("delete chain inet rk3s firewall-"));
    // Setting them again adds the chain before the element pointing at it.
    let closed = diff(&table(vec![limited(&[])]), &before);
    let decl = closed.find("add chain inet rk3s firewall-").unwrap();
    let elem = closed.find("add map inet rk3s firewall-ips").unwrap();
    assert!(decl < elem, "{closed}");
}
