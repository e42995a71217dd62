//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and `metadata.managedFields`
//! on every write, with upstream's semantics and messages.
//!
//! - Every create, update and non-apply patch records an `Update` entry for its field manager
//!   (`fieldManager`, else the User-Agent's product name) owning what it added or changed, and
//!   takes those fields, and the ones it removed, from every other entry ([`record`]).
//! - An apply merges the configuration into the live object (or creates it), removes what the
//!   manager applied before and now leaves out unless someone else owns it, and fails with a 409
//!   listing the fields another manager owns whose value would change, unless `force=true`
//!   ([`apply`]).
//!
//! The pure parts live below: [`set`] (field sets and `FieldsV1`), [`typed`] (schema-guided
//! field sets, comparison, merge and pruning) and [`managed`] (entries and ownership moves).

pub mod managed;
pub mod set;
pub mod typed;

use http::StatusCode;
use serde_json::Value;

use self::managed::{ApplyError, Entry, Scope, Writer};
use self::typed::Type;
use super::handlers::{self, Call, Change};
use super::patch::{PatchType, Schemas};
use super::resources::Resource;
use super::status::{ApiError, Cause, Result};
use super::{Reply, meta};

/// Upstream's limit on `fieldManager` (and on a manager taken from the User-Agent).
const MAX_MANAGER_LENGTH: usize = 128;

/// How often an apply races a concurrent create or delete before giving up.
const MAX_RETRIES: usize = 8;

/// The annotation client-side apply keeps its last configuration in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager kubectl uses for `apply --server-side`; upstream migrates client-side apply
/// ownership only for it.
const KUBECTL: &str = "kubectl";

/// The manager upstream derives from a User-Agent when a write names none: the product before
/// the first `/` (`kubectl/v1.33.0 (linux/amd64) …` → `kubectl`), printable characters only, at
/// most 128 of them.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    user_agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MANAGER_LENGTH)
        .collect()
}

/// The causes of an invalid `fieldManager` (too long, or not printable).
fn manager_causes(manager: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if manager.len() > MAX_MANAGER_LENGTH {
        causes.push(Cause::too_long("fieldManager", MAX_MANAGER_LENGTH));
    }
    for (i, c) in manager.char_indices() {
        if c.is_control() {
            causes.push(Cause::invalid(
                "fieldManager",
                &Value::from(manager),
                &format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    causes
}

fn options_invalid(options: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("meta.k8s.io", options, "", causes)
}

/// The field manager of a non-apply write; `options` names the request's options kind
/// (`CreateOptions`, `UpdateOptions`, `PatchOptions`) for the 422 of an invalid one.
fn manager(call: &Call<'_>, options: &str) -> Result<String> {
    match call.query.value("fieldManager") {
        Some(m) => {
            let causes = manager_causes(m);
            if !causes.is_empty() {
                return Err(options_invalid(options, causes));
            }
            Ok(m.to_owned())
        }
        None => Ok(manager_from_user_agent(
            call.user_agent.as_deref().unwrap_or_default(),
        )),
    }
}

/// Upstream's checks of PatchOptions, before anything else happens: an apply needs a
/// `fieldManager`, only an apply may `force`, and the manager must be valid.
pub fn check_patch_options(call: &Call<'_>, patch_type: PatchType) -> Result<()> {
    let manager = call.query.get("fieldManager").unwrap_or_default();
    let mut causes = Vec::new();
    if patch_type == PatchType::Apply {
        if manager.is_empty() {
            causes.push(Cause {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            });
        }
    } else if call.query.get("force").is_some() {
        causes.push(Cause::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    causes.extend(manager_causes(manager));
    if causes.is_empty() {
        Ok(())
    } else {
        Err(options_invalid("PatchOptions", causes))
    }
}

/// The schema-guided type of the resource's objects.
fn root_type(resource: &Resource) -> Type<'_> {
    let schemas = Schemas::built_in();
    match &resource.crd {
        Some(info) => Type::custom(schemas, &info.schema),
        None => Type::named(schemas, &resource.schema_name),
    }
}

/// What a write through this path may own.
fn scope(call: &Call<'_>) -> Scope {
    match call.path.subresource.as_deref() {
        Some("status") => Scope::OnlyStatus,
        Some(_) => Scope::Everything,
        None if call.resource.has_status => Scope::NotStatus,
        None => Scope::Everything,
    }
}

fn is_patch(call: &Call<'_>) -> bool {
    call.content_type
        .as_deref()
        .and_then(PatchType::from_content_type)
        .is_some()
}

/// Records the managedFields of a write from `old` (absent on create) to `new`, just before it
/// is stored. `applied` carries the entries an apply computed ([`merge_applied`]); otherwise
/// this is an `Update` by the request's field manager.
///
/// The entries start from those the client sent when they decode (a client may rewrite them,
/// as kubectl's client-side to server-side apply migration does; `[{}]` clears them), else from
/// the live object's; writes through a subresource always start from the live object's.
pub fn record(
    call: &Call<'_>,
    old: Option<&Value>,
    new: &mut Value,
    applied: Option<&Value>,
) -> Result<()> {
    if let Some(entries) = applied {
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            if entries.as_array().is_some_and(|a| !a.is_empty()) {
                meta.insert("managedFields".into(), entries.clone());
            } else {
                meta.remove("managedFields");
            }
        }
        return Ok(());
    }
    let options = match old {
        None => "CreateOptions",
        Some(_) if is_patch(call) => "PatchOptions",
        Some(_) => "UpdateOptions",
    };
    let manager = manager(call, options)?;
    let live_entries = || {
        old.and_then(|o| managed::decode(o).ok())
            .unwrap_or_default()
    };
    let subresource = call.path.subresource.as_deref().unwrap_or_default();
    let mut entries: Vec<Entry> = if !subresource.is_empty() {
        live_entries()
    } else if managed::is_reset(new) {
        Vec::new()
    } else {
        match managed::decode(new) {
            Ok(sent) if !sent.is_empty() => sent,
            _ => live_entries(),
        }
    };
    let now = meta::now_rfc3339();
    let api_version = call.resource.api_version();
    let writer = Writer {
        manager: &manager,
        api_version: &api_version,
        subresource,
        now: &now,
    };
    let old_plain = old.map(managed::without_entries);
    let new_plain = managed::without_entries(new);
    managed::update(
        &mut entries,
        old_plain.as_ref(),
        &new_plain,
        root_type(&call.resource),
        scope(call),
        &writer,
    );
    managed::encode(new, entries);
    Ok(())
}

/// The applied configuration of the request: YAML or JSON, with upstream's checks.
fn configuration(call: &Call<'_>) -> Result<Value> {
    let text = std::str::from_utf8(&call.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    // kubectl sends JSON; anything else is YAML (of which JSON is nearly a subset).
    let config: Value = match serde_json::from_str(text) {
        Ok(config) => config,
        Err(_) => serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let expected = call.resource.api_version();
    let version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if version != expected {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {expected}"
        )));
    }
    match config.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{config}'"
            )));
        }
        Some(kind) if kind != call.resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                call.resource.kind
            )));
        }
        Some(_) => {}
    }
    let url_name = call.path.name.as_deref().unwrap_or_default();
    if let Some(name) = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        && name != url_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    let mut config = config;
    // Unknown fields of built-in kinds go (with fieldValidation's error or warning) before
    // the configuration is owned; a custom resource's are checked on the merged object.
    if call.resource.crd.is_none() {
        call.check_fields(&mut config)?;
    }
    Ok(config)
}

fn conflict_error(conflicts: &[managed::Conflict]) -> ApiError {
    let mut e = ApiError::new(409, "Conflict", managed::conflict_message(conflicts));
    e.causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {}", c.manager),
            field: set::display(&c.path),
        })
        .collect();
    e
}

/// Merges the request's configuration into `live` (absent: the apply creates) and computes the
/// new managedFields: the object to write (before defaulting, with its managedFields) and the
/// managedFields themselves, which the write path puts back after its status/spec split.
pub fn merge_applied(
    call: &Call<'_>,
    live: Option<&Value>,
    config: &Value,
) -> Result<(Value, Value)> {
    let manager = call.query.get("fieldManager").unwrap_or_default();
    let force = call.query.bool("force")?;
    if let (Some(want), Some(live)) = (
        config.pointer("/metadata/uid").and_then(Value::as_str),
        live,
    ) {
        let have = live
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !want.is_empty() && want != have {
            return Err(ApiError::conflict_message(
                &call.resource.group,
                &call.resource.plural,
                &call.resource.qualified(),
                call.path.name.as_deref().unwrap_or_default(),
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
                ),
            ));
        }
    }
    let ty = root_type(&call.resource);
    let entries = live
        .and_then(|l| managed::decode(l).ok())
        .unwrap_or_default();
    let live_plain = live.map(managed::without_entries);
    let now = meta::now_rfc3339();
    let api_version = call.resource.api_version();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: call.path.subresource.as_deref().unwrap_or_default(),
        now: &now,
    };
    let run = |force: bool| {
        managed::apply(
            live_plain.as_ref(),
            config,
            entries.clone(),
            ty,
            scope(call),
            &writer,
            force,
        )
    };
    let applied = match run(force) {
        Ok(applied) => applied,
        Err(ApplyError::Conflicts(conflicts)) => {
            // kubectl moving an object from client-side apply takes over the fields it applied
            // before (upstream's lastAppliedManager).
            let allowed = live_plain
                .as_ref()
                .filter(|_| manager == KUBECTL)
                .and_then(|l| managed::allowed_by_last_applied(l, ty));
            match allowed {
                Some(allowed) if managed::all_allowed(&conflicts, &allowed) => {
                    run(true).map_err(|e| apply_error(call, e))?
                }
                _ => return Err(conflict_error(&conflicts)),
            }
        }
        Err(e) => return Err(apply_error(call, e)),
    };
    let mut object = applied.object;
    if manager == KUBECTL {
        refresh_last_applied(&mut object, config);
    }
    managed::encode(&mut object, applied.entries);
    let entries = object
        .pointer("/metadata/managedFields")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    Ok((object, entries))
}

fn apply_error(call: &Call<'_>, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => conflict_error(&conflicts),
        ApplyError::Invalid(invalid) => ApiError::invalid(
            &call.resource.group,
            &call.resource.kind,
            call.path.name.as_deref().unwrap_or_default(),
            vec![Cause {
                reason: "FieldValueInvalid",
                message: invalid.message,
                field: invalid.path,
            }],
        ),
    }
}

/// kubectl's server-side applies keep an existing last-applied annotation in step with the
/// configuration, so a later client-side apply starts from it (upstream's lastAppliedUpdater).
fn refresh_last_applied(object: &mut Value, config: &Value) {
    let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if !annotations.contains_key(LAST_APPLIED) {
        return;
    }
    let mut last = config.clone();
    if let Some(a) = last
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    annotations.insert(LAST_APPLIED.into(), Value::from(last.to_string()));
}

/// Whether an error is about the object `name` itself (not, say, its namespace).
fn is_about(e: &ApiError, name: &str) -> bool {
    e.details.as_ref().is_some_and(|d| d.name == name)
}

/// PATCH with `application/apply-patch+yaml`: create the object from the configuration, or
/// merge it into the live one through the shared write path.
pub async fn apply(call: &Call<'_>) -> Result<Reply> {
    let subresource = call.path.subresource.as_deref();
    if !matches!(subresource, None | Some("status")) {
        return Err(ApiError::unsupported_media_type(
            PatchType::Apply.content_type(),
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
            ],
        ));
    }
    let config = configuration(call)?;
    let name = call.path.name.as_deref().unwrap_or_default();
    let namespace = if call.resource.namespaced {
        call.path.namespace.as_deref()
    } else {
        None
    };
    let key = call.resource.key(namespace, name);
    let not_found = || {
        ApiError::not_found(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            name,
        )
    };
    let conflict = || {
        ApiError::conflict(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            name,
        )
    };
    for _ in 0..MAX_RETRIES {
        if call.api.storage.get(&key).await?.is_some() {
            match handlers::write(call, Change::Apply(config.clone())).await {
                // Deleted meanwhile: create it.
                Err(e) if e.code == StatusCode::NOT_FOUND.as_u16() && is_about(&e, name) => {
                    continue;
                }
                other => return other,
            }
        }
        if subresource.is_some() {
            return Err(not_found());
        }
        if config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(conflict());
        }
        let (mut object, entries) = merge_applied(call, None, &config)?;
        object["metadata"]["name"] = Value::from(name);
        match handlers::create_object(call, object, Some(&entries)).await {
            // Created meanwhile: apply to it.
            Err(e) if e.reason == "AlreadyExists" => continue,
            other => return other,
        }
    }
    Err(conflict())
}

#[cfg(test)]
mod tests;
