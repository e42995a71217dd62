//! The REST verbs on resources: get, list, create, update, patch, delete, deletecollection and
//! the status, scale and binding subresources, with upstream's semantics (optimistic
//! concurrency, dry run, status/spec split, graceful pod deletion, finalizers).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::request::{Format, Path, Query};
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, Cause, Result};
use super::storage::{Stored, Written};
use super::{Api, Reply, User, meta, patch, table};

/// The most bytes a request body may have (upstream's default is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How often a write races another before we give up (only without a client precondition).
const MAX_RETRIES: usize = 8;

/// A request on a resource path, resolved against the table.
pub struct Call<'a> {
    pub api: &'a Arc<Api>,
    pub resource: Resource,
    pub path: Path,
    pub query: Query,
    pub format: Format,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub user: &'a User,
    /// The `User-Agent` header: the field manager of writes that name none.
    pub user_agent: Option<String>,
    /// `Warning` headers for the response (fieldValidation=Warn, …).
    pub warnings: std::sync::Mutex<Vec<String>>,
}

/// A stored object as `resource`'s version shows it: converted when another version is the
/// storage version (`convert`); a custom resource read through one version shows that version
/// (`None` conversion: the stored object is the same for every version).
pub fn present(resource: &Resource, obj: &mut Value) {
    if resource.conversion.is_some() {
        *obj = super::convert::from_storage(resource, obj);
    } else if resource.crd.is_some() && obj.is_object() {
        obj["apiVersion"] = json!(resource.api_version());
    }
}

/// `obj` (in the request's version) as the store keeps it.
fn stored_form(resource: &Resource, obj: &Value) -> Value {
    super::convert::to_storage(resource, obj)
}

/// What a write answers: the object as it was stored, read back in the request's version
/// (upstream answers with the decoded storage object, so the conversion round trip shows).
fn written(resource: &Resource, stored: &Value, rev: i64) -> Value {
    let mut obj = stored.clone();
    super::storage::set_resource_version(&mut obj, rev);
    present(resource, &mut obj);
    obj
}

impl Call<'_> {
    /// Reads an object of this call's resource, presented in the requested version.
    async fn read(&self, key: &str) -> Result<Option<Stored>> {
        let mut s = self.api.storage.get(key).await?;
        if let Some(s) = &mut s {
            present(&self.resource, &mut s.object);
        }
        Ok(s)
    }

    fn ns(&self) -> Option<&str> {
        if self.resource.namespaced {
            self.path.namespace.as_deref()
        } else {
            None
        }
    }

    fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or_default()
    }

    fn key(&self) -> String {
        self.resource.key(self.ns(), self.name())
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(
            &self.resource.group,
            &self.resource.plural,
            &self.resource.qualified(),
            self.name(),
        )
    }

    fn conflict(&self) -> ApiError {
        ApiError::conflict(
            &self.resource.group,
            &self.resource.plural,
            &self.resource.qualified(),
            self.name(),
        )
    }

    fn dry_run(&self) -> Result<bool> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{v}\": supported values: \"All\""
            ))),
        }
    }

    /// The object in the request body, decoded from JSON or YAML.
    pub fn body_object(&self) -> Result<Value> {
        let ct = self
            .content_type
            .as_deref()
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if super::protobuf::is_protobuf(&ct) {
            // kubectl 1.32+ sends typed objects as Kubernetes protobuf.
            let v = super::protobuf::decode(&self.body).map_err(|e| {
                ApiError::bad_request(format!("error decoding protobuf request body: {e}"))
            })?;
            return Ok(v);
        }
        let v: Value = match ct.as_str() {
            "application/json" | "" | "*/*" => serde_json::from_slice(&self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?,
            "application/yaml" | "application/x-yaml" | "text/yaml" => {
                let text = std::str::from_utf8(&self.body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
            }
            other => {
                return Err(ApiError::unsupported_media_type(
                    other,
                    &[
                        "application/json",
                        "application/yaml",
                        "application/vnd.kubernetes.protobuf",
                    ],
                ));
            }
        };
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Ok(v)
    }

    /// Checks apiVersion/kind of a body against the resource, and fills them in when absent.
    fn check_type(&self, obj: &mut Value, kind: &str, api_version: &str) -> Result<()> {
        let got_av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if !got_av.is_empty() && got_av != api_version {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({got_av}) does not match the expected API version ({api_version})"
            )));
        }
        let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !got_kind.is_empty() && got_kind != kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({got_kind}) does not match the expected kind ({kind})"
            )));
        }
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        Ok(())
    }

    /// Namespace and name of the body against the URL (400 on mismatch, filled when empty).
    fn check_identity(&self, obj: &mut Value, creating: bool) -> Result<()> {
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if self.resource.namespaced {
            let url_ns = self.path.namespace.as_deref().unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => meta["namespace"] = json!(url_ns),
            }
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        if !creating {
            let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
            if body_name.is_empty() {
                meta["name"] = json!(self.name());
            } else if body_name != self.name() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({})",
                    self.name()
                )));
            }
        }
        Ok(())
    }

    /// Drops fields the kind does not declare, as upstream's decoding does, and applies
    /// `fieldValidation`: Strict fails (400), Warn (the default) warns, Ignore is silent.
    pub(super) fn check_fields(&self, obj: &mut Value) -> Result<()> {
        let mode = self.query.get("fieldValidation").unwrap_or("Warn");
        if !matches!(mode, "Strict" | "Warn" | "Ignore" | "") {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{mode}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
        let unknown = match &self.resource.crd {
            Some(info) => {
                let (causes, unknown) = super::crd::check_object(obj, &info.schema);
                if !causes.is_empty() {
                    return Err(self.invalid(obj, causes));
                }
                unknown
            }
            None if self.resource.check.is_some() => {
                super::fields::prune(obj, patch::Schemas::built_in(), &self.resource.schema_name)
            }
            None => return Ok(()),
        };
        if unknown.is_empty() || mode == "Ignore" {
            return Ok(());
        }
        if mode == "Strict" {
            return Err(ApiError::bad_request(super::fields::strict_message(
                &unknown,
            )));
        }
        if let Ok(mut w) = self.warnings.lock() {
            w.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
        }
        Ok(())
    }

    /// Typed decoding of the whole object: wrong types anywhere are a 400, as upstream's
    /// decoder reports them.
    fn check_decodes(&self, obj: &Value) -> Result<()> {
        if let Some(check) = self.resource.check
            && let Err(e) = check(obj)
        {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                kind = self.resource.kind,
                v = self.resource.version
            )));
        }
        Ok(())
    }

    fn invalid(&self, obj: &Value, causes: Vec<Cause>) -> ApiError {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(self.name());
        ApiError::invalid(&self.resource.group, &self.resource.kind, name, causes)
    }
}

/// Labels of an object, for selectors.
fn labels(obj: &Value) -> &Value {
    obj.pointer("/metadata/labels").unwrap_or(&Value::Null)
}

/// The selectors of a list or watch.
pub struct Selectors {
    pub label: LabelSelector,
    pub field: FieldSelector,
}

impl Selectors {
    pub fn parse(query: &Query, resource: &Resource) -> Result<Selectors> {
        let label = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let field = FieldSelector::parse(
            query.get("fieldSelector").unwrap_or(""),
            &resource.group,
            &resource.plural,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Selectors { label, field })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.label.matches(labels(obj)) && self.field.matches(obj)
    }

    pub fn is_everything(&self) -> bool {
        self.label.is_everything() && self.field.is_everything()
    }
}

/// An opaque continue token: the revision of the first page and the last key returned.
fn encode_continue(revision: i64, key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "rk3s.1", "rv": revision, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (v["rv"].as_i64(), v["start"].as_str()) {
        (Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_string())),
        _ => Err(bad()),
    }
}

/// GET of one object.
pub async fn get(call: &Call<'_>) -> Result<Reply> {
    let stored = call
        .read(&call.key())
        .await?
        .ok_or_else(|| call.not_found())?;
    Ok(Reply::object(StatusCode::OK, stored.object))
}

/// LIST with selectors, pagination and resourceVersion semantics.
pub async fn list(call: &Call<'_>) -> Result<Reply> {
    let sel = Selectors::parse(&call.query, &call.resource)?;
    let limit = call.query.int("limit")?.filter(|l| *l > 0).unwrap_or(0);
    let storage = &call.api.storage;
    let prefix = call.resource.key_prefix(call.path.namespace.as_deref());
    let (mut revision, mut after) = match call.query.value("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            if rv < storage.compact_revision() {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            if !start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid: the key does not belong to this list",
                ));
            }
            (rv, Some(start))
        }
        None => (list_revision(call)?, None),
    };
    // Fill the page with matching objects, reading more when selectors drop some.
    let mut items = Vec::new();
    let mut next_key = None;
    let mut remaining;
    loop {
        let want = if limit > 0 {
            (limit - items.len() as i64).max(1)
        } else {
            0
        };
        let page = storage
            .list(&prefix, revision, after.as_deref(), want)
            .await?;
        revision = page.revision;
        let exhausted = page.next_key.is_none();
        after = page.next_key.clone();
        for mut s in page.items {
            // Selectors see the request's version (field names differ between versions).
            present(&call.resource, &mut s.object);
            if sel.matches(&s.object) {
                items.push(s.object);
            }
        }
        remaining = page.remaining;
        if exhausted {
            break;
        }
        if limit > 0 && items.len() as i64 >= limit {
            next_key = after.clone();
            break;
        }
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(k) = &next_key {
        metadata["continue"] = json!(encode_continue(revision, k));
        if sel.label.is_empty() && sel.field.is_empty() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let list = json!({
        "kind": call.resource.list_kind(),
        "apiVersion": call.resource.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(Reply::object(StatusCode::OK, list))
}

/// The revision a list reads at, from `resourceVersion` and `resourceVersionMatch`.
fn list_revision(call: &Call<'_>) -> Result<i64> {
    let rv = call.query.get("resourceVersion").unwrap_or("");
    let matching = call.query.get("resourceVersionMatch").unwrap_or("");
    let parsed = if rv.is_empty() {
        None
    } else {
        Some(rv.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "",
                "ListOptions",
                "",
                vec![Cause::invalid(
                    "resourceVersion",
                    &json!(rv),
                    "must be a non-negative integer",
                )],
            )
        })?)
    };
    match (matching, parsed) {
        ("", _) | ("NotOlderThan", Some(_)) => {
            if let Some(n) = parsed
                && n > call.api.storage.revision()
            {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {n}, current: {}",
                    call.api.storage.revision()
                )));
            }
            Ok(0)
        }
        ("Exact", Some(0)) | ("Exact", None) => Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
        )),
        ("Exact", Some(n)) => {
            if n < call.api.storage.compact_revision() {
                return Err(ApiError::gone(format!(
                    "too old resource version: {n} ({})",
                    call.api.storage.compact_revision()
                )));
            }
            Ok(n)
        }
        ("NotOlderThan", None) => Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (other, _) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// POST: create an object (or a virtual review).
pub async fn create(call: &Call<'_>) -> Result<Reply> {
    let obj = call.body_object()?;
    create_object(call, obj, None).await
}

/// Creates `obj`: the shared path of POST and of an apply that creates (`applied` carries the
/// managedFields the apply computed).
pub(super) async fn create_object(
    call: &Call<'_>,
    mut obj: Value,
    applied: Option<&Value>,
) -> Result<Reply> {
    let (kind, av) = (call.resource.kind.clone(), call.resource.api_version());
    call.check_type(&mut obj, &kind, &av)?;
    if call.resource.virtual_only {
        return super::reviews::create(call, obj);
    }
    call.check_identity(&mut obj, true)?;
    call.check_fields(&mut obj)?;
    call.check_decodes(&obj)?;
    let mut causes = Vec::new();
    meta::prepare_create(
        &mut obj,
        &call.resource.group,
        &call.resource.plural,
        &mut causes,
    );
    if !causes.is_empty() {
        return Err(call.invalid(&obj, causes));
    }
    // Upstream keeps the status a client sends on create only for a few kinds (nodes, whose
    // kubelet reports it at registration; namespaces and PVs, whose status defaults fill);
    // the rest start from an empty status.
    if call.resource.has_status
        && !matches!(
            call.resource.plural.as_str(),
            "namespaces" | "nodes" | "persistentvolumes"
        )
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    super::admission::admit(call, &mut obj, None).await?;
    super::apply::record(call, None, &mut obj, applied)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stored = stored_form(&call.resource, &obj);
    if call.dry_run()? {
        if call.resource.conversion.is_some() {
            obj = stored.clone();
            present(&call.resource, &mut obj);
        }
        return Ok(Reply::object(StatusCode::CREATED, obj));
    }
    let key = call.resource.key(call.ns(), &name);
    match call.api.storage.create(&key, &stored).await? {
        Written::Done(rev) => {
            let obj = written(&call.resource, &stored, rev);
            super::admission::after_write(call, &obj).await;
            Ok(Reply::object(StatusCode::CREATED, obj))
        }
        Written::Conflict => {
            super::admission::release(call, &obj).await;
            Err(ApiError::already_exists(
                &call.resource.group,
                &call.resource.plural,
                &call.resource.qualified(),
                &name,
            ))
        }
    }
}

/// What a write does to the current object.
pub(super) enum Change {
    /// PUT of the whole object (or of its status).
    Replace(Value),
    /// A patch, applied to the current object each attempt.
    Patch(patch::PatchType, Bytes),
    /// A server-side apply of this configuration.
    Apply(Value),
}

impl Change {
    /// Whether the request itself names a resourceVersion (a precondition). A PUT always
    /// carries what it has; a patch or apply only when its body sets the field.
    fn asserts_resource_version(&self) -> bool {
        match self {
            Change::Replace(_) => true,
            Change::Apply(config) => config.pointer("/metadata/resourceVersion").is_some(),
            Change::Patch(patch::PatchType::Json, body) => {
                serde_json::from_slice::<Vec<Value>>(body).is_ok_and(|ops| {
                    ops.iter().any(|op| {
                        op["path"] == "/metadata/resourceVersion"
                            && matches!(op["op"].as_str(), Some("add" | "replace"))
                    })
                })
            }
            Change::Patch(_, body) => serde_json::from_slice::<Value>(body)
                .map(|v| {
                    v.pointer("/metadata/resourceVersion")
                        .is_some_and(|rv| !rv.is_null())
                })
                // Not JSON (YAML): the field name appearing at all counts, to stay safe.
                .unwrap_or_else(|_| {
                    body.windows(b"resourceVersion".len())
                        .any(|w| w == b"resourceVersion")
                }),
        }
    }
}

/// PUT.
pub async fn update(call: &Call<'_>) -> Result<Reply> {
    let mut obj = call.body_object()?;
    if call.path.subresource.as_deref() == Some("scale") {
        return scale_write(call, Change::Replace(obj)).await;
    }
    let (kind, av) = (call.resource.kind.clone(), call.resource.api_version());
    call.check_type(&mut obj, &kind, &av)?;
    call.check_identity(&mut obj, false)?;
    write(call, Change::Replace(obj)).await
}

/// PATCH.
pub async fn patch(call: &Call<'_>) -> Result<Reply> {
    let ct = call.content_type.as_deref().unwrap_or("");
    let Some(pt) = patch::PatchType::from_content_type(ct) else {
        return Err(ApiError::unsupported_media_type(
            ct,
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ],
        ));
    };
    super::apply::check_patch_options(call, pt)?;
    if call.body.len() > MAX_BODY {
        return Err(ApiError::too_large("Request entity too large"));
    }
    if matches!(pt, patch::PatchType::Apply) {
        return super::apply::apply(call).await;
    }
    let change = Change::Patch(pt, call.body.clone());
    if call.path.subresource.as_deref() == Some("scale") {
        return scale_write(call, change).await;
    }
    write(call, change).await
}

/// Applies `change` to the current object: the shared path of PUT and PATCH.
pub(super) async fn write(call: &Call<'_>, change: Change) -> Result<Reply> {
    let key = call.key();
    let status_only = call.path.subresource.as_deref() == Some("status");
    let finalize = call.path.subresource.as_deref() == Some("finalize");
    for _ in 0..MAX_RETRIES {
        let current = call.read(&key).await?.ok_or_else(|| call.not_found())?;
        let mut applied = None;
        let mut new = match &change {
            Change::Replace(v) => v.clone(),
            Change::Patch(pt, body) => apply_patch(call, &current.object, *pt, body)?,
            Change::Apply(config) => {
                let (new, entries) =
                    super::apply::merge_applied(call, Some(&current.object), config)?;
                applied = Some(entries);
                new
            }
        };
        // A precondition from the client: the resourceVersion it read. A patch carries one only
        // when it sets the field itself (the patched result always has the current one), and
        // a patch without one is retried on a lost compare-and-swap, as upstream does.
        let client_rv = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .filter(|_| change.asserts_resource_version());
        if let Some(rv) = &client_rv
            && *rv != current.revision.to_string()
        {
            return Err(call.conflict());
        }
        let (kind, av) = (call.resource.kind.clone(), call.resource.api_version());
        call.check_type(&mut new, &kind, &av)?;
        call.check_identity(&mut new, false)?;
        call.check_fields(&mut new)?;
        call.check_decodes(&new)?;
        // The status/spec split.
        if status_only {
            let mut merged = current.object.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null()
                && let Some(o) = merged.as_object_mut()
            {
                o.remove("status");
            }
            new = merged;
        } else if finalize {
            let mut merged = current.object.clone();
            merged["spec"]["finalizers"] = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            new = merged;
        } else if call.resource.has_status {
            match current.object.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        let mut causes = Vec::new();
        meta::prepare_update(&mut new, &current.object, &mut causes);
        if status_only {
            // A status write never moves the generation (nor adds one).
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                match current.object.pointer("/metadata/generation") {
                    Some(g) => meta.insert("generation".into(), g.clone()),
                    None => meta.remove("generation"),
                };
            }
        }
        if !causes.is_empty() {
            return Err(call.invalid(&new, causes));
        }
        super::admission::admit(call, &mut new, Some(&current.object)).await?;
        super::apply::record(call, Some(&current.object), &mut new, applied.as_ref())?;
        // Nothing changed: answer with the current object, write nothing (as upstream).
        let mut unchanged = new.clone();
        super::storage::set_resource_version(&mut unchanged, current.revision);
        if unchanged == current.object {
            return Ok(Reply::object(StatusCode::OK, current.object));
        }
        let stored = stored_form(&call.resource, &new);
        if call.dry_run()? {
            if call.resource.conversion.is_some() {
                new = stored.clone();
                present(&call.resource, &mut new);
            }
            return Ok(Reply::object(StatusCode::OK, new));
        }
        // A deleting object whose last finalizer went is deleted now.
        if is_deleting(&new) && finalizers_empty(&new) {
            return match call.api.storage.delete(&key, current.revision).await? {
                Written::Done(rev) => {
                    super::storage::set_resource_version(&mut new, rev);
                    super::admission::after_delete(call, &new).await;
                    Ok(Reply::object(StatusCode::OK, new))
                }
                Written::Conflict if client_rv.is_some() => Err(call.conflict()),
                Written::Conflict => continue,
            };
        }
        match call
            .api
            .storage
            .update(&key, &stored, current.revision)
            .await?
        {
            Written::Done(rev) => {
                let new = written(&call.resource, &stored, rev);
                super::admission::after_write(call, &new).await;
                return Ok(Reply::object(StatusCode::OK, new));
            }
            Written::Conflict if client_rv.is_some() => return Err(call.conflict()),
            Written::Conflict => continue,
        }
    }
    Err(call.conflict())
}

fn apply_patch(
    call: &Call<'_>,
    current: &Value,
    pt: patch::PatchType,
    body: &Bytes,
) -> Result<Value> {
    let to_api = |e: patch::Error| {
        let code = e.http_code();
        if code == 422 {
            ApiError::invalid(
                &call.resource.group,
                &call.resource.kind,
                call.name(),
                vec![Cause {
                    reason: "FieldValueInvalid",
                    message: e.to_string(),
                    field: String::new(),
                }],
            )
        } else {
            ApiError::bad_request(e.to_string())
        }
    };
    match pt {
        patch::PatchType::Json => patch::json_patch(current, body).map_err(to_api),
        patch::PatchType::Merge => patch::merge_patch(current, body).map_err(to_api),
        patch::PatchType::StrategicMerge => {
            if call.resource.check.is_none() {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                    ],
                ));
            }
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            patch::strategic_merge(
                current,
                &p,
                patch::Schemas::built_in(),
                &call.resource.schema_name,
            )
            .map_err(to_api)
        }
        patch::PatchType::Apply => Err(ApiError::unsupported_media_type(
            "application/apply-patch+yaml",
            &[],
        )),
    }
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Whether nothing holds a deleting object back. A namespace also waits for its own
/// `spec.finalizers` (upstream's `ShouldDeleteNamespaceDuringUpdate`): an update to a
/// terminating namespace must not delete it while its content is still being removed.
fn finalizers_empty(obj: &Value) -> bool {
    let empty = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    let namespace = obj["kind"] == "Namespace" && obj["apiVersion"] == "v1";
    empty("/metadata/finalizers") && (!namespace || empty("/spec/finalizers"))
}

/// Where a scalable kind keeps its replicas and selector: JSON pointers to spec and status
/// replicas; for a custom resource also to its label selector string (`labelSelectorPath`,
/// `None` when the CRD names none), while the built-ins compute it from `spec.selector`.
struct ScalePaths {
    spec: String,
    status: String,
    custom_selector: Option<Option<String>>,
}

fn scale_paths(resource: &Resource) -> ScalePaths {
    if let Some((spec, status, selector)) = resource.crd.as_ref().and_then(|c| c.scale.as_ref()) {
        let ptr = |p: &str| super::crd::json_path_pointer(p).unwrap_or_default();
        return ScalePaths {
            spec: ptr(spec),
            status: ptr(status),
            custom_selector: Some(selector.as_deref().map(ptr)),
        };
    }
    ScalePaths {
        spec: "/spec/replicas".into(),
        status: "/status/replicas".into(),
        custom_selector: None,
    }
}

/// The Scale of a scalable object (`status.selector` as a string, as upstream prints it).
fn scale_of(resource: &Resource, obj: &Value) -> Value {
    let paths = scale_paths(resource);
    let (selector_text, default_replicas) = match &paths.custom_selector {
        // A custom resource without the field scales from 0, as upstream reports it.
        Some(pointer) => (
            pointer
                .as_deref()
                .and_then(|p| obj.pointer(p))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            0,
        ),
        // Replicas default to 1 on every built-in scalable kind.
        None => (builtin_selector_text(obj), 1),
    };
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer(&paths.spec).cloned().unwrap_or(json!(default_replicas))},
        "status": {
            "replicas": obj.pointer(&paths.status).cloned().unwrap_or(json!(0)),
            "selector": selector_text,
        },
    })
}

/// `spec.selector` of a built-in scalable kind as selector text.
fn builtin_selector_text(obj: &Value) -> String {
    let selector = obj
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(Value::Null);
    match &selector {
        Value::Object(o) if o.contains_key("matchLabels") || o.contains_key("matchExpressions") => {
            LabelSelector::from_label_selector_json(&selector)
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        // ReplicationControllers have a plain map selector.
        Value::Object(o) => {
            let mut parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            parts.sort();
            parts.join(",")
        }
        _ => String::new(),
    }
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("made an object above");
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return;
        }
        cur = map.entry((*part).to_string()).or_insert_with(|| json!({}));
    }
}

/// GET of the scale subresource.
pub async fn scale_get(call: &Call<'_>) -> Result<Reply> {
    let stored = call
        .read(&call.key())
        .await?
        .ok_or_else(|| call.not_found())?;
    Ok(Reply::object(
        StatusCode::OK,
        scale_of(&call.resource, &stored.object),
    ))
}

/// PUT/PATCH of the scale subresource: only `spec.replicas` moves.
async fn scale_write(call: &Call<'_>, change: Change) -> Result<Reply> {
    let key = call.key();
    for _ in 0..MAX_RETRIES {
        let current: Stored = call.read(&key).await?.ok_or_else(|| call.not_found())?;
        let scale = scale_of(&call.resource, &current.object);
        let new_scale = match &change {
            // Applies never reach the scale subresource (`apply::apply` refuses them).
            Change::Replace(v) | Change::Apply(v) => v.clone(),
            Change::Patch(pt, body) => match pt {
                patch::PatchType::Json => patch::json_patch(&scale, body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                _ => patch::merge_patch(&scale, body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            },
        };
        let client_rv = new_scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .filter(|_| change.asserts_resource_version());
        if let Some(rv) = &client_rv
            && *rv != current.revision.to_string()
        {
            return Err(call.conflict());
        }
        let replicas = new_scale
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        if !replicas
            .as_i64()
            .is_some_and(|r| (0..=i64::from(i32::MAX)).contains(&r))
        {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                call.name(),
                vec![Cause::invalid(
                    "spec.replicas",
                    &replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = current.object.clone();
        set_pointer(&mut new, &scale_paths(&call.resource).spec, replicas);
        let mut causes = Vec::new();
        meta::prepare_update(&mut new, &current.object, &mut causes);
        super::apply::record(call, Some(&current.object), &mut new, None)?;
        if call.dry_run()? {
            return Ok(Reply::object(
                StatusCode::OK,
                scale_of(&call.resource, &new),
            ));
        }
        match call
            .api
            .storage
            .update(&key, &stored_form(&call.resource, &new), current.revision)
            .await?
        {
            Written::Done(rev) => {
                super::storage::set_resource_version(&mut new, rev);
                return Ok(Reply::object(
                    StatusCode::OK,
                    scale_of(&call.resource, &new),
                ));
            }
            Written::Conflict if client_rv.is_some() => return Err(call.conflict()),
            Written::Conflict => continue,
        }
    }
    Err(call.conflict())
}

/// POST pods/<name>/binding and POST bindings: assign a pod to a node.
pub async fn bind(call: &Call<'_>, pod_name: &str) -> Result<Reply> {
    let body = call.body_object()?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            pod_name,
            vec![Cause::required("target.name")],
        ));
    }
    let pods = call
        .api
        .resource("", "v1", "pods")
        .ok_or_else(ApiError::no_route)?;
    let key = pods.key(call.path.namespace.as_deref(), pod_name);
    for _ in 0..MAX_RETRIES {
        let Some(current) = call.api.storage.get(&key).await? else {
            return Err(ApiError::not_found("", "pods", "pods", pod_name));
        };
        if is_deleting(&current.object) {
            return Err(ApiError::conflict_message(
                "",
                "pods",
                "pods",
                pod_name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = current
            .object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict_message(
                "",
                "pods",
                "pods",
                pod_name,
                &format!("pod {pod_name} is already assigned to node \"{existing}\""),
            ));
        }
        let mut new = current.object.clone();
        new["spec"]["nodeName"] = json!(node);
        // Annotations and labels on the Binding are copied to the pod, as upstream does.
        for field in ["annotations", "labels"] {
            if let Some(extra) = body
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object)
            {
                for (k, v) in extra {
                    new["metadata"][field][k] = v.clone();
                }
            }
        }
        let conditions = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339(),
        }));
        new["status"]["conditions"] = json!(conditions);
        if call.dry_run()? {
            break;
        }
        match call
            .api
            .storage
            .update(&key, &new, current.revision)
            .await?
        {
            Written::Done(_) => break,
            Written::Conflict => continue,
        }
    }
    Ok(Reply::object(
        StatusCode::CREATED,
        super::status::success("", "pods", pod_name, None),
    ))
}

/// The DeleteOptions of a DELETE (body or query), or of an Eviction.
#[derive(Clone)]
pub(super) struct DeleteOptions {
    pub(super) grace: Option<i64>,
    propagation: Option<String>,
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
    /// `dryRun=All` in the query or in the body's `dryRun`.
    pub(super) dry_run: bool,
}

fn delete_options(call: &Call<'_>) -> Result<DeleteOptions> {
    let body: Value = if call.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&call.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    parse_delete_options(call, &body)
}

/// DeleteOptions from a decoded body (`{}` when there is none) and the query, the query
/// winning where both say something, as upstream's parameter decoding does.
pub(super) fn parse_delete_options(call: &Call<'_>, body: &Value) -> Result<DeleteOptions> {
    let dry_run = match body.get("dryRun").and_then(Value::as_array) {
        Some(modes) if !modes.is_empty() => {
            for m in modes {
                if m.as_str() != Some("All") {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {m}: supported values: \"All\""
                    )));
                }
            }
            true
        }
        _ => false,
    };
    let dry_run = call.dry_run()? || dry_run;
    let grace = match call.query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    if grace.is_some_and(|g| g < 0) {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            vec![Cause::invalid(
                "gracePeriodSeconds",
                &json!(grace),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let propagation = call
        .query
        .value("propagationPolicy")
        .map(str::to_string)
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_string));
    // The deprecated `orphanDependents`: true is Orphan, false Background; never with
    // propagationPolicy (upstream's ValidateDeleteOptions).
    let orphan = match call.query.value("orphanDependents") {
        Some(v) => Some(v == "true"),
        None => body["orphanDependents"].as_bool(),
    };
    if let (Some(_), Some(p)) = (orphan, &propagation) {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            vec![Cause::invalid(
                "propagationPolicy",
                &json!(p),
                "orphanDependents and deletionPropagation cannot be both set",
            )],
        ));
    }
    let propagation =
        propagation.or_else(|| orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string()));
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            vec![Cause::unsupported(
                "propagationPolicy",
                &json!(p),
                &["Foreground", "Background", "Orphan", "nil"],
            )],
        ));
    }
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

/// DELETE of one object.
pub async fn delete(call: &Call<'_>) -> Result<Reply> {
    let opts = delete_options(call)?;
    let key = call.key();
    for _ in 0..MAX_RETRIES {
        let current = call.read(&key).await?.ok_or_else(|| call.not_found())?;
        match delete_one(call, &key, current, &opts).await? {
            Some(reply) => return Ok(reply),
            None => continue,
        }
    }
    Err(call.conflict())
}

/// Deletes (or starts deleting) `current`; `None` when it changed underneath (retry).
pub(super) async fn delete_one(
    call: &Call<'_>,
    key: &str,
    current: Stored,
    opts: &DeleteOptions,
) -> Result<Option<Reply>> {
    let obj = &current.object;
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
    if let Some(want) = &opts.uid
        && Some(want.as_str()) != uid
    {
        return Err(ApiError::conflict_message(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            &format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                uid.unwrap_or_default()
            ),
        ));
    }
    if let Some(want) = &opts.resource_version
        && *want != current.revision.to_string()
    {
        return Err(ApiError::conflict_message(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                current.revision
            ),
        ));
    }
    let dry = opts.dry_run;
    // Graceful deletion: pods on a node get a deletion timestamp and go when the kubelet is
    // done; objects with finalizers wait for them; namespaces wait for their content.
    let grace = graceful_period(call, obj, opts);
    let mut finalizers: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Orphan/Foreground ask the garbage collector for work through finalizers (upstream's
    // `deletionFinalizersForGarbageCollection`); without a garbage collector they would wait
    // forever, so they are honoured only when one runs. A later delete with another policy
    // switches the finalizers.
    let mut finalizers_changed = false;
    if call.api.garbage_collector {
        // Upstream's `DefaultGarbageCollectionPolicy`: core/v1 ReplicationControllers orphan
        // their pods unless told otherwise, for backwards compatibility.
        let rc = call.resource.group.is_empty() && call.resource.plural == "replicationcontrollers";
        let policy = opts.propagation.as_deref().or(rc.then_some("Orphan"));
        let (add, remove) = match policy {
            Some("Orphan") => (Some("orphan"), Some("foregroundDeletion")),
            Some("Foreground") => (Some("foregroundDeletion"), Some("orphan")),
            Some("Background") => (None, Some("orphan")),
            _ => (None, None),
        };
        if let Some(r) = remove
            && finalizers.iter().any(|x| x == r)
            && (add.is_some() || opts.propagation.is_some())
        {
            finalizers.retain(|x| x != r);
            finalizers_changed = true;
        }
        if policy == Some("Background") && finalizers.iter().any(|x| x == "foregroundDeletion") {
            finalizers.retain(|x| x != "foregroundDeletion");
            finalizers_changed = true;
        }
        if let Some(f) = add
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
            finalizers_changed = true;
        }
    }
    let namespace = call.resource.group.is_empty() && call.resource.plural == "namespaces";
    // Upstream's namespace registry: the first delete only starts termination; deleting again
    // while the namespace finalizers (`spec.finalizers`, the namespace controller's) remain is
    // a Conflict; once they are gone the namespace is deleted like any object.
    let namespace_finalized = namespace
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if namespace && is_deleting(obj) && !namespace_finalized {
        return Err(ApiError::conflict_message(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
        ));
    }
    let namespace_terminates = namespace && !(is_deleting(obj) && namespace_finalized);
    if grace.is_some() || !finalizers.is_empty() || namespace_terminates {
        if is_deleting(obj) && grace.is_none() && !finalizers_changed {
            // Already being deleted: deleting again changes nothing.
            return Ok(Some(Reply::object(StatusCode::OK, current.object)));
        }
        let mut new = obj.clone();
        let deadline = meta::now_unix() + grace.unwrap_or(0);
        if !is_deleting(obj) {
            new["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(deadline));
            // Upstream's namespace Delete sets only the timestamp.
            if !namespace {
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace.unwrap_or(0));
            }
        } else if let Some(g) = grace {
            // A shorter grace period may replace a longer one (kubectl delete --grace-period).
            let old = obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if g < old {
                new["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(deadline));
                new["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
        }
        if !finalizers.is_empty() || finalizers_changed {
            new["metadata"]["finalizers"] = json!(finalizers);
        }
        if namespace {
            new["status"]["phase"] = json!("Terminating");
        }
        if dry {
            return Ok(Some(Reply::object(StatusCode::OK, new)));
        }
        let stored = stored_form(&call.resource, &new);
        return match call
            .api
            .storage
            .update(key, &stored, current.revision)
            .await?
        {
            Written::Done(rev) => Ok(Some(Reply::object(
                StatusCode::OK,
                written(&call.resource, &stored, rev),
            ))),
            Written::Conflict => Ok(None),
        };
    }
    if dry {
        return Ok(Some(Reply::object(StatusCode::OK, current.object)));
    }
    match call.api.storage.delete(key, current.revision).await? {
        Written::Done(rev) => {
            let mut last = current.object;
            super::storage::set_resource_version(&mut last, rev);
            super::admission::after_delete(call, &last).await;
            Ok(Some(Reply::object(StatusCode::OK, last)))
        }
        Written::Conflict => Ok(None),
    }
}

/// The grace period of a pod deletion, `None` when the pod goes at once (upstream: pods not
/// yet on a node, or grace period 0, are deleted immediately).
fn graceful_period(call: &Call<'_>, obj: &Value, opts: &DeleteOptions) -> Option<i64> {
    if !(call.resource.group.is_empty() && call.resource.plural == "pods") {
        return None;
    }
    let on_node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !on_node || finished {
        return None;
    }
    let grace = opts.grace.unwrap_or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (grace > 0).then_some(grace)
}

/// DELETE of a collection: every object matching the selectors.
pub async fn delete_collection(call: &Call<'_>) -> Result<Reply> {
    let sel = Selectors::parse(&call.query, &call.resource)?;
    let opts = delete_options(call)?;
    let prefix = call.resource.key_prefix(call.path.namespace.as_deref());
    let page = call.api.storage.list(&prefix, 0, None, 0).await?;
    let mut deleted = Vec::new();
    for mut item in page.items {
        present(&call.resource, &mut item.object);
        if !sel.matches(&item.object) {
            continue;
        }
        let key = call.resource.key(
            item.object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
            item.object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let mut current = Some(item);
        for _ in 0..MAX_RETRIES {
            let Some(c) = current.take() else { break };
            match delete_one(call, &key, c, &opts).await? {
                Some(reply) => {
                    deleted.push(reply.body);
                    break;
                }
                None => current = call.read(&key).await?,
            }
        }
    }
    Ok(Reply::object(
        StatusCode::OK,
        json!({
            "kind": call.resource.list_kind(),
            "apiVersion": call.resource.api_version(),
            "metadata": {"resourceVersion": call.api.storage.revision().to_string()},
            "items": deleted,
        }),
    ))
}

/// Which verb a method and path mean, for authorization and errors.
pub fn verb(method: &Method, path: &Path, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if path.name.is_some() => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if path.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// The Table of one object or a list, for `kubectl get`.
pub fn as_table(resource: &Resource, body: &Value, query: &Query) -> Result<Value> {
    let include = table::IncludeObject::parse(query.get("includeObject").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let items: Vec<Value> = match body.get("items").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => vec![body.clone()],
    };
    let mut t = match &resource.crd {
        Some(info) if !info.printer_columns.is_empty() => table::custom_table(
            &info.printer_columns,
            &items,
            include,
            meta::now_unix(),
            true,
        ),
        _ => table::table(
            &resource.group,
            &resource.plural,
            &items,
            include,
            meta::now_unix(),
            true,
        ),
    };
    if let Some(m) = body.get("metadata") {
        if body.get("items").is_some() {
            t["metadata"] = m.clone();
        } else {
            t["metadata"] = json!({"resourceVersion": m["resourceVersion"]});
        }
    }
    Ok(t)
}
