//! NetworkPolicies, pods and namespaces → the `netpol*` sets and chains of `table inet rk3s`.
//! Pure: no I/O, golden-tested. [`render`] builds a [`Ruleset`] (the desired objects);
//! [`full_script`] and [`diff_script`] turn it into `nft -f` text.
//!
//! The layout (semantics of networking.k8s.io/v1 as upstream's conformance tests and k3s's
//! embedded kube-router controller enforce them):
//! - `netpol-forward`, a base chain on the forward hook: established/related traffic is accepted
//!   (replies flow), a packet from an egress-isolated local pod jumps to `netpol-egress`, then a
//!   packet to an ingress-isolated local pod jumps to `netpol-ingress`. Traffic from the node
//!   itself to its pods never crosses the forward hook (it leaves through output), so kubelet
//!   probes stay allowed, as with upstream plugins. Service traffic is DNATed before the forward
//!   hook, so policies see the endpoint pod's address.
//! - `netpol-input`, a base chain on the input hook: a new connection from an egress-isolated
//!   local pod to the node itself (its addresses, the pod network gateway, the cluster DNS
//!   address, a Service whose endpoint is the node) goes through the same `netpol-egress`, as
//!   kube-router hooks its pod chains from INPUT too: egress policies govern pod → node traffic.
//!   Established/related packets are accepted first, so the pods' replies to connections the
//!   node opened (kubelet probes) still flow.
//! - `netpol-egress` ends in `drop`; each allowed (pod, peer, port) `return`s to the calling
//!   chain so that the ingress side is checked too. `netpol-ingress` ends in `drop`; allowed
//!   traffic is accepted. Several policies selecting a pod are additive: any rule of any of them
//!   allows.
//! - The cluster DNS is served by the node process at the cluster DNS address
//!   ([`Cluster::cluster_dns`]), not by pods. For egress it stands for the kube-dns pods k3s
//!   runs: the address is in an egress rule's peer set exactly when the rule's peers would
//!   select a pod in namespace `kube-system` (with that Namespace's real labels) labelled
//!   `k8s-app=kube-dns`, with CoreDNS's named container ports `dns` (53/UDP) and `dns-tcp`
//!   (53/TCP); a rule without peers allows it as any destination. Ports match as usual. An
//!   ipBlock matches it only as it would any address (its CIDR holds it). Ingress peer sets
//!   never hold it: the DNS server opens no connections to pods.
//! - Sets hold addresses, so pod churn changes elements, not rules: `netpol-ingress-isolated` and
//!   `netpol-egress-isolated` (local pods some policy isolates), per policy `<id>-pods` (its local
//!   pods) and per rule `<id>-i<n>` / `<id>-e<n>` (its peers: pod addresses and ipBlocks minus
//!   their excepts, as merged intervals). Only named ports need addresses in rules, since a name
//!   resolves per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod as KubePod;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The table shared with the service proxy; netpol owns only objects named `netpol*`.
pub const TABLE: &str = "rk3s";
/// The family of [`TABLE`].
pub const FAMILY: &str = "inet";
/// Every object this module owns starts with this.
pub const PREFIX: &str = "netpol";

const FORWARD: &str = "netpol-forward";
const INPUT: &str = "netpol-input";
const INGRESS: &str = "netpol-ingress";
const EGRESS: &str = "netpol-egress";
const INGRESS_ISOLATED: &str = "netpol-ingress-isolated";
const EGRESS_ISOLATED: &str = "netpol-egress-isolated";
/// The namespace and label of the kube-dns pods the cluster DNS address stands for.
const KUBE_DNS_NAMESPACE: &str = "kube-system";
const KUBE_DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// nft refuses longer comments.
const COMMENT_MAX: usize = 128;

/// What rendering needs of a pod; pods without an address, host-network pods and finished pods
/// are left out ([`Pod::from_kube`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// `spec.nodeName`: policies are enforced for the pods of this node only.
    pub node: String,
    /// Named container ports: (name, protocol upper case, number).
    pub ports: Vec<(String, String, u16)>,
}

impl Pod {
    /// The parts of `pod` rendering uses; `None` when no policy can apply to it: no IPv4
    /// address yet, the host's network (its address is the node's, which policies do not
    /// govern, as upstream), or finished (its address may already be another pod's).
    pub fn from_kube(pod: &KubePod) -> Option<Pod> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let ip = status.pod_ip.as_deref()?.parse::<Ipv4Addr>().ok()?;
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let name = p.name.clone()?;
                let number = u16::try_from(p.container_port).ok()?;
                let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_uppercase();
                Some((name, protocol, number))
            })
            .collect();
        Some(Pod {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ip,
            node: spec.node_name.clone().unwrap_or_default(),
            ports,
        })
    }

    fn port(&self, name: &str, protocol: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|(n, p, _)| n == name && p == protocol)
            .map(|(_, _, number)| *number)
    }
}

/// Everything rendering looks at.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// This node: only its pods are protected here (each node enforces for its own pods).
    pub node: &'a str,
    pub policies: &'a [NetworkPolicy],
    pub pods: &'a [Pod],
    /// Namespace name → its labels.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The address the node's DNS server answers at (`--cluster-dns`), standing for the
    /// kube-dns pods in egress rules; `None` without the built-in DNS (`--disable=dns`).
    pub cluster_dns: Option<Ipv4Addr>,
}

impl Cluster<'_> {
    /// The kube-dns pod the cluster DNS address stands for: namespace `kube-system`, label
    /// `k8s-app=kube-dns` and CoreDNS's named ports, on no node (it is never a policy's target).
    fn dns_pod(&self) -> Option<Pod> {
        let ip = self.cluster_dns?;
        Some(Pod {
            namespace: KUBE_DNS_NAMESPACE.to_string(),
            name: "cluster-dns".to_string(),
            labels: BTreeMap::from([(KUBE_DNS_LABEL.0.to_string(), KUBE_DNS_LABEL.1.to_string())]),
            ip,
            node: String::new(),
            ports: vec![
                ("dns".to_string(), "UDP".to_string(), 53),
                ("dns-tcp".to_string(), "TCP".to_string(), 53),
            ],
        })
    }
}

/// One nft set: its type line and its elements, already in nft syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// `flags interval` (peer sets hold ranges).
    pub interval: bool,
    pub elements: Vec<String>,
}

/// One nft chain: the base-chain spec if it hooks somewhere, and its rules in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<&'static str>,
    pub rules: Vec<String>,
}

/// The desired `netpol*` objects of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, Set>,
    pub chains: BTreeMap<String, Chain>,
}

/// Objects found in the table (names of sets and chains), as [`parse_listing`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub sets: BTreeSet<String>,
    pub chains: BTreeSet<String>,
}

/// The ingress or egress half of a policy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The desired objects for `cluster`.
pub fn render(cluster: &Cluster<'_>) -> Ruleset {
    let mut out = Ruleset::default();
    let mut ingress_isolated = BTreeSet::new();
    let mut egress_isolated = BTreeSet::new();
    let mut ingress_rules = Vec::new();
    let mut egress_rules = Vec::new();
    let dns_pod = cluster.dns_pod();

    // Sorted by namespace/name so that the output does not depend on watch order.
    let mut policies: Vec<&NetworkPolicy> = cluster.policies.iter().collect();
    policies.sort_by_key(|p| key(p));
    for policy in policies {
        let Some(spec) = policy.spec.as_ref() else {
            continue;
        };
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let comment = comment(&key(policy));
        let id = policy_id(&key(policy));
        let (ingress, egress) = policy_types(spec);
        let targets: Vec<&Pod> = cluster
            .pods
            .iter()
            .filter(|p| {
                p.node == cluster.node
                    && p.namespace == namespace
                    && selects(spec.pod_selector.as_ref(), &p.labels)
            })
            .collect();
        let target_ips: BTreeSet<Ipv4Addr> = targets.iter().map(|p| p.ip).collect();
        let pods_set = format!("{id}-pods");
        out.sets.insert(
            pods_set.clone(),
            Set {
                interval: false,
                elements: target_ips.iter().map(ToString::to_string).collect(),
            },
        );
        if ingress {
            ingress_isolated.extend(target_ips.iter().copied());
            for (n, rule) in spec.ingress.iter().flatten().enumerate() {
                let peers = rule.from.as_deref().unwrap_or_default();
                let peer_set = (!peers.is_empty()).then(|| format!("{id}-i{n}"));
                if let Some(name) = &peer_set {
                    let set = peer_set_of(cluster, namespace, peers, None);
                    out.sets.insert(name.clone(), set);
                }
                let m = Match {
                    direction: Direction::Ingress,
                    pods_set: &pods_set,
                    peer_set: peer_set.as_deref(),
                    comment: &comment,
                };
                ingress_rules.extend(port_rules(
                    &m,
                    rule.ports.as_deref().unwrap_or_default(),
                    // A named port is the port of the pod being reached: here the policy's own.
                    &targets,
                ));
            }
        }
        if egress {
            egress_isolated.extend(target_ips.iter().copied());
            for (n, rule) in spec.egress.iter().flatten().enumerate() {
                let peers = rule.to.as_deref().unwrap_or_default();
                let peer_set = (!peers.is_empty()).then(|| format!("{id}-e{n}"));
                if let Some(name) = &peer_set {
                    let set = peer_set_of(cluster, namespace, peers, dns_pod.as_ref());
                    out.sets.insert(name.clone(), set);
                }
                // A named port is the destination pod's: resolve it on the peer pods (all pods
                // when the rule allows every destination), the cluster DNS address among them.
                // ipBlocks have no port names.
                let destinations: Vec<&Pod> = if peers.is_empty() {
                    cluster.pods.iter().chain(dns_pod.as_ref()).collect()
                } else {
                    cluster
                        .pods
                        .iter()
                        .chain(dns_pod.as_ref())
                        .filter(|p| {
                            peers
                                .iter()
                                .any(|peer| peer_selects(cluster, namespace, peer, p))
                        })
                        .collect()
                };
                let m = Match {
                    direction: Direction::Egress,
                    pods_set: &pods_set,
                    peer_set: peer_set.as_deref(),
                    comment: &comment,
                };
                egress_rules.extend(port_rules(
                    &m,
                    rule.ports.as_deref().unwrap_or_default(),
                    &destinations,
                ));
            }
        }
    }
    ingress_rules.push("drop".to_string());
    egress_rules.push("drop".to_string());

    for (name, ips) in [
        (INGRESS_ISOLATED, ingress_isolated),
        (EGRESS_ISOLATED, egress_isolated),
    ] {
        out.sets.insert(
            name.to_string(),
            Set {
                interval: false,
                elements: ips.iter().map(ToString::to_string).collect(),
            },
        );
    }
    out.chains.insert(
        FORWARD.to_string(),
        Chain {
            base: Some("type filter hook forward priority filter; policy accept;"),
            rules: vec![
                "ct state established,related accept".to_string(),
                format!("ip saddr @{EGRESS_ISOLATED} jump {EGRESS}"),
                format!("ip daddr @{INGRESS_ISOLATED} jump {INGRESS}"),
            ],
        },
    );
    // Packets to the node itself: only the egress side applies (the node is no pod).
    out.chains.insert(
        INPUT.to_string(),
        Chain {
            base: Some("type filter hook input priority filter; policy accept;"),
            rules: vec![
                "ct state established,related accept".to_string(),
                format!("ip saddr @{EGRESS_ISOLATED} jump {EGRESS}"),
            ],
        },
    );
    out.chains.insert(
        INGRESS.to_string(),
        Chain {
            base: None,
            rules: ingress_rules,
        },
    );
    out.chains.insert(
        EGRESS.to_string(),
        Chain {
            base: None,
            rules: egress_rules,
        },
    );
    out
}

/// The parts shared by every rule of one ingress or egress rule of a policy.
struct Match<'a> {
    direction: Direction,
    /// The policy's local pods.
    pods_set: &'a str,
    /// The rule's peers; `None` when the rule allows every peer.
    peer_set: Option<&'a str>,
    comment: &'a str,
}

impl Match<'_> {
    /// `local` is the address match of the policy's pods: its set, or a list of some of them.
    fn rule(&self, local: &str, ports: &str) -> String {
        let (local_dir, peer_dir, verdict) = match self.direction {
            Direction::Ingress => ("daddr", "saddr", "accept"),
            Direction::Egress => ("saddr", "daddr", "return"),
        };
        let mut rule = format!("ip {local_dir} {local}");
        if let Some(peer) = self.peer_set {
            let _ = write!(rule, " ip {peer_dir} @{peer}");
        }
        if !ports.is_empty() {
            let _ = write!(rule, " {ports}");
        }
        let _ = write!(rule, " {verdict} comment \"{}\"", self.comment);
        rule
    }
}

/// The nft rules of one ingress/egress rule with its `ports` (none: every port and protocol).
/// `named_on` are the pods whose container ports give named ports their numbers: the policy's
/// pods for ingress, the possible destinations for egress.
fn port_rules(m: &Match<'_>, ports: &[NetworkPolicyPort], named_on: &[&Pod]) -> Vec<String> {
    let all_local = format!("@{}", m.pods_set);
    if ports.is_empty() {
        return vec![m.rule(&all_local, "")];
    }
    let mut out = Vec::new();
    for port in ports {
        let protocol = port
            .protocol
            .as_deref()
            .unwrap_or("TCP")
            .to_ascii_uppercase();
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            // The API server's validation refuses other protocols; nothing can match one.
            continue;
        }
        let l4 = format!("meta l4proto {}", protocol.to_ascii_lowercase());
        match &port.port {
            None => out.push(m.rule(&all_local, &l4)),
            Some(IntOrString::Int(n)) => {
                let range = match port.end_port {
                    Some(end) if end > *n => format!("{n}-{end}"),
                    _ => n.to_string(),
                };
                out.push(m.rule(&all_local, &format!("{l4} th dport {range}")));
            }
            Some(IntOrString::String(name)) => {
                // Numbers as strings ("80") are ports too, as upstream's intstr handling.
                if let Ok(n) = name.parse::<u16>() {
                    out.push(m.rule(&all_local, &format!("{l4} th dport {n}")));
                    continue;
                }
                let mut by_number: BTreeMap<u16, BTreeSet<Ipv4Addr>> = BTreeMap::new();
                for pod in named_on {
                    if let Some(n) = pod.port(name, &protocol) {
                        by_number.entry(n).or_default().insert(pod.ip);
                    }
                }
                for (n, ips) in by_number {
                    let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                    let ports = format!("{l4} th dport {n}");
                    match m.direction {
                        // The destination is one of the policy's pods: list those.
                        Direction::Ingress => {
                            out.push(m.rule(&format!("{{ {} }}", ips.join(", ")), &ports))
                        }
                        // The destination is a peer pod: the list narrows the peer match.
                        Direction::Egress => out.push(m.rule(
                            &all_local,
                            &format!("ip daddr {{ {} }} {ports}", ips.join(", ")),
                        )),
                    }
                }
            }
        }
    }
    out
}

/// `policyTypes`, defaulted as the API server does: Ingress always, Egress when the policy has
/// egress rules.
fn policy_types(spec: &NetworkPolicySpec) -> (bool, bool) {
    match &spec.policy_types {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// The addresses of `peers` (pods of any node, ipBlocks) as one interval set; `dns_pod` (the
/// cluster DNS address, egress only) is one more pod the peers may select.
fn peer_set_of(
    cluster: &Cluster<'_>,
    namespace: &str,
    peers: &[NetworkPolicyPeer],
    dns_pod: Option<&Pod>,
) -> Set {
    let mut ranges = Vec::new();
    for pod in cluster.pods.iter().chain(dns_pod) {
        if peers
            .iter()
            .any(|peer| peer_selects(cluster, namespace, peer, pod))
        {
            ranges.push((u32::from(pod.ip), u32::from(pod.ip)));
        }
    }
    for peer in peers {
        if let Some(block) = &peer.ip_block {
            ranges.extend(ip_block_ranges(
                &block.cidr,
                block.except.as_deref().unwrap_or_default(),
            ));
        }
    }
    Set {
        interval: true,
        elements: merge(ranges)
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    Ipv4Addr::from(a).to_string()
                } else {
                    format!("{}-{}", Ipv4Addr::from(a), Ipv4Addr::from(b))
                }
            })
            .collect(),
    }
}

/// Whether `peer` (in a policy of `namespace`) selects `pod`: podSelector alone means pods of
/// the policy's namespace, namespaceSelector alone every pod of the matching namespaces, both
/// together the matching pods of the matching namespaces.
fn peer_selects(
    cluster: &Cluster<'_>,
    namespace: &str,
    peer: &NetworkPolicyPeer,
    pod: &Pod,
) -> bool {
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return false;
    }
    let in_namespace = match &peer.namespace_selector {
        None => pod.namespace == namespace,
        Some(selector) => {
            let empty = BTreeMap::new();
            let labels = cluster.namespaces.get(&pod.namespace).unwrap_or(&empty);
            selects(Some(selector), labels)
        }
    };
    in_namespace
        && peer
            .pod_selector
            .as_ref()
            .is_none_or(|s| selects(Some(s), &pod.labels))
}

/// Label selector semantics of metav1.LabelSelector: all matchLabels and all matchExpressions
/// must hold; an empty selector selects everything. An unknown operator selects nothing (the
/// API server refuses it; upstream's conversion fails and the policy selects no pod).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// An ipBlock as address ranges: `cidr` minus each of `except`. IPv6 blocks give nothing (pods
/// here are IPv4 only); an unparsable one too (the API server validates them).
fn ip_block_ranges(cidr: &str, except: &[String]) -> Vec<(u32, u32)> {
    let Some(block) = cidr_range(cidr) else {
        return Vec::new();
    };
    let mut out = vec![block];
    for e in except {
        let Some((ea, eb)) = cidr_range(e) else {
            continue;
        };
        out = out
            .into_iter()
            .flat_map(|(a, b)| {
                if eb < a || ea > b {
                    // No overlap: the range stays whole.
                    return vec![(a, b)];
                }
                let mut left = Vec::new();
                if ea > a {
                    left.push((a, ea - 1));
                }
                if eb < b {
                    left.push((eb + 1, b));
                }
                left
            })
            .collect();
    }
    out
}

fn cidr_range(cidr: &str) -> Option<(u32, u32)> {
    let net: ipnet::Ipv4Net = cidr.parse().ok()?;
    Some((u32::from(net.network()), u32::from(net.broadcast())))
}

/// Sorted, non-overlapping, non-adjacent ranges (nft refuses overlapping interval elements).
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn key(policy: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A policy's object-name stem: `netpol-` + 16 hex digits of FNV-1a of `namespace/name`. A hash,
/// because names can be 253 characters and nft names are shorter; FNV because it is stable
/// across builds (a restarted rk3s must recognise its own objects). Rules carry the real name
/// in their comment.
fn policy_id(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{PREFIX}-{hash:016x}")
}

/// `namespace/name`, cut to what nft accepts (names are ASCII, so any byte is a boundary).
fn comment(key: &str) -> String {
    key.chars().take(COMMENT_MAX).collect()
}

/// Object names in the output of `nft -t list table` (sets, maps and chains).
pub fn parse_listing(listing: &str) -> Existing {
    let mut out = Existing::default();
    for line in listing.lines() {
        let line = line.trim();
        let Some(name) = line.strip_suffix('{').map(str::trim) else {
            continue;
        };
        if let Some(n) = name.strip_prefix("chain ") {
            out.chains.insert(n.trim().to_string());
        } else if let Some(n) = name
            .strip_prefix("set ")
            .or_else(|| name.strip_prefix("map "))
        {
            out.sets.insert(n.trim().to_string());
        }
    }
    out
}

fn t() -> String {
    format!("{FAMILY} {TABLE}")
}

fn add_set(out: &mut String, name: &str, set: &Set) {
    let t = t();
    let flags = if set.interval { " flags interval;" } else { "" };
    let _ = writeln!(out, "add set {t} {name} {{ type ipv4_addr;{flags} }}");
    let _ = writeln!(out, "flush set {t} {name}");
    if !set.elements.is_empty() {
        let _ = writeln!(
            out,
            "add element {t} {name} {{ {} }}",
            set.elements.join(", ")
        );
    }
}

fn add_chain(out: &mut String, name: &str, chain: &Chain) {
    let t = t();
    match chain.base {
        Some(base) => {
            let _ = writeln!(out, "add chain {t} {name} {{ {base} }}");
        }
        None => {
            let _ = writeln!(out, "add chain {t} {name}");
        }
    }
}

fn fill_chain(out: &mut String, name: &str, chain: &Chain) {
    let t = t();
    let _ = writeln!(out, "flush chain {t} {name}");
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule {t} {name} {rule}");
    }
}

/// Removes `chains` and `sets`: all chains are flushed first (their rules may jump to each other
/// or name the sets), then deleted, then the sets.
fn delete(out: &mut String, chains: &[&String], sets: &[&String]) {
    let t = t();
    for c in chains {
        let _ = writeln!(out, "flush chain {t} {c}");
    }
    for c in chains {
        let _ = writeln!(out, "delete chain {t} {c}");
    }
    for s in sets {
        let _ = writeln!(out, "delete set {t} {s}");
    }
}

/// One transaction writing all of `desired` and deleting every `netpol*` object of `existing`
/// that `desired` does not have (left by an earlier run or a deleted policy). Objects of the
/// table not named `netpol*` belong to the service proxy and are never named.
pub fn full_script(desired: &Ruleset, existing: &Existing) -> String {
    let mut out = format!("add table {}\n", t());
    for (name, set) in &desired.sets {
        add_set(&mut out, name, set);
    }
    for (name, chain) in &desired.chains {
        add_chain(&mut out, name, chain);
    }
    for (name, chain) in &desired.chains {
        fill_chain(&mut out, name, chain);
    }
    let stale_chains: Vec<&String> = existing
        .chains
        .iter()
        .filter(|c| c.starts_with(PREFIX) && !desired.chains.contains_key(*c))
        .collect();
    let stale_sets: Vec<&String> = existing
        .sets
        .iter()
        .filter(|s| s.starts_with(PREFIX) && !desired.sets.contains_key(*s))
        .collect();
    delete(&mut out, &stale_chains, &stale_sets);
    out
}

/// One transaction from `applied` to `desired` touching only what differs: a set whose
/// elements changed is refilled, a chain whose rules changed is rewritten, objects gone are
/// deleted. Empty when nothing changed.
pub fn diff_script(applied: &Ruleset, desired: &Ruleset) -> String {
    let mut out = String::new();
    for (name, set) in &desired.sets {
        if applied.sets.get(name) != Some(set) {
            add_set(&mut out, name, set);
        }
    }
    let changed: Vec<(&String, &Chain)> = desired
        .chains
        .iter()
        .filter(|(name, chain)| applied.chains.get(*name) != Some(*chain))
        .collect();
    for (name, chain) in &changed {
        add_chain(&mut out, name, chain);
    }
    for (name, chain) in &changed {
        fill_chain(&mut out, name, chain);
    }
    let gone_chains: Vec<&String> = applied
        .chains
        .keys()
        .filter(|c| !desired.chains.contains_key(*c))
        .collect();
    let gone_sets: Vec<&String> = applied
        .sets
        .keys()
        .filter(|s| !desired.sets.contains_key(*s))
        .collect();
    delete(&mut out, &gone_chains, &gone_sets);
    if out.is_empty() {
        return out;
    }
    format!("add table {}\n{out}", t())
}

/// One transaction removing every `netpol*` object of `existing` (`--disable=network-policy`).
pub fn delete_script(existing: &Existing) -> String {
    let chains: Vec<&String> = existing
        .chains
        .iter()
        .filter(|c| c.starts_with(PREFIX))
        .collect();
    let sets: Vec<&String> = existing
        .sets
        .iter()
        .filter(|s| s.starts_with(PREFIX))
        .collect();
    if chains.is_empty() && sets.is_empty() {
        return String::new();
    }
    let mut out = format!("add table {}\n", t());
    delete(&mut out, &chains, &sets);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(ns: &str, name: &str, ip: &str, node: &str, l: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: labels(l),
            ip: ip.parse().unwrap(),
            node: node.into(),
            ports: Vec::new(),
        }
    }

    fn policy(value: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(value).unwrap()
    }

    fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
        [
            ("a".to_string(), labels(&[("team", "a")])),
            ("b".to_string(), labels(&[("team", "b")])),
            (
                "kube-system".to_string(),
                labels(&[("kubernetes.io/metadata.name", "kube-system")]),
            ),
        ]
        .into()
    }

    const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

    /// Pods a/web (named port http=8080) and a/client on this node n1; b/client and b/db
    /// (named port pg=5432) on n2.
    fn pods() -> Vec<Pod> {
        let mut web = pod("a", "web", "10.42.0.10", "n1", &[("app", "web")]);
        web.ports.push(("http".into(), "TCP".into(), 8080));
        let mut db = pod("b", "db", "10.42.1.6", "n2", &[("app", "db")]);
        db.ports.push(("pg".into(), "TCP".into(), 5432));
        vec![
            web,
            pod("a", "client", "10.42.0.11", "n1", &[("role", "client")]),
            pod("b", "client", "10.42.1.5", "n2", &[("role", "client")]),
            db,
        ]
    }

    fn policies() -> Vec<NetworkPolicy> {
        vec![
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "deny-all"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
            })),
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "web-allow"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{
                        "from": [
                            {"podSelector": {"matchLabels": {"role": "client"}}},
                            {"namespaceSelector": {"matchLabels": {"team": "b"}},
                             "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["client"]}]}},
                            {"ipBlock": {"cidr": "192.168.0.0/24", "except": ["192.168.0.128/25"]}}
                        ],
                        "ports": [
                            {"port": "http"},
                            {"protocol": "UDP", "port": 5000, "endPort": 5010},
                            {"protocol": "SCTP"}
                        ]
                    }]
                }
            })),
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "client-egress"},
                "spec": {
                    "podSelector": {"matchLabels": {"role": "client"}},
                    "egress": [
                        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}],
                         "ports": [{"port": "pg"}]},
                        {"ports": [{"protocol": "UDP", "port": 53}]}
                    ]
                }
            })),
        ]
    }

    fn rendered(policies: &[NetworkPolicy], pods: &[Pod]) -> Ruleset {
        rendered_in(policies, pods, &namespaces(), Some(CLUSTER_DNS))
    }

    fn rendered_in(
        policies: &[NetworkPolicy],
        pods: &[Pod],
        namespaces: &BTreeMap<String, BTreeMap<String, String>>,
        cluster_dns: Option<Ipv4Addr>,
    ) -> Ruleset {
        render(&Cluster {
            node: "n1",
            policies,
            pods,
            namespaces,
            cluster_dns,
        })
    }

    fn golden(name: &str, text: &str) {
        let path = format!("{}/tests/data/netpol/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("RK3S_BLESS").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        assert_eq!(text, std::fs::read_to_string(&path).unwrap());
    }

    /// The standard allow-DNS policy of upstream's docs and most charts: egress to the kube-dns
    /// pods of kube-system on port 53, UDP and TCP.
    fn allow_dns(ns: &str) -> NetworkPolicy {
        policy(serde_json::json!({
            "metadata": {"namespace": ns, "name": "allow-dns"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
                    }],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
                }]
            }
        }))
    }

    /// Policies around the cluster DNS address: the standard allow-DNS policy, a named port
    /// (`dns`) to every namespace, a kube-dns podSelector without namespaceSelector outside
    /// kube-system (selects nothing), an ipBlock holding the address and one not holding it.
    fn dns_policies() -> Vec<NetworkPolicy> {
        vec![
            allow_dns("a"),
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "dns-by-name"},
                "spec": {
                    "podSelector": {"matchLabels": {"role": "client"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "dns", "protocol": "UDP"}]}]
                }
            })),
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "same-namespace-kube-dns"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}]
                }
            })),
            policy(serde_json::json!({
                "metadata": {"namespace": "a", "name": "blocks"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": [{"ipBlock": {"cidr": "10.43.0.0/16"}}]},
                        {"to": [{"ipBlock": {"cidr": "192.168.1.0/24"}}], "ports": [{"port": 6443}]}
                    ]
                }
            })),
        ]
    }

    /// The golden text of a full sync covering podSelector, namespaceSelector, both combined,
    /// ipBlock with except, named and numeric ports with endPort, UDP/SCTP, default-deny,
    /// defaulted policyTypes and a stale object of an earlier run.
    #[test]
    fn full_sync_matches_golden_text() {
        let existing = Existing {
            sets: [
                "netpol-00000000deadbeef-pods".to_string(),
                "services".to_string(),
            ]
            .into(),
            chains: ["netpol-forward".to_string(), "nat-prerouting".to_string()].into(),
        };
        let text = full_script(&rendered(&policies(), &pods()), &existing);
        golden("full-sync.nft", &text);
    }

    /// The golden text of the cluster DNS address standing for the kube-dns pods, and of the
    /// input-hook chain that sends pods' traffic to the node through the egress rules.
    #[test]
    fn cluster_dns_sync_matches_golden_text() {
        let text = full_script(&rendered(&dns_policies(), &pods()), &Existing::default());
        golden("cluster-dns.nft", &text);
    }

    /// The elements of the peer set of egress rule `n` of policy `a/name`.
    fn egress_peers(r: &Ruleset, name: &str, n: usize) -> Vec<String> {
        let id = policy_id(&format!("a/{name}"));
        r.sets[&format!("{id}-e{n}")].elements.clone()
    }

    #[test]
    fn cluster_dns_is_a_kube_dns_pod_for_egress_peers() {
        let r = rendered(&dns_policies(), &pods());
        // Selected through the real kube-system labels: the address alone (no pod matches).
        assert_eq!(egress_peers(&r, "allow-dns", 0), vec!["10.43.0.10"]);
        // Every namespace: every pod, and the address.
        assert_eq!(
            egress_peers(&r, "dns-by-name", 0),
            vec!["10.42.0.10-10.42.0.11", "10.42.1.5-10.42.1.6", "10.43.0.10"]
        );
        // The named port `dns` resolves on the kube-dns pod it stands for.
        let id = policy_id("a/dns-by-name");
        assert!(r.chains[EGRESS].rules.contains(&format!(
            "ip saddr @{id}-pods ip daddr @{id}-e0 ip daddr {{ 10.43.0.10 }} meta l4proto udp th dport 53 return comment \"a/dns-by-name\""
        )));
        // A podSelector alone means the policy's namespace, and `a` is not kube-system.
        assert!(egress_peers(&r, "same-namespace-kube-dns", 0).is_empty());
        // ipBlocks match the address only as any address.
        assert_eq!(
            egress_peers(&r, "blocks", 0),
            vec!["10.43.0.0-10.43.255.255"]
        );
        assert_eq!(
            egress_peers(&r, "blocks", 1),
            vec!["192.168.1.0-192.168.1.255"]
        );
    }

    #[test]
    fn cluster_dns_follows_the_kube_system_labels_and_namespace() {
        // A podSelector alone in kube-system itself selects it.
        let mut in_kube_system = dns_policies()[2].clone();
        in_kube_system.metadata.namespace = Some("kube-system".into());
        let r = rendered(&[in_kube_system], &pods());
        let id = policy_id("kube-system/same-namespace-kube-dns");
        assert_eq!(r.sets[&format!("{id}-e0")].elements, vec!["10.43.0.10"]);
        // kube-system without the label the policy selects on (or unknown): not selected.
        let mut ns = namespaces();
        ns.insert("kube-system".into(), labels(&[("other", "x")]));
        let r = rendered_in(&[allow_dns("a")], &pods(), &ns, Some(CLUSTER_DNS));
        assert!(egress_peers(&r, "allow-dns", 0).is_empty());
        ns.remove("kube-system");
        let r = rendered_in(&[allow_dns("a")], &pods(), &ns, Some(CLUSTER_DNS));
        assert!(egress_peers(&r, "allow-dns", 0).is_empty());
        // Without the built-in DNS there is no such address.
        let r = rendered_in(&[allow_dns("a")], &pods(), &namespaces(), None);
        assert!(egress_peers(&r, "allow-dns", 0).is_empty());
        // Ingress peers never hold it.
        let ingress = policy(serde_json::json!({
            "metadata": {"namespace": "a", "name": "from-all"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
        }));
        let r = rendered(&[ingress], &pods());
        let id = policy_id("a/from-all");
        assert!(
            !r.sets[&format!("{id}-i0")]
                .elements
                .iter()
                .any(|e| e.contains("10.43.0.10")),
            "{:?}",
            r.sets[&format!("{id}-i0")]
        );
    }

    #[test]
    fn input_chain_sends_new_pod_traffic_to_the_egress_rules() {
        let r = rendered(&[], &pods());
        let input = &r.chains[INPUT];
        assert_eq!(
            input.base,
            Some("type filter hook input priority filter; policy accept;")
        );
        assert_eq!(
            input.rules,
            vec![
                "ct state established,related accept".to_string(),
                format!("ip saddr @{EGRESS_ISOLATED} jump {EGRESS}"),
            ]
        );
    }

    /// Pods, policies and namespace labels changing give element updates only: the rules
    /// (and the base chains) stay as applied.
    #[test]
    fn churn_around_the_cluster_dns_changes_elements_only() {
        let mut all = policies();
        all.extend(dns_policies());
        let before = rendered(&all, &pods());
        // kube-system loses the label the allow-DNS policy selects on.
        let mut ns = namespaces();
        ns.insert("kube-system".into(), BTreeMap::new());
        let relabelled = rendered_in(&all, &pods(), &ns, Some(CLUSTER_DNS));
        let script = diff_script(&before, &relabelled);
        let id = policy_id("a/allow-dns");
        assert_eq!(
            script,
            format!(
                "add table inet rk3s\n\
                 add set inet rk3s {id}-e0 {{ type ipv4_addr; flags interval; }}\n\
                 flush set inet rk3s {id}-e0\n"
            )
        );
        // A new local client pod: set elements, no rule and no chain.
        let mut more = pods();
        more.push(pod(
            "a",
            "client2",
            "10.42.0.12",
            "n1",
            &[("role", "client")],
        ));
        let script = diff_script(&before, &rendered(&all, &more));
        assert!(!script.contains("add rule"), "{script}");
        assert!(!script.contains("add chain"), "{script}");
        assert!(script.contains("10.42.0.12"), "{script}");
        // Deleting policies rewrites the rule chains, never the base chains.
        let script = diff_script(&before, &rendered(&all[..3], &pods()));
        assert!(!script.contains(INPUT), "{script}");
        assert!(!script.contains(FORWARD), "{script}");
    }

    #[test]
    fn no_policy_isolates_nothing() {
        let r = rendered(&[], &pods());
        assert!(r.sets[INGRESS_ISOLATED].elements.is_empty());
        assert!(r.sets[EGRESS_ISOLATED].elements.is_empty());
        assert_eq!(r.chains[INGRESS].rules, vec!["drop"]);
    }

    #[test]
    fn pods_of_other_nodes_and_unselected_pods_are_not_isolated() {
        let only_web = &policies()[1..2];
        let r = rendered(only_web, &pods());
        assert_eq!(r.sets[INGRESS_ISOLATED].elements, vec!["10.42.0.10"]);
        // web-allow has no egress rules: Egress is not among its defaulted types.
        assert!(r.sets[EGRESS_ISOLATED].elements.is_empty());
    }

    #[test]
    fn egress_only_policy_type_does_not_isolate_ingress() {
        let p = policy(serde_json::json!({
            "metadata": {"namespace": "a", "name": "deny-egress"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]}
        }));
        let r = rendered(&[p], &pods());
        assert!(r.sets[INGRESS_ISOLATED].elements.is_empty());
        assert_eq!(
            r.sets[EGRESS_ISOLATED].elements,
            vec!["10.42.0.10", "10.42.0.11"]
        );
        assert_eq!(r.chains[EGRESS].rules, vec!["drop"]);
    }

    #[test]
    fn pod_churn_changes_set_elements_only() {
        let before = rendered(&policies(), &pods());
        let mut more = pods();
        more.push(pod(
            "b",
            "client2",
            "10.42.1.7",
            "n2",
            &[("role", "client")],
        ));
        let after = rendered(&policies(), &more);
        let script = diff_script(&before, &after);
        assert!(!script.contains("add rule"), "{script}");
        assert!(script.contains("10.42.1.7"), "{script}");
        assert_eq!(diff_script(&after, &after), "");
    }

    #[test]
    fn deleting_a_policy_deletes_its_sets_after_rewriting_the_chains() {
        let before = rendered(&policies(), &pods());
        let after = rendered(&policies()[..1], &pods());
        let script = diff_script(&before, &after);
        let id = policy_id("a/web-allow");
        let rewrite = script.find("flush chain inet rk3s netpol-ingress").unwrap();
        let delete = script
            .find(&format!("delete set inet rk3s {id}-pods"))
            .unwrap();
        assert!(rewrite < delete, "{script}");
        assert!(!after.sets.contains_key(&format!("{id}-i0")));
    }

    #[test]
    fn ip_block_except_leaves_the_rest_of_the_block() {
        let r = ip_block_ranges(
            "10.0.0.0/24",
            &["10.0.0.16/28".into(), "10.0.0.255/32".into()],
        );
        let shown: Vec<String> = r
            .iter()
            .map(|(a, b)| format!("{}-{}", Ipv4Addr::from(*a), Ipv4Addr::from(*b)))
            .collect();
        assert_eq!(shown, vec!["10.0.0.0-10.0.0.15", "10.0.0.32-10.0.0.254"]);
        assert!(ip_block_ranges("fd00::/64", &[]).is_empty());
    }

    #[test]
    fn ip_block_of_everything_minus_the_cluster_reaches_both_ends() {
        let r = ip_block_ranges("0.0.0.0/0", &["10.42.0.0/16".into()]);
        assert_eq!(
            r,
            vec![
                (0, u32::from(Ipv4Addr::new(10, 41, 255, 255))),
                (u32::from(Ipv4Addr::new(10, 43, 0, 0)), u32::MAX)
            ]
        );
        assert_eq!(merge(vec![(0, u32::MAX), (5, 6)]), vec![(0, u32::MAX)]);
    }

    #[test]
    fn overlapping_peers_merge_into_disjoint_intervals() {
        assert_eq!(
            merge(vec![(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]),
            vec![(1, 9), (20, 30)]
        );
    }

    #[test]
    fn selectors_follow_label_selector_semantics() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "env", "operator": "Exists"},
                {"key": "debug", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert!(selects(
            Some(&sel),
            &labels(&[("app", "web"), ("env", "x")])
        ));
        assert!(!selects(Some(&sel), &labels(&[("app", "web")])));
        assert!(!selects(
            Some(&sel),
            &labels(&[("app", "web"), ("env", "x"), ("tier", "db")])
        ));
        assert!(!selects(
            Some(&sel),
            &labels(&[("app", "web"), ("env", "x"), ("debug", "1")])
        ));
        let bad: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Near"}]
        }))
        .unwrap();
        assert!(!selects(Some(&bad), &labels(&[("a", "b")])));
        assert!(selects(Some(&LabelSelector::default()), &BTreeMap::new()));
    }

    #[test]
    fn only_running_pod_network_pods_with_an_address_count() {
        let kube = |spec: serde_json::Value, status: serde_json::Value| -> KubePod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "a", "name": "p", "labels": {"app": "web"}},
                "spec": spec,
                "status": status,
            }))
            .unwrap()
        };
        let spec = serde_json::json!({"nodeName": "n1", "containers": [{
            "name": "c",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"containerPort": 9}]
        }]});
        let pod = Pod::from_kube(&kube(
            spec.clone(),
            serde_json::json!({"phase": "Running", "podIP": "10.42.0.9"}),
        ))
        .unwrap();
        assert_eq!(pod.ip, Ipv4Addr::new(10, 42, 0, 9));
        assert_eq!(pod.node, "n1");
        assert_eq!(pod.port("http", "TCP"), Some(8080));
        assert_eq!(pod.port("dns", "UDP"), Some(53));
        assert_eq!(pod.port("dns", "TCP"), None);
        assert!(
            Pod::from_kube(&kube(spec.clone(), serde_json::json!({"phase": "Pending"}))).is_none()
        );
        assert!(
            Pod::from_kube(&kube(
                spec.clone(),
                serde_json::json!({"phase": "Succeeded", "podIP": "10.42.0.9"})
            ))
            .is_none()
        );
        let mut host = spec;
        host["hostNetwork"] = true.into();
        assert!(
            Pod::from_kube(&kube(
                host,
                serde_json::json!({"phase": "Running", "podIP": "192.168.1.2"})
            ))
            .is_none()
        );
    }

    #[test]
    fn listing_names_sets_maps_and_chains() {
        let listing = "table inet rk3s {\n\tmap service-ips {\n\t\ttype ipv4_addr : verdict\n\t}\n\n\tset netpol-ingress-isolated {\n\t\ttype ipv4_addr\n\t}\n\n\tchain netpol-forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n";
        let e = parse_listing(listing);
        assert_eq!(
            e.sets,
            [
                "netpol-ingress-isolated".to_string(),
                "service-ips".to_string()
            ]
            .into()
        );
        assert_eq!(e.chains, ["netpol-forward".to_string()].into());
        let script = delete_script(&e);
        assert!(script.contains("delete set inet rk3s netpol-ingress-isolated"));
        assert!(!script.contains("service-ips"), "{script}");
        assert_eq!(delete_script(&Existing::default()), "");
    }
}
