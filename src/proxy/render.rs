//! The pure half of the Service proxy: a [`ServiceTable`] (what the API says) becomes a
//! [`Ruleset`] (the chains, maps and sets of `table inet rk3s` the proxy owns), and two rulesets
//! become the `nft -f` text that moves the kernel from one to the other.
//!
//! The layout follows upstream kube-proxy's nftables mode:
//! - `services` looks up `ip daddr . meta l4proto . th dport` in the verdict maps `service-ips`
//!   (ClusterIPs, externalIPs, LoadBalancer ingress IPs) and `service-nodeports` (the node's
//!   addresses with each NodePort) and jumps to a per-service-port chain;
//! - `service-…` / `local-…` chains pick an endpoint with `numgen random mod N vmap {…}` (after the
//!   ClientIP affinity sets), `external-…` chains implement externalTrafficPolicy;
//! - `endpoint-…` chains mark hairpin traffic for masquerade and DNAT;
//! - `nat-postrouting` masquerades marked packets;
//! - `no-endpoint-services`, looked up in filter chains on the input, forward and output hooks,
//!   rejects (TCP reset / ICMP port unreachable) or drops traffic to service ports without
//!   endpoints.
//!
//! Chain names carry a hash of the service port (kube-proxy's `hashAndTruncate`: base32 of the
//! SHA-256, 8 characters) followed by the readable `namespace/name/protocol/port`, so they are
//! stable across restarts and unique even where the readable part would be ambiguous.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The table the proxy (and NetworkPolicy) use.
pub const TABLE: &str = "rk3s";
/// The family of [`TABLE`].
pub const FAMILY: &str = "inet";
/// Objects whose names start with this belong to the NetworkPolicy controller; the proxy never
/// touches them.
pub const NETPOL_PREFIX: &str = "netpol";
/// The packet mark that asks `nat-postrouting` to masquerade (kube-proxy's 0x4000).
const MASQ_MARK: &str = "0x4000";

/// The layer-4 protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name nft uses (`meta l4proto tcp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn from_k8s(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// One backend of a service port, from an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The target port (named target ports are already resolved in the EndpointSlice).
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
}

/// One port of a Service with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `spec.ports[].name` (may be empty for a single-port Service).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

/// What the proxy needs of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// `None` for headless Services, which get no rules.
    pub cluster_ip: Option<Ipv4Addr>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` with ipMode VIP (or unset).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    /// sessionAffinity ClientIP: the timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// externalTrafficPolicy Local.
    pub external_local: bool,
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
}

/// Everything the rendered table depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTable {
    /// This node: endpoints with this nodeName are local.
    pub node_name: String,
    /// Addresses NodePorts are served on.
    pub node_ips: Vec<Ipv4Addr>,
    /// Pod traffic comes from here; other sources are masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// A ClusterIP served by something else on this node (the cluster DNS): no rules.
    pub skip_cluster_ip: Option<Ipv4Addr>,
    pub services: Vec<Service>,
}

/// A chain of the table: a base chain has a `type … hook … priority …` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    pub header: Option<String>,
    pub rules: Vec<String>,
}

/// A verdict map: its type and its elements, key → verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    pub kind: String,
    pub elements: BTreeMap<String, String>,
}

/// The proxy's objects in the table. Sets are the dynamic ClientIP affinity sets, whose
/// contents the kernel fills (`update @set`), so only their definitions are kept here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub maps: BTreeMap<String, Map>,
    pub sets: BTreeMap<String, String>,
}

/// The names of the objects a table holds now (from `nft -t list table`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    pub maps: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINTS: &str = "no-endpoint-services";
const CLUSTER_IPS: &str = "cluster-ips";
const HAIRPIN: &str = "hairpin-endpoints";
const MAP_KIND: &str = "ipv4_addr . inet_proto . inet_service : verdict";
const SET_KIND: &str = "ipv4_addr . inet_proto . inet_service";
const LOOKUP: &str = "ip daddr . meta l4proto . th dport";

/// kube-proxy's `hashAndTruncate`: SHA-256, base32 (RFC 4648 alphabet), first 8 characters.
fn hash8(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    // 8 base32 characters are 40 bits: the first 5 bytes.
    let bytes = digest.as_ref();
    let mut bits: u64 = 0;
    for b in &bytes[..5] {
        bits = (bits << 8) | u64::from(*b);
    }
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// The fixed part of the table: hooks, the lookups and the masquerade.
fn base(rs: &mut Ruleset, cidr: Ipv4Net) {
    let mut chain = |name: &str, header: Option<&str>, rules: &[String]| {
        rs.chains.insert(
            name.to_string(),
            Chain {
                header: header.map(str::to_string),
                rules: rules.to_vec(),
            },
        );
    };
    let jump_services = ["jump services".to_string()];
    chain(
        "nat-prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        &jump_services,
    );
    // Host processes reach services too (the `dstnat` keyword is not valid on this hook in
    // older nft, hence the number).
    chain(
        "nat-output",
        Some("type nat hook output priority -100; policy accept;"),
        &jump_services,
    );
    chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        &[
            format!("ip saddr . ip daddr @{HAIRPIN} masquerade"),
            format!("meta mark & {MASQ_MARK} == 0 return"),
            format!("meta mark set meta mark ^ {MASQ_MARK}"),
            "masquerade fully-random".to_string(),
        ],
    );
    chain(
        "mark-for-masquerade",
        None,
        &[format!("meta mark set meta mark | {MASQ_MARK}")],
    );
    chain(
        "services",
        None,
        &[
            // ClusterIP traffic from outside the pod network (the node, routed clients) is
            // masqueraded so that replies come back through this node.
            format!("ip saddr != {cidr} {LOOKUP} @{CLUSTER_IPS} jump mark-for-masquerade"),
            format!("{LOOKUP} vmap @{SERVICE_IPS}"),
            format!("{LOOKUP} vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    // Upstream sends a TCP reset for TCP and an ICMP port unreachable otherwise; both make a
    // client fail at once instead of timing out.
    chain(
        "reject-chain",
        None,
        &[
            "meta l4proto tcp reject with tcp reset".to_string(),
            "reject".to_string(),
        ],
    );
    let check = [format!("ct state new {LOOKUP} vmap @{NO_ENDPOINTS}")];
    for hook in ["input", "forward", "output"] {
        chain(
            &format!("filter-{hook}"),
            Some(&format!(
                "type filter hook {hook} priority -10; policy accept;"
            )),
            &check,
        );
    }
    for (name, kind) in [
        (SERVICE_IPS, MAP_KIND),
        (SERVICE_NODEPORTS, MAP_KIND),
        (NO_ENDPOINTS, MAP_KIND),
        (CLUSTER_IPS, SET_KIND),
        (HAIRPIN, "ipv4_addr . ipv4_addr"),
    ] {
        rs.maps.insert(
            name.to_string(),
            Map {
                kind: kind.to_string(),
                elements: BTreeMap::new(),
            },
        );
    }
}

/// kube-proxy's endpoint categorisation: the ready endpoints, or, when there are none, the
/// serving terminating ones (so connections drain instead of failing during a rollout).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// The DNAT targets of one service port, deduplicated and in a stable order.
fn unique(eps: &[Endpoint]) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<Endpoint> = eps
        .iter()
        .filter(|e| seen.insert((e.ip, e.port)))
        .cloned()
        .collect();
    out.sort_by_key(|e| (e.ip, e.port));
    out
}

/// Renders the whole table.
pub fn render(table: &ServiceTable) -> Ruleset {
    let mut rs = Ruleset::default();
    base(&mut rs, table.cluster_cidr.trunc());
    for svc in &table.services {
        let Some(cluster_ip) = svc.cluster_ip else {
            continue;
        };
        if table.skip_cluster_ip == Some(cluster_ip) {
            continue;
        }
        for port in &svc.ports {
            render_port(&mut rs, table, svc, cluster_ip, port);
        }
    }
    rs
}

fn goto_or(chain: Option<&str>, otherwise: &str) -> String {
    match chain {
        Some(c) => format!("goto {c}"),
        None => otherwise.to_string(),
    }
}

fn render_port(
    rs: &mut Ruleset,
    table: &ServiceTable,
    svc: &Service,
    cluster_ip: Ipv4Addr,
    port: &ServicePort,
) {
    let proto = port.protocol.nft();
    let port_label = if port.name.is_empty() {
        port.port.to_string()
    } else {
        port.name.clone()
    };
    let id = format!("{}/{}/{proto}/{port_label}", svc.namespace, svc.name);
    let hash = hash8(&id);
    let cidr = table.cluster_cidr.trunc();

    let all = unique(&port.endpoints);
    let cluster_eps = usable(all.iter());
    let local_eps = usable(
        all.iter()
            .filter(|e| e.node_name.as_deref() == Some(table.node_name.as_str())),
    );
    let external: Vec<Ipv4Addr> = svc
        .external_ips
        .iter()
        .chain(&svc.load_balancer_ips)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let node_port = port.node_port.filter(|p| *p != 0);
    let has_external = !external.is_empty() || node_port.is_some();

    // Hairpin: an endpoint reaching itself through the Service is masqueraded, or its reply
    // would come from its own address and be dropped.
    for ep in &all {
        let pair = format!("{ip} . {ip}", ip = ep.ip);
        if let Some(m) = rs.maps.get_mut(HAIRPIN) {
            m.elements.insert(pair, String::new());
        }
    }

    // With ClientIP affinity each endpoint gets a chain that records the client in its
    // affinity set before the DNAT (upstream's per-endpoint chains); without it the DNAT sits
    // in the picking chain itself, which keeps a 10,000-Service table small.
    let mut endpoint_chain = |ep: &Endpoint, timeout: u32| -> String {
        let suffix = format!("{id}__{}/{}", ep.ip, ep.port);
        let h = hash8(&suffix);
        let name = format!("endpoint-{h}-{suffix}");
        if !rs.chains.contains_key(&name) {
            let set = format!("affinity-{h}-{suffix}");
            rs.sets.insert(
                set.clone(),
                format!("type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;"),
            );
            let rules = vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat ip to {}:{}", ep.ip, ep.port),
            ];
            rs.chains.insert(
                name.clone(),
                Chain {
                    header: None,
                    rules,
                },
            );
        }
        name
    };

    // A chain that picks one of `eps` uniformly: rule k matches with probability 1/(n-k)
    // (iptables mode's statistic cascade). Upstream's nftables mode uses one
    // `numgen random mod N vmap {…}` instead, but every such vmap is an anonymous set and nft
    // 1.0.x takes quadratic time in the number of sets (36 s instead of 1 s for 10,000
    // Services), so the cascade of `numgen random mod K == 0` rules is used.
    let mut picker = |rs_chains: &mut Vec<(String, Chain)>, prefix: &str, eps: &[&Endpoint]| {
        if eps.is_empty() {
            return None;
        }
        let name = format!("{prefix}-{hash}-{id}");
        let mut rules = Vec::new();
        let n = eps.len();
        let actions: Vec<String> = match svc.affinity_timeout {
            Some(timeout) => {
                let targets: Vec<String> = eps.iter().map(|e| endpoint_chain(e, timeout)).collect();
                for t in &targets {
                    let set = t.replacen("endpoint-", "affinity-", 1);
                    rules.push(format!("ip saddr @{set} goto {t}"));
                }
                targets.iter().map(|t| format!("goto {t}")).collect()
            }
            None => eps
                .iter()
                .map(|e| format!("meta l4proto {proto} dnat ip to {}:{}", e.ip, e.port))
                .collect(),
        };
        for (k, action) in actions.iter().enumerate() {
            if k + 1 < n {
                rules.push(format!("numgen random mod {} == 0 {action}", n - k));
            } else {
                rules.push(action.clone());
            }
        }
        rs_chains.push((
            name.clone(),
            Chain {
                header: None,
                rules,
            },
        ));
        Some(name)
    };

    let mut new_chains = Vec::new();
    // The all-endpoints chain serves ClusterIP traffic (internalTrafficPolicy Cluster) and
    // external traffic (directly, or short-circuited from pods and the node).
    let service_chain = if !svc.internal_local || has_external {
        picker(&mut new_chains, "service", &cluster_eps)
    } else {
        None
    };
    let local_chain = if svc.internal_local || svc.external_local {
        picker(&mut new_chains, "local", &local_eps)
    } else {
        None
    };
    for (name, chain) in new_chains {
        rs.chains.insert(name, chain);
    }
    // internalTrafficPolicy Local: ClusterIP traffic only goes to this node's endpoints, and
    // is dropped when there are none (as upstream).
    let cluster_policy = if svc.internal_local {
        local_chain.as_deref()
    } else {
        service_chain.as_deref()
    };

    let key = |ip: Ipv4Addr, p: u16| format!("{ip} . {proto} . {p}");
    if let Some(chain) = cluster_policy {
        insert(
            rs,
            SERVICE_IPS,
            key(cluster_ip, port.port),
            format!("goto {chain}"),
        );
        insert(rs, CLUSTER_IPS, key(cluster_ip, port.port), String::new());
    } else {
        // No endpoints at all: refuse. Endpoints only on other nodes with
        // internalTrafficPolicy Local: drop, as upstream.
        let verdict = if cluster_eps.is_empty() {
            "goto reject-chain"
        } else {
            "drop"
        };
        insert(rs, NO_ENDPOINTS, key(cluster_ip, port.port), verdict.into());
    }

    if !has_external {
        return;
    }
    let external_chain = service_chain.as_deref().map(|service| {
        let name = format!("external-{hash}-{id}");
        let rules = if svc.external_local {
            // Pods and the node itself reach the service through any endpoint (upstream's
            // short-circuit); only traffic from outside keeps its source address and is limited
            // to this node's endpoints, and dropped when there are none.
            let inside = goto_or(cluster_policy, "drop");
            vec![
                format!("ip saddr {cidr} {inside}"),
                "fib saddr type local jump mark-for-masquerade".to_string(),
                format!("fib saddr type local {inside}"),
                goto_or(local_chain.as_deref(), "drop"),
            ]
        } else {
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {service}"),
            ]
        };
        rs.chains.insert(
            name.clone(),
            Chain {
                header: None,
                rules,
            },
        );
        name
    });
    let mut targets: Vec<(&str, String)> = external
        .iter()
        .map(|ip| (SERVICE_IPS, key(*ip, port.port)))
        .collect();
    if let Some(np) = node_port {
        let mut ips: Vec<Ipv4Addr> = table.node_ips.clone();
        ips.sort();
        ips.dedup();
        targets.extend(ips.into_iter().map(|ip| (SERVICE_NODEPORTS, key(ip, np))));
    }
    for (map, k) in targets {
        match &external_chain {
            Some(chain) => insert(rs, map, k, format!("goto {chain}")),
            None => insert(rs, NO_ENDPOINTS, k, "goto reject-chain".into()),
        }
    }
}

/// Adds a map element; the first Service to claim an address and port keeps it (two Services
/// with the same externalIP and port are a user error the API does not prevent).
fn insert(rs: &mut Ruleset, map: &str, key: String, verdict: String) {
    if let Some(m) = rs.maps.get_mut(map) {
        m.elements.entry(key).or_insert(verdict);
    }
}

impl Map {
    /// `map` for verdict maps, `set` for plain sets (both are kept as a [`Map`]).
    fn noun(&self) -> &'static str {
        if self.kind.contains(": verdict") {
            "map"
        } else {
            "set"
        }
    }

    fn item(&self, key: &str, value: &str) -> String {
        if value.is_empty() {
            key.to_string()
        } else {
            format!("{key} : {value}")
        }
    }
}

fn owned(name: &str) -> bool {
    !name.starts_with(NETPOL_PREFIX)
}

fn write_elements(out: &mut String, verb: &str, map: &str, items: &[String]) {
    // Chunks keep single lines of a 10,000-service sync a reasonable size for nft's parser.
    for chunk in items.chunks(1000) {
        let _ = writeln!(
            out,
            "{verb} element {FAMILY} {TABLE} {map} {{ {} }}",
            chunk.join(", ")
        );
    }
}

fn write_rules(out: &mut String, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule {FAMILY} {TABLE} {name} {rule}");
    }
}

fn write_chain_decl(out: &mut String, name: &str, chain: &Chain) {
    match &chain.header {
        Some(h) => {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {name} {{ {h} }}");
        }
        None => {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {name}");
        }
    }
}

fn write_set_decl(out: &mut String, name: &str, def: &str) {
    let _ = writeln!(out, "add set {FAMILY} {TABLE} {name} {{ {def} }}");
}

/// The full-sync transaction: declares and refills every object of `rs`, and deletes the
/// proxy's objects in `existing` that `rs` no longer has. Affinity sets are declared but not
/// flushed, so a resync keeps the clients' affinity.
pub fn full_script(rs: &Ruleset, existing: &Existing) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table {FAMILY} {TABLE}");
    for (name, chain) in &rs.chains {
        write_chain_decl(&mut out, name, chain);
    }
    for (name, def) in &rs.sets {
        write_set_decl(&mut out, name, def);
    }
    for (name, map) in &rs.maps {
        let _ = writeln!(
            out,
            "add {} {FAMILY} {TABLE} {name} {{ type {} ; }}",
            map.noun(),
            map.kind
        );
    }
    let stale_chains: Vec<&String> = existing
        .chains
        .iter()
        .filter(|c| owned(c) && !rs.chains.contains_key(*c))
        .collect();
    for name in rs.chains.keys().chain(stale_chains.iter().copied()) {
        let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
    }
    for (name, map) in &rs.maps {
        let _ = writeln!(out, "flush {} {FAMILY} {TABLE} {name}", map.noun());
    }
    for (name, chain) in &rs.chains {
        write_rules(&mut out, name, chain);
    }
    for (name, map) in &rs.maps {
        let items: Vec<String> = map.elements.iter().map(|(k, v)| map.item(k, v)).collect();
        write_elements(&mut out, "add", name, &items);
    }
    for name in stale_chains {
        let _ = writeln!(out, "delete chain {FAMILY} {TABLE} {name}");
    }
    for name in existing
        .maps
        .iter()
        .filter(|m| owned(m) && !rs.maps.contains_key(*m))
    {
        let _ = writeln!(out, "delete map {FAMILY} {TABLE} {name}");
    }
    for name in existing
        .sets
        .iter()
        .filter(|s| owned(s) && !rs.sets.contains_key(*s) && !rs.maps.contains_key(*s))
    {
        let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
    }
    out
}

/// The incremental transaction from `old` (what the kernel has, as the proxy last applied it)
/// to `new`: only new, changed and removed chains, sets and map elements. Empty when nothing
/// changed.
pub fn diff_script(old: &Ruleset, new: &Ruleset) -> String {
    let mut out = String::new();
    let chains = zip_sorted(&old.chains, &new.chains);
    for (name, before, after) in &chains {
        if let (None, Some(chain)) = (before, after) {
            write_chain_decl(&mut out, name, chain);
        }
    }
    for (name, def) in &new.sets {
        if old.sets.get(name) != Some(def) {
            if old.sets.contains_key(name) {
                // A changed timeout: sets cannot be redefined in place; drop and recreate it
                // after the chains that use it were rewritten (below).
                continue;
            }
            write_set_decl(&mut out, name, def);
        }
    }
    for (name, map) in &new.maps {
        if !old.maps.contains_key(name) {
            let _ = writeln!(
                out,
                "add {} {FAMILY} {TABLE} {name} {{ type {} ; }}",
                map.noun(),
                map.kind
            );
        }
    }
    // Map elements that go away or change first, so the chains they point at can go.
    let empty = Map::default();
    let mut adds: Vec<(String, Vec<String>)> = Vec::new();
    for (name, map) in new.maps.iter() {
        let before = old.maps.get(name).unwrap_or(&empty);
        let mut removed = Vec::new();
        let mut added = Vec::new();
        for (key, was, is) in zip_sorted(&before.elements, &map.elements) {
            if was.is_some() && was != is {
                removed.push(key.clone());
            }
            if let Some(v) = is
                && was != is
            {
                added.push(map.item(key, v));
            }
        }
        write_elements(&mut out, "delete", name, &removed);
        adds.push((name.clone(), added));
    }
    for (name, map) in &old.maps {
        if !new.maps.contains_key(name) {
            let _ = writeln!(out, "flush {} {FAMILY} {TABLE} {name}", map.noun());
        }
    }
    let changed_sets: Vec<&String> = new
        .sets
        .iter()
        .filter(|(n, d)| old.sets.get(*n).is_some_and(|o| o != *d))
        .map(|(n, _)| n)
        .collect();
    let rewrite = |before: &Chain, after: &Chain| {
        before.rules != after.rules || uses_any(after, &changed_sets)
    };
    // Chains whose rules changed are flushed and refilled; removed chains are flushed first so
    // that a chain pointing at another removed chain does not block its deletion.
    for (name, before, after) in &chains {
        if let (Some(b), Some(a)) = (before, after)
            && rewrite(b, a)
        {
            let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
        }
    }
    for (name, before, after) in &chains {
        if before.is_some() && after.is_none() {
            let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
        }
    }
    for name in &changed_sets {
        let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
        write_set_decl(&mut out, name, &new.sets[*name]);
    }
    for (name, before, after) in &chains {
        match (before, after) {
            (Some(b), Some(a)) if !rewrite(b, a) => {}
            (_, Some(a)) => write_rules(&mut out, name, a),
            (_, None) => {}
        }
    }
    for (name, items) in adds {
        write_elements(&mut out, "add", &name, &items);
    }
    for (name, before, after) in &chains {
        if before.is_some() && after.is_none() {
            let _ = writeln!(out, "delete chain {FAMILY} {TABLE} {name}");
        }
    }
    for (name, map) in old.maps.iter().filter(|(n, _)| !new.maps.contains_key(*n)) {
        let _ = writeln!(out, "delete {} {FAMILY} {TABLE} {name}", map.noun());
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
    }
    out
}

/// The keys of two sorted maps in order, with each side's value: one pass instead of a
/// lookup per key (a 10,000-Service diff is dominated by this).
fn zip_sorted<'a, V: PartialEq>(
    a: &'a BTreeMap<String, V>,
    b: &'a BTreeMap<String, V>,
) -> Vec<(&'a String, Option<&'a V>, Option<&'a V>)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match next {
            std::cmp::Ordering::Less => {
                if let Some((k, v)) = ia.next() {
                    out.push((k, Some(v), None));
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((k, v)) = ib.next() {
                    out.push((k, None, Some(v)));
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((k, va)), Some((_, vb))) = (ia.next(), ib.next()) {
                    out.push((k, Some(va), Some(vb)));
                }
            }
        }
    }
    out
}

fn uses_any(chain: &Chain, sets: &[&String]) -> bool {
    sets.iter().any(|s| {
        let needle = format!("@{s} ");
        chain.rules.iter().any(|r| r.contains(&needle))
    })
}

/// The chains, maps and sets named in `nft -t list table` output.
pub fn parse_listing(text: &str) -> Existing {
    let mut existing = Existing::default();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_suffix('{') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        // nft quotes names it would not parse bare.
        let name = name.trim_matches('"').to_string();
        match kind {
            "chain" => existing.chains.insert(name),
            "map" => existing.maps.insert(name),
            "set" => existing.sets.insert(name),
            _ => false,
        };
    }
    existing
}

#[cfg(test)]
mod tests;
