//! Pure translation of API objects (Services, EndpointSlices, Nodes) into the proxy's
//! [`ServiceTable`](super::render::ServiceTable).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::render::{self, Endpoint, Protocol, ServicePort};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// An IPv4 CIDR as Go's `ParseCIDRSloppy` reads it (leading zeros in an octet are decimal),
/// truncated to its network. `None` for IPv6 ranges and anything unparsable.
pub fn ipv4_cidr_sloppy(s: &str) -> Option<Ipv4Net> {
    let (addr, len) = s.split_once('/')?;
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut bytes = [0u8; 4];
    for (b, o) in bytes.iter_mut().zip(&octets) {
        if o.is_empty() || o.len() > 3 || !o.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = o.parse().ok()?;
    }
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Ipv4Net::new(Ipv4Addr::from(bytes), len.parse().ok()?)
        .ok()
        .map(|n| n.trunc())
}

/// The addresses of `node` NodePorts are served on: its InternalIPs and ExternalIPs.
pub fn node_addresses(node: &Node) -> Vec<Ipv4Addr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| ipv4(&a.address))
        .collect()
}

/// The proxy's view of one Service with the endpoints of its EndpointSlices. `None` for
/// Services the proxy does not serve: ExternalName, and those without an IPv4 ClusterIP
/// (headless).
pub fn service(svc: &Service, slices: &[&EndpointSlice]) -> Option<render::Service> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .and_then(ipv4);
    cluster_ip?;
    let load_balancer_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        // ipMode Proxy means the load balancer delivers to the node, not to the VIP.
        .filter(|i| i.ip_mode.as_deref().is_none_or(|m| m == "VIP"))
        .filter_map(|i| i.ip.as_deref().and_then(ipv4))
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::from_k8s(p.protocol.as_deref())?;
            let name = p.name.clone().unwrap_or_default();
            Some(ServicePort {
                endpoints: endpoints(slices, &name, protocol),
                name,
                protocol,
                port: u16::try_from(p.port).ok()?,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            })
        })
        .collect();
    Some(render::Service {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        cluster_ip,
        external_ips: spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| ipv4(s))
            .collect(),
        load_balancer_ips,
        // Upstream trims them: validation once let space-padded values through.
        source_ranges: spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| ipv4_cidr_sloppy(r.trim()))
            .collect(),
        ports,
        affinity_timeout,
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
    })
}

/// The endpoints of the service port named `port_name` in IPv4 EndpointSlices. Conditions
/// follow the EndpointSlice API: an unset `ready` or `serving` counts as true, an unset
/// `terminating` as false.
fn endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            for ip in ep.addresses.iter().filter_map(|a| ipv4(a)) {
                out.push(Endpoint {
                    ip,
                    port,
                    ready,
                    serving,
                    terminating,
                    node_name: ep.node_name.clone(),
                });
            }
        }
    }
    out
}

/// Groups EndpointSlices by `(namespace, service name)`.
pub fn slices_by_service(
    slices: &[std::sync::Arc<EndpointSlice>],
) -> BTreeMap<(String, String), Vec<&EndpointSlice>> {
    let mut by: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by.entry((ns, svc.clone())).or_default().push(s);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn named_ports_conditions_and_lb_ips_are_read() {
        let s = svc(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20",
                "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080}],
                "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.11", "ipMode": "Proxy"}]}}
        }));
        let es = slice(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web-abc", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "nodeName": "n1"},
                {"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]
        }));
        let got = service(&s, &[&es]).unwrap();
        assert_eq!(got.cluster_ip, Some("10.43.0.20".parse().unwrap()));
        assert_eq!(
            got.load_balancer_ips,
            vec!["192.0.2.10".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(got.affinity_timeout, Some(10800));
        assert!(got.external_local && !got.internal_local);
        let port = &got.ports[0];
        assert_eq!((port.port, port.node_port), (80, Some(30080)));
        assert_eq!(port.endpoints.len(), 2);
        assert_eq!(port.endpoints[0].port, 8080);
        assert!(port.endpoints[0].ready && !port.endpoints[0].terminating);
        assert_eq!(port.endpoints[0].node_name.as_deref(), Some("n1"));
        assert!(!port.endpoints[1].ready && port.endpoints[1].terminating);
    }

    #[test]
    fn source_ranges_are_trimmed_ipv4_networks() {
        let s = svc(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20", "ports": [{"port": 80}],
                "loadBalancerSourceRanges": [" 10.250.0.1/30 ", "2001:db8::/64", "010.1.2.0/24", "bad"]}
        }));
        let got = service(&s, &[]).unwrap();
        let want: Vec<Ipv4Net> = vec![
            "10.250.0.0/30".parse().unwrap(),
            "10.1.2.0/24".parse().unwrap(),
        ];
        assert_eq!(got.source_ranges, want);
    }

    #[test]
    fn headless_and_external_name_services_are_skipped() {
        let headless = svc(serde_json::json!({
            "metadata": {"namespace": "default", "name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }));
        assert!(service(&headless, &[]).is_none());
        let ext = svc(serde_json::json!({
            "metadata": {"namespace": "default", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.org"}
        }));
        assert!(service(&ext, &[]).is_none());
    }
}
