//! The built-in LoadBalancer, k3s's ServiceLB (klipper-lb) without its DaemonSet: every
//! Service of type LoadBalancer without `spec.loadBalancerClass` gets
//! `status.loadBalancer.ingress` = the addresses of the ready nodes (a node's ExternalIP when it
//! has one, else its InternalIP, as klipper-lb reports), with ipMode VIP. The Service proxy on
//! every node then serves those addresses like externalIPs on the Service's ports, so no pod
//! per Service is needed. Services that stop being LoadBalancers get their ingress cleared, as
//! upstream's service controller does.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::informer::{Informer, Requeue, WorkQueue, key_of, run_workers, split_key};

const WORKERS: usize = 2;

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The address a node offers to load-balanced traffic: ExternalIP if set, else InternalIP.
fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let of = |t: &str| {
        addresses
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
    };
    of("ExternalIP").or_else(|| of("InternalIP"))
}

/// What `status.loadBalancer.ingress` should be; `None` for Services this controller leaves
/// alone (another class, or not a LoadBalancer with nothing of ours to clear).
pub fn desired_ingress(svc: &Service, nodes: &[Arc<Node>]) -> Option<Vec<LoadBalancerIngress>> {
    let spec = svc.spec.as_ref()?;
    if spec.load_balancer_class.is_some() {
        return None;
    }
    if spec.type_.as_deref() != Some("LoadBalancer") {
        let has = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        return has.then(Vec::new);
    }
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| ready(n))
        .filter_map(|n| node_address(n))
        .collect();
    ips.sort();
    ips.dedup();
    Some(
        ips.into_iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip),
                ip_mode: Some("VIP".into()),
                ..LoadBalancerIngress::default()
            })
            .collect(),
    )
}

pub struct Controller {
    client: Client,
    services: Arc<Informer<Service>>,
    nodes: Arc<Informer<Node>>,
    queue: Arc<WorkQueue>,
}

impl Controller {
    /// Wires the handlers; run the informers and then [`Controller::run`].
    pub fn new(
        client: Client,
        services: Arc<Informer<Service>>,
        nodes: Arc<Informer<Node>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            services,
            nodes,
            queue: WorkQueue::new(),
        });
        this.services.enqueue_changes(&this.queue);
        let weak = Arc::downgrade(&this);
        // A node that becomes ready, goes away or changes address changes every LoadBalancer.
        this.nodes.on_change(move |_| {
            if let Some(c) = weak.upgrade() {
                for svc in c.services.list() {
                    let lb =
                        svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
                    if lb {
                        c.queue.add(key_of(svc.as_ref()));
                    }
                }
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.services.wait_synced().await;
        self.nodes.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("servicelb-controller", self.queue.clone(), WORKERS, {
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            }
        });
        let resync = super::informer::resync(self.services.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(svc) = self.services.get(key) else {
            return Ok(None);
        };
        let Some(want) = desired_ingress(&svc, &self.nodes.list()) else {
            return Ok(None);
        };
        let have = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default();
        if have == want {
            return Ok(None);
        }
        let (ns, name) = split_key(key);
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": want}}});
        tracing::debug!(service = %key, ingress = ?want, "setting load balancer ingress");
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>) -> Arc<Node> {
        let mut addresses = vec![serde_json::json!({"type": "InternalIP", "address": internal})];
        if let Some(e) = external {
            addresses.push(serde_json::json!({"type": "ExternalIP", "address": e}));
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                    "addresses": addresses
                }
            }))
            .unwrap(),
        )
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn ingress_is_the_ready_nodes_addresses() {
        let nodes = vec![
            node("b", true, "192.0.2.2", None),
            node("a", true, "192.0.2.1", Some("198.51.100.1")),
            node("c", false, "192.0.2.3", None),
        ];
        let got =
            desired_ingress(&svc(serde_json::json!({"type": "LoadBalancer"})), &nodes).unwrap();
        let ips: Vec<_> = got.iter().map(|i| i.ip.as_deref().unwrap()).collect();
        assert_eq!(ips, ["192.0.2.2", "198.51.100.1"]);
        assert!(got.iter().all(|i| i.ip_mode.as_deref() == Some("VIP")));
    }

    #[test]
    fn other_classes_and_plain_services_are_left_alone() {
        let nodes = vec![node("a", true, "192.0.2.1", None)];
        let classed = svc(serde_json::json!({"type": "LoadBalancer", "loadBalancerClass": "x/y"}));
        assert_eq!(desired_ingress(&classed, &nodes), None);
        let plain = svc(serde_json::json!({"type": "ClusterIP"}));
        assert_eq!(desired_ingress(&plain, &nodes), None);
        let mut was_lb = plain.clone();
        was_lb.status = Some(
            serde_json::from_value(
                serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
            )
            .unwrap(),
        );
        assert_eq!(desired_ingress(&was_lb, &nodes), Some(vec![]));
    }
}
