//! The cluster zone as data: a pure function from Services and EndpointSlices to every record
//! the cluster DNS serves, and the lookup that turns a question into an answer. The reference is
//! CoreDNS's kubernetes plugin as k3s configures it (`kubernetes cluster.local in-addr.arpa
//! ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa }`, TTL 5 s), which implements
//! the Kubernetes DNS-Based Service Discovery specification.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::wire::{Data, Record, Sections, TYPE_ANY, TYPE_CNAME, TYPE_SOA, TYPE_SRV};

/// The TTL of every cluster record (CoreDNS's `ttl` default).
pub const TTL: u32 = 5;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a question is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR, authoritative: the records (the answer may be empty: NODATA, with the SOA in
    /// the authority section).
    Found(Sections),
    /// NXDOMAIN inside the cluster domain, with the SOA in the authority section.
    NxDomain(Sections),
    /// Not ours (outside the cluster domain, or a reverse name we have no PTR for: k3s's
    /// `fallthrough in-addr.arpa ip6.arpa`): ask the upstream resolvers.
    Forward,
}

/// Every record of the cluster zone, indexed by owner name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    domain: String,
    soa: Record,
    /// Owner name → its records, for names in the cluster domain and the reverse PTR names.
    names: BTreeMap<String, Vec<Record>>,
    /// Names in the cluster domain that exist only because a name below them does (empty
    /// non-terminals such as `default.svc.cluster.local`): NODATA, not NXDOMAIN.
    parents: BTreeSet<String>,
}

/// The inputs of [`build`] besides the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The cluster domain, lower case, without a trailing dot (`cluster.local`).
    pub domain: String,
    /// The cluster DNS address, served as `ns.dns.<domain>` (the SOA's MNAME), as CoreDNS does.
    pub cluster_dns: Option<Ipv4Addr>,
    /// The SOA serial: CoreDNS uses the time of the last change it saw (unix seconds).
    pub serial: u32,
}

/// Builds the zone from the Services and EndpointSlices of every namespace.
pub fn build<'a>(
    zone: &Zone,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Records {
    let domain = zone.domain.trim_end_matches('.').to_ascii_lowercase();
    let mut b = Builder {
        names: BTreeMap::new(),
    };
    // Endpoint slices grouped by namespace/service.
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        by_service.entry((ns, svc.clone())).or_default().push(s);
    }
    for svc in services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        if ns.is_empty() || name.is_empty() {
            continue;
        }
        let slices = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        b.service(&domain, &ns, &name, svc, slices);
    }
    let apex_ns = format!("ns.dns.{domain}");
    b.add(&domain, Data::Ns(apex_ns.clone()));
    if let Some(ip) = zone.cluster_dns {
        b.add(&apex_ns, Data::A(ip));
    }
    let mut names = b.names;
    for records in names.values_mut() {
        records.sort();
        records.dedup();
        set_srv_weights(records);
    }
    let mut parents = BTreeSet::new();
    parents.insert(format!("pod.{domain}"));
    for name in names.keys() {
        if !in_domain(name, &domain) {
            continue;
        }
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if !in_domain(parent, &domain) {
                break;
            }
            parents.insert(parent.to_string());
            rest = parent;
        }
    }
    let soa = Record {
        name: domain.clone(),
        ttl: TTL,
        data: Data::Soa {
            mname: apex_ns,
            rname: format!("hostmaster.{domain}"),
            serial: zone.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: TTL,
        },
    };
    Records {
        domain,
        soa,
        names,
        parents,
    }
}

/// SRV weights as CoreDNS computes them: records of one priority share 100 equally.
fn set_srv_weights(records: &mut [Record]) {
    let n = records
        .iter()
        .filter(|r| r.data.rtype() == TYPE_SRV)
        .count();
    if n == 0 {
        return;
    }
    let w = (100 / n) as u16;
    for r in records.iter_mut() {
        if let Data::Srv { weight, .. } = &mut r.data {
            *weight = w;
        }
    }
}

fn in_domain(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// The reverse-lookup name of an address (`1.0.43.10.in-addr.arpa`, nibbles for IPv6).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xF, byte >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The label an endpoint gets under its service: its `hostname`, else its address with dashes
/// (CoreDNS's `endpointHostname`).
fn endpoint_label(hostname: Option<&str>, ip: IpAddr) -> String {
    match hostname {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => ip.to_string().replace(['.', ':'], "-"),
    }
}

fn data_for(ip: IpAddr) -> Data {
    match ip {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    }
}

struct Builder {
    names: BTreeMap<String, Vec<Record>>,
}

/// One ready endpoint address of a service, with the label it gets.
struct Endpoint {
    ip: IpAddr,
    label: String,
}

/// A port: `(name, lower-case protocol, number)`.
type Port = (String, String, u16);

impl Builder {
    fn add(&mut self, name: &str, data: Data) {
        self.names
            .entry(name.to_string())
            .or_default()
            .push(Record {
                name: name.to_string(),
                ttl: TTL,
                data,
            });
    }

    /// The SRV records of `base` for `ports` pointing at `target`: one under
    /// `_name._proto.base` for each named port and one under `base` itself for every port
    /// (CoreDNS answers an SRV question on the service name with all its ports).
    fn srv(&mut self, base: &str, ports: &[Port], target: &str) {
        for (name, proto, port) in ports {
            let data = Data::Srv {
                priority: 0,
                weight: 0,
                port: *port,
                target: target.to_string(),
            };
            if !name.is_empty() {
                self.add(&format!("_{name}._{proto}.{base}"), data.clone());
            }
            self.add(base, data);
        }
    }

    fn service(
        &mut self,
        domain: &str,
        ns: &str,
        name: &str,
        svc: &Service,
        slices: &[&EndpointSlice],
    ) {
        let base = format!("{name}.{ns}.svc.{domain}");
        let Some(spec) = &svc.spec else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            // Only a name becomes a CNAME; CoreDNS ignores an ExternalName that is an address.
            let target = spec
                .external_name
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if !target.is_empty() && target.parse::<IpAddr>().is_err() {
                self.add(&base, Data::Cname(target));
            }
            return;
        }
        let endpoints = ready_endpoints(slices);
        let slice_ports = slice_ports(slices);
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let mut cluster_ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        cluster_ips.sort();
        cluster_ips.dedup();
        // Every endpoint has a name under its service, headless or not (CoreDNS answers
        // endpoint queries for both); its address gets a PTR back to that name.
        for e in &endpoints {
            let host = format!("{}.{base}", e.label);
            self.add(&host, data_for(e.ip));
            self.add(&reverse_name(e.ip), Data::Ptr(host));
        }
        if headless {
            for e in &endpoints {
                self.add(&base, data_for(e.ip));
                let host = format!("{}.{base}", e.label);
                self.srv(&base, &slice_ports, &host);
            }
        } else {
            let ports: Vec<Port> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let number = u16::try_from(p.port).ok()?;
                    let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    Some((p.name.clone().unwrap_or_default(), proto, number))
                })
                .collect();
            for ip in &cluster_ips {
                self.add(&base, data_for(*ip));
                self.add(&reverse_name(*ip), Data::Ptr(base.clone()));
            }
            if !cluster_ips.is_empty() {
                self.srv(&base, &ports, &base);
            }
        }
    }
}

/// The ready endpoint addresses of a service's slices (an endpoint without a `ready` condition
/// counts as ready, as upstream says consumers must assume), each address once.
fn ready_endpoints(slices: &[&EndpointSlice]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for s in slices {
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for a in &e.addresses {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    continue;
                };
                if out.iter().any(|o| o.ip == ip) {
                    continue;
                }
                out.push(Endpoint {
                    ip,
                    label: endpoint_label(e.hostname.as_deref(), ip),
                });
            }
        }
    }
    out
}

/// The ports of a service's slices (for headless SRV records), each once.
fn slice_ports(slices: &[&EndpointSlice]) -> Vec<Port> {
    let mut ports: Vec<Port> = slices
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let number = u16::try_from(p.port?).ok()?;
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            Some((p.name.clone().unwrap_or_default(), proto, number))
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The address a pod name encodes (`10-42-0-5` or `fd00--5`), CoreDNS's "pods insecure" mode:
/// any well-formed address answers, without checking that such a pod exists.
fn pod_address(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Records {
    /// An empty zone (no objects seen yet).
    pub fn empty(zone: &Zone) -> Records {
        build(zone, [], [])
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `name` (lower case, no trailing dot) is in the cluster domain.
    pub fn in_zone(&self, name: &str) -> bool {
        in_domain(name, &self.domain)
    }

    /// How many owner names the zone has (for logs and the bench).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn negative(&self, nx: bool) -> Answer {
        let s = Sections {
            authority: vec![self.soa.clone()],
            ..Default::default()
        };
        if nx {
            Answer::NxDomain(s)
        } else {
            Answer::Found(s)
        }
    }

    /// Answers `qtype` for `name` (lower case, no trailing dot).
    pub fn lookup(&self, name: &str, qtype: u16) -> Answer {
        let ours = self.in_zone(name);
        if name == self.domain && qtype == TYPE_SOA {
            return Answer::Found(Sections {
                answer: vec![self.soa.clone()],
                ..Default::default()
            });
        }
        if let Some(records) = self.names.get(name) {
            return self.answer(records, qtype);
        }
        if !ours {
            return Answer::Forward;
        }
        if let Some(answer) = self.pod(name, qtype) {
            return answer;
        }
        self.negative(!self.parents.contains(name))
    }

    fn answer(&self, records: &[Record], qtype: u16) -> Answer {
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| qtype == TYPE_ANY || r.data.rtype() == qtype)
            .cloned()
            .collect();
        if !matching.is_empty() {
            let mut additional = Vec::new();
            for r in &matching {
                if let Data::Srv { target, .. } = &r.data {
                    for t in self.names.get(target).into_iter().flatten() {
                        if matches!(t.data, Data::A(_) | Data::Aaaa(_)) && !additional.contains(t) {
                            additional.push(t.clone());
                        }
                    }
                }
            }
            return Answer::Found(Sections {
                answer: matching,
                additional,
                ..Default::default()
            });
        }
        // A CNAME answers every type; a target inside the zone is followed here, one outside
        // it is the caller's to resolve.
        if let Some(cname) = records.iter().find(|r| r.data.rtype() == TYPE_CNAME) {
            let mut answer = vec![cname.clone()];
            if let Data::Cname(target) = &cname.data
                && self.in_zone(target)
                && let Some(t) = self.names.get(target)
                && !t.iter().any(|r| r.data.rtype() == TYPE_CNAME)
            {
                answer.extend(t.iter().filter(|r| r.data.rtype() == qtype).cloned());
            }
            return Answer::Found(Sections {
                answer,
                ..Default::default()
            });
        }
        self.negative(false)
    }

    /// `<address>.<namespace>.pod.<domain>`.
    fn pod(&self, name: &str, qtype: u16) -> Option<Answer> {
        let rest = name.strip_suffix(&self.domain)?.strip_suffix(".pod.")?;
        let (label, ns) = rest.split_once('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        let ip = pod_address(label)?;
        let record = Record {
            name: name.to_string(),
            ttl: TTL,
            data: data_for(ip),
        };
        Some(self.answer(&[record], qtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_PTR};

    /// MX: a type the cluster zone never has.
    const TYPE_MX: u16 = 15;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn zone() -> Zone {
        Zone {
            domain: "cluster.local".into(),
            cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
            serial: 42,
        }
    }

    fn fixture() -> Records {
        let services = [
            service(serde_json::json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"port": 8443}]}
            })),
            service(serde_json::json!({
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"clusterIP": "None",
                         "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}
            })),
            service(serde_json::json!({
                "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "Example.COM."}
            })),
            service(serde_json::json!({
                "metadata": {"name": "v6", "namespace": "default"},
                "spec": {"clusterIP": "fd00:43::5", "clusterIPs": ["fd00:43::5"],
                         "ports": [{"port": 53, "protocol": "UDP", "name": "dns"}]}
            })),
        ];
        let slices = [
            slice(serde_json::json!({
                "metadata": {"name": "db-abc", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.42.0.8"], "conditions": {}},
                    {"addresses": ["10.42.0.9"], "hostname": "db-2", "conditions": {"ready": false}}
                ]
            })),
            slice(serde_json::json!({
                "metadata": {"name": "web-abc", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}}]
            })),
        ];
        build(&zone(), &services, &slices)
    }

    fn answer(r: &Records, name: &str, qtype: u16) -> Vec<Data> {
        match r.lookup(name, qtype) {
            Answer::Found(s) => s.answer.into_iter().map(|r| r.data).collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn srv(port: u16, weight: u16, target: &str) -> Data {
        Data::Srv {
            priority: 0,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn cluster_ip_services_have_a_and_aaaa_records() {
        let r = fixture();
        assert_eq!(
            answer(&r, "web.default.svc.cluster.local", TYPE_A),
            [Data::A(Ipv4Addr::new(10, 43, 0, 20))]
        );
        assert_eq!(
            answer(&r, "v6.default.svc.cluster.local", TYPE_AAAA),
            [Data::Aaaa("fd00:43::5".parse().unwrap())]
        );
        // The name exists with another type: NODATA with the SOA.
        match r.lookup("v6.default.svc.cluster.local", TYPE_A) {
            Answer::Found(s) => {
                assert!(s.answer.is_empty());
                assert_eq!(s.authority[0].data.rtype(), TYPE_SOA);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headless_services_answer_with_ready_endpoints_and_hostnames() {
        let r = fixture();
        assert_eq!(
            answer(&r, "db.shop.svc.cluster.local", TYPE_A),
            [
                Data::A(Ipv4Addr::new(10, 42, 0, 7)),
                Data::A(Ipv4Addr::new(10, 42, 0, 8))
            ]
        );
        assert_eq!(
            answer(&r, "db-0.db.shop.svc.cluster.local", TYPE_A),
            [Data::A(Ipv4Addr::new(10, 42, 0, 7))]
        );
        // Without a hostname the endpoint is named by its dashed address.
        assert_eq!(
            answer(&r, "10-42-0-8.db.shop.svc.cluster.local", TYPE_A),
            [Data::A(Ipv4Addr::new(10, 42, 0, 8))]
        );
        // Not ready: no record.
        assert!(matches!(
            r.lookup("db-2.db.shop.svc.cluster.local", TYPE_A),
            Answer::NxDomain(_)
        ));
    }

    #[test]
    fn srv_records_for_named_ports() {
        let r = fixture();
        assert_eq!(
            answer(&r, "_http._tcp.web.default.svc.cluster.local", TYPE_SRV),
            [srv(80, 100, "web.default.svc.cluster.local")]
        );
        // The service name itself lists every port, named or not.
        assert_eq!(
            answer(&r, "web.default.svc.cluster.local", TYPE_SRV),
            [
                srv(80, 50, "web.default.svc.cluster.local"),
                srv(8443, 50, "web.default.svc.cluster.local")
            ]
        );
        // Headless: one per endpoint, with the targets' addresses as additional records.
        match r.lookup("_pg._tcp.db.shop.svc.cluster.local", TYPE_SRV) {
            Answer::Found(s) => {
                let data: Vec<Data> = s.answer.into_iter().map(|r| r.data).collect();
                assert_eq!(
                    data,
                    [
                        srv(5432, 50, "10-42-0-8.db.shop.svc.cluster.local"),
                        srv(5432, 50, "db-0.db.shop.svc.cluster.local"),
                    ]
                );
                assert_eq!(s.additional.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(&r, "_dns._udp.v6.default.svc.cluster.local", TYPE_SRV),
            [srv(53, 100, "v6.default.svc.cluster.local")]
        );
    }

    #[test]
    fn pod_records_follow_pods_insecure() {
        let r = fixture();
        assert_eq!(
            answer(&r, "10-42-0-99.anyns.pod.cluster.local", TYPE_A),
            [Data::A(Ipv4Addr::new(10, 42, 0, 99))]
        );
        assert_eq!(
            answer(&r, "fd00--1.default.pod.cluster.local", TYPE_AAAA),
            [Data::Aaaa("fd00::1".parse().unwrap())]
        );
        assert!(answer(&r, "10-42-0-99.anyns.pod.cluster.local", TYPE_AAAA).is_empty());
        assert!(matches!(
            r.lookup("not-an-ip.default.pod.cluster.local", TYPE_A),
            Answer::NxDomain(_)
        ));
    }

    #[test]
    fn ptr_records_for_cluster_ips_and_endpoints() {
        let r = fixture();
        assert_eq!(
            answer(&r, "20.0.43.10.in-addr.arpa", TYPE_PTR),
            [Data::Ptr("web.default.svc.cluster.local".into())]
        );
        assert_eq!(
            answer(&r, "7.0.42.10.in-addr.arpa", TYPE_PTR),
            [Data::Ptr("db-0.db.shop.svc.cluster.local".into())]
        );
        assert_eq!(
            answer(&r, "5.0.42.10.in-addr.arpa", TYPE_PTR),
            [Data::Ptr("10-42-0-5.web.default.svc.cluster.local".into())]
        );
        let v6 = reverse_name("fd00:43::5".parse().unwrap());
        assert!(v6.starts_with("5.0.0.0.0.0.0.0."));
        assert!(v6.ends_with(".3.4.0.0.0.0.d.f.ip6.arpa"));
        assert_eq!(
            answer(&r, &v6, TYPE_PTR),
            [Data::Ptr("v6.default.svc.cluster.local".into())]
        );
        // Unknown reverse names fall through to the upstream resolvers.
        assert_eq!(
            r.lookup("1.1.168.192.in-addr.arpa", TYPE_PTR),
            Answer::Forward
        );
    }

    #[test]
    fn external_name_services_are_cnames() {
        let r = fixture();
        assert_eq!(
            answer(&r, "ext.default.svc.cluster.local", TYPE_A),
            [Data::Cname("example.com".into())]
        );
        assert_eq!(
            answer(&r, "ext.default.svc.cluster.local", TYPE_CNAME),
            [Data::Cname("example.com".into())]
        );
    }

    #[test]
    fn misses_in_the_domain_are_nxdomain_with_coredns_soa() {
        let r = fixture();
        let Answer::NxDomain(s) = r.lookup("nope.default.svc.cluster.local", TYPE_A) else {
            panic!("expected NXDOMAIN");
        };
        assert_eq!(
            s.authority,
            [Record {
                name: "cluster.local".into(),
                ttl: 5,
                data: Data::Soa {
                    mname: "ns.dns.cluster.local".into(),
                    rname: "hostmaster.cluster.local".into(),
                    serial: 42,
                    refresh: 7200,
                    retry: 1800,
                    expire: 86400,
                    minimum: 5,
                },
            }]
        );
        // A namespace with services, and the zone's structure, exist without records.
        for name in [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ] {
            match r.lookup(name, TYPE_A) {
                Answer::Found(s) => assert!(s.answer.is_empty(), "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            r.lookup("web.default.svc.cluster.local", TYPE_MX),
            Answer::Found(Sections { ref answer, .. }) if answer.is_empty()
        ));
        assert!(matches!(
            r.lookup("x.cluster.local", TYPE_A),
            Answer::NxDomain(_)
        ));
        // Outside the domain: forwarded, including look-alike suffixes.
        assert_eq!(r.lookup("example.com", TYPE_A), Answer::Forward);
        assert_eq!(r.lookup("evilcluster.local", TYPE_A), Answer::Forward);
    }

    #[test]
    fn apex_has_soa_and_ns() {
        let r = fixture();
        assert_eq!(answer(&r, "cluster.local", TYPE_SOA).len(), 1);
        assert_eq!(
            answer(&r, "cluster.local", TYPE_NS),
            [Data::Ns("ns.dns.cluster.local".into())]
        );
        assert_eq!(
            answer(&r, "ns.dns.cluster.local", TYPE_A),
            [Data::A(Ipv4Addr::new(10, 43, 0, 10))]
        );
    }

    #[test]
    fn headless_service_without_endpoints_is_nxdomain() {
        let services = [service(serde_json::json!({
            "metadata": {"name": "lonely", "namespace": "default"},
            "spec": {"clusterIP": "None"}
        }))];
        let r = build(&zone(), &services, []);
        assert!(matches!(
            r.lookup("lonely.default.svc.cluster.local", TYPE_A),
            Answer::NxDomain(_)
        ));
    }
}
