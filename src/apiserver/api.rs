//! The API server's shared state, request routing and health/version/discovery/OpenAPI endpoints.

use super::*;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use self::admission::{Allocators, ServiceCidr};
use self::request::Format;
use self::resources::Resource;
use self::status::{ApiError, Result};
use self::storage::{Storage, Written};
use crate::store::Store;

/// The Kubernetes version rk3s reports and implements.
pub const KUBERNETES_MINOR: &str = "33";
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// Everything the API server needs, built by `cli`.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: IpAddr,
    pub https_port: u16,
    /// `<data-dir>/server/tls`.
    pub tls_dir: PathBuf,
    /// Extra names and addresses for the serving certificate (`--tls-san`, node name and IP).
    pub tls_sans: Vec<String>,
    pub cluster_domain: String,
    pub service_cidr: ServiceCidr,
    /// Where to write the admin kubeconfig, and its mode.
    pub write_kubeconfig: Option<PathBuf>,
    pub write_kubeconfig_mode: u32,
}

/// Who is asking: from the client certificate (CN = name, O = groups), or an in-process
/// component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn info(&self) -> Value {
        let mut groups = self.groups.clone();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        json!({"username": self.name, "groups": groups})
    }
}

/// The authorizer seam: today `system:masters` may do everything and everyone else nothing
/// (RBAC comes in its own module and replaces this function's body).
pub fn authorize(user: &User, _attributes: &Value) -> Result<()> {
    if user.groups.iter().any(|g| g == "system:masters") {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "User \"{}\" cannot access this resource: only system:masters is authorized until RBAC is enabled",
            user.name
        )))
    }
}

/// A successful answer: status code and object, encoded per the negotiated format.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn object(status: StatusCode, body: Value) -> Reply {
        Reply { status, body }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(status, "application/json", Bytes::from(bytes))
}

fn bytes_response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    );
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn text_response(status: StatusCode, text: String) -> Response<Body> {
    bytes_response(status, "text/plain; charset=utf-8", Bytes::from(text))
}

/// The resource table the served OpenAPI documents were built from, and the documents.
type ServedOpenApi = (Arc<Vec<Resource>>, Arc<openapi::OpenApi>);

/// The API server's shared state.
pub struct Api {
    pub storage: Storage,
    /// Built-in resources plus those of the established CRDs; replaced whole when a CRD
    /// changes.
    resources: std::sync::RwLock<Arc<Vec<Resource>>>,
    pub allocators: Allocators,
    /// Whether a garbage collector runs (Orphan/Foreground deletion need one).
    pub garbage_collector: bool,
    /// Whether metrics.k8s.io is served (`--disable=metrics` turns it off).
    pub metrics: bool,
    /// `host:port` clients are told to use (`/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
    /// The documents of the built-in resources: built on first use, never rebuilt.
    openapi_built_in: OnceLock<openapi::OpenApi>,
    /// The served documents (built-in plus CRDs) and the resource table they were built from;
    /// rebuilt on the first request after the table changed (`reload_crds`), reusing the
    /// built-in documents.
    openapi: std::sync::RwLock<Option<ServedOpenApi>>,
    /// Serializes CRD registry reloads.
    crd_reload: tokio::sync::Mutex<()>,
    /// The kubelets this server reaches, by node name: their HTTP routes (`/containerLogs/…`),
    /// served in-process for the server's own node.
    pub(super) kubelets: std::sync::RwLock<std::collections::HashMap<String, axum::Router>>,
}

impl Api {
    pub fn new(store: Store, config: &Config) -> Api {
        Api {
            storage: Storage::new(store),
            resources: std::sync::RwLock::new(Arc::new(resources::built_in().to_vec())),
            allocators: Allocators::new(config.service_cidr),
            garbage_collector: false,
            metrics: true,
            server_address: format!("{}:{}", config.bind_address, config.https_port),
            openapi_built_in: OnceLock::new(),
            openapi: std::sync::RwLock::new(None),
            crd_reload: tokio::sync::Mutex::new(()),
            kubelets: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// Every served resource, built-in and custom.
    pub fn resources(&self) -> Arc<Vec<Resource>> {
        self.resources
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Re-reads the CRDs from the store and serves exactly the established ones.
    pub async fn reload_crds(&self) -> Result<()> {
        let _one = self.crd_reload.lock().await;
        let crds = self
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .ok_or_else(|| ApiError::internal("CRDs are not registered"))?;
        let page = self
            .storage
            .list(&crds.key_prefix(None), 0, None, 0)
            .await?;
        let mut all = resources::built_in().to_vec();
        for item in &page.items {
            for r in crd::resources(&item.object) {
                // A CRD may not shadow a built-in resource.
                if !all
                    .iter()
                    .any(|b| b.group == r.group && b.plural == r.plural && b.version == r.version)
                {
                    all.push(r);
                }
            }
        }
        let mut guard = self.resources.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(all);
        Ok(())
    }

    /// The OpenAPI documents of what is served now: those of the built-in resources (built
    /// once) and one per group-version of the established CRDs, rebuilt after `reload_crds`
    /// replaced the resource table.
    fn openapi(&self) -> Arc<openapi::OpenApi> {
        let table = self.resources();
        {
            let cached = self.openapi.read().unwrap_or_else(|p| p.into_inner());
            if let Some((built_from, served)) = cached.as_ref()
                && Arc::ptr_eq(built_from, &table)
            {
                return Arc::clone(served);
            }
        }
        let built_in = self
            .openapi_built_in
            .get_or_init(|| openapi::OpenApi::new(resources::built_in()));
        let custom: Vec<Resource> = table.iter().filter(|r| r.crd.is_some()).cloned().collect();
        let served = Arc::new(built_in.with_custom(&custom));
        let mut cached = self.openapi.write().unwrap_or_else(|p| p.into_inner());
        // A concurrent reload may have replaced the table meanwhile: keep what matches the
        // newest table.
        if Arc::ptr_eq(&self.resources(), &table) {
            *cached = Some((table, Arc::clone(&served)));
        }
        served
    }

    /// Creates what every cluster has: the four namespaces and the `kubernetes` Service with
    /// its Endpoints (as upstream's bootstrap controllers do). Existing objects are kept.
    pub async fn bootstrap(&self, advertise: IpAddr, port: u16) -> Result<()> {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            self.create_if_absent("namespaces", None, ns, obj).await?;
        }
        let cluster_ip = self.allocators.cidr().nth(1).to_string();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
            "status": {"loadBalancer": {}},
        });
        self.create_if_absent("services", Some("default"), "kubernetes", svc)
            .await?;
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": advertise.to_string()}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        });
        self.create_if_absent("endpoints", Some("default"), "kubernetes", endpoints)
            .await?;
        // Upstream's apiserver creates the two system PriorityClasses at start.
        for (name, value, description) in [
            (
                "system-node-critical",
                2_000_001_000,
                "Used for system critical pods that must not be moved from their current node.",
            ),
            (
                "system-cluster-critical",
                2_000_000_000,
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            ),
        ] {
            let class = json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "globalDefault": false,
                "description": description,
                "preemptionPolicy": "PreemptLowerPriority",
            });
            self.create_if_absent("priorityclasses", None, name, class)
                .await?;
        }
        self.reload_crds().await
    }

    async fn create_if_absent(
        &self,
        plural: &str,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
    ) -> Result<()> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("v1").to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let r = self
            .resource(group, version, plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
        let key = r.key(ns, name);
        if self.storage.get(&key).await?.is_some() {
            return Ok(());
        }
        obj["metadata"]["uid"] = json!(meta::uuid());
        obj["metadata"]["creationTimestamp"] = json!(meta::now_rfc3339());
        match self.storage.create(&key, &obj).await? {
            Written::Done(_) | Written::Conflict => Ok(()),
        }
    }

    /// Serves one request from `user` (`None`: no client certificate).
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Body>,
        user: Option<User>,
    ) -> Response<Body> {
        match self.route(req, user).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    }

    async fn route(
        self: &Arc<Self>,
        req: Request<Body>,
        user: Option<User>,
    ) -> Result<Response<Body>> {
        let path = req.uri().path().to_string();
        let query = request::Query::parse(req.uri().query());
        let accept = header_str(&req, header::ACCEPT);
        // Anonymous requests may read health and version (system:public-info-viewer).
        match path.as_str() {
            "/healthz" | "/livez" | "/readyz" => return Ok(self.health(&path, &query).await),
            "/version" | "/version/" => return Ok(json_response(StatusCode::OK, &version())),
            _ => {}
        }
        if let Some(check) = ["/healthz/", "/livez/", "/readyz/"]
            .iter()
            .find_map(|p| path.strip_prefix(p))
        {
            return self.health_check(check).await;
        }
        let Some(user) = user else {
            return Err(ApiError::unauthorized());
        };
        if req.method() == Method::GET {
            if let Some(r) = self.discovery(&path, accept.as_deref(), &query) {
                return Ok(r);
            }
            if path == "/openapi/v2" || path.starts_with("/openapi/v3") {
                return Ok(self.serve_openapi(&req, &path, &query));
            }
        }
        let Some(mut p) = request::parse_path(&path) else {
            return Err(ApiError::no_route());
        };
        // `/api/v1/namespaces/<name>/<status|finalize>`: subresources of the namespace itself.
        if p.group.is_empty()
            && p.name.is_none()
            && matches!(p.resource.as_str(), "status" | "finalize")
            && let Some(ns) = p.namespace.take()
        {
            p.subresource = Some(std::mem::replace(&mut p.resource, "namespaces".into()));
            p.name = Some(ns);
        }
        // metrics.k8s.io is computed from the kubelets, never stored.
        if p.group == metrics::GROUP && self.metrics {
            let body = self.metrics(req.method(), &p, &query, &user).await?;
            return Ok(json_response(StatusCode::OK, &body));
        }
        let resource = self
            .resource(&p.group, &p.version, &p.resource)
            .ok_or_else(ApiError::no_route)?;
        if !resource.namespaced && p.namespace.is_some() {
            return Err(ApiError::no_route());
        }
        let watch = query.bool("watch")?;
        // exec/attach/portforward: a WebSocket GET or a SPDY POST, both authorized as `create`
        // (upstream's AuthorizePodWebsocketUpgradeCreatePermission).
        let streaming = p.group.is_empty()
            && p.resource == "pods"
            && matches!(
                p.subresource.as_deref(),
                Some("exec" | "attach" | "portforward")
            );
        let verb = if streaming && matches!(*req.method(), Method::GET | Method::POST) {
            "create"
        } else {
            handlers::verb(req.method(), &p, watch)
        };
        if let Some(sub) = &p.subresource {
            let Some(s) = resource.subresource(sub) else {
                return Err(ApiError::no_route());
            };
            let allowed = match verb {
                "get" => s.verbs.contains(&"get"),
                "update" => s.verbs.contains(&"update"),
                "patch" => s.verbs.contains(&"patch"),
                "create" => s.verbs.contains(&"create"),
                _ => false,
            };
            if !allowed {
                return Err(ApiError::method_not_allowed(verb, &resource.qualified()));
            }
        } else if !resource.supports(verb) {
            return Err(ApiError::method_not_allowed(verb, &resource.qualified()));
        }
        if resource.namespaced && p.name.is_some() && p.namespace.is_none() {
            return Err(ApiError::no_route());
        }
        authorize(
            &user,
            &json!({"verb": verb, "group": resource.group, "resource": resource.plural,
                "namespace": p.namespace, "name": p.name, "subresource": p.subresource}),
        )?;
        if p.subresource.as_deref() == Some("log") {
            return self.pod_log(&p, &query, req.uri().query()).await;
        }
        if streaming {
            return self.pod_stream(&p, &query, req).await;
        }
        let table_ok = matches!(verb, "get" | "list" | "watch") && p.subresource.is_none();
        let format = request::negotiate(accept.as_deref(), table_ok)
            .ok_or_else(|| ApiError::not_acceptable(accept.as_deref().unwrap_or_default()))?;
        let content_type = header_str(&req, header::CONTENT_TYPE);
        let user_agent = header_str(&req, header::USER_AGENT);
        let body = axum::body::to_bytes(req.into_body(), handlers::MAX_BODY)
            .await
            .map_err(|_| ApiError::too_large("Request entity too large: limit is 3145728"))?;
        let call = handlers::Call {
            api: self,
            resource,
            path: p,
            query,
            format,
            content_type,
            body,
            user: &user,
            user_agent,
            warnings: Default::default(),
        };
        if verb == "watch" {
            let rx = watch::start(&call)?;
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let stream = futures_util::StreamExt::map(stream, Ok::<Bytes, Infallible>);
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        let reply = self.dispatch(&call, verb).await?;
        respond(&call, reply)
    }

    /// Makes `router` the kubelet of `node` for the node-served subresources.
    pub fn register_kubelet(&self, node: &str, router: axum::Router) {
        if let Ok(mut k) = self.kubelets.write() {
            k.insert(node.to_string(), router);
        }
    }

    /// The HTTP routes of `node`'s kubelet, or 503 when this server has no connection to it.
    fn kubelet(&self, node: &str) -> Result<axum::Router> {
        self.kubelets
            .read()
            .ok()
            .and_then(|k| k.get(node).cloned())
            .ok_or_else(|| {
                ApiError::new(
                    503,
                    "ServiceUnavailable",
                    format!("no connection to the kubelet of node {node:?}"),
                )
            })
    }

    /// `pods/log`: checks the pod and container as upstream's REST storage does, then proxies
    /// to the kubelet of the pod's node (`/containerLogs/{ns}/{pod}/{container}`).
    async fn pod_log(
        &self,
        p: &request::Path,
        query: &request::Query,
        raw_query: Option<&str>,
    ) -> Result<Response<Body>> {
        let ns = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        let key = format!("/registry/pods/{ns}/{name}");
        let Some(pod) = self.storage.get(&key).await?.map(|s| s.object) else {
            return Err(ApiError::not_found("", "pods", "pods", &name));
        };
        for int in ["tailLines", "sinceSeconds", "limitBytes"] {
            if let Some(v) = query.int(int)?
                && v < 0
            {
                return Err(ApiError::invalid(
                    "",
                    "PodLogOptions",
                    &name,
                    vec![super::status::Cause::invalid(
                        int,
                        &json!(v),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
        }
        let names: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| pod["spec"][k].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        let regular: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        let container = match query.get("container").filter(|c| !c.is_empty()) {
            Some(c) if names.iter().any(|n| n == c) => c.to_string(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None if regular.len() == 1 => regular[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    regular.join(" ")
                )));
            }
        };
        let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        };
        let router = self.kubelet(node)?;
        let mut uri = format!("/containerLogs/{ns}/{name}/{container}");
        if let Some(q) = raw_query {
            uri.push('?');
            uri.push_str(q);
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = tower::ServiceExt::oneshot(router, req)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if resp.status().is_success() {
            let (mut parts, body) = resp.into_parts();
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(Response::from_parts(parts, body));
        }
        let code = resp.status().as_u16();
        let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(match code {
            404 => ApiError::new(404, "NotFound", text),
            400 => ApiError::bad_request(text),
            c => ApiError::new(c, "InternalError", text),
        })
    }

    /// `pods/exec`, `pods/attach`, `pods/portforward`: checks the pod and container as upstream's
    /// REST storage does, then hands the request (with hyper's pending upgrade) to the kubelet
    /// of the pod's node and returns its answer untouched (101 Switching Protocols when the
    /// session starts).
    async fn pod_stream(
        &self,
        p: &request::Path,
        query: &request::Query,
        req: Request<Body>,
    ) -> Result<Response<Body>> {
        let sub = p.subresource.clone().unwrap_or_default();
        let ns = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        let key = format!("/registry/pods/{ns}/{name}");
        let Some(pod) = self.storage.get(&key).await?.map(|s| s.object) else {
            return Err(ApiError::not_found("", "pods", "pods", &name));
        };
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        if matches!(phase, "Succeeded" | "Failed") {
            return Err(ApiError::bad_request(match sub.as_str() {
                "exec" => format!(
                    "cannot exec into a container in a completed pod; current phase is {phase}"
                ),
                "attach" => format!(
                    "cannot attach to a container in a completed pod; current phase is {phase}"
                ),
                _ => format!(
                    "unable to forward port because pod is not running. Current status={phase}"
                ),
            }));
        }
        let names = |k: &str| -> Vec<String> {
            pod["spec"][k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let uri = if sub == "portforward" {
            format!("/portForward/{ns}/{name}")
        } else {
            let (regular, init) = (names("containers"), names("initContainers"));
            let container = match query.get("container").filter(|c| !c.is_empty()) {
                Some(c) if regular.iter().chain(&init).any(|n| n == c) => c.to_string(),
                Some(c) => {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {name}"
                    )));
                }
                None if regular.len() == 1 => regular[0].clone(),
                None => {
                    let mut m = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        regular.join(" ")
                    );
                    if !init.is_empty() {
                        m.push_str(&format!(
                            " or one of the init containers: [{}]",
                            init.join(" ")
                        ));
                    }
                    return Err(ApiError::bad_request(m));
                }
            };
            format!("/{sub}/{ns}/{name}/{container}")
        };
        let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        };
        let router = self.kubelet(node)?;
        let (mut parts, body) = req.into_parts();
        let uri = match parts.uri.query() {
            Some(q) => format!("{uri}?{q}"),
            None => uri,
        };
        parts.uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| ApiError::internal(e.to_string()))?;
        let resp = tower::ServiceExt::oneshot(router, Request::from_parts(parts, body))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let code = resp.status().as_u16();
        if code < 400 {
            return Ok(resp);
        }
        let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(match code {
            404 => ApiError::new(404, "NotFound", text),
            400 => ApiError::bad_request(text),
            c => ApiError::new(c, "InternalError", text),
        })
    }

    async fn dispatch(&self, call: &handlers::Call<'_>, verb: &str) -> Result<Reply> {
        let sub = call.path.subresource.as_deref();
        let (group, plural) = (call.resource.group.as_str(), call.resource.plural.as_str());
        match (verb, sub) {
            ("create", Some("binding")) => {
                let name = call.path.name.clone().unwrap_or_default();
                handlers::bind(call, &name).await
            }
            ("create", None) if group.is_empty() && plural == "bindings" => {
                let v = call.body_object()?;
                let name = v
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                handlers::bind(call, &name).await
            }
            ("create", Some("eviction")) if group.is_empty() && plural == "pods" => {
                super::eviction::evict(call).await
            }
            ("get", Some("scale")) => handlers::scale_get(call).await,
            ("list", None) if group.is_empty() && plural == "componentstatuses" => {
                let ok = self.storage.get("/registry/health").await.is_ok();
                Ok(Reply::object(
                    StatusCode::OK,
                    reviews::component_statuses(ok),
                ))
            }
            ("get", _) => handlers::get(call).await,
            ("list", None) => handlers::list(call).await,
            ("create", None) => handlers::create(call).await,
            ("update", _) => handlers::update(call).await,
            ("patch", _) => handlers::patch(call).await,
            ("delete", None) => handlers::delete(call).await,
            ("deletecollection", None) => handlers::delete_collection(call).await,
            _ => Err(ApiError::method_not_allowed(
                verb,
                &call.resource.qualified(),
            )),
        }
    }

    fn discovery(
        &self,
        path: &str,
        accept: Option<&str>,
        _query: &request::Query,
    ) -> Option<Response<Body>> {
        let path = path.trim_end_matches('/');
        let aggregated = discovery::Aggregated::negotiate(accept);
        // `/apis…` documents also list metrics.k8s.io (served by `metrics`, not the table).
        let apis = || {
            let mut all = self.resources().to_vec();
            if self.metrics {
                all.extend(metrics::resources());
            }
            all
        };
        let doc = match path {
            "/api" => match aggregated {
                Some(v) => {
                    let d = discovery::aggregated(&self.resources(), true, v);
                    let mut r = json_response(StatusCode::OK, &d);
                    if let Ok(ct) = HeaderValue::from_str(&v.content_type()) {
                        r.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    return Some(r);
                }
                None => discovery::api_versions(&self.server_address),
            },
            "/apis" => match aggregated {
                Some(v) => {
                    let d = discovery::aggregated(&apis(), false, v);
                    let mut r = json_response(StatusCode::OK, &d);
                    if let Ok(ct) = HeaderValue::from_str(&v.content_type()) {
                        r.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    return Some(r);
                }
                None => discovery::api_group_list(&apis()),
            },
            "/api/v1" => discovery::api_resource_list(&self.resources(), "", "v1")?,
            _ => {
                let rest = path.strip_prefix("/apis/")?;
                match rest.split('/').collect::<Vec<_>>().as_slice() {
                    [group] => discovery::api_group(&apis(), group)
                        .unwrap_or_else(|| ApiError::no_route().to_status()),
                    [group, version] => discovery::api_resource_list(&apis(), group, version)?,
                    _ => return None,
                }
            }
        };
        let status = if doc["kind"] == "Status" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        Some(json_response(status, &doc))
    }

    fn serve_openapi(
        &self,
        req: &Request<Body>,
        path: &str,
        query: &request::Query,
    ) -> Response<Body> {
        let o = self.openapi();
        let if_none_match = header_str(req, header::IF_NONE_MATCH);
        let accept = header_str(req, header::ACCEPT).unwrap_or_default();
        let (body, content_type, etag, immutable) = if path == "/openapi/v2" {
            if accept.contains("protobuf") {
                let (b, e) = o.v2_protobuf();
                (
                    b,
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    e,
                    false,
                )
            } else {
                let (b, e) = o.v2_json();
                (b, "application/json", e, false)
            }
        } else if path.trim_end_matches('/') == "/openapi/v3" {
            let (b, e) = o.v3_root();
            (b, "application/json", e, false)
        } else {
            let gv = path.trim_start_matches("/openapi/v3/");
            match o.v3_document(gv) {
                Some((b, e)) => {
                    let immutable = query.get("hash").is_some_and(|h| e.trim_matches('"') == h);
                    (b, "application/json", e, immutable)
                }
                None => return error_response(&ApiError::no_route()),
            }
        };
        if if_none_match.as_deref() == Some(etag.as_str()) {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
        let mut r = bytes_response(StatusCode::OK, content_type, body);
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        if immutable {
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
        } else {
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
        }
        r
    }

    /// The datastore answers a read.
    async fn store_ok(&self) -> bool {
        self.storage.get("/registry/health").await.is_ok()
    }

    async fn health(&self, path: &str, query: &request::Query) -> Response<Body> {
        let ok = self.store_ok().await;
        let checks: &[&str] = match path {
            "/livez" => &["ping", "log", "etcd"],
            _ => &["ping", "log", "etcd", "poststarthook/bootstrap-controller"],
        };
        if query.get("verbose").is_some() {
            let mut text = String::new();
            for c in checks {
                let good = *c != "etcd" || ok;
                text.push_str(&format!(
                    "[{}]{c} {}\n",
                    if good { "+" } else { "-" },
                    if good {
                        "ok"
                    } else {
                        "failed: reason withheld"
                    }
                ));
            }
            let name = path.trim_start_matches('/');
            text.push_str(&if ok {
                format!("{name} check passed\n")
            } else {
                format!("{name} check failed\n")
            });
            return text_response(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                text,
            );
        }
        if ok {
            text_response(StatusCode::OK, "ok".into())
        } else {
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]etcd failed: reason withheld\nhealthz check failed\n".into(),
            )
        }
    }

    async fn health_check(&self, check: &str) -> Result<Response<Body>> {
        match check {
            "ping" | "log" | "poststarthook/bootstrap-controller" => {
                Ok(text_response(StatusCode::OK, "ok".into()))
            }
            "etcd" => Ok(if self.store_ok().await {
                text_response(StatusCode::OK, "ok".into())
            } else {
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error: the datastore is not answering\n".into(),
                )
            }),
            _ => Err(ApiError::no_route()),
        }
    }
}

fn header_str(req: &Request<Body>, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `/version`, as kube-apiserver answers it.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("{KUBERNETES_VERSION}+rk3s-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// Encodes a reply in the negotiated format (JSON, YAML or a Table).
fn respond(call: &handlers::Call<'_>, reply: Reply) -> Result<Response<Body>> {
    let mut r = match call.format {
        Format::Json => json_response(reply.status, &reply.body),
        Format::Table => {
            let t = if reply.body.get("kind").and_then(Value::as_str) == Some("Status") {
                reply.body
            } else {
                handlers::as_table(&call.resource, &reply.body, &call.query)?
            };
            json_response(reply.status, &t)
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(&reply.body)
                .map_err(|e| ApiError::internal(format!("encoding YAML: {e}")))?;
            bytes_response(reply.status, "application/yaml", Bytes::from(text))
        }
    };
    // `Warning: 299 - "text"`, once per warning (kubectl prints each as `Warning: text`).
    for w in call.warnings.lock().map(|w| w.clone()).unwrap_or_default() {
        let text = w.replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(r)
}
