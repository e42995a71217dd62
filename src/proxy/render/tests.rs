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

/// The DNAT targets of the ClusterIP's chain.
fn targets(rs: &Ruleset) -> Vec<String> {
    let chain = rs.maps["service-ips"].elements["10.43.0.20 . tcp . 80"]
        .strip_prefix("goto ")
        .unwrap()
        .to_string();
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
fn endpoints_are_picked_uniformly_by_a_cascade() {
    let rs = render(&table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.6", "n1"),
        ep("10.42.0.7", "n1"),
    ])]));
    let chain = rs.maps["service-ips"].elements["10.43.0.20 . tcp . 80"]
        .strip_prefix("goto ")
        .unwrap()
        .to_string();
    // 1/3, then 1/2 of the remaining 2/3, then the rest: 1/3 each.
    assert_eq!(
        rs.chains[&chain].rules,
        [
            "numgen random mod 3 == 0 meta l4proto tcp dnat ip to 10.42.0.5:8080",
            "numgen random mod 2 == 0 meta l4proto tcp dnat ip to 10.42.0.6:8080",
            "meta l4proto tcp dnat ip to 10.42.0.7:8080",
        ]
    );
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
    assert!(script.contains("delete chain inet rk3s service-OLD-default/gone/tcp/80\n"));
    assert!(script.contains("delete set inet rk3s affinity-OLD\n"));
    assert!(!script.contains("netpol"));
    assert!(!script.contains("delete map"));
    assert!(!script.contains("flush table") && !script.contains("delete table"));
}

#[test]
fn incremental_update_sends_only_the_changed_objects() {
    let before = render(&table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.6", "n1"),
    ])]));
    let after = render(&table(vec![web(vec![
        ep("10.42.0.5", "n1"),
        ep("10.42.0.7", "n1"),
    ])]));
    assert_eq!(diff_script(&before, &before), "");
    golden("incremental.nft", &diff_script(&before, &after));
    // Removing the service deletes its chains after the map element pointing at them.
    let empty = render(&table(vec![]));
    let script = diff_script(&after, &empty);
    let del_elem = script.find("delete element inet rk3s service-ips").unwrap();
    let del_chain = script.find("delete chain").unwrap();
    assert!(del_elem < del_chain, "{script}");
}
