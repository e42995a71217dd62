//! The OpenAPI documents of the API: `/openapi/v2` (Swagger 2.0, as JSON and as gnostic
//! protobuf) and `/openapi/v3` (the root index plus one OpenAPI 3.0 document per group-version),
//! generated from the resource table and the k8s-openapi schemas of [`super::patch::Schemas`].
//!
//! kubectl needs these for three things (research/k8s-api-compat.md §3): deciding whether the
//! server validates fields itself (a PATCH operation carrying the kind's
//! `x-kubernetes-group-version-kind` and a `fieldValidation` parameter), `kubectl explain`, and
//! the patch metadata of client-side apply. The documents follow upstream's layout: same paths,
//! operation ids, vendor extensions and definition names, `allOf`-wrapped references in v3 and
//! `$ref` with siblings in v2.
//!
//! Memory and time: the documents are 0.4–1.5 MB of text each (all of v3 together 2.8 MB) and
//! several times that as `serde_json::Value` trees, and what a tree once took stays in the
//! process's RSS. So no whole document is ever a tree: definitions are copied and adjusted one
//! at a time from the shared `Schemas` and written straight into bytes (JSON member by member,
//! protobuf entry by entry). Built that way, all v3 hashes take ~25 ms and ~2 MB of RSS, and
//! the v2 protobuf ~25 ms and ~3 MB (release build). [`OpenApi`] says what it keeps.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::patch::{self, Schemas};
use super::resources::Resource;

/// The `info.version` of every document: the Kubernetes release whose API rk3s serves.
const KUBERNETES_VERSION: &str = "v1.33.0";
const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";
/// The prefixes a schema generator may have used for references between definitions; all are
/// rewritten to [`REF_V3`] first.
const REF_PREFIXES: [&str; 3] = [REF_V3, REF_V2, "#/$defs/"];

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
const PATCH_BODY: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The content types of a PATCH request body, as upstream lists them.
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
/// What the handlers answer with.
const PRODUCES: [&str; 2] = ["application/json", "application/yaml"];
const WATCH_STREAM: &str = "application/json;stream=watch";

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The `/openapi/v3` root: every document path (`api/v1`, `apis/apps/v1`, plus the discovery
/// documents `api`, `apis` and `apis/<group>`) with the URL that carries its content hash.
pub fn v3_root(resources: &[Resource]) -> Value {
    let builder = Builder::new(resources);
    let hashes: Vec<(String, String)> = builder
        .documents()
        .into_iter()
        .map(|doc| (doc.path(), content_hash(&builder.v3_bytes(&doc))))
        .collect();
    root_json(&hashes)
}

/// The OpenAPI 3.0 document of one group-version (`api/v1`, `apis/apps/v1`) or discovery path
/// (`api`, `apis`, `apis/apps`), with its content hash (upper-case hex SHA-512 of the served
/// bytes, as upstream computes it). `None` for a path rk3s does not serve.
pub fn v3_document(resources: &[Resource], gv_path: &str) -> Option<(Value, String)> {
    let builder = Builder::new(resources);
    let doc = builder.document(gv_path)?;
    let bytes = builder.v3_bytes(&doc);
    let hash = content_hash(&bytes);
    serde_json::from_slice(&bytes)
        .ok()
        .map(|value| (value, hash))
}

/// The Swagger 2.0 document of the whole API (`/openapi/v2`, JSON form).
pub fn v2_json(resources: &[Resource]) -> Value {
    // The bytes come from serde_json itself, so they always parse.
    serde_json::from_slice(&Builder::new(resources).v2_json_bytes()).unwrap_or_default()
}

/// The Swagger 2.0 document encoded as gnostic's `openapi.v2.Document`, the form client-go asks
/// for with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
pub fn v2_protobuf(resources: &[Resource]) -> Vec<u8> {
    Builder::new(resources).v2_protobuf_bytes()
}

/// The served documents. Every getter returns the body and its ETag (the quoted content hash);
/// a v3 request whose `hash` query parameter equals the unquoted ETag may be answered with
/// `Cache-Control: public, immutable`.
///
/// What stays in memory (the server's budget is ~60 MB RSS; the documents are 1–3 MB each as
/// bytes and several times that as JSON trees, so no whole document ever exists as a tree):
/// - the v3 root, and the hash of every v3 document (all are built once by [`OpenApi::new`] to
///   compute them, then dropped);
/// - the bytes of each v3 document once it has been asked for (kubectl asks for one or two);
/// - the v2 protobuf once asked for: kubectl up to 1.27 downloads it on every `apply`;
/// - nothing of the v2 JSON, which only old or unusual clients read: it is rebuilt (~50 ms)
///   per request.
///
/// Custom resources: [`OpenApi::with_custom`] adds one v3 document per served CRD version's
/// group-version (its schema named `<reversed group>.<version>.<Kind>` with `apiVersion`,
/// `kind` and `metadata` added, the list kind, the paths) and puts the same into v2, sharing
/// the built-in documents' hashes and bytes; the API server calls it again whenever the CRDs
/// change, so hashes and ETags follow them.
pub struct OpenApi {
    /// Every served resource, built-in and custom: the v2 document is built from all of them.
    resources: Vec<Resource>,
    v3_root: Served,
    /// Keyed by document path without a leading slash (`apis/apps/v1`).
    v3: BTreeMap<String, V3Entry>,
    v2_protobuf: OnceLock<Served>,
}

/// One v3 document: what it is built from, its hash, its bytes once asked for. Cloning shares
/// the bytes, so the built-in documents survive CRD changes without being rebuilt.
#[derive(Clone)]
struct V3Entry {
    /// The resources whose builder writes the document: the whole built-in table for the
    /// built-in documents, the custom resources of the group-version for a CRD document (as
    /// upstream, which builds each CRD group-version's document on its own).
    resources: Arc<Vec<Resource>>,
    doc: Doc,
    etag: String,
    body: Arc<OnceLock<Bytes>>,
}

struct Served {
    body: Bytes,
    etag: String,
}

impl Served {
    fn new(body: Vec<u8>) -> Served {
        let etag = format!("\"{}\"", content_hash(&body));
        Served {
            body: Bytes::from(body),
            etag,
        }
    }

    fn pair(&self) -> (Bytes, String) {
        (self.body.clone(), self.etag.clone())
    }
}

impl OpenApi {
    /// Builds every v3 document once for its hash and the root; keeps the hashes.
    pub fn new(resources: &[Resource]) -> OpenApi {
        let shared = Arc::new(resources.to_vec());
        let builder = Builder::new(resources);
        let mut v3 = BTreeMap::new();
        for doc in builder.documents() {
            let hash = content_hash(&builder.v3_bytes(&doc));
            let entry = V3Entry {
                resources: Arc::clone(&shared),
                doc: doc.clone(),
                etag: format!("\"{hash}\""),
                body: Arc::new(OnceLock::new()),
            };
            v3.insert(doc.path(), entry);
        }
        OpenApi::assemble(resources.to_vec(), v3)
    }

    /// These documents plus those of the custom resources `custom` (the served versions of
    /// the established CRDs): one v3 document per custom group-version, listed in the root
    /// with its own hash, and their definitions and paths in v2. The documents already here
    /// are kept as they are (bytes included); a custom group-version that collides with one
    /// of them is only served in v2.
    pub fn with_custom(&self, custom: &[Resource]) -> OpenApi {
        let mut v3 = self.v3.clone();
        let mut group_versions: Vec<(String, String)> = Vec::new();
        for resource in custom {
            let gv = (resource.group.clone(), resource.version.clone());
            if !group_versions.contains(&gv) {
                group_versions.push(gv);
            }
        }
        for (group, version) in group_versions {
            let doc = Doc::GroupVersion(group.clone(), version.clone());
            if v3.contains_key(&doc.path()) {
                continue;
            }
            let resources: Vec<Resource> = custom
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .cloned()
                .collect();
            let hash = content_hash(&Builder::new(&resources).v3_bytes(&doc));
            let entry = V3Entry {
                resources: Arc::new(resources),
                doc: doc.clone(),
                etag: format!("\"{hash}\""),
                body: Arc::new(OnceLock::new()),
            };
            v3.insert(doc.path(), entry);
        }
        let mut resources = self.resources.clone();
        resources.extend(custom.iter().cloned());
        OpenApi::assemble(resources, v3)
    }

    fn assemble(resources: Vec<Resource>, v3: BTreeMap<String, V3Entry>) -> OpenApi {
        let hashes: Vec<(String, String)> = v3
            .iter()
            .map(|(path, entry)| (path.clone(), entry.etag.trim_matches('"').to_string()))
            .collect();
        let v3_root = Served::new(root_json(&hashes).to_string().into_bytes());
        OpenApi {
            resources,
            v3_root,
            v3,
            v2_protobuf: OnceLock::new(),
        }
    }

    /// `/openapi/v2` as JSON, built for this request.
    pub fn v2_json(&self) -> (Bytes, String) {
        Served::new(Builder::new(&self.resources).v2_json_bytes()).pair()
    }

    /// `/openapi/v2` as gnostic protobuf.
    pub fn v2_protobuf(&self) -> (Bytes, String) {
        self.v2_protobuf
            .get_or_init(|| Served::new(Builder::new(&self.resources).v2_protobuf_bytes()))
            .pair()
    }

    /// `/openapi/v3`.
    pub fn v3_root(&self) -> (Bytes, String) {
        self.v3_root.pair()
    }

    /// `/openapi/v3/<gv_path>`, e.g. `apis/apps/v1`. The body is rebuilt on the first request;
    /// generation is deterministic (sorted maps only), so it hashes to the ETag computed by
    /// [`OpenApi::new`] (the `documents_are_stable` test holds it to that).
    pub fn v3_document(&self, gv_path: &str) -> Option<(Bytes, String)> {
        let entry = self.v3.get(gv_path.trim_matches('/'))?;
        let body = entry
            .body
            .get_or_init(|| Bytes::from(Builder::new(&entry.resources).v3_bytes(&entry.doc)));
        Some((body.clone(), entry.etag.clone()))
    }

    /// The hash in the root's `serverRelativeURL` of a v3 document.
    pub fn v3_hash(&self, gv_path: &str) -> Option<&str> {
        self.v3
            .get(gv_path.trim_matches('/'))
            .map(|entry| entry.etag.trim_matches('"'))
    }

    /// The paths of the v3 documents, as the root lists them.
    pub fn v3_paths(&self) -> impl Iterator<Item = &str> {
        self.v3.keys().map(String::as_str)
    }
}

fn root_json(hashes: &[(String, String)]) -> Value {
    let paths: Map<String, Value> = hashes
        .iter()
        .map(|(path, hash)| {
            let url = format!("/openapi/v3/{path}?hash={hash}");
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// Upper-case hex SHA-512, the form of upstream's OpenAPI v3 hashes and ETags.
fn content_hash(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Gvk {
    group: String,
    version: String,
    kind: String,
}

impl Gvk {
    fn of(resource: &Resource) -> Gvk {
        Gvk {
            group: resource.group.clone(),
            version: resource.version.clone(),
            kind: resource.kind.clone(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

/// One OpenAPI v3 document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doc {
    /// `api`: the core API versions.
    Api,
    /// `apis`: the API groups.
    Apis,
    /// `apis/<group>`.
    Group(String),
    /// `api/v1` or `apis/<group>/<version>`.
    GroupVersion(String, String),
}

impl Doc {
    fn path(&self) -> String {
        match self {
            Doc::Api => "api".into(),
            Doc::Apis => "apis".into(),
            Doc::Group(group) => format!("apis/{group}"),
            Doc::GroupVersion(group, version) => gv_prefix(group, version),
        }
    }
}

/// `api/v1` or `apis/<group>/<version>`, without slashes around.
fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The group as it appears in upstream's operation ids: `Core`, `Apps`, `RbacAuthorization`,
/// `Apiextensions` (the `.k8s.io` suffix dropped, each dot- or dash-separated part capitalized).
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

/// The tag upstream gives a group-version's operations: `core_v1`, `apps_v1`,
/// `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let lowered: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{lowered}_{version}")
}

// ---------------------------------------------------------------------------------------------
// Paths and operations, independent of the OpenAPI version
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

#[derive(Debug, Clone)]
struct Param {
    name: &'static str,
    /// `path` or `query`.
    location: &'static str,
    /// `string`, `boolean` or `integer`.
    ty: &'static str,
    required: bool,
    description: String,
}

fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        required: false,
        description: description.into(),
    }
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        location: "path",
        ty: "string",
        required: true,
        description,
    }
}

fn pretty() -> Param {
    query(
        "pretty",
        "string",
        "If 'true', the output is indented for people to read.",
    )
}

fn dry_run() -> Param {
    query(
        "dryRun",
        "string",
        "When present, the request is processed through every stage but nothing is persisted. \
         The only valid value is All.",
    )
}

fn field_manager() -> Param {
    query(
        "fieldManager",
        "string",
        "The name of the actor making the change, recorded in managedFields. At most 128 \
         printable characters. Required for apply patches, optional otherwise.",
    )
}

fn field_validation() -> Param {
    query(
        "fieldValidation",
        "string",
        "What the server does with unknown or duplicate fields in the request object: Ignore \
         drops them silently, Warn (the default) drops them and sends a warning header for \
         each, Strict fails the request.",
    )
}

fn force() -> Param {
    query(
        "force",
        "boolean",
        "Makes an apply request take over the fields other managers own instead of failing \
         with a conflict. Must be unset for the other patch types.",
    )
}

fn write_params(method: Method) -> Vec<Param> {
    let mut params = vec![dry_run(), field_manager(), field_validation()];
    if method == Method::Patch {
        params.push(force());
    }
    params
}

fn delete_params() -> Vec<Param> {
    vec![
        dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted; zero means immediately. Unset means the \
             kind's default.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated, use propagationPolicy: whether dependents are orphaned (true) or \
             deleted by the garbage collector (false).",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how dependents are garbage collected: Orphan, Background or \
             Foreground.",
        ),
    ]
}

fn list_params(with_watch: bool) -> Vec<Param> {
    let mut params = vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Asks a watch for BOOKMARK events; servers may ignore it.",
        ),
        query(
            "continue",
            "string",
            "The token of a previous paged list call, to fetch the next page.",
        ),
        query(
            "fieldSelector",
            "string",
            "Restricts the returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "Restricts the returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "The maximum number of objects in one page; a continue token is returned when more \
             remain.",
        ),
        query(
            "resourceVersion",
            "string",
            "Which resource version the list is served from (or a watch starts after).",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "Starts a watch with synthetic ADDED events for the current objects, then a \
             bookmark.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "How long a list or watch call may last.",
        ),
    ];
    if with_watch {
        params.push(query(
            "watch",
            "boolean",
            "Watch for changes to the described objects and return them as a stream of add, \
             update and remove notifications.",
        ));
    }
    params
}

fn delete_collection_params() -> Vec<Param> {
    let mut params = list_params(false);
    params.extend(delete_params());
    params.sort_by_key(|param| param.name);
    params
}

#[derive(Debug, Clone)]
enum Body {
    None,
    /// The object itself (create, replace).
    Object(String),
    /// A patch in one of [`PATCH_TYPES`].
    Patch,
    /// `DeleteOptions`.
    DeleteOptions,
}

#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    /// `x-kubernetes-action`; empty for discovery operations.
    action: &'static str,
    id: String,
    description: String,
    tag: String,
    gvk: Option<Gvk>,
    params: Vec<Param>,
    body: Body,
    /// Status code and, when there is one, the definition name of the response body.
    responses: Vec<(u16, Option<String>)>,
    /// Lists also stream watch events.
    streams: bool,
}

#[derive(Debug, Clone)]
struct PathItem {
    path: String,
    params: Vec<Param>,
    operations: Vec<Operation>,
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// The builder: definitions and paths
// ---------------------------------------------------------------------------------------------

/// Builds the documents of one resource table. Cheap to create: it borrows the shared schemas
/// and only adds the few definitions they lack.
struct Builder<'a> {
    resources: &'a [Resource],
    /// The k8s-openapi definitions, shared with strategic merge patch. Never cloned whole:
    /// [`Builder::definition`] copies and adjusts one definition at a time.
    base: &'static Map<String, Value>,
    /// What k8s-openapi has no schema for: list kinds, `WatchEvent`, the PATCH body, and
    /// placeholders for served kinds without a schema.
    extra: Map<String, Value>,
    /// The `x-kubernetes-group-version-kind` entries of each kind's definition.
    kinds: BTreeMap<String, Vec<Gvk>>,
    /// The definitions that are structs (have properties): list elements and map values of
    /// these types get upstream's `"default": {}`.
    structs: BTreeSet<String>,
    /// The definitions of custom resources (from CRD schemas, in [`Builder::extra`]).
    custom: BTreeSet<String>,
}

impl<'a> Builder<'a> {
    fn new(resources: &'a [Resource]) -> Builder<'a> {
        let mut builder = Builder {
            resources,
            base: Schemas::built_in().definitions(),
            extra: Map::new(),
            kinds: BTreeMap::new(),
            structs: BTreeSet::new(),
            custom: BTreeSet::new(),
        };
        builder.add_kinds();
        builder.structs = builder
            .base
            .iter()
            .chain(builder.extra.iter())
            .filter(|(_, schema)| schema.get("properties").is_some())
            .map(|(name, _)| name.clone())
            .collect();
        builder
    }

    /// The group-versions served, in table order.
    fn group_versions(&self) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        for resource in self.resources {
            let gv = (resource.group.clone(), resource.version.clone());
            if !seen.contains(&gv) {
                seen.push(gv);
            }
        }
        seen
    }

    fn documents(&self) -> Vec<Doc> {
        let mut docs = vec![Doc::Api, Doc::Apis];
        let mut groups = Vec::new();
        for (group, version) in self.group_versions() {
            if !group.is_empty() && !groups.contains(&group) {
                groups.push(group.clone());
            }
            docs.push(Doc::GroupVersion(group, version));
        }
        docs.extend(groups.into_iter().map(Doc::Group));
        docs
    }

    fn document(&self, path: &str) -> Option<Doc> {
        let path = path.trim_matches('/');
        self.documents().into_iter().find(|doc| doc.path() == path)
    }

    /// The definition name of a kind: the resource table's when it serves the kind, otherwise
    /// upstream's naming of the built-in groups (`io.k8s.api.autoscaling.v1.Scale`).
    fn schema_name(&self, gvk: &Gvk) -> String {
        let served = self.resources.iter().find(|resource| {
            resource.group == gvk.group
                && resource.version == gvk.version
                && resource.kind == gvk.kind
        });
        if let Some(resource) = served {
            return resource.schema_name.clone();
        }
        let group = if gvk.group.is_empty() {
            "core"
        } else {
            gvk.group.trim_end_matches(".k8s.io")
        };
        format!("io.k8s.api.{group}.{}.{}", gvk.version, gvk.kind)
    }

    // ---- definitions ----------------------------------------------------------------------

    /// The definition as k8s-openapi (or [`Builder::extra`]) has it.
    fn raw(&self, name: &str) -> Option<&Value> {
        self.extra.get(name).or_else(|| self.base.get(name))
    }

    fn contains(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// Records every kind's `x-kubernetes-group-version-kind` and adds the definitions
    /// k8s-openapi lacks.
    fn add_kinds(&mut self) {
        let resources = self.resources;
        let mut kinds: Vec<(String, Gvk)> = Vec::new();
        for resource in resources {
            let gvk = Gvk::of(resource);
            if let Some(info) = &resource.crd
                && !self.contains(&resource.schema_name)
            {
                self.extra.insert(
                    resource.schema_name.clone(),
                    custom_resource_schema(&info.schema),
                );
                self.custom.insert(resource.schema_name.clone());
            }
            kinds.push((resource.schema_name.clone(), gvk.clone()));
            if resource.supports("list") {
                let list = Gvk {
                    kind: resource.list_kind(),
                    ..gvk.clone()
                };
                let name = format!("{}List", resource.schema_name);
                if !self.contains(&name) {
                    self.extra.insert(name.clone(), list_schema(resource, &gvk));
                }
                kinds.push((name, list));
            }
            for sub in &resource.subresources {
                if !sub.kind.is_empty() {
                    let sub_gvk = Gvk {
                        group: sub.group.into(),
                        version: sub.version.into(),
                        kind: sub.kind.into(),
                    };
                    kinds.push((self.schema_name(&sub_gvk), sub_gvk));
                }
            }
        }
        // Kinds served without a schema (a CRD without one) get a permissive placeholder, so
        // that their operations still reference something and kubectl still finds them.
        for (name, gvk) in &kinds {
            if !self.contains(name) {
                let description =
                    format!("{} of {}", gvk.kind, gv_prefix(&gvk.group, &gvk.version));
                self.extra.insert(
                    name.clone(),
                    json!({
                        "description": description,
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                    }),
                );
            }
        }
        if !self.contains(PATCH_BODY) {
            self.extra.insert(
                PATCH_BODY.into(),
                json!({
                    "description": "Patch is provided to give a concrete name and type to the \
                                    Kubernetes PATCH request body.",
                    "type": "object",
                }),
            );
        }
        if !self.contains(WATCH_EVENT) {
            self.extra.insert(WATCH_EVENT.into(), watch_event_schema());
        }
        // Every group-version serves WatchEvent and takes DeleteOptions; Status is core/v1.
        for (group, version) in self.group_versions() {
            for kind in ["WatchEvent", "DeleteOptions"] {
                let gvk = Gvk {
                    group: group.clone(),
                    version: version.clone(),
                    kind: kind.into(),
                };
                kinds.push((format!("{META}{kind}"), gvk));
            }
        }
        let status = Gvk {
            group: String::new(),
            version: "v1".into(),
            kind: "Status".into(),
        };
        kinds.push((STATUS.into(), status));
        for (name, gvk) in kinds {
            let list = self.kinds.entry(name).or_default();
            if !list.contains(&gvk) {
                list.push(gvk);
            }
        }
    }

    /// One definition in the v3 dialect: references are `#/components/schemas/<name>`, a
    /// reference with siblings is wrapped in `allOf`, kinds carry their
    /// `x-kubernetes-group-version-kind`, fields their patch extensions.
    fn definition(&self, name: &str) -> Option<Value> {
        let mut definition = self.raw(name)?.clone();
        visit_schemas_mut(&mut definition, &mut |schema| {
            if let Some(Value::String(reference)) = schema.get_mut("$ref") {
                *reference = rewrite_ref(reference, REF_V3);
            }
        });
        let Value::Object(object) = &mut definition else {
            return Some(definition);
        };
        // `Schemas::built_in` has usually added the patch metadata already; inserting the same
        // keys again is harmless and keeps the documents right if it ever stops.
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            for (field, schema) in properties.iter_mut() {
                if let (Some(meta), Value::Object(schema)) =
                    (patch::patch_meta(name, field), schema)
                {
                    schema.extend(meta.extensions());
                }
            }
        }
        if let Some(gvks) = self.kinds.get(name) {
            let entry = object
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                for gvk in gvks {
                    let value = gvk.to_json();
                    if !list.contains(&value) {
                        list.push(value);
                    }
                }
            }
            // Upstream never marks metadata required (k8s-openapi does, because the Rust field
            // is not optional), and gives the non-pointer structs of a kind an empty default.
            if let Some(Value::Array(required)) = object.get_mut("required") {
                required.retain(|field| field != "metadata");
                if required.is_empty() {
                    object.remove("required");
                }
            }
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                for field in ["metadata", "spec", "status"] {
                    if let Some(Value::Object(property)) = properties.get_mut(field)
                        && (property.contains_key("$ref") || property.contains_key("allOf"))
                    {
                        property.insert("default".into(), json!({}));
                    }
                }
            }
        }
        self.normalize_v3(&mut definition, self.custom.contains(name));
        Some(definition)
    }

    /// OpenAPI 3.0 ignores the siblings of `$ref`, so a reference with a description, a default
    /// or extensions becomes `{"allOf": [{"$ref": …}], …}`, as upstream writes it. Elements of
    /// lists and values of maps that are structs get upstream's `"default": {}`. `oneOf`s are
    /// dropped: upstream publishes those few types (`JSONSchemaPropsOrBool` and friends)
    /// untyped. A custom resource's schema keeps them (`keep_alternatives`), as upstream
    /// publishes CRD schemas in v3 with their value validations.
    fn normalize_v3(&self, definition: &mut Value, keep_alternatives: bool) {
        visit_schemas_mut(definition, &mut |schema| {
            if !keep_alternatives {
                schema.remove("oneOf");
                schema.remove("anyOf");
            }
            for key in ["items", "additionalProperties"] {
                if let Some(Value::Object(child)) = schema.get_mut(key) {
                    let struct_ref = child.len() == 1
                        && child
                            .get("$ref")
                            .and_then(Value::as_str)
                            .and_then(|r| r.strip_prefix(REF_V3))
                            .is_some_and(|name| self.structs.contains(name));
                    if struct_ref {
                        child.insert("default".into(), json!({}));
                    }
                }
            }
            if schema.len() > 1
                && let Some(reference) = schema.remove("$ref")
            {
                schema.insert("allOf".into(), json!([{ "$ref": reference }]));
            }
        });
    }

    /// One definition in the v2 dialect.
    fn v2_definition(&self, name: &str) -> Option<Value> {
        let mut schema = self.definition(name)?;
        if self.custom.contains(name) {
            custom_resource_v2(&mut schema);
        }
        to_v2_schema(&mut schema);
        if name == QUANTITY {
            // Upstream's Quantity is a plain string in v2.
            if let Value::Object(object) = &mut schema {
                object.remove("format");
            }
        }
        Some(schema)
    }

    /// The definitions reachable from `roots`, references followed transitively.
    fn closure<'n>(&self, roots: impl IntoIterator<Item = &'n str>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(definition) = self.raw(&name) {
                visit_schemas(definition, &mut |schema| {
                    let target = schema
                        .get("$ref")
                        .and_then(Value::as_str)
                        .and_then(|r| REF_PREFIXES.iter().find_map(|p| r.strip_prefix(p)));
                    if let Some(target) = target
                        && !seen.contains(target)
                    {
                        queue.push_back(target.to_string());
                    }
                });
            }
        }
        seen.retain(|name| self.contains(name));
        seen
    }

    // ---- paths ----------------------------------------------------------------------------

    fn paths(&self, doc: &Doc) -> Vec<PathItem> {
        match doc {
            Doc::Api => vec![discovery_path(
                "/api/",
                "getCoreAPIVersions",
                "get available API versions",
                "core",
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
            )],
            Doc::Apis => vec![discovery_path(
                "/apis/",
                "getAPIVersions",
                "get available API versions",
                "apis",
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
            )],
            Doc::Group(group) => {
                let camel = group_camel(group);
                let mut lowered = tag(group, "");
                lowered.pop();
                vec![discovery_path(
                    &format!("/apis/{group}/"),
                    &format!("get{camel}APIGroup"),
                    "get information of a group",
                    &lowered,
                    "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
                )]
            }
            Doc::GroupVersion(group, version) => {
                let mut paths = vec![discovery_path(
                    &format!("/{}/", gv_prefix(group, version)),
                    &format!(
                        "get{}{}APIResources",
                        group_camel(group),
                        capitalize(version)
                    ),
                    "get available resources",
                    &tag(group, version),
                    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
                )];
                for resource in self.resources {
                    if &resource.group == group && &resource.version == version {
                        paths.extend(self.resource_paths(resource));
                    }
                }
                paths
            }
        }
    }

    fn resource_paths(&self, resource: &Resource) -> Vec<PathItem> {
        let gvk = Gvk::of(resource);
        let kind = &resource.kind;
        let prefix = format!("/{}", gv_prefix(&resource.group, &resource.version));
        let ids = Ids::new(resource);
        let tag = tag(&resource.group, &resource.version);
        let namespace = path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        );
        let name = path_param("name", format!("name of the {kind}"));
        let collection = if resource.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{prefix}/{}", resource.plural)
        };
        let item_path = format!("{collection}/{{name}}");
        let object = Some(resource.schema_name.clone());
        let list = Some(format!("{}List", resource.schema_name));
        let status = Some(STATUS.to_string());
        let op = |method, action, id: String, description: String| Operation {
            method,
            action,
            id,
            description,
            tag: tag.clone(),
            gvk: Some(gvk.clone()),
            params: Vec::new(),
            body: Body::None,
            responses: Vec::new(),
            streams: false,
        };

        let mut paths = Vec::new();

        // The collection: list, create, deletecollection.
        let mut operations = Vec::new();
        if resource.supports("list") {
            operations.push(Operation {
                params: list_params(resource.supports("watch")),
                responses: vec![(200, list.clone()), (401, None)],
                streams: resource.supports("watch"),
                ..op(
                    Method::Get,
                    "list",
                    ids.id("list", ""),
                    format!("list or watch objects of kind {kind}"),
                )
            });
        }
        if resource.supports("create") {
            operations.push(Operation {
                params: write_params(Method::Post),
                body: Body::Object(resource.schema_name.clone()),
                responses: vec![
                    (200, object.clone()),
                    (201, object.clone()),
                    (202, object.clone()),
                    (401, None),
                ],
                ..op(
                    Method::Post,
                    "post",
                    ids.id("create", ""),
                    format!("create a {kind}"),
                )
            });
        }
        if resource.supports("deletecollection") {
            operations.push(Operation {
                params: delete_collection_params(),
                body: Body::DeleteOptions,
                responses: vec![(200, status.clone()), (401, None)],
                ..op(
                    Method::Delete,
                    "deletecollection",
                    ids.collection_id(),
                    format!("delete collection of {kind}"),
                )
            });
        }
        if !operations.is_empty() {
            let mut params = Vec::new();
            if resource.namespaced {
                params.push(namespace.clone());
            }
            params.push(pretty());
            paths.push(PathItem {
                path: collection.clone(),
                params,
                operations,
            });
        }

        // Every namespace at once.
        if resource.namespaced && resource.supports("list") {
            paths.push(PathItem {
                path: format!("{prefix}/{}", resource.plural),
                params: vec![pretty()],
                operations: vec![Operation {
                    params: list_params(resource.supports("watch")),
                    responses: vec![(200, list.clone()), (401, None)],
                    streams: resource.supports("watch"),
                    ..op(
                        Method::Get,
                        "list",
                        format!("list{}{}{kind}ForAllNamespaces", ids.group, ids.version),
                        format!("list or watch objects of kind {kind}"),
                    )
                }],
            });
        }

        // One object: read, replace, patch, delete.
        let mut operations = Vec::new();
        if resource.supports("get") {
            operations.push(Operation {
                responses: vec![(200, object.clone()), (401, None)],
                ..op(
                    Method::Get,
                    "get",
                    ids.id("read", ""),
                    format!("read the specified {kind}"),
                )
            });
        }
        if resource.supports("update") {
            operations.push(Operation {
                params: write_params(Method::Put),
                body: Body::Object(resource.schema_name.clone()),
                responses: vec![(200, object.clone()), (201, object.clone()), (401, None)],
                ..op(
                    Method::Put,
                    "put",
                    ids.id("replace", ""),
                    format!("replace the specified {kind}"),
                )
            });
        }
        if resource.supports("patch") {
            operations.push(Operation {
                params: write_params(Method::Patch),
                body: Body::Patch,
                responses: vec![(200, object.clone()), (201, object.clone()), (401, None)],
                ..op(
                    Method::Patch,
                    "patch",
                    ids.id("patch", ""),
                    format!("partially update the specified {kind}"),
                )
            });
        }
        if resource.supports("delete") {
            operations.push(Operation {
                params: delete_params(),
                body: Body::DeleteOptions,
                responses: vec![(200, status.clone()), (202, status.clone()), (401, None)],
                ..op(
                    Method::Delete,
                    "delete",
                    ids.id("delete", ""),
                    format!("delete a {kind}"),
                )
            });
        }
        let mut item_params = vec![name.clone()];
        if resource.namespaced {
            item_params.push(namespace.clone());
        }
        item_params.push(pretty());
        if !operations.is_empty() {
            paths.push(PathItem {
                path: item_path.clone(),
                params: item_params.clone(),
                operations,
            });
        }

        // Subresources: status, scale, binding, approval.
        for sub in &resource.subresources {
            let sub_gvk = if sub.kind.is_empty() {
                gvk.clone()
            } else {
                Gvk {
                    group: sub.group.into(),
                    version: sub.version.into(),
                    kind: sub.kind.into(),
                }
            };
            let sub_schema = Some(self.schema_name(&sub_gvk));
            let suffix = capitalize(sub.name);
            let op = |method, action, id: String, description: String| Operation {
                gvk: Some(sub_gvk.clone()),
                ..op(method, action, id, description)
            };
            let mut operations = Vec::new();
            for verb in sub.verbs {
                let operation = match *verb {
                    "get" => Operation {
                        responses: vec![(200, sub_schema.clone()), (401, None)],
                        ..op(
                            Method::Get,
                            "get",
                            ids.id("read", &suffix),
                            format!("read {} of the specified {kind}", sub.name),
                        )
                    },
                    "update" => Operation {
                        params: write_params(Method::Put),
                        body: Body::Object(self.schema_name(&sub_gvk)),
                        responses: vec![
                            (200, sub_schema.clone()),
                            (201, sub_schema.clone()),
                            (401, None),
                        ],
                        ..op(
                            Method::Put,
                            "put",
                            ids.id("replace", &suffix),
                            format!("replace {} of the specified {kind}", sub.name),
                        )
                    },
                    "patch" => Operation {
                        params: write_params(Method::Patch),
                        body: Body::Patch,
                        responses: vec![
                            (200, sub_schema.clone()),
                            (201, sub_schema.clone()),
                            (401, None),
                        ],
                        ..op(
                            Method::Patch,
                            "patch",
                            ids.id("patch", &suffix),
                            format!("partially update {} of the specified {kind}", sub.name),
                        )
                    },
                    "create" => Operation {
                        params: write_params(Method::Post),
                        body: Body::Object(self.schema_name(&sub_gvk)),
                        responses: vec![
                            (200, sub_schema.clone()),
                            (201, sub_schema.clone()),
                            (202, sub_schema.clone()),
                            (401, None),
                        ],
                        ..op(
                            Method::Post,
                            "post",
                            ids.id("create", &suffix),
                            format!("create {} of a {kind}", sub.name),
                        )
                    },
                    _ => continue,
                };
                operations.push(operation);
            }
            if !operations.is_empty() {
                let mut params = item_params.clone();
                if let Some(first) = params.first_mut() {
                    first.description = format!("name of the {}", sub_gvk.kind);
                }
                paths.push(PathItem {
                    path: format!("{item_path}/{}", sub.name),
                    params,
                    operations,
                });
            }
        }
        paths
    }

    /// The definition names the operations of `paths` refer to.
    fn roots<'p>(paths: impl IntoIterator<Item = &'p PathItem>) -> BTreeSet<String> {
        let mut roots = BTreeSet::new();
        for operation in paths.into_iter().flat_map(|path| &path.operations) {
            match &operation.body {
                Body::None => {}
                Body::Object(name) => {
                    roots.insert(name.clone());
                }
                Body::Patch => {
                    roots.insert(PATCH_BODY.to_string());
                }
                Body::DeleteOptions => {
                    roots.insert(DELETE_OPTIONS.to_string());
                }
            }
            for (_, schema) in &operation.responses {
                if let Some(name) = schema {
                    roots.insert(name.clone());
                }
            }
            if operation.streams {
                roots.insert(WATCH_EVENT.to_string());
            }
        }
        roots
    }

    // ---- v3 -------------------------------------------------------------------------------

    /// The served bytes of one v3 document, written definition by definition.
    fn v3_bytes(&self, doc: &Doc) -> Vec<u8> {
        let paths: BTreeMap<String, PathItem> = self
            .paths(doc)
            .into_iter()
            .map(|item| (item.path.clone(), item))
            .collect();
        let mut roots = Builder::roots(paths.values());
        if matches!(doc, Doc::GroupVersion(..)) {
            // Upstream's group-version documents always carry the watch event and Status,
            // whether or not an operation names them.
            roots.insert(WATCH_EVENT.to_string());
            roots.insert(STATUS.to_string());
        }
        // Keys in sorted order throughout, as serde_json would write the same document.
        let out = &mut Vec::new();
        let mut document = JsonObject::open(out);
        document.key(out, "components");
        let mut components = JsonObject::open(out);
        components.key(out, "schemas");
        let mut schemas = JsonObject::open(out);
        for name in self.closure(roots.iter().map(String::as_str)) {
            if let Some(definition) = self.definition(&name) {
                schemas.member(out, &name, &definition);
            }
        }
        schemas.close(out);
        let bearer = json!({
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            }
        });
        components.member(out, "securitySchemes", &bearer);
        components.close(out);
        document.member(out, "info", &info());
        document.member(out, "openapi", &"3.0.0".into());
        document.key(out, "paths");
        let mut object = JsonObject::open(out);
        for (path, item) in &paths {
            object.member(out, path, &v3_path_item(item));
        }
        object.close(out);
        document.close(out);
        std::mem::take(out)
    }

    // ---- v2 -------------------------------------------------------------------------------

    /// Every path of the API and the definitions they reach.
    fn v2_contents(&self) -> (BTreeMap<String, PathItem>, BTreeSet<String>) {
        let mut paths = BTreeMap::new();
        for doc in self.documents() {
            for item in self.paths(&doc) {
                paths.entry(item.path.clone()).or_insert(item);
            }
        }
        let mut roots = Builder::roots(paths.values());
        roots.insert(WATCH_EVENT.to_string());
        roots.insert(STATUS.to_string());
        let definitions = self.closure(roots.iter().map(String::as_str));
        (paths, definitions)
    }

    fn v2_json_bytes(&self) -> Vec<u8> {
        let (paths, definitions) = self.v2_contents();
        let out = &mut Vec::new();
        let mut document = JsonObject::open(out);
        document.key(out, "definitions");
        let mut object = JsonObject::open(out);
        for name in &definitions {
            if let Some(definition) = self.v2_definition(name) {
                object.member(out, name, &definition);
            }
        }
        object.close(out);
        document.member(out, "info", &info());
        document.key(out, "paths");
        let mut object = JsonObject::open(out);
        for (path, item) in &paths {
            object.member(out, path, &v2_path_item(item));
        }
        object.close(out);
        document.member(out, "swagger", &"2.0".into());
        document.close(out);
        std::mem::take(out)
    }

    /// The gnostic `Document`, written entry by entry: the repeated `Paths.path` and
    /// `Definitions.additional_properties` are encoded one element at a time and framed by
    /// hand, which is byte for byte what encoding the whole message would give.
    fn v2_protobuf_bytes(&self) -> Vec<u8> {
        use prost::Message;
        let (paths, definitions) = self.v2_contents();
        let head = proto::Document {
            swagger: "2.0".into(),
            info: Some(proto::Info {
                title: "Kubernetes".into(),
                version: KUBERNETES_VERSION.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut out = head.encode_to_vec();
        let mut entries = Vec::new();
        for (path, item) in &paths {
            let named = proto::NamedPathItem {
                name: path.clone(),
                value: Some(proto::path_item(&v2_path_item(item))),
            };
            put_length_delimited(&mut entries, 2, &named.encode_to_vec());
        }
        put_length_delimited(&mut out, 8, &entries);
        entries.clear();
        for name in definitions {
            if let Some(definition) = self.v2_definition(&name) {
                let named = proto::NamedSchema {
                    name,
                    value: Some(proto::schema(&definition)),
                };
                put_length_delimited(&mut entries, 1, &named.encode_to_vec());
            }
        }
        put_length_delimited(&mut out, 9, &entries);
        out
    }
}

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": KUBERNETES_VERSION })
}

/// A JSON object written member by member, so that no whole document is ever held as a
/// `Value` tree (those take several times the size of the text).
struct JsonObject {
    empty: bool,
}

impl JsonObject {
    fn open(out: &mut Vec<u8>) -> JsonObject {
        out.push(b'{');
        JsonObject { empty: true }
    }

    /// Starts a member; its value must be written next.
    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        if !self.empty {
            out.push(b',');
        }
        self.empty = false;
        out.extend_from_slice(Value::from(key).to_string().as_bytes());
        out.push(b':');
    }

    fn member(&mut self, out: &mut Vec<u8>, key: &str, value: &Value) {
        self.key(out, key);
        out.extend_from_slice(value.to_string().as_bytes());
    }

    fn close(self, out: &mut Vec<u8>) {
        out.push(b'}');
    }
}

/// Protobuf framing of one length-delimited field (wire type 2).
fn put_length_delimited(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The pieces of a resource's operation ids: `patch` + `AppsV1` + `Namespaced` + `Deployment`
/// + `Status`.
struct Ids {
    group: String,
    version: String,
    scope: &'static str,
    kind: String,
}

impl Ids {
    fn new(resource: &Resource) -> Ids {
        Ids {
            group: group_camel(&resource.group),
            version: capitalize(&resource.version),
            scope: if resource.namespaced {
                "Namespaced"
            } else {
                ""
            },
            kind: resource.kind.clone(),
        }
    }

    fn id(&self, verb: &str, suffix: &str) -> String {
        format!(
            "{verb}{}{}{}{}{suffix}",
            self.group, self.version, self.scope, self.kind
        )
    }

    fn collection_id(&self) -> String {
        format!(
            "delete{}{}Collection{}{}",
            self.group, self.version, self.scope, self.kind
        )
    }
}

fn discovery_path(path: &str, id: &str, description: &str, tag: &str, schema: &str) -> PathItem {
    PathItem {
        path: path.into(),
        params: Vec::new(),
        operations: vec![Operation {
            method: Method::Get,
            action: "",
            id: id.into(),
            description: description.into(),
            tag: tag.into(),
            gvk: None,
            params: Vec::new(),
            body: Body::None,
            responses: vec![(200, Some(schema.into())), (401, None)],
            streams: false,
        }],
    }
}

fn list_schema(resource: &Resource, item: &Gvk) -> Value {
    let plural = &resource.plural;
    json!({
        "description": format!("{}List is a list of {}.", item.kind, item.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation \
                                of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {plural}."),
                "type": "array",
                "items": { "$ref": format!("{REF_V3}{}", resource.schema_name) },
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this \
                                object represents.",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{REF_V3}{LIST_META}"),
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
    })
}

/// The definition of a custom resource from its CRD version's `openAPIV3Schema`, as upstream
/// publishes it: the schema with `apiVersion`, `kind` and `metadata` (a reference to
/// `ObjectMeta`) added to its properties, also when it only preserves unknown fields.
fn custom_resource_schema(schema: &Value) -> Value {
    let mut schema = match schema {
        Value::Object(object) => object.clone(),
        _ => Map::new(),
    };
    schema
        .entry("type")
        .or_insert_with(|| Value::from("object"));
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    if let Value::Object(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({
                "description": "APIVersion defines the versioned schema of this representation \
                                of an object. Servers should convert recognized schemas to the \
                                latest internal value, and may reject unrecognized values. More \
                                info: https://git.k8s.io/community/contributors/devel/\
                                sig-architecture/api-conventions.md#resources",
                "type": "string",
            }),
        );
        properties.insert(
            "kind".into(),
            json!({
                "description": "Kind is a string value representing the REST resource this \
                                object represents. Servers may infer this from the endpoint the \
                                client submits requests to. Cannot be updated. In CamelCase. \
                                More info: https://git.k8s.io/community/contributors/devel/\
                                sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            }),
        );
        properties.insert(
            "metadata".into(),
            json!({
                "$ref": format!("{REF_V3}{META}ObjectMeta"),
                "description": "Standard object's metadata. More info: \
                                https://git.k8s.io/community/contributors/devel/\
                                sig-architecture/api-conventions.md#metadata",
            }),
        );
    }
    Value::Object(schema)
}

/// What Swagger 2.0 cannot say is dropped from a custom resource's schema, as upstream does
/// for v2: defaults and value validations (patterns, bounds, enums, `required`, the
/// alternatives, CEL rules); nullable fields lose their type; fields that preserve unknown
/// fields or embed resources lose their properties and items, so that clients validating
/// with v2 accept what the server accepts. `apiVersion`, `kind` and `metadata` are kept.
fn custom_resource_v2(definition: &mut Value) {
    const DROPPED: [&str; 22] = [
        "default",
        "format",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "x-kubernetes-validations",
    ];
    let Value::Object(root) = definition else {
        return;
    };
    let mut type_meta = Map::new();
    if let Some(Value::Object(properties)) = root.get_mut("properties") {
        for field in ["apiVersion", "kind", "metadata"] {
            if let Some(schema) = properties.remove(field) {
                type_meta.insert(field.into(), schema);
            }
        }
    }
    let gvk = root.remove("x-kubernetes-group-version-kind");
    visit_schemas_mut(definition, &mut |schema| {
        for key in DROPPED {
            schema.remove(key);
        }
        let flag = |schema: &Map<String, Value>, key: &str| {
            schema.get(key).and_then(Value::as_bool).unwrap_or(false)
        };
        if schema.remove("nullable").and_then(|v| v.as_bool()) == Some(true) {
            schema.remove("type");
            schema.remove("items");
            schema.remove("properties");
        }
        if flag(schema, "x-kubernetes-preserve-unknown-fields")
            || flag(schema, "x-kubernetes-embedded-resource")
        {
            schema.remove("items");
            schema.remove("properties");
        }
    });
    let Value::Object(root) = definition else {
        return;
    };
    if let Some(gvk) = gvk {
        root.insert("x-kubernetes-group-version-kind".into(), gvk);
    }
    if !type_meta.is_empty() {
        let properties = root
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            properties.extend(type_meta);
        }
    }
}

fn watch_event_schema() -> Value {
    json!({
        "description": "Event represents a single event to a watched resource.",
        "type": "object",
        "properties": {
            "object": {
                "$ref": format!("{REF_V3}io.k8s.apimachinery.pkg.runtime.RawExtension"),
                "description": "Object is: the new state of the object for ADDED and MODIFIED, \
                                its state before deletion for DELETED, a Status for ERROR.",
            },
            "type": { "type": "string" },
        },
        "required": ["type", "object"],
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

fn v3_param(param: &Param) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), param.name.into());
    object.insert("in".into(), param.location.into());
    object.insert("description".into(), param.description.clone().into());
    if param.required {
        object.insert("required".into(), true.into());
    }
    object.insert(
        "schema".into(),
        json!({ "type": param.ty, "uniqueItems": true }),
    );
    Value::Object(object)
}

fn v3_path_item(item: &PathItem) -> Value {
    let mut object = Map::new();
    for operation in &item.operations {
        object.insert(operation.method.as_str().into(), v3_operation(operation));
    }
    if !item.params.is_empty() {
        object.insert(
            "parameters".into(),
            item.params.iter().map(v3_param).collect(),
        );
    }
    Value::Object(object)
}

fn v3_operation(operation: &Operation) -> Value {
    let mut object = Map::new();
    object.insert("tags".into(), json!([operation.tag]));
    object.insert("description".into(), operation.description.clone().into());
    object.insert("operationId".into(), operation.id.clone().into());
    if !operation.params.is_empty() {
        object.insert(
            "parameters".into(),
            operation.params.iter().map(v3_param).collect(),
        );
    }
    let content = |schema: &str, types: &[&str]| -> Value {
        types
            .iter()
            .map(|ty| {
                (
                    ty.to_string(),
                    json!({ "schema": { "$ref": format!("{REF_V3}{schema}") } }),
                )
            })
            .collect::<Map<String, Value>>()
            .into()
    };
    match &operation.body {
        Body::None => {}
        Body::Object(schema) => {
            object.insert(
                "requestBody".into(),
                json!({ "content": content(schema, &["*/*"]), "required": true }),
            );
        }
        Body::Patch => {
            object.insert(
                "requestBody".into(),
                json!({ "content": content(PATCH_BODY, &PATCH_TYPES), "required": true }),
            );
        }
        Body::DeleteOptions => {
            object.insert(
                "requestBody".into(),
                json!({ "content": content(DELETE_OPTIONS, &["*/*"]) }),
            );
        }
    }
    let mut produces: Vec<&str> = PRODUCES.to_vec();
    if operation.streams {
        produces.push(WATCH_STREAM);
    }
    let responses: Map<String, Value> = operation
        .responses
        .iter()
        .map(|(code, schema)| {
            let mut response = Map::new();
            response.insert("description".into(), status_text(*code).into());
            if let Some(schema) = schema {
                response.insert("content".into(), content(schema, &produces));
            }
            (code.to_string(), Value::Object(response))
        })
        .collect();
    object.insert("responses".into(), responses.into());
    add_kubernetes_extensions(&mut object, operation);
    Value::Object(object)
}

fn add_kubernetes_extensions(object: &mut Map<String, Value>, operation: &Operation) {
    if let Some(gvk) = &operation.gvk {
        object.insert("x-kubernetes-action".into(), operation.action.into());
        object.insert("x-kubernetes-group-version-kind".into(), gvk.to_json());
    }
}

fn v2_param(param: &Param) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), param.name.into());
    object.insert("in".into(), param.location.into());
    object.insert("description".into(), param.description.clone().into());
    if param.required {
        object.insert("required".into(), true.into());
    }
    object.insert("type".into(), param.ty.into());
    object.insert("uniqueItems".into(), true.into());
    Value::Object(object)
}

fn v2_path_item(item: &PathItem) -> Value {
    let mut object = Map::new();
    for operation in &item.operations {
        object.insert(operation.method.as_str().into(), v2_operation(operation));
    }
    if !item.params.is_empty() {
        object.insert(
            "parameters".into(),
            item.params.iter().map(v2_param).collect(),
        );
    }
    Value::Object(object)
}

fn v2_operation(operation: &Operation) -> Value {
    let mut object = Map::new();
    object.insert("tags".into(), json!([operation.tag]));
    object.insert("description".into(), operation.description.clone().into());
    object.insert("operationId".into(), operation.id.clone().into());
    object.insert("schemes".into(), json!(["https"]));
    let body_ref = |schema: &str| json!({ "$ref": format!("{REF_V2}{schema}") });
    let mut params = Vec::new();
    match &operation.body {
        Body::None => {}
        Body::Object(schema) => {
            object.insert("consumes".into(), json!(["*/*"]));
            params.push(json!({
                "name": "body", "in": "body", "required": true, "schema": body_ref(schema),
            }));
        }
        Body::Patch => {
            object.insert("consumes".into(), json!(PATCH_TYPES));
            params.push(json!({
                "name": "body", "in": "body", "required": true, "schema": body_ref(PATCH_BODY),
            }));
        }
        Body::DeleteOptions => {
            object.insert("consumes".into(), json!(["*/*"]));
            params
                .push(json!({ "name": "body", "in": "body", "schema": body_ref(DELETE_OPTIONS) }));
        }
    }
    params.extend(operation.params.iter().map(v2_param));
    if !params.is_empty() {
        object.insert("parameters".into(), params.into());
    }
    let mut produces: Vec<&str> = PRODUCES.to_vec();
    if operation.streams {
        produces.push(WATCH_STREAM);
    }
    object.insert("produces".into(), json!(produces));
    let responses: Map<String, Value> = operation
        .responses
        .iter()
        .map(|(code, schema)| {
            let mut response = Map::new();
            response.insert("description".into(), status_text(*code).into());
            if let Some(schema) = schema {
                response.insert("schema".into(), body_ref(schema));
            }
            (code.to_string(), Value::Object(response))
        })
        .collect();
    object.insert("responses".into(), responses.into());
    add_kubernetes_extensions(&mut object, operation);
    Value::Object(object)
}

// ---------------------------------------------------------------------------------------------
// Schema walking and the v3 → v2 conversion
// ---------------------------------------------------------------------------------------------

/// `prefix` + the definition name of `reference`, whichever known prefix it had.
fn rewrite_ref(reference: &str, prefix: &str) -> String {
    REF_PREFIXES
        .iter()
        .find_map(|known| reference.strip_prefix(known))
        .map_or_else(|| reference.to_string(), |name| format!("{prefix}{name}"))
}

/// Calls `f` on `node` and on every schema nested in it (properties, items,
/// additionalProperties, allOf/anyOf/oneOf, not), parents first. Values that are data rather
/// than schemas (`default`, `example`, `enum`, extensions) are not entered, and neither are
/// property names: `JSONSchemaProps` has a property called `$ref`.
fn visit_schemas_mut(node: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Value::Object(schema) = node else {
        return;
    };
    f(schema);
    for (key, child) in schema.iter_mut() {
        match (key.as_str(), child) {
            ("properties", Value::Object(properties)) => {
                for property in properties.values_mut() {
                    visit_schemas_mut(property, f);
                }
            }
            ("items" | "allOf" | "anyOf" | "oneOf", Value::Array(children)) => {
                for child in children {
                    visit_schemas_mut(child, f);
                }
            }
            ("items" | "additionalProperties" | "not", child) => visit_schemas_mut(child, f),
            _ => {}
        }
    }
}

/// The read-only twin of [`visit_schemas_mut`].
fn visit_schemas(node: &Value, f: &mut dyn FnMut(&Map<String, Value>)) {
    let Value::Object(schema) = node else {
        return;
    };
    f(schema);
    for (key, child) in schema {
        match (key.as_str(), child) {
            ("properties", Value::Object(properties)) => {
                for property in properties.values() {
                    visit_schemas(property, f);
                }
            }
            ("items" | "allOf" | "anyOf" | "oneOf", Value::Array(children)) => {
                for child in children {
                    visit_schemas(child, f);
                }
            }
            ("items" | "additionalProperties" | "not", child) => visit_schemas(child, f),
            _ => {}
        }
    }
}

/// Rewrites a v3 schema the way upstream writes it in v2: references back to `$ref` with
/// siblings (kube-openapi's v2 parser reads `allOf` as "anything"), `#/definitions/` refs,
/// int-or-string as `{"type": "string", "format": "int-or-string"}`, no `nullable`, one type.
fn to_v2_schema(schema: &mut Value) {
    visit_schemas_mut(schema, &mut |schema| {
        let single_ref = match schema.get("allOf") {
            Some(Value::Array(all)) if all.len() == 1 => all
                .first()
                .and_then(|only| only.get("$ref"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        if let Some(reference) = single_ref {
            schema.remove("allOf");
            schema.remove("default");
            schema.insert("$ref".into(), reference.into());
        }
        if let Some(Value::String(reference)) = schema.get_mut("$ref") {
            *reference = rewrite_ref(reference, REF_V2);
        }
        schema.remove("nullable");
        schema.remove("oneOf");
        schema.remove("anyOf");
        if schema.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
            schema.insert("type".into(), "string".into());
            schema.insert("format".into(), "int-or-string".into());
        }
        if let Some(Value::Array(types)) = schema.get("type") {
            let first = types
                .iter()
                .filter_map(Value::as_str)
                .find(|ty| *ty != "null")
                .map(str::to_string);
            match first {
                Some(ty) => {
                    schema.insert("type".into(), ty.into());
                }
                None => {
                    schema.remove("type");
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// gnostic's openapi.v2 protobuf
// ---------------------------------------------------------------------------------------------

/// The messages of gnostic's `openapiv2/OpenAPIv2.proto` (package `openapi.v2`) that rk3s
/// fills, with upstream's field numbers. Fields rk3s never sets (security, tags, headers,
/// examples, xml, form-data and header parameters, …) are left out: the encoder never needs
/// them, and decoding skips fields a message does not declare.
pub mod proto {
    use serde_json::{Map, Value};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(string, tag = "3")]
        pub host: String,
        #[prost(string, tag = "4")]
        pub base_path: String,
        #[prost(string, repeated, tag = "5")]
        pub schemes: Vec<String>,
        #[prost(string, repeated, tag = "6")]
        pub consumes: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub produces: Vec<String>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
        #[prost(message, repeated, tag = "16")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(message, repeated, tag = "7")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// gnostic's `Any`: the value as YAML text (field 1, a `google.protobuf.Any`, stays unset as
    /// gnostic leaves it).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "1")]
        pub vendor_extension: Vec<NamedAny>,
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathItem {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "6")]
        pub options: Option<Operation>,
        #[prost(message, optional, tag = "7")]
        pub head: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
        #[prost(message, repeated, tag = "9")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, repeated, tag = "10")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Operation {
        #[prost(string, repeated, tag = "1")]
        pub tags: Vec<String>,
        #[prost(string, tag = "2")]
        pub summary: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(string, repeated, tag = "6")]
        pub produces: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        pub responses: Option<Responses>,
        #[prost(string, repeated, tag = "10")]
        pub schemes: Vec<String>,
        #[prost(bool, tag = "11")]
        pub deprecated: bool,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ParametersItem {
        #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
        pub oneof: Option<parameters_item::Oneof>,
    }

    pub mod parameters_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Parameter(Box<super::Parameter>),
            #[prost(message, tag = "2")]
            JsonReference(super::JsonReference),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct JsonReference {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Parameter {
        #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
        pub oneof: Option<parameter::Oneof>,
    }

    pub mod parameter {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            BodyParameter(Box<super::BodyParameter>),
            #[prost(message, tag = "2")]
            NonBodyParameter(super::NonBodyParameter),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BodyParameter {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub r#in: String,
        #[prost(bool, tag = "4")]
        pub required: bool,
        #[prost(message, optional, tag = "5")]
        pub schema: Option<Schema>,
        #[prost(message, repeated, tag = "6")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NonBodyParameter {
        #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
        pub oneof: Option<non_body_parameter::Oneof>,
    }

    pub mod non_body_parameter {
        /// gnostic's tags 1 and 2 (header and form-data parameters) are not used by rk3s.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "3")]
            QueryParameterSubSchema(super::QueryParameterSubSchema),
            #[prost(message, tag = "4")]
            PathParameterSubSchema(super::PathParameterSubSchema),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QueryParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(bool, tag = "5")]
        pub allow_empty_value: bool,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(string, tag = "7")]
        pub format: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
        #[prost(message, repeated, tag = "23")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "5")]
        pub r#type: String,
        #[prost(string, tag = "6")]
        pub format: String,
        #[prost(bool, tag = "19")]
        pub unique_items: bool,
        #[prost(message, repeated, tag = "22")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Responses {
        #[prost(message, repeated, tag = "1")]
        pub response_code: Vec<NamedResponseValue>,
        #[prost(message, repeated, tag = "2")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedResponseValue {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<ResponseValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseValue {
        #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
        pub oneof: Option<response_value::Oneof>,
    }

    pub mod response_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Response(Box<super::Response>),
            #[prost(message, tag = "2")]
            JsonReference(super::JsonReference),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(message, optional, tag = "2")]
        pub schema: Option<SchemaItem>,
        #[prost(message, repeated, tag = "5")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SchemaItem {
        /// gnostic's tag 2 (a file schema) is not used by rk3s.
        #[prost(oneof = "schema_item::Oneof", tags = "1")]
        pub oneof: Option<schema_item::Oneof>,
    }

    pub mod schema_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(super::Schema),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
        pub oneof: Option<additional_properties_item::Oneof>,
    }

    pub mod additional_properties_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(Box<super::Schema>),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "5")]
        pub default: Option<Any>,
        #[prost(double, tag = "6")]
        pub multiple_of: f64,
        #[prost(double, tag = "7")]
        pub maximum: f64,
        #[prost(bool, tag = "8")]
        pub exclusive_maximum: bool,
        #[prost(double, tag = "9")]
        pub minimum: f64,
        #[prost(bool, tag = "10")]
        pub exclusive_minimum: bool,
        #[prost(int64, tag = "11")]
        pub max_length: i64,
        #[prost(int64, tag = "12")]
        pub min_length: i64,
        #[prost(string, tag = "13")]
        pub pattern: String,
        #[prost(int64, tag = "14")]
        pub max_items: i64,
        #[prost(int64, tag = "15")]
        pub min_items: i64,
        #[prost(bool, tag = "16")]
        pub unique_items: bool,
        #[prost(int64, tag = "17")]
        pub max_properties: i64,
        #[prost(int64, tag = "18")]
        pub min_properties: i64,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        pub all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(string, tag = "26")]
        pub discriminator: String,
        #[prost(bool, tag = "27")]
        pub read_only: bool,
        #[prost(message, optional, tag = "30")]
        pub example: Option<Any>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    // ---- JSON → protobuf ------------------------------------------------------------------

    fn string(object: &Map<String, Value>, key: &str) -> String {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn strings(object: &Map<String, Value>, key: &str) -> Vec<String> {
        object
            .get(key)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn boolean(object: &Map<String, Value>, key: &str) -> bool {
        object.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    fn number(object: &Map<String, Value>, key: &str) -> f64 {
        object.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    fn integer(object: &Map<String, Value>, key: &str) -> i64 {
        object.get(key).and_then(Value::as_i64).unwrap_or(0)
    }

    /// A value as gnostic stores it: YAML text. JSON is YAML, and go-yaml reads JSON's flow
    /// style, so the compact JSON serialization is what goes in.
    fn any(value: &Value) -> Any {
        Any {
            yaml: format!("{value}\n"),
        }
    }

    /// The `x-…` keys of an object, in order.
    fn extensions(object: &Map<String, Value>) -> Vec<NamedAny> {
        object
            .iter()
            .filter(|(key, _)| key.starts_with("x-"))
            .map(|(key, value)| NamedAny {
                name: key.clone(),
                value: Some(any(value)),
            })
            .collect()
    }

    fn object(value: &Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// The gnostic form of a Swagger 2.0 document.
    pub fn document(doc: &Value) -> Document {
        let doc = object(doc);
        let info = doc.get("info").map(object).unwrap_or_default();
        let paths = doc.get("paths").map(object).unwrap_or_default();
        let definitions = doc.get("definitions").map(object).unwrap_or_default();
        Document {
            swagger: string(&doc, "swagger"),
            info: Some(Info {
                title: string(&info, "title"),
                version: string(&info, "version"),
                description: string(&info, "description"),
                vendor_extension: extensions(&info),
            }),
            host: string(&doc, "host"),
            base_path: string(&doc, "basePath"),
            schemes: strings(&doc, "schemes"),
            consumes: strings(&doc, "consumes"),
            produces: strings(&doc, "produces"),
            paths: Some(Paths {
                vendor_extension: extensions(&paths),
                path: paths
                    .iter()
                    .filter(|(key, _)| key.starts_with('/'))
                    .map(|(name, item)| NamedPathItem {
                        name: name.clone(),
                        value: Some(path_item(item)),
                    })
                    .collect(),
            }),
            definitions: Some(Definitions {
                additional_properties: definitions
                    .iter()
                    .map(|(name, schema_value)| NamedSchema {
                        name: name.clone(),
                        value: Some(schema(schema_value)),
                    })
                    .collect(),
            }),
            vendor_extension: extensions(&doc),
        }
    }

    /// The gnostic form of a path item.
    pub fn path_item(item: &Value) -> PathItem {
        let item = &object(item);
        let operation = |method: &str| item.get(method).map(|op| operation(&object(op)));
        PathItem {
            xref: string(item, "$ref"),
            get: operation("get"),
            put: operation("put"),
            post: operation("post"),
            delete: operation("delete"),
            options: operation("options"),
            head: operation("head"),
            patch: operation("patch"),
            parameters: parameters(item),
            vendor_extension: extensions(item),
        }
    }

    fn operation(op: &Map<String, Value>) -> Operation {
        let responses = op.get("responses").map(object).unwrap_or_default();
        Operation {
            tags: strings(op, "tags"),
            summary: string(op, "summary"),
            description: string(op, "description"),
            operation_id: string(op, "operationId"),
            produces: strings(op, "produces"),
            consumes: strings(op, "consumes"),
            parameters: parameters(op),
            responses: Some(Responses {
                response_code: responses
                    .iter()
                    .filter(|(key, _)| !key.starts_with("x-"))
                    .map(|(code, response)| NamedResponseValue {
                        name: code.clone(),
                        value: Some(response_value(&object(response))),
                    })
                    .collect(),
                vendor_extension: extensions(&responses),
            }),
            schemes: strings(op, "schemes"),
            deprecated: boolean(op, "deprecated"),
            vendor_extension: extensions(op),
        }
    }

    fn response_value(response: &Map<String, Value>) -> ResponseValue {
        let oneof = if response.contains_key("$ref") {
            response_value::Oneof::JsonReference(JsonReference {
                xref: string(response, "$ref"),
                description: string(response, "description"),
            })
        } else {
            response_value::Oneof::Response(Box::new(Response {
                description: string(response, "description"),
                schema: response.get("schema").map(|value| SchemaItem {
                    oneof: Some(schema_item::Oneof::Schema(schema(value))),
                }),
                vendor_extension: extensions(response),
            }))
        };
        ResponseValue { oneof: Some(oneof) }
    }

    fn parameters(owner: &Map<String, Value>) -> Vec<ParametersItem> {
        let Some(list) = owner.get("parameters").and_then(Value::as_array) else {
            return Vec::new();
        };
        list.iter()
            .map(|param| ParametersItem {
                oneof: Some(parameter(&object(param))),
            })
            .collect()
    }

    fn parameter(param: &Map<String, Value>) -> parameters_item::Oneof {
        if param.contains_key("$ref") {
            return parameters_item::Oneof::JsonReference(JsonReference {
                xref: string(param, "$ref"),
                description: string(param, "description"),
            });
        }
        let location = string(param, "in");
        let oneof = match location.as_str() {
            "body" => parameter::Oneof::BodyParameter(Box::new(BodyParameter {
                description: string(param, "description"),
                name: string(param, "name"),
                r#in: location,
                required: boolean(param, "required"),
                schema: param.get("schema").map(schema),
                vendor_extension: extensions(param),
            })),
            "path" => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(
                    PathParameterSubSchema {
                        required: boolean(param, "required"),
                        r#in: location,
                        description: string(param, "description"),
                        name: string(param, "name"),
                        r#type: string(param, "type"),
                        format: string(param, "format"),
                        unique_items: boolean(param, "uniqueItems"),
                        vendor_extension: extensions(param),
                    },
                )),
            }),
            // Everything else rk3s writes is a query parameter.
            _ => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(
                    QueryParameterSubSchema {
                        required: boolean(param, "required"),
                        r#in: location,
                        description: string(param, "description"),
                        name: string(param, "name"),
                        allow_empty_value: boolean(param, "allowEmptyValue"),
                        r#type: string(param, "type"),
                        format: string(param, "format"),
                        unique_items: boolean(param, "uniqueItems"),
                        vendor_extension: extensions(param),
                    },
                )),
            }),
        };
        parameters_item::Oneof::Parameter(Box::new(Parameter { oneof: Some(oneof) }))
    }

    /// The gnostic form of a schema.
    pub fn schema(value: &Value) -> Schema {
        let Some(s) = value.as_object() else {
            return Schema::default();
        };
        let named = |key: &str| -> Vec<NamedSchema> {
            s.get(key)
                .and_then(Value::as_object)
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| NamedSchema {
                            name: name.clone(),
                            value: Some(schema(property)),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Schema {
            xref: string(s, "$ref"),
            format: string(s, "format"),
            title: string(s, "title"),
            description: string(s, "description"),
            default: s.get("default").map(any),
            multiple_of: number(s, "multipleOf"),
            maximum: number(s, "maximum"),
            exclusive_maximum: boolean(s, "exclusiveMaximum"),
            minimum: number(s, "minimum"),
            exclusive_minimum: boolean(s, "exclusiveMinimum"),
            max_length: integer(s, "maxLength"),
            min_length: integer(s, "minLength"),
            pattern: string(s, "pattern"),
            max_items: integer(s, "maxItems"),
            min_items: integer(s, "minItems"),
            unique_items: boolean(s, "uniqueItems"),
            max_properties: integer(s, "maxProperties"),
            min_properties: integer(s, "minProperties"),
            required: strings(s, "required"),
            r#enum: s
                .get("enum")
                .and_then(Value::as_array)
                .map(|values| values.iter().map(any).collect())
                .unwrap_or_default(),
            additional_properties: s.get("additionalProperties").and_then(|extra| {
                let oneof = match extra {
                    Value::Bool(allowed) => additional_properties_item::Oneof::Boolean(*allowed),
                    Value::Object(_) => {
                        additional_properties_item::Oneof::Schema(Box::new(schema(extra)))
                    }
                    _ => return None,
                };
                Some(Box::new(AdditionalPropertiesItem { oneof: Some(oneof) }))
            }),
            r#type: match s.get("type") {
                Some(Value::String(ty)) => Some(TypeItem {
                    value: vec![ty.clone()],
                }),
                Some(Value::Array(_)) => Some(TypeItem {
                    value: strings(s, "type"),
                }),
                _ => None,
            },
            items: match s.get("items") {
                Some(Value::Array(items)) => Some(ItemsItem {
                    schema: items.iter().map(schema).collect(),
                }),
                Some(item @ Value::Object(_)) => Some(ItemsItem {
                    schema: vec![schema(item)],
                }),
                _ => None,
            },
            all_of: s
                .get("allOf")
                .and_then(Value::as_array)
                .map(|all| all.iter().map(schema).collect())
                .unwrap_or_default(),
            properties: s.contains_key("properties").then(|| Properties {
                additional_properties: named("properties"),
            }),
            discriminator: string(s, "discriminator"),
            read_only: boolean(s, "readOnly"),
            example: s.get("example").map(any),
            vendor_extension: extensions(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    fn openapi() -> &'static OpenApi {
        static OPENAPI: OnceLock<OpenApi> = OnceLock::new();
        OPENAPI.get_or_init(|| OpenApi::new(resources::built_in()))
    }

    fn v3(gv: &str) -> Value {
        let (body, _) = openapi().v3_document(gv).expect("document is served");
        serde_json::from_slice(&body).expect("document is JSON")
    }

    fn v2() -> Value {
        let (body, _) = openapi().v2_json();
        serde_json::from_slice(&body).expect("v2 is JSON")
    }

    fn patch_operation<'d>(doc: &'d Value, path: &str) -> &'d Value {
        &doc["paths"][path]["patch"]
    }

    fn parameter_names(operation: &Value) -> Vec<&str> {
        operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|param| param["name"].as_str())
            .collect()
    }

    /// kubectl's check (query_param_verifier_v3.go): the PATCH operation whose
    /// x-kubernetes-group-version-kind is the kind, with a `fieldValidation` query parameter.
    fn supports_field_validation(doc: &Value, group: &str, version: &str, kind: &str) -> bool {
        let paths = doc["paths"].as_object().expect("paths");
        for item in paths.values() {
            let Some(op) = item.get("patch") else {
                continue;
            };
            let gvk = &op["x-kubernetes-group-version-kind"];
            if gvk["group"] != group || gvk["version"] != version || gvk["kind"] != kind {
                continue;
            }
            return op["parameters"].as_array().is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            });
        }
        false
    }

    #[test]
    fn v3_root_lists_group_versions_with_their_hashes() {
        let (body, etag) = openapi().v3_root();
        let root: Value = serde_json::from_slice(&body).expect("root is JSON");
        for gv in [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "api",
            "apis",
            "apis/apps",
        ] {
            let url = root["paths"][gv]["serverRelativeURL"]
                .as_str()
                .unwrap_or_else(|| panic!("{gv} is listed"));
            let (_, doc_etag) = openapi()
                .v3_document(gv)
                .expect("listed documents are served");
            let hash = doc_etag.trim_matches('"');
            assert_eq!(url, format!("/openapi/v3/{gv}?hash={hash}"));
            assert_eq!(hash.len(), 128);
            assert!(
                hash.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            assert_eq!(openapi().v3_hash(gv), Some(hash));
        }
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert!(openapi().v3_document("apis/nothing/v1").is_none());
        // The free functions agree with the cache.
        assert_eq!(v3_root(resources::built_in()), root);
        let (doc, hash) = v3_document(resources::built_in(), "apis/apps/v1").expect("apps/v1");
        assert_eq!(openapi().v3_hash("apis/apps/v1"), Some(hash.as_str()));
        assert_eq!(doc, v3("apis/apps/v1"));
    }

    #[test]
    fn deployment_patch_carries_gvk_and_field_validation() {
        let doc = v3("apis/apps/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        assert_eq!(doc["info"]["title"], "Kubernetes");
        let op = patch_operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        );
        assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(op["x-kubernetes-action"], "patch");
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(
            parameter_names(op),
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        let content = op["requestBody"]["content"]
            .as_object()
            .expect("patch body");
        for ty in PATCH_TYPES {
            assert!(content.contains_key(ty), "{ty}");
        }
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
        assert!(supports_field_validation(&doc, "apps", "v1", "Deployment"));
        let scale = patch_operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
        );
        assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        let status = patch_operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status",
        );
        assert_eq!(
            status["operationId"],
            "patchAppsV1NamespacedDeploymentStatus"
        );
        let list = &doc["paths"]["/apis/apps/v1/deployments"]["get"];
        assert_eq!(list["operationId"], "listAppsV1DeploymentForAllNamespaces");
        let create = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(
            parameter_names(create),
            ["dryRun", "fieldManager", "fieldValidation"]
        );
        let kind = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            kind["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(
            kind.get("required").is_none(),
            "metadata is not required upstream"
        );
        assert_eq!(kind["properties"]["metadata"]["default"], json!({}));
    }

    #[test]
    fn namespace_patch_supports_field_validation_for_crds() {
        let doc = v3("api/v1");
        let op = patch_operation(&doc, "/api/v1/namespaces/{name}");
        assert_eq!(op["operationId"], "patchCoreV1Namespace");
        assert_eq!(
            op["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Namespace"})
        );
        assert!(supports_field_validation(&doc, "", "v1", "Namespace"));
        assert!(supports_field_validation(&doc, "", "v1", "Pod"));
        let binding = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
        assert_eq!(binding["operationId"], "createCoreV1NamespacedPodBinding");
    }

    #[test]
    fn every_served_kind_supports_field_validation_in_v3_and_v2() {
        let v2 = v2();
        for resource in resources::built_in() {
            if !resource.supports("patch") {
                continue;
            }
            let doc = v3(&gv_prefix(&resource.group, &resource.version));
            let (g, v, k) = (&resource.group, &resource.version, &resource.kind);
            assert!(
                supports_field_validation(&doc, g, v, k),
                "{g}/{v} {k} in v3"
            );
            assert!(supports_field_validation(&v2, g, v, k), "{g}/{v} {k} in v2");
        }
    }

    #[test]
    fn pod_spec_containers_carry_the_patch_strategy() {
        for doc in [v3("api/v1"), v3("apis/apps/v1")] {
            let containers = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
                ["containers"];
            assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(
                containers["items"],
                json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}})
            );
        }
        let v2 = v2();
        let containers =
            &v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            containers["items"],
            json!({"$ref": "#/definitions/io.k8s.api.core.v1.Container"})
        );
        let strategy = &v3("apis/apps/v1")["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
            ["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(
            strategy["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
        );
    }

    #[test]
    fn int_or_string_follows_each_versions_convention() {
        let v3 = v3("apis/apps/v1");
        let v3_ios =
            &v3["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(v3_ios["x-kubernetes-int-or-string"], true);
        assert!(v3_ios.get("type").is_none());
        let v2 = v2();
        let v2_ios = &v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(v2_ios["type"], "string");
        assert_eq!(v2_ios["format"], "int-or-string");
        assert!(v2_ios.get("x-kubernetes-int-or-string").is_none());
    }

    /// Every `$ref` in `doc` names a definition of `doc`; in v3 no `$ref` has siblings.
    fn check_refs(doc: &Value, prefix: &str, table: &Map<String, Value>, v3: bool) -> usize {
        fn walk(value: &Value, in_properties: bool, found: &mut Vec<(String, usize)>) {
            match value {
                Value::Object(object) => {
                    if !in_properties && let Some(Value::String(reference)) = object.get("$ref") {
                        found.push((reference.clone(), object.len()));
                    }
                    for (key, child) in object {
                        walk(child, key == "properties" && !in_properties, found);
                    }
                }
                Value::Array(list) => list.iter().for_each(|child| walk(child, false, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk(doc, false, &mut found);
        for (reference, siblings) in &found {
            let name = reference
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{reference} does not start with {prefix}"));
            assert!(table.contains_key(name), "{reference} does not resolve");
            if v3 {
                assert_eq!(*siblings, 1, "{reference} has siblings");
            }
        }
        found.len()
    }

    #[test]
    fn every_ref_resolves_inside_its_document() {
        let (root, _) = openapi().v3_root();
        let root: Value = serde_json::from_slice(&root).expect("root");
        let paths = root["paths"].as_object().expect("paths");
        for path in paths.keys() {
            let doc = v3(path);
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let refs = check_refs(&doc, REF_V3, schemas, true);
            assert!(refs > 0, "{path} has references");
        }
        let v2 = v2();
        let definitions = v2["definitions"].as_object().expect("definitions");
        check_refs(&v2, REF_V2, definitions, false);
        for name in [
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            STATUS,
            DELETE_OPTIONS,
            WATCH_EVENT,
            "io.k8s.api.apps.v1.DeploymentList",
            "io.k8s.api.autoscaling.v1.Scale",
        ] {
            assert!(definitions.contains_key(name), "{name} in v2");
            assert!(
                v3("apis/apps/v1")["components"]["schemas"]
                    .get(name)
                    .is_some(),
                "{name} in apps/v1"
            );
        }
    }

    /// The rules kube-openapi's `proto.NewOpenAPIData` enforces on v2 definitions; kubectl
    /// refuses the whole document (and so `apply`) when one fails.
    fn parses_like_kube_openapi(s: &proto::Schema, names: &BTreeSet<&str>, path: &str) {
        let types = s
            .r#type
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default();
        if !s.xref.is_empty() {
            let props = s
                .properties
                .as_ref()
                .map_or(0, |p| p.additional_properties.len());
            assert_eq!(props, 0, "{path}: reference with properties");
            assert!(types.is_empty(), "{path}: reference with a type");
            let name = s
                .xref
                .strip_prefix(REF_V2)
                .unwrap_or_else(|| panic!("{path}: reference {} outside definitions", s.xref));
            assert!(names.contains(name), "{path}: unknown model {name}");
            return;
        }
        assert!(types.len() <= 1, "{path}: several types");
        let kind = types.first().map(String::as_str);
        let fields = |s: &proto::Schema| {
            for named in s.properties.iter().flat_map(|p| &p.additional_properties) {
                let field = named.value.clone().unwrap_or_default();
                parses_like_kube_openapi(&field, names, &format!("{path}.{}", named.name));
            }
        };
        match kind {
            None | Some("object") if s.properties.is_some() => fields(s),
            Some("object") | None => {
                if let Some(extra) = &s.additional_properties
                    && let Some(proto::additional_properties_item::Oneof::Schema(extra)) =
                        &extra.oneof
                {
                    parses_like_kube_openapi(extra, names, path);
                }
            }
            Some("array") => {
                let items = s
                    .items
                    .as_ref()
                    .map(|i| i.schema.as_slice())
                    .unwrap_or_default();
                assert_eq!(items.len(), 1, "{path}: array needs one item schema");
                if let Some(item) = items.first() {
                    parses_like_kube_openapi(item, names, path);
                }
            }
            Some(ty) => assert!(
                ["string", "number", "integer", "boolean"].contains(&ty),
                "{path}: unknown primitive type {ty}"
            ),
        }
    }

    #[test]
    fn v2_protobuf_round_trips_and_parses_like_kube_openapi() {
        let (bytes, etag) = openapi().v2_protobuf();
        assert!(etag.len() > 2);
        let decoded = <proto::Document as prost::Message>::decode(bytes.as_ref()).expect("decodes");
        let json = v2();
        assert_eq!(decoded, proto::document(&json));
        assert_eq!(decoded.swagger, "2.0");
        let definitions = decoded
            .definitions
            .clone()
            .unwrap_or_default()
            .additional_properties;
        let names: BTreeSet<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
        for definition in &definitions {
            let schema = definition.value.clone().unwrap_or_default();
            parses_like_kube_openapi(&schema, &names, &definition.name);
        }
        // kubectl's v2 check (query_param_verifier.go), on the decoded protobuf.
        let paths = decoded.paths.clone().unwrap_or_default().path;
        let deployment = paths
            .iter()
            .filter_map(|p| p.value.as_ref()?.patch.as_ref())
            .find(|op| {
                op.vendor_extension.iter().any(|ext| {
                    ext.name == "x-kubernetes-group-version-kind"
                        && ext.value.as_ref().is_some_and(|v| {
                            serde_json::from_str::<Value>(&v.yaml).ok()
                                == Some(
                                    json!({"group": "apps", "kind": "Deployment", "version": "v1"}),
                                )
                        })
                })
            })
            .expect("deployment PATCH");
        let has_field_validation = deployment.parameters.iter().any(|item| {
            let Some(proto::parameters_item::Oneof::Parameter(param)) = &item.oneof else {
                return false;
            };
            let Some(proto::parameter::Oneof::NonBodyParameter(non_body)) = &param.oneof else {
                return false;
            };
            matches!(
                &non_body.oneof,
                Some(proto::non_body_parameter::Oneof::QueryParameterSubSchema(q))
                    if q.name == "fieldValidation" && q.r#in == "query"
            )
        });
        assert!(has_field_validation);
    }

    /// Reads protobuf wire format by hand, independently of the derived messages: what a Go
    /// client would see at the top of the document.
    mod wire {
        pub fn varint(bytes: &[u8], at: &mut usize) -> u64 {
            let mut value = 0u64;
            let mut shift = 0;
            while let Some(byte) = bytes.get(*at) {
                *at += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            value
        }

        /// The (field number, payload) pairs of one message's length-delimited fields.
        pub fn fields(bytes: &[u8]) -> Vec<(u64, &[u8])> {
            let mut at = 0;
            let mut out = Vec::new();
            while at < bytes.len() {
                let key = varint(bytes, &mut at);
                match key & 7 {
                    0 => {
                        varint(bytes, &mut at);
                    }
                    1 => at += 8,
                    5 => at += 4,
                    2 => {
                        let len = varint(bytes, &mut at) as usize;
                        out.push((key >> 3, &bytes[at..at + len]));
                        at += len;
                    }
                    other => panic!("unexpected wire type {other}"),
                }
            }
            out
        }
    }

    #[test]
    fn v2_protobuf_top_level_fields_decode_by_hand() {
        let bytes = v2_protobuf(resources::built_in());
        let top = wire::fields(&bytes);
        let field = |n| {
            top.iter()
                .find(|(f, _)| *f == n)
                .map(|(_, b)| *b)
                .expect("field")
        };
        assert_eq!(field(1), b"2.0");
        let info = wire::fields(field(2));
        assert_eq!(
            info.iter().find(|(f, _)| *f == 1).map(|(_, b)| *b),
            Some(&b"Kubernetes"[..])
        );
        let json = v2_json(resources::built_in());
        let paths = wire::fields(field(8))
            .iter()
            .filter(|(f, _)| *f == 2)
            .count();
        assert_eq!(paths, json["paths"].as_object().map_or(0, Map::len));
        let definitions = wire::fields(field(9))
            .iter()
            .filter(|(f, _)| *f == 1)
            .count();
        assert_eq!(
            definitions,
            json["definitions"].as_object().map_or(0, Map::len)
        );
        assert!(
            paths > 100 && definitions > 300,
            "{paths} paths, {definitions} definitions"
        );
    }

    #[test]
    fn documents_are_stable_and_their_sizes_are_printed() {
        let start = std::time::Instant::now();
        let built = OpenApi::new(resources::built_in());
        let hashes_time = start.elapsed();
        let start = std::time::Instant::now();
        let mut v3_total = 0;
        let mut largest = (0, String::new());
        for path in built.v3_paths() {
            let (body, etag) = built.v3_document(path).expect("listed");
            // The body built on request is the one whose hash the root announced.
            assert_eq!(format!("\"{}\"", content_hash(&body)), etag, "{path}");
            v3_total += body.len();
            largest = largest.max((body.len(), path.to_string()));
        }
        let v3_time = start.elapsed();
        let start = std::time::Instant::now();
        let (v2_json, _) = built.v2_json();
        let v2_json_time = start.elapsed();
        let start = std::time::Instant::now();
        let (v2_proto, _) = built.v2_protobuf();
        let v2_proto_time = start.elapsed();
        println!(
            "openapi: v3 hashes of {} documents in {hashes_time:?}; all v3 documents {} KiB \
             (largest {} {} KiB) in {v3_time:?}; root {} B; v2 json {} KiB in \
             {v2_json_time:?}; v2 protobuf {} KiB in {v2_proto_time:?}",
            built.v3.len(),
            v3_total / 1024,
            largest.1,
            largest.0 / 1024,
            built.v3_root.body.len(),
            v2_json.len() / 1024,
            v2_proto.len() / 1024,
        );
        // Same input, same bytes: hashes only change when the content does.
        let again = OpenApi::new(resources::built_in());
        assert_eq!(again.v3_root().0, built.v3_root().0);
        assert_eq!(again.v2_protobuf().1, built.v2_protobuf().1);
        assert_eq!(again.v2_json().1, built.v2_json().1);
    }

    #[test]
    fn operation_ids_follow_upstream_naming() {
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_camel("apiextensions.k8s.io"), "Apiextensions");
        assert_eq!(group_camel(""), "Core");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        let doc = v3("apis/rbac.authorization.k8s.io/v1");
        let op = &doc["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["delete"];
        assert_eq!(
            op["operationId"],
            "deleteRbacAuthorizationV1CollectionClusterRole"
        );
        assert_eq!(op["x-kubernetes-action"], "deletecollection");
        let doc = v3("apis/authorization.k8s.io/v1");
        let op = &doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"];
        assert_eq!(
            op["operationId"],
            "createAuthorizationV1SelfSubjectAccessReview"
        );
    }

    const CRONTAB_CRD: &str = r#"{
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object", "description": "A periodic job.",
                    "properties": {
                        "spec": {"type": "object", "description": "What to run.",
                            "required": ["cronSpec"],
                            "properties": {
                                "cronSpec": {"type": "string", "pattern": "^.+$",
                                    "description": "When to run."},
                                "replicas": {"type": "integer", "minimum": 1, "default": 1},
                                "port": {"x-kubernetes-int-or-string": true,
                                    "anyOf": [{"type": "integer"}, {"type": "string"}]},
                                "extra": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true,
                                    "properties": {"known": {"type": "string"}}},
                                "note": {"type": "string", "nullable": true}
                            }},
                        "status": {"type": "object",
                            "properties": {"replicas": {"type": "integer"}}}
                    }}}
            }, {
                "name": "v1beta1", "served": true, "storage": false,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }"#;

    fn with_crontabs(crd: &str) -> OpenApi {
        let crd: Value = serde_json::from_str(crd).expect("CRD is JSON");
        openapi().with_custom(&crate::apiserver::crd::resources(&crd))
    }

    fn cluster_scoped(crd: &str) -> String {
        crd.replace("\"Namespaced\"", "\"Cluster\"")
    }

    #[test]
    fn crd_versions_get_their_own_v3_documents() {
        let served = with_crontabs(CRONTAB_CRD);
        let (body, _) = served.v3_root();
        let root: Value = serde_json::from_slice(&body).expect("root is JSON");
        for gv in [
            "apis/stable.example.com/v1",
            "apis/stable.example.com/v1beta1",
        ] {
            let hash = served.v3_hash(gv).expect("listed");
            assert_eq!(
                root["paths"][gv]["serverRelativeURL"],
                format!("/openapi/v3/{gv}?hash={hash}")
            );
        }
        // The built-in documents are untouched and keep their hashes.
        assert_eq!(
            served.v3_hash("apis/apps/v1"),
            openapi().v3_hash("apis/apps/v1")
        );
        assert!(openapi().v3_hash("apis/stable.example.com/v1").is_none());

        let (body, etag) = served
            .v3_document("apis/stable.example.com/v1")
            .expect("served");
        assert_eq!(
            etag.trim_matches('"'),
            served.v3_hash("apis/stable.example.com/v1").unwrap()
        );
        assert_eq!(format!("\"{}\"", content_hash(&body)), etag);
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        let schemas = &doc["components"]["schemas"];
        let crontab = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(
            crontab["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
        );
        assert_eq!(crontab["description"], "A periodic job.");
        assert_eq!(crontab["properties"]["apiVersion"]["type"], "string");
        assert_eq!(crontab["properties"]["kind"]["type"], "string");
        assert_eq!(
            crontab["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let spec = &crontab["properties"]["spec"];
        assert_eq!(spec["description"], "What to run.");
        assert_eq!(spec["required"], json!(["cronSpec"]));
        assert_eq!(spec["properties"]["cronSpec"]["pattern"], "^.+$");
        assert_eq!(spec["properties"]["replicas"]["default"], 1);
        assert!(spec["properties"]["port"]["anyOf"].is_array());
        let list = &schemas["com.example.stable.v1.CronTabList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "kind": "CronTabList", "version": "v1"}])
        );
        assert_eq!(
            list["properties"]["items"]["items"]["allOf"][0]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
        assert_eq!(
            list["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
        );
        for name in [
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.api.autoscaling.v1.Scale",
        ] {
            assert!(schemas[name].is_object(), "{name} is missing");
        }
        // Only this group-version's kinds.
        assert!(schemas["io.k8s.api.apps.v1.Deployment"].is_null());
        assert!(schemas["com.example.stable.v1beta1.CronTab"].is_null());

        let paths = doc["paths"].as_object().expect("paths");
        let base = "/apis/stable.example.com/v1";
        for path in [
            format!("{base}/namespaces/{{namespace}}/crontabs"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}/status"),
            format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}/scale"),
            format!("{base}/crontabs"),
        ] {
            assert!(
                paths.contains_key(&path),
                "{path} missing: {:?}",
                paths.keys()
            );
        }
        let item = &paths[&format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}")];
        for verb in ["get", "put", "patch", "delete"] {
            assert!(item[verb].is_object(), "{verb}");
        }
        let patch = &item["patch"];
        assert_eq!(
            patch["operationId"],
            "patchStableExampleComV1NamespacedCronTab"
        );
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "stable.example.com", "kind": "CronTab", "version": "v1"})
        );
        assert!(parameter_names(patch).contains(&"fieldValidation"));
        let scale = &paths[&format!("{base}/namespaces/{{namespace}}/crontabs/{{name}}/scale")];
        assert_eq!(
            scale["get"]["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );

        // The version that only preserves unknown fields still gets the type meta.
        let (body, _) = served
            .v3_document("apis/stable.example.com/v1beta1")
            .expect("served");
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        let beta = &doc["components"]["schemas"]["com.example.stable.v1beta1.CronTab"];
        assert_eq!(beta["x-kubernetes-preserve-unknown-fields"], true);
        assert!(beta["properties"]["metadata"].is_object());
    }

    #[test]
    fn crd_documents_follow_scope_and_changes() {
        let namespaced = with_crontabs(CRONTAB_CRD);
        let cluster = with_crontabs(&cluster_scoped(CRONTAB_CRD));
        let gv = "apis/stable.example.com/v1";
        assert_ne!(namespaced.v3_hash(gv), cluster.v3_hash(gv));
        assert_ne!(namespaced.v3_root().1, cluster.v3_root().1);
        let (body, _) = cluster.v3_document(gv).expect("served");
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/apis/stable.example.com/v1/crontabs/{name}"));
        assert!(
            !paths
                .keys()
                .any(|path| path.contains("/namespaces/{namespace}/"))
        );
        let op = &paths["/apis/stable.example.com/v1/crontabs/{name}"]["get"];
        assert_eq!(op["operationId"], "readStableExampleComV1CronTab");
        // Same input, same hash; a CRD removed is no longer listed.
        assert_eq!(
            with_crontabs(CRONTAB_CRD).v3_hash(gv),
            namespaced.v3_hash(gv)
        );
        let removed = openapi().with_custom(&[]);
        assert!(removed.v3_hash(gv).is_none());
        assert_eq!(removed.v3_root().1, openapi().v3_root().1);
        assert_ne!(removed.v2_protobuf().1, namespaced.v2_protobuf().1);
    }

    #[test]
    fn crd_schemas_in_v2_drop_what_swagger_cannot_say() {
        let served = with_crontabs(CRONTAB_CRD);
        let (body, _) = served.v2_json();
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        let crontab = &doc["definitions"]["com.example.stable.v1.CronTab"];
        assert_eq!(
            crontab["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            crontab["x-kubernetes-group-version-kind"][0]["kind"],
            "CronTab"
        );
        let spec = &crontab["properties"]["spec"];
        assert_eq!(
            spec["properties"]["cronSpec"]["description"],
            "When to run."
        );
        assert!(spec["required"].is_null());
        assert!(spec["properties"]["cronSpec"]["pattern"].is_null());
        assert!(spec["properties"]["replicas"]["default"].is_null());
        assert!(spec["properties"]["replicas"]["minimum"].is_null());
        assert!(spec["properties"]["port"]["anyOf"].is_null());
        assert!(spec["properties"]["note"]["type"].is_null());
        let extra = &spec["properties"]["extra"];
        assert_eq!(extra["x-kubernetes-preserve-unknown-fields"], true);
        assert!(extra["properties"].is_null());
        let beta = &doc["definitions"]["com.example.stable.v1beta1.CronTab"];
        assert_eq!(beta["x-kubernetes-preserve-unknown-fields"], true);
        assert!(beta["properties"]["kind"].is_object());
        let list = &doc["definitions"]["com.example.stable.v1.CronTabList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.stable.v1.CronTab"
        );
        let paths = doc["paths"].as_object().expect("paths");
        let item = "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}";
        assert_eq!(
            paths[item]["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "CronTab"
        );
        assert!(paths.contains_key(&format!("{item}/status")));
        // The protobuf form carries the same definitions.
        let (proto_body, _) = served.v2_protobuf();
        let decoded =
            <proto::Document as prost::Message>::decode(proto_body).expect("protobuf decodes");
        let names: Vec<String> = decoded
            .definitions
            .expect("definitions")
            .additional_properties
            .into_iter()
            .map(|named| named.name)
            .collect();
        assert!(names.iter().any(|n| n == "com.example.stable.v1.CronTab"));
        // Built-in definitions stay as they were.
        assert_eq!(
            doc["definitions"]["io.k8s.api.apps.v1.Deployment"],
            v2()["definitions"]["io.k8s.api.apps.v1.Deployment"]
        );
    }
}
