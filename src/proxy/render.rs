//! The pure half of the Service proxy: a [`ServiceTable`] (what the API says) becomes a
//! [`Ruleset`] (the chains, maps and sets of `table inet rk3s` the proxy owns), kept in a
//! [`Rendered`] that re-renders only the Services that changed and writes the `nft -f` text
//! for a full sync or for the changes since the last sync. No I/O here: the text is applied
//! by `network::nat`.
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
//!   endpoints;
//! - `firewall-check`, jumped to for new connections from filter chains that run before DNAT
//!   (prerouting and output), looks up LoadBalancer ingress IPs with `loadBalancerSourceRanges`
//!   in `firewall-ips` and goes to a per-service-port `firewall-…` chain that drops sources
//!   outside the ranges.
//!
//! Chain names carry a hash of the service port (kube-proxy's `hashAndTruncate`: base32 of the
//! SHA-256, 8 characters) followed by the readable `namespace/name/protocol/port`, so they are
//! stable across restarts and unique even where the readable part would be ambiguous.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

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
    /// The IPv4 `spec.loadBalancerSourceRanges`: when set, traffic to the load balancer IPs
    /// from other sources is dropped.
    pub source_ranges: Vec<Ipv4Net>,
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

/// The table-wide inputs of the rendering; when one of them changes, every Service is
/// rendered again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Context {
    node_name: String,
    /// Sorted and deduplicated.
    node_ips: Vec<Ipv4Addr>,
    /// Truncated to its network address.
    cluster_cidr: Ipv4Net,
    skip_cluster_ip: Option<Ipv4Addr>,
}

impl Context {
    fn of(table: &ServiceTable) -> Context {
        let mut node_ips = table.node_ips.clone();
        node_ips.sort();
        node_ips.dedup();
        Context {
            node_name: table.node_name.clone(),
            node_ips,
            cluster_cidr: table.cluster_cidr.trunc(),
            skip_cluster_ip: table.skip_cluster_ip,
        }
    }
}

/// A chain of the table: a base chain has a `type … hook … priority …` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    pub header: Option<String>,
    pub rules: Vec<String>,
}

/// A map or a plain set shared by all Services: its declaration (`type …` or `typeof …`) and
/// its elements by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    pub kind: String,
    pub elements: BTreeMap<String, Element>,
}

/// An element of a shared map or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The verdict (empty in plain sets).
    pub value: String,
    /// The Service whose claim the element carries: the first in (namespace, name) order
    /// when several claim the key.
    owner: ServiceKey,
}

/// The proxy's objects in the table. Sets are the dynamic ClientIP affinity sets, whose
/// contents the kernel fills (`update @set`), so only their definitions are kept here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub maps: BTreeMap<String, Map>,
    pub sets: BTreeMap<String, String>,
}

/// The names of the objects a table holds now (from `nft -t list table`, or as the proxy
/// last applied them).
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
const FIREWALL_IPS: &str = "firewall-ips";
const MAP_KIND: &str = "type ipv4_addr . inet_proto . inet_service : verdict";
const SET_KIND: &str = "type ipv4_addr . inet_proto . inet_service";
const LOOKUP: &str = "ip daddr . meta l4proto . th dport";
/// The endpoint maps, one per picker kind (`cluster`, `local`) and protocol: the service key
/// and the endpoint's number to its address and port. `typeof` because `type` cannot spell
/// the number's type (numgen's 32-bit integer); the `mod 1` only gives that type, the lookups
/// use their own modulus. The target's port is typed by the protocol's own `dport`: with
/// `th dport` there, nft 1.0.6 cannot read the map back from the kernel ("conflicting
/// protocols specified: ip vs. th") and every later script naming it fails; a protocol's
/// `dport` makes nft add `meta l4proto <proto>` to the DNAT rules, hence a map per protocol.
const ENDPOINT_MAPS: [(&str, &str); 6] = [
    ("cluster-endpoints-tcp", TCP_ENDPOINTS),
    ("cluster-endpoints-udp", UDP_ENDPOINTS),
    ("cluster-endpoints-sctp", SCTP_ENDPOINTS),
    ("local-endpoints-tcp", TCP_ENDPOINTS),
    ("local-endpoints-udp", UDP_ENDPOINTS),
    ("local-endpoints-sctp", SCTP_ENDPOINTS),
];
const TCP_ENDPOINTS: &str =
    "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport";
const UDP_ENDPOINTS: &str =
    "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . udp dport";
const SCTP_ENDPOINTS: &str =
    "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . sctp dport";
/// The maps and sets every Service adds elements to, with their declarations.
const SHARED: [(&str, &str); 6] = [
    (SERVICE_IPS, MAP_KIND),
    (SERVICE_NODEPORTS, MAP_KIND),
    (NO_ENDPOINTS, MAP_KIND),
    (FIREWALL_IPS, MAP_KIND),
    (CLUSTER_IPS, SET_KIND),
    (HAIRPIN, "type ipv4_addr . ipv4_addr"),
];
/// Service ports with up to this many endpoints (and no ClientIP affinity) pick one through
/// the shared `{cluster,local}-pick-<proto>-N` chains and endpoint maps; larger ones get a
/// chain of their own.
const SHARED_PICK_MAX: usize = 16;

/// The endpoint map of a picker kind (`local` or not) and protocol.
fn endpoint_map(local: bool, proto: Protocol) -> &'static str {
    let i = match proto {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    };
    ENDPOINT_MAPS[i + if local { 3 } else { 0 }].0
}

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

/// Below this many Services to render, threads cost more than they save.
const PARALLEL_RENDER: usize = 1000;

/// Renders the Services of `work` (an empty fragment for the ones to remove), on several
/// threads when there are many: a full rendering of 10,000 Services is CPU work that would
/// otherwise add to a full sync's time.
fn render_all(ctx: &Context, work: &[(ServiceKey, Option<&Service>)]) -> Vec<Fragment> {
    let render_chunk = |chunk: &[(ServiceKey, Option<&Service>)]| -> Vec<Fragment> {
        chunk
            .iter()
            .map(|(_, svc)| svc.map(|s| render_service(ctx, s)).unwrap_or_default())
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(4);
    if work.len() < PARALLEL_RENDER || threads < 2 {
        return render_chunk(work);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = work
            .chunks(work.len().div_ceil(threads))
            .map(|chunk| (chunk, scope.spawn(move || render_chunk(chunk))))
            .collect();
        running
            .into_iter()
            // Rendering does not panic; should a thread still fail, its share is redone here.
            .flat_map(|(chunk, thread)| thread.join().unwrap_or_else(|_| render_chunk(chunk)))
            .collect()
    })
}

/// A Service's identity, namespace and name, shared by the cache and the map elements.
type ServiceKey = Arc<(String, String)>;

/// An element of a shared map: (map, key).
type ElementKey = (&'static str, String);

/// The objects one part of the table owns: the fixed part, or one Service. Chains and sets
/// belong to exactly one owner (their names carry the Service); elements of the shared maps
/// may be claimed by several. Vectors (sorted and deduplicated by [`Fragment::seal`]) rather
/// than maps: rendering 10,000 Services allocates a fragment for each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fragment {
    chains: Vec<(String, Chain)>,
    sets: Vec<(String, String)>,
    /// Claims on shared elements; within one Service the first claim of a key wins.
    elements: Vec<(ElementKey, String)>,
    /// The shared picker chains the Service uses (see [`Pick`]); they exist while some
    /// Service uses them.
    shared: Vec<(String, Chain)>,
}

impl Fragment {
    fn chain(&mut self, name: &str, header: Option<&str>, rules: Vec<String>) {
        self.chains.push((
            name.to_string(),
            Chain {
                header: header.map(str::to_string),
                rules,
            },
        ));
    }

    fn claim(&mut self, map: &'static str, key: String, value: String) {
        self.elements.push(((map, key), value));
    }

    /// Sorts everything by name, keeping the first of equal names (stable sorts).
    fn seal(mut self) -> Fragment {
        self.chains.sort_by(|a, b| a.0.cmp(&b.0));
        self.chains.dedup_by(|b, a| a.0 == b.0);
        self.sets.sort_by(|a, b| a.0.cmp(&b.0));
        self.sets.dedup_by(|b, a| a.0 == b.0);
        self.elements.sort_by(|a, b| a.0.cmp(&b.0));
        self.elements.dedup_by(|b, a| a.0 == b.0);
        self.shared.sort_by(|a, b| a.0.cmp(&b.0));
        self.shared.dedup_by(|b, a| a.0 == b.0);
        self
    }

    /// Uses the shared picker for `n` endpoints of `proto` (`local` or cluster-wide), and for
    /// external traffic the masquerading one in front of it; returns the chain's name.
    ///
    /// The cluster-wide picker masquerades traffic from outside the pod network `cidr` (the
    /// node, routed clients) so that replies come back through this node: it is reached from
    /// ClusterIPs, from external traffic that is masqueraded anyway, and from the pods and the
    /// node with externalTrafficPolicy Local. The local picker must not: it also serves
    /// outside clients of externalTrafficPolicy Local, whose address is kept, so ClusterIPs
    /// that use it are marked through the `cluster-ips` set instead.
    fn shared_picker(
        &mut self,
        (local, proto, n): (bool, Protocol, usize),
        cidr: Ipv4Net,
        external: bool,
    ) -> String {
        let p = proto.nft();
        let kind = if local { "local" } else { "cluster" };
        let pick = format!("{kind}-pick-{p}-{n}");
        let dnat = format!(
            "dnat ip to {LOOKUP} . numgen random mod {n} map @{}",
            endpoint_map(local, proto)
        );
        let rules = if local {
            vec![dnat]
        } else {
            vec![format!("ip saddr != {cidr} jump mark-for-masquerade"), dnat]
        };
        self.shared.push((
            pick.clone(),
            Chain {
                header: None,
                rules,
            },
        ));
        if !external {
            return pick;
        }
        // externalTrafficPolicy Cluster: traffic from outside is masqueraded (upstream's
        // external chain).
        let name = format!("external-pick-{p}-{n}");
        self.shared.push((
            name.clone(),
            Chain {
                header: None,
                rules: vec![
                    "jump mark-for-masquerade".to_string(),
                    format!("goto {pick}"),
                ],
            },
        ));
        name
    }
}

/// The fixed part of the table: hooks, the lookups and the masquerade.
fn base(cidr: Ipv4Net) -> Fragment {
    let mut f = Fragment::default();
    let jump_services = || vec!["jump services".to_string()];
    f.chain(
        "nat-prerouting",
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        jump_services(),
    );
    // Host processes reach services too (the `dstnat` keyword is not valid on this hook in
    // older nft, hence the number).
    f.chain(
        "nat-output",
        Some("type nat hook output priority -100; policy accept;"),
        jump_services(),
    );
    f.chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        vec![
            format!("ip saddr . ip daddr @{HAIRPIN} masquerade"),
            format!("meta mark & {MASQ_MARK} == 0 return"),
            format!("meta mark set meta mark ^ {MASQ_MARK}"),
            "masquerade fully-random".to_string(),
        ],
    );
    f.chain(
        "mark-for-masquerade",
        None,
        vec![format!("meta mark set meta mark | {MASQ_MARK}")],
    );
    f.chain(
        "services",
        None,
        vec![
            // ClusterIP traffic from outside the pod network (the node, routed clients) is
            // masqueraded so that replies come back through this node.
            format!("ip saddr != {cidr} {LOOKUP} @{CLUSTER_IPS} jump mark-for-masquerade"),
            format!("{LOOKUP} vmap @{SERVICE_IPS}"),
            format!("{LOOKUP} vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    // Upstream sends a TCP reset for TCP and an ICMP port unreachable otherwise; both make a
    // client fail at once instead of timing out.
    f.chain(
        "reject-chain",
        None,
        vec![
            "meta l4proto tcp reject with tcp reset".to_string(),
            "reject".to_string(),
        ],
    );
    for hook in ["input", "forward", "output"] {
        f.chain(
            &format!("filter-{hook}"),
            Some(&format!(
                "type filter hook {hook} priority -10; policy accept;"
            )),
            vec![format!("ct state new {LOOKUP} vmap @{NO_ENDPOINTS}")],
        );
    }
    // loadBalancerSourceRanges are checked against the destination the client used, so before
    // DNAT (upstream's filter-*-pre-dnat chains at dstnat - 10), on the prerouting hook for
    // traffic that arrives and on the output hook for the node's own.
    for hook in ["prerouting", "output"] {
        f.chain(
            &format!("filter-{hook}-pre-dnat"),
            Some(&format!(
                "type filter hook {hook} priority -110; policy accept;"
            )),
            vec!["ct state new jump firewall-check".to_string()],
        );
    }
    f.chain(
        "firewall-check",
        None,
        vec![format!("{LOOKUP} vmap @{FIREWALL_IPS}")],
    );
    f
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
    let mut rendered = Rendered::new();
    rendered.update(table);
    rendered.ruleset
}

/// The objects of one Service: none for headless Services and for the ClusterIP served by
/// something else on this node.
fn render_service(ctx: &Context, svc: &Service) -> Fragment {
    let mut f = Fragment::default();
    let Some(cluster_ip) = svc.cluster_ip else {
        return f;
    };
    if ctx.skip_cluster_ip == Some(cluster_ip) {
        return f;
    }
    for port in &svc.ports {
        render_port(&mut f, ctx, svc, cluster_ip, port);
    }
    f.seal()
}

fn goto_or(chain: Option<&str>, otherwise: &str) -> String {
    match chain {
        Some(c) => format!("goto {c}"),
        None => otherwise.to_string(),
    }
}

/// With ClientIP affinity each endpoint gets a chain that records the client in its affinity
/// set before the DNAT (upstream's per-endpoint chains). Returns the chain's name.
fn endpoint_chain(f: &mut Fragment, id: &str, proto: &str, ep: &Endpoint, timeout: u32) -> String {
    let suffix = format!("{id}__{}/{}", ep.ip, ep.port);
    let h = hash8(&suffix);
    let name = format!("endpoint-{h}-{suffix}");
    // The cluster-wide and the local picking chain may both use it: `seal` drops the copy.
    let set = format!("affinity-{h}-{suffix}");
    let rules = vec![
        format!("update @{set} {{ ip saddr }}"),
        format!("meta l4proto {proto} dnat ip to {}:{}", ep.ip, ep.port),
    ];
    f.sets.push((
        set,
        format!("type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;"),
    ));
    f.chain(&name, None, rules);
    name
}

/// Where traffic that picks one of a set of endpoints goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// A shared `{cluster,local}-pick-<proto>-N` chain: `numgen random mod N` numbers the
    /// endpoint, which the endpoint map of (`local`, `proto`) turns into a DNAT target for the
    /// packet's own key, so every key routed here needs the N elements `key . k : target`
    /// there ([`route`]). A Service is then only map elements: a 10,000-Service table has a few
    /// chains instead of 10,000 (nft and the kernel spend most of a sync on chains), and an
    /// endpoint change is an element change.
    Shared {
        local: bool,
        proto: Protocol,
        chain: String,
        targets: Vec<String>,
    },
    /// A chain of the Service's own.
    Own(String),
}

impl Pick {
    fn chain(&self) -> &str {
        match self {
            Pick::Shared { chain, .. } | Pick::Own(chain) => chain,
        }
    }
}

/// Makes `key` (`ip . proto . port`) reach the endpoints of `pick` (a no-op for an own chain,
/// which names its targets itself).
fn route(f: &mut Fragment, pick: &Pick, key: &str) {
    if let Pick::Shared {
        local,
        proto,
        targets,
        ..
    } = pick
    {
        let map = endpoint_map(*local, *proto);
        for (k, target) in targets.iter().enumerate() {
            f.claim(map, format!("{key} . {k}"), target.clone());
        }
    }
}

/// How traffic picks one of `eps` uniformly. Upstream's nftables mode gives each service port
/// a chain with `numgen random mod N vmap {…}`; here, without ClientIP affinity and with up
/// to [`SHARED_PICK_MAX`] endpoints, a shared picker does it ([`Pick::Shared`]). Otherwise
/// the Service gets a chain named `{prefix}-{hash}-{id}` with a cascade of
/// `numgen random mod K == 0` rules, rule k matching with probability 1/(n-k) (iptables
/// mode's statistic cascade): every `vmap {…}` would be an anonymous set, and the kernel
/// takes quadratic time in the number of sets (18 s of kernel time instead of 1 s for 10,000
/// Services with nft 1.0.6 on Linux 6.18). With affinity each endpoint gets a chain of its
/// own that records the client.
fn picker(
    f: &mut Fragment,
    cidr: Ipv4Net,
    svc: &Service,
    (prefix, hash, id, protocol): (&str, &str, &str, Protocol),
    eps: &[&Endpoint],
) -> Option<Pick> {
    if eps.is_empty() {
        return None;
    }
    let n = eps.len();
    let proto = protocol.nft();
    if svc.affinity_timeout.is_none() && n <= SHARED_PICK_MAX {
        let local = prefix == "local";
        return Some(Pick::Shared {
            local,
            proto: protocol,
            chain: f.shared_picker((local, protocol, n), cidr, false),
            targets: eps
                .iter()
                .map(|e| format!("{} . {}", e.ip, e.port))
                .collect(),
        });
    }
    let name = format!("{prefix}-{hash}-{id}");
    let mut rules = Vec::with_capacity(eps.len() * 2);
    let actions: Vec<String> = match svc.affinity_timeout {
        Some(timeout) => {
            let targets: Vec<String> = eps
                .iter()
                .map(|e| endpoint_chain(f, id, proto, e, timeout))
                .collect();
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
    for (k, action) in actions.into_iter().enumerate() {
        if k + 1 < n {
            rules.push(format!("numgen random mod {} == 0 {action}", n - k));
        } else {
            rules.push(action);
        }
    }
    f.chain(&name, None, rules);
    Some(Pick::Own(name))
}

fn render_port(
    f: &mut Fragment,
    ctx: &Context,
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
    let cidr = ctx.cluster_cidr;

    let all = unique(&port.endpoints);
    let cluster_eps = usable(all.iter());
    let local_eps = usable(
        all.iter()
            .filter(|e| e.node_name.as_deref() == Some(ctx.node_name.as_str())),
    );
    let external_ips: Vec<Ipv4Addr> = svc
        .external_ips
        .iter()
        .chain(&svc.load_balancer_ips)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let node_port = port.node_port.filter(|p| *p != 0);
    let has_external = !external_ips.is_empty() || node_port.is_some();

    // Hairpin: an endpoint reaching itself through the Service is masqueraded, or its reply
    // would come from its own address and be dropped. Only this node's endpoints (and those
    // of no known node) can send from here.
    for ep in all.iter().filter(|e| {
        e.node_name
            .as_deref()
            .is_none_or(|n| n == ctx.node_name.as_str())
    }) {
        f.claim(HAIRPIN, format!("{ip} . {ip}", ip = ep.ip), String::new());
    }

    // The all-endpoints picker serves ClusterIP traffic (internalTrafficPolicy Cluster) and
    // external traffic (directly, or short-circuited from pods and the node).
    let service_pick = if !svc.internal_local || has_external {
        picker(
            f,
            cidr,
            svc,
            ("service", &hash, &id, port.protocol),
            &cluster_eps,
        )
    } else {
        None
    };
    let local_pick = if svc.internal_local || svc.external_local {
        picker(
            f,
            cidr,
            svc,
            ("local", &hash, &id, port.protocol),
            &local_eps,
        )
    } else {
        None
    };
    // internalTrafficPolicy Local: ClusterIP traffic only goes to this node's endpoints, and
    // is dropped when there are none (as upstream).
    let cluster_policy = if svc.internal_local {
        local_pick.as_ref()
    } else {
        service_pick.as_ref()
    };

    let key = |ip: Ipv4Addr, p: u16| format!("{ip} . {proto} . {p}");
    if let Some(pick) = cluster_policy {
        let k = key(cluster_ip, port.port);
        f.claim(SERVICE_IPS, k.clone(), format!("goto {}", pick.chain()));
        // The cluster-wide shared picker marks traffic from outside the pod network itself.
        if !matches!(pick, Pick::Shared { local: false, .. }) {
            f.claim(CLUSTER_IPS, k.clone(), String::new());
        }
        route(f, pick, &k);
    } else {
        // No endpoints at all: refuse. Endpoints only on other nodes with
        // internalTrafficPolicy Local: drop, as upstream.
        let verdict = if cluster_eps.is_empty() {
            "goto reject-chain"
        } else {
            "drop"
        };
        f.claim(NO_ENDPOINTS, key(cluster_ip, port.port), verdict.into());
    }

    if !has_external {
        return;
    }
    firewall(f, ctx, svc, (&hash, &id, port.port), &key);
    // Where external traffic goes, and the pickers it may reach from there (each external
    // key needs its elements in their maps).
    let external: Option<(String, Vec<&Pick>)> = service_pick.as_ref().map(|service| {
        if svc.external_local {
            // Pods and the node itself reach the service through any endpoint (upstream's
            // short-circuit); only traffic from outside keeps its source address and is
            // limited to this node's endpoints, and dropped when there are none.
            let name = format!("external-{hash}-{id}");
            let inside = goto_or(cluster_policy.map(Pick::chain), "drop");
            let rules = vec![
                format!("ip saddr {cidr} {inside}"),
                "fib saddr type local jump mark-for-masquerade".to_string(),
                format!("fib saddr type local {inside}"),
                goto_or(local_pick.as_ref().map(Pick::chain), "drop"),
            ];
            f.chain(&name, None, rules);
            let reached = cluster_policy.into_iter().chain(&local_pick).collect();
            (name, reached)
        } else {
            let name = match service {
                Pick::Shared {
                    local,
                    proto,
                    targets,
                    ..
                } => f.shared_picker((*local, *proto, targets.len()), cidr, true),
                Pick::Own(chain) => {
                    let name = format!("external-{hash}-{id}");
                    let rules = vec![
                        "jump mark-for-masquerade".to_string(),
                        format!("goto {chain}"),
                    ];
                    f.chain(&name, None, rules);
                    name
                }
            };
            (name, vec![service])
        }
    });
    let mut targets: Vec<(&'static str, String)> = external_ips
        .iter()
        .map(|ip| (SERVICE_IPS, key(*ip, port.port)))
        .collect();
    if let Some(np) = node_port {
        targets.extend(
            ctx.node_ips
                .iter()
                .map(|ip| (SERVICE_NODEPORTS, key(*ip, np))),
        );
    }
    // Two Services with the same externalIP and port are a user error the API does not
    // prevent: the first Service (in namespace/name order) to claim an element keeps it.
    for (map, k) in targets {
        match &external {
            Some((chain, reached)) => {
                f.claim(map, k.clone(), format!("goto {chain}"));
                for pick in reached {
                    route(f, pick, &k);
                }
            }
            None => f.claim(NO_ENDPOINTS, k, "goto reject-chain".into()),
        }
    }
}

/// loadBalancerSourceRanges, as upstream: a `firewall-…` chain that drops sources outside the
/// ranges, reached through `firewall-ips` for each load balancer IP on this port (externalIPs
/// and NodePorts are not limited). When a range holds one of the node's addresses, the load
/// balancer IPs are allowed as sources too: the node reaching a VIP it holds itself sends from
/// that VIP.
fn firewall(
    f: &mut Fragment,
    ctx: &Context,
    svc: &Service,
    (hash, id, port): (&str, &str, u16),
    key: &dyn Fn(Ipv4Addr, u16) -> String,
) {
    if svc.load_balancer_ips.is_empty() || svc.source_ranges.is_empty() {
        return;
    }
    let mut allowed = svc.source_ranges.clone();
    if ctx
        .node_ips
        .iter()
        .any(|ip| svc.source_ranges.iter().any(|r| r.contains(ip)))
    {
        allowed.extend(svc.load_balancer_ips.iter().map(|ip| Ipv4Net::from(*ip)));
    }
    // Merged and sorted, so that equal ranges render equal rules whatever their order.
    let sources: Vec<String> = Ipv4Net::aggregate(&allowed)
        .iter()
        .map(|n| {
            if n.prefix_len() == 32 {
                n.addr().to_string()
            } else {
                n.to_string()
            }
        })
        .collect();
    let name = format!("firewall-{hash}-{id}");
    f.chain(
        &name,
        None,
        vec![format!("ip saddr != {{ {} }} drop", sources.join(", "))],
    );
    for ip in &svc.load_balancer_ips {
        f.claim(FIREWALL_IPS, key(*ip, port), format!("goto {name}"));
    }
}

/// A rendered Service: the input it was rendered from and what it put into the ruleset.
#[derive(Debug)]
struct Cached {
    input: Service,
    chains: Vec<String>,
    sets: Vec<String>,
    elements: Vec<(ElementKey, String)>,
    /// The shared picker chains it uses, sorted.
    shared: Vec<String>,
}

/// What changed since the kernel last matched the ruleset: each touched object's value then
/// (`None`: it did not exist).
#[derive(Debug, Default)]
struct Pending {
    chains: BTreeMap<String, Option<Chain>>,
    sets: BTreeMap<String, Option<String>>,
    elements: BTreeMap<ElementKey, Option<String>>,
}

/// What the kernel holds as far as the proxy knows: the objects of the last successful sync
/// and the changes since.
#[derive(Debug)]
struct Applied {
    objects: Existing,
    pending: Pending,
}

/// The rendered table kept between syncs. Each Service's objects are cached with the input
/// they were rendered from, so that [`Rendered::update`] re-renders only the Services whose
/// input (the Service with its endpoints) changed, or all of them when a table-wide input
/// (node name and addresses, cluster CIDR, skipped ClusterIP) changed, and
/// [`Rendered::diff_script`] writes only the objects that changed since the last sync. Elements
/// of the shared maps are claimed per Service; the first Service in (namespace, name) order
/// holding a key provides its value.
#[derive(Debug)]
pub struct Rendered {
    context: Option<Context>,
    base_chains: Vec<String>,
    services: BTreeMap<ServiceKey, Cached>,
    ruleset: Ruleset,
    /// The claims on shared elements that lost to an earlier Service's, sorted by Service.
    contested: HashMap<ElementKey, Vec<(ServiceKey, String)>>,
    /// How many Services use each shared picker chain.
    shared_users: HashMap<String, usize>,
    /// `None` until a sync succeeded, and after a failed one: the kernel's state is unknown.
    applied: Option<Applied>,
}

impl Default for Rendered {
    fn default() -> Self {
        Self::new()
    }
}

fn pending(applied: &mut Option<Applied>) -> Option<&mut Pending> {
    applied.as_mut().map(|a| &mut a.pending)
}

/// Sets (or with `None` removes) one chain of the ruleset, noting a change.
fn put_chain(rs: &mut Ruleset, applied: &mut Option<Applied>, name: String, chain: Option<Chain>) {
    let Some(p) = pending(applied) else {
        match chain {
            Some(c) => rs.chains.insert(name, c),
            None => rs.chains.remove(&name),
        };
        return;
    };
    let before = match chain {
        Some(c) => {
            if rs.chains.get(&name) == Some(&c) {
                return;
            }
            rs.chains.insert(name.clone(), c)
        }
        None => rs.chains.remove(&name),
    };
    p.chains.entry(name).or_insert(before);
}

/// Sets (or with `None` removes) one affinity set definition, noting a change.
fn put_set(rs: &mut Ruleset, applied: &mut Option<Applied>, name: String, def: Option<String>) {
    let before = match def {
        Some(d) => {
            if rs.sets.get(&name) == Some(&d) {
                return;
            }
            rs.sets.insert(name.clone(), d)
        }
        None => rs.sets.remove(&name),
    };
    if let Some(p) = pending(applied) {
        p.sets.entry(name).or_insert(before);
    }
}

/// Replaces the chains named `old` by `new` (the chains of one owner), noting changes. Returns
/// the names now owned.
fn install_chains(
    rs: &mut Ruleset,
    applied: &mut Option<Applied>,
    old: &[String],
    new: Vec<(String, Chain)>,
) -> Vec<String> {
    for name in old {
        if new.binary_search_by(|(n, _)| n.cmp(name)).is_err() {
            put_chain(rs, applied, name.clone(), None);
        }
    }
    let names = new.iter().map(|(n, _)| n.clone()).collect();
    for (name, chain) in new {
        put_chain(rs, applied, name, Some(chain));
    }
    names
}

impl Rendered {
    /// An empty rendering: nothing rendered, nothing known to be applied.
    pub fn new() -> Rendered {
        let maps = SHARED
            .iter()
            .chain(&ENDPOINT_MAPS)
            .map(|(name, kind)| {
                (
                    name.to_string(),
                    Map {
                        kind: kind.to_string(),
                        elements: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Rendered {
            context: None,
            base_chains: Vec::new(),
            services: BTreeMap::new(),
            ruleset: Ruleset {
                maps,
                ..Ruleset::default()
            },
            contested: HashMap::new(),
            shared_users: HashMap::new(),
            applied: None,
        }
    }

    /// The rendered objects.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Brings the rendering up to `table`, re-rendering only what changed.
    pub fn update(&mut self, table: &ServiceTable) {
        let ctx = Context::of(table);
        let everything = self.context.as_ref() != Some(&ctx);
        if everything {
            let old = std::mem::take(&mut self.base_chains);
            self.base_chains = install_chains(
                &mut self.ruleset,
                &mut self.applied,
                &old,
                base(ctx.cluster_cidr).seal().chains,
            );
            self.context = Some(ctx.clone());
        }
        let mut wanted: Vec<&Service> = table.services.iter().collect();
        wanted.sort_by(|a, b| {
            (a.namespace.as_str(), a.name.as_str()).cmp(&(b.namespace.as_str(), b.name.as_str()))
        });
        // Two entries for one Service cannot come from the API; the first one counts.
        wanted.dedup_by(|b, a| a.namespace == b.namespace && a.name == b.name);
        // One ordered walk over the cache and the table decides what to render again.
        let mut work: Vec<(ServiceKey, Option<&Service>)> = Vec::new();
        let mut cached = self.services.iter().peekable();
        let mut wanted = wanted.into_iter().peekable();
        loop {
            let order = match (cached.peek(), wanted.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((k, _)), Some(s)) => {
                    (k.0.as_str(), k.1.as_str()).cmp(&(s.namespace.as_str(), s.name.as_str()))
                }
            };
            match order {
                Ordering::Less => {
                    if let Some((k, _)) = cached.next() {
                        work.push((k.clone(), None));
                    }
                }
                Ordering::Greater => {
                    if let Some(s) = wanted.next() {
                        let key = Arc::new((s.namespace.clone(), s.name.clone()));
                        work.push((key, Some(s)));
                    }
                }
                Ordering::Equal => {
                    if let (Some((k, c)), Some(s)) = (cached.next(), wanted.next())
                        && (everything || c.input != *s)
                    {
                        work.push((k.clone(), Some(s)));
                    }
                }
            }
        }
        let fragments = render_all(&ctx, &work);
        for ((key, svc), fragment) in work.into_iter().zip(fragments) {
            self.set_service(key, svc, fragment);
        }
    }

    /// Renders one Service (or removes it, with `None`) and puts its objects in place of the
    /// ones it had.
    fn set_service(&mut self, key: ServiceKey, svc: Option<&Service>, fragment: Fragment) {
        let old = self.services.remove(&key);
        let Some(svc) = svc else {
            if let Some(old) = old {
                self.drop_objects(&key, old);
            }
            return;
        };
        let (old_chains, old_sets, old_elements, old_shared) = match old {
            Some(c) => (c.chains, c.sets, c.elements, c.shared),
            None => Default::default(),
        };
        let shared: Vec<String> = fragment.shared.iter().map(|(n, _)| n.clone()).collect();
        for (name, chain) in fragment.shared {
            if old_shared.binary_search(&name).is_err() {
                self.use_shared(name, chain);
            } else {
                // Still used; its rules change with the cluster CIDR.
                put_chain(&mut self.ruleset, &mut self.applied, name, Some(chain));
            }
        }
        for name in old_shared {
            if shared.binary_search(&name).is_err() {
                self.release_shared(name);
            }
        }
        let chains = install_chains(
            &mut self.ruleset,
            &mut self.applied,
            &old_chains,
            fragment.chains,
        );
        for name in &old_sets {
            if fragment
                .sets
                .binary_search_by(|(n, _)| n.cmp(name))
                .is_err()
            {
                put_set(&mut self.ruleset, &mut self.applied, name.clone(), None);
            }
        }
        let sets = fragment.sets.iter().map(|(n, _)| n.clone()).collect();
        for (name, def) in fragment.sets {
            put_set(&mut self.ruleset, &mut self.applied, name, Some(def));
        }
        let elements = fragment.elements;
        if elements != old_elements {
            self.reclaim(&key, &old_elements, &elements);
        }
        self.services.insert(
            key,
            Cached {
                input: svc.clone(),
                chains,
                sets,
                elements,
                shared,
            },
        );
    }

    /// Counts one more user of a shared picker chain, adding it for the first.
    fn use_shared(&mut self, name: String, chain: Chain) {
        let users = self.shared_users.entry(name.clone()).or_default();
        *users += 1;
        if *users == 1 {
            put_chain(&mut self.ruleset, &mut self.applied, name, Some(chain));
        }
    }

    /// Counts one user less of a shared picker chain, removing it after the last.
    fn release_shared(&mut self, name: String) {
        let Some(users) = self.shared_users.get_mut(&name) else {
            return;
        };
        *users -= 1;
        if *users == 0 {
            self.shared_users.remove(&name);
            put_chain(&mut self.ruleset, &mut self.applied, name, None);
        }
    }

    /// Removes everything a Service put into the ruleset.
    fn drop_objects(&mut self, key: &ServiceKey, old: Cached) {
        install_chains(
            &mut self.ruleset,
            &mut self.applied,
            &old.chains,
            Vec::new(),
        );
        for name in old.sets {
            put_set(&mut self.ruleset, &mut self.applied, name, None);
        }
        for name in old.shared {
            self.release_shared(name);
        }
        self.reclaim(key, &old.elements, &[]);
    }

    /// Moves `owner`'s claims on shared elements from `old` to `new` (both sorted by key).
    fn reclaim(
        &mut self,
        owner: &ServiceKey,
        old: &[(ElementKey, String)],
        new: &[(ElementKey, String)],
    ) {
        let mut i = 0;
        for (element, value) in old {
            while i < new.len() && new[i].0 < *element {
                i += 1;
            }
            if new.get(i).is_none_or(|(e, v)| e != element || v != value) {
                self.unclaim(owner, element);
            }
        }
        let mut i = 0;
        for (element, value) in new {
            while i < old.len() && old[i].0 < *element {
                i += 1;
            }
            if old.get(i).is_none_or(|(e, v)| e != element || v != value) {
                self.claim(owner, element, value);
            }
        }
    }

    /// Withdraws `owner`'s claim on one element; the next claim (if any) takes its place.
    fn unclaim(&mut self, owner: &ServiceKey, element: &ElementKey) {
        let (map, key) = element;
        let Some(m) = self.ruleset.maps.get_mut(*map) else {
            return;
        };
        if m.elements.get(key).is_some_and(|e| e.owner == *owner) {
            let next = match self.contested.get_mut(element) {
                Some(losers) => {
                    let first = losers.remove(0);
                    if losers.is_empty() {
                        self.contested.remove(element);
                    }
                    Some(first)
                }
                None => None,
            };
            let before = match next {
                Some((owner, value)) => m.elements.insert(key.clone(), Element { value, owner }),
                None => m.elements.remove(key),
            };
            if let Some(p) = pending(&mut self.applied) {
                p.elements
                    .entry(element.clone())
                    .or_insert(before.map(|e| e.value));
            }
        } else if let Some(losers) = self.contested.get_mut(element) {
            losers.retain(|(o, _)| o != owner);
            if losers.is_empty() {
                self.contested.remove(element);
            }
        }
    }

    /// Adds `owner`'s claim on one element: it takes the element when no earlier Service
    /// holds it.
    fn claim(&mut self, owner: &ServiceKey, element: &ElementKey, value: &str) {
        let (map, key) = element;
        let Some(m) = self.ruleset.maps.get_mut(*map) else {
            return;
        };
        let claim = Element {
            value: value.to_string(),
            owner: owner.clone(),
        };
        let loser = match m.elements.get_mut(key) {
            None => {
                m.elements.insert(key.clone(), claim);
                if let Some(p) = pending(&mut self.applied) {
                    p.elements.entry(element.clone()).or_insert(None);
                }
                return;
            }
            Some(held) if held.owner < *owner => claim,
            Some(held) => {
                let before = std::mem::replace(held, claim);
                if let Some(p) = pending(&mut self.applied) {
                    p.elements
                        .entry(element.clone())
                        .or_insert(Some(before.value.clone()));
                }
                before
            }
        };
        let losers = self.contested.entry(element.clone()).or_default();
        let at = losers.partition_point(|(o, _)| *o < loser.owner);
        losers.insert(at, (loser.owner, loser.value));
    }

    /// The objects of the last successful sync, when known: a full sync then needs no listing
    /// of the table to find stale objects.
    pub fn applied_objects(&self) -> Option<&Existing> {
        self.applied.as_ref().map(|a| &a.objects)
    }

    /// Records that the kernel now holds the rendered ruleset.
    pub fn mark_applied(&mut self) {
        let rs = &self.ruleset;
        match &mut self.applied {
            Some(a) => {
                let pending = std::mem::take(&mut a.pending);
                for name in pending.chains.into_keys() {
                    if rs.chains.contains_key(&name) {
                        a.objects.chains.insert(name);
                    } else {
                        a.objects.chains.remove(&name);
                    }
                }
                for name in pending.sets.into_keys() {
                    if rs.sets.contains_key(&name) {
                        a.objects.sets.insert(name);
                    } else {
                        a.objects.sets.remove(&name);
                    }
                }
            }
            None => {
                let mut objects = Existing {
                    chains: rs.chains.keys().cloned().collect(),
                    sets: rs.sets.keys().cloned().collect(),
                    maps: BTreeSet::new(),
                };
                for (name, map) in &rs.maps {
                    match map.noun() {
                        "map" => objects.maps.insert(name.clone()),
                        _ => objects.sets.insert(name.clone()),
                    };
                }
                self.applied = Some(Applied {
                    objects,
                    pending: Pending::default(),
                });
            }
        }
    }

    /// Records that the kernel's state is unknown (a sync failed): the next sync must be a full
    /// one that lists the table.
    pub fn forget_applied(&mut self) {
        self.applied = None;
    }

    /// The full-sync transaction for the rendered ruleset (see [`full_script`]).
    pub fn full_script(&self, existing: &Existing) -> String {
        full_script(&self.ruleset, existing)
    }

    /// The incremental transaction from the last successful sync to the rendered ruleset:
    /// only new, changed and removed chains, sets and map elements. Empty when nothing
    /// changed; `None` when the kernel's state is unknown (a full sync is needed).
    pub fn diff_script(&self) -> Option<String> {
        let p = &self.applied.as_ref()?.pending;
        let rs = &self.ruleset;
        let chains: Vec<(&str, Option<&Chain>, Option<&Chain>)> = p
            .chains
            .iter()
            .map(|(n, before)| (n.as_str(), before.as_ref(), rs.chains.get(n)))
            .filter(|(_, before, after)| before != after)
            .collect();
        let sets: Vec<(&str, Option<&String>, Option<&String>)> = p
            .sets
            .iter()
            .map(|(n, before)| (n.as_str(), before.as_ref(), rs.sets.get(n)))
            .filter(|(_, before, after)| before != after)
            .collect();
        let mut removed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut added: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((map, key), before) in &p.elements {
            let Some(m) = rs.maps.get(*map) else {
                continue;
            };
            let after = m.elements.get(key).map(|e| &e.value);
            if before.as_ref() == after {
                continue;
            }
            if before.is_some() {
                removed.entry(map).or_default().push(key);
            }
            if let Some(v) = after {
                added.entry(map).or_default().push(m.item(key, v));
            }
        }
        // A set whose definition changed (the affinity timeout) is dropped and created again,
        // and the chains that use it are rewritten around that.
        let changed_sets: Vec<&str> = sets
            .iter()
            .filter(|(_, b, a)| b.is_some() && a.is_some())
            .map(|(n, _, _)| *n)
            .collect();
        let listed: BTreeSet<&str> = chains.iter().map(|(n, _, _)| *n).collect();
        let users: Vec<(&str, &Chain)> = if changed_sets.is_empty() {
            Vec::new()
        } else {
            rs.chains
                .iter()
                .filter(|(n, c)| !listed.contains(n.as_str()) && uses_any(c, &changed_sets))
                .map(|(n, c)| (n.as_str(), c))
                .collect()
        };

        let mut out = String::new();
        // New chains are declared first: rules and elements below may point at them.
        for (name, before, after) in &chains {
            if let (None, Some(chain)) = (before, after) {
                write_chain_decl(&mut out, name, chain);
            }
        }
        for (name, before, after) in &sets {
            if let (None, Some(def)) = (before, after) {
                write_set_decl(&mut out, name, def);
            }
        }
        // Elements that go away or change first, so the chains they point at can go.
        for (map, keys) in &removed {
            for chunk in keys.chunks(1000) {
                let _ = writeln!(
                    out,
                    "delete element {FAMILY} {TABLE} {map} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        // Changed chains are emptied and refilled; removed chains are emptied first so that a
        // chain pointing at another removed chain does not block its deletion.
        for (name, before, _) in &chains {
            if before.is_some() {
                let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
            }
        }
        for (name, _) in &users {
            let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
        }
        for name in &changed_sets {
            let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
            if let Some(def) = rs.sets.get(*name) {
                write_set_decl(&mut out, name, def);
            }
        }
        // nft 1.0.6 resolves `@name` in an `add chain … { rules }` only against what the
        // script itself declares (an existing set is "No such file or directory"): the sets
        // and maps the rules use are declared again, which changes nothing in the kernel.
        let filled = chains
            .iter()
            .filter_map(|(_, _, after)| *after)
            .chain(users.iter().map(|(_, c)| *c));
        write_referenced_decls(&mut out, rs, filled);
        for (name, _, after) in &chains {
            if let Some(chain) = after {
                write_chain_fill(&mut out, name, chain);
            }
        }
        for (name, chain) in &users {
            write_chain_fill(&mut out, name, chain);
        }
        for (map, items) in &added {
            if let Some(m) = rs.maps.get(*map) {
                for chunk in items.chunks(1000) {
                    let _ = writeln!(
                        out,
                        "add {} {FAMILY} {TABLE} {map} {{ {} ; elements = {{ {} }} ; }}",
                        m.noun(),
                        m.kind,
                        chunk.join(", ")
                    );
                }
            }
        }
        for (name, before, after) in &chains {
            if before.is_some() && after.is_none() {
                let _ = writeln!(out, "delete chain {FAMILY} {TABLE} {name}");
            }
        }
        for (name, before, after) in &sets {
            if before.is_some() && after.is_none() {
                let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
            }
        }
        Some(out)
    }
}

impl Map {
    /// `map` for maps, `set` for plain sets (both are kept as a [`Map`]).
    fn noun(&self) -> &'static str {
        if self.kind.contains(" : ") {
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

/// Declares a chain, empty (a base chain with its hook).
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

/// Adds a chain's rules, as part of its declaration. nft 1.0.6 lists every chain of the
/// ruleset into its cache before an `add rule` (25 ms with 10,000 Services); an `add chain`
/// carrying its rules needs no cache.
fn write_chain_fill(out: &mut String, name: &str, chain: &Chain) {
    if chain.header.is_none() && chain.rules.is_empty() {
        return;
    }
    let _ = write!(out, "add chain {FAMILY} {TABLE} {name} {{ ");
    if let Some(h) = &chain.header {
        let _ = write!(out, "{h} ");
    }
    for rule in &chain.rules {
        let _ = write!(out, "{rule} ; ");
    }
    out.push_str("}\n");
}

/// Declares (again) the named sets and maps that `chains` use.
fn write_referenced_decls<'a>(
    out: &mut String,
    rs: &Ruleset,
    chains: impl Iterator<Item = &'a Chain>,
) {
    let mut names = BTreeSet::new();
    for chain in chains {
        for rule in &chain.rules {
            for (_, rest) in rule.match_indices('@').map(|(i, _)| rule.split_at(i + 1)) {
                let name = rest.split(|c: char| c.is_whitespace()).next().unwrap_or("");
                names.insert(name);
            }
        }
    }
    for name in names {
        if let Some(map) = rs.maps.get(name) {
            let _ = writeln!(
                out,
                "add {} {FAMILY} {TABLE} {name} {{ {} ; }}",
                map.noun(),
                map.kind
            );
        } else if let Some(def) = rs.sets.get(name) {
            write_set_decl(out, name, def);
        }
    }
}

fn write_set_decl(out: &mut String, name: &str, def: &str) {
    let _ = writeln!(out, "add set {FAMILY} {TABLE} {name} {{ {def} }}");
}

/// The full-sync transaction: empties every object of the proxy that exists, writes all of
/// `rs` as one `table` block, and deletes the proxy's objects in `existing` that `rs` no longer
/// has. Affinity sets are declared but not flushed, so a resync keeps the clients' affinity.
///
/// The block form costs nft less than one command per object (it parses about 15% faster),
/// and on a table that does not exist yet nothing is flushed: a fresh 10,000-Service table is
/// the block alone.
pub fn full_script(rs: &Ruleset, existing: &Existing) -> String {
    let mut out = String::with_capacity(64 * (rs.chains.len() * 4 + 1));
    let _ = writeln!(out, "add table {FAMILY} {TABLE}");
    for name in existing.chains.iter().filter(|c| owned(c)) {
        let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
    }
    for (name, map) in &rs.maps {
        if existing.maps.contains(name) || existing.sets.contains(name) {
            let _ = writeln!(out, "flush {} {FAMILY} {TABLE} {name}", map.noun());
        }
    }
    let _ = writeln!(out, "table {FAMILY} {TABLE} {{");
    for (name, def) in &rs.sets {
        let _ = writeln!(out, "\tset {name} {{ {def} }}");
    }
    for (name, map) in &rs.maps {
        let _ = writeln!(out, "\t{} {name} {{\n\t\t{}", map.noun(), map.kind);
        if !map.elements.is_empty() {
            out.push_str("\t\telements = { ");
            for (i, (key, element)) in map.elements.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                if !element.value.is_empty() {
                    out.push_str(" : ");
                    out.push_str(&element.value);
                }
            }
            out.push_str(" }\n");
        }
        out.push_str("\t}\n");
    }
    for (name, chain) in &rs.chains {
        let _ = writeln!(out, "\tchain {name} {{");
        if let Some(h) = &chain.header {
            let _ = writeln!(out, "\t\t{h}");
        }
        for rule in &chain.rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    for name in existing
        .chains
        .iter()
        .filter(|c| owned(c) && !rs.chains.contains_key(*c))
    {
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

fn uses_any(chain: &Chain, sets: &[&str]) -> bool {
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
