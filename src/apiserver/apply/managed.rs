//! `metadata.managedFields`: decoding and encoding the entries, and how each write moves
//! ownership, with upstream's semantics (structured-merge-diff's `Updater`, and the field
//! manager wrappers of k8s.io/apimachinery's `managedfields` package).

use serde_json::{Map, Value, json};

use super::set::{FieldSet, Step, display};
use super::typed::{self, Comparison, Invalid, Type};

/// `operation` of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
    pub time: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether `self` is the entry of `writer`: entries are told apart by manager, operation
    /// and subresource, and Update entries also by API version (upstream's manager identifier).
    fn is(&self, writer: &Writer<'_>, operation: Operation) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// How conflict messages name the entry: `"kubectl"`, `"kube-controller-manager" using
    /// apps/v1`, `"x" with subresource "status" using v1`.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn to_json(&self) -> Value {
        let mut e = Map::new();
        e.insert("manager".into(), json!(self.manager));
        e.insert("operation".into(), json!(self.operation.as_str()));
        e.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            e.insert("time".into(), json!(time));
        }
        e.insert("fieldsType".into(), json!("FieldsV1"));
        e.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            e.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(e)
    }

    fn from_json(value: &Value) -> Result<Entry, String> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => return Err(format!("unknown operation {other:?}")),
        };
        match text("fieldsType") {
            "FieldsV1" => {}
            other => return Err(format!("invalid fieldsType {other:?}")),
        }
        let fields = match value.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::default(),
        };
        Ok(Entry {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            subresource: text("subresource").to_owned(),
            time: value.get("time").and_then(Value::as_str).map(str::to_owned),
            fields,
        })
    }
}

/// Who writes: the field manager, the API version of the request and the subresource.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    /// Now, as `metav1.Time`.
    pub now: &'a str,
}

/// Which part of the object a write may own (upstream's reset fields): writes to the main
/// resource of a kind with a status subresource do not own `status`; status writes own only it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    NotStatus,
    OnlyStatus,
}

impl Scope {
    fn restrict(self, set: &mut FieldSet) {
        match self {
            Scope::Everything => {}
            Scope::NotStatus => set.without_field("status"),
            Scope::OnlyStatus => set.only_field("status"),
        }
        strip_server_fields(set);
    }
}

/// Fields nobody owns: the identity and bookkeeping the server keeps (upstream's strip set).
fn strip_server_fields(set: &mut FieldSet) {
    let mut strip = FieldSet::default();
    strip.insert(&[Step::field("apiVersion")]);
    strip.insert(&[Step::field("kind")]);
    strip.insert(&[Step::field("metadata")]);
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[Step::field("metadata"), Step::field(field)]);
    }
    set.difference(&strip);
}

/// The entries of an object; `Err` when they do not decode (callers then fall back to the
/// live object's, as upstream does).
pub fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Entry::from_json).collect(),
        Some(_) => Err("managedFields must be a list".into()),
    }
}

/// Whether a write asks to clear the entries: `managedFields: [{}]` (an empty list does not,
/// so clients unaware of the field never drop it by accident).
pub fn is_reset(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            !items.is_empty()
                && items
                    .iter()
                    .all(|e| e.as_object().is_some_and(|o| o.is_empty()))
        })
}

/// Stores `entries` in the object, sorted as upstream sorts them (Apply before Update, then by
/// time, manager, API version and subresource); no entries means no field.
pub fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (a.operation, a.time.as_deref().unwrap_or(""), &a.manager)
            .cmp(&(b.operation, b.time.as_deref().unwrap_or(""), &b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        let items = entries.iter().map(Entry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(items));
    }
}

/// The object without `metadata.managedFields`, as the comparisons see it.
pub fn without_entries(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// A non-apply write (create, update, patch) by `writer`, from `old` (absent on create) to
/// `new`: the writer owns what it added or changed, every entry loses what changed or went.
/// `old` and `new` carry no managedFields.
pub fn update(
    entries: &mut Vec<Entry>,
    old: Option<&Value>,
    new: &Value,
    ty: Type<'_>,
    scope: Scope,
    writer: &Writer<'_>,
) {
    let c = typed::compare(old, new, ty);
    take_ownership(entries, &c, scope, writer, Operation::Update);
}

fn take_ownership(
    entries: &mut Vec<Entry>,
    c: &Comparison,
    scope: Scope,
    writer: &Writer<'_>,
    operation: Operation,
) {
    let mut changed = c.changed();
    scope.restrict(&mut changed);
    let mut removed = c.removed.clone();
    scope.restrict(&mut removed);
    for e in entries.iter_mut() {
        e.fields.difference(&changed);
        e.fields.difference(&removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.is(writer, operation)) {
            Some(e) => {
                e.fields.union(&changed);
                e.time = Some(writer.now.to_owned());
                e.api_version = writer.api_version.to_owned();
            }
            None => entries.push(Entry {
                manager: writer.manager.to_owned(),
                operation,
                api_version: writer.api_version.to_owned(),
                subresource: writer.subresource.to_owned(),
                time: Some(writer.now.to_owned()),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    cap_updates(entries);
}

/// At most this many Update entries are kept (upstream's default).
const MAX_UPDATE_ENTRIES: usize = 10;

/// The manager the oldest Update entries are merged into beyond the cap.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Keeps the number of Update entries within [`MAX_UPDATE_ENTRIES`] by merging the oldest ones
/// into one `ancient-changes` entry per API version, as upstream's capManagersManager does, so
/// objects written by many clients do not grow without bound.
fn cap_updates(entries: &mut Vec<Entry>) {
    let count = |entries: &[Entry]| {
        entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .count()
    };
    while count(entries) > MAX_UPDATE_ENTRIES {
        // The oldest Update entry that is not a bucket itself (the bucket absorbs the rest).
        let Some(oldest) = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update && e.manager != ANCIENT_CHANGES)
            .min_by(|(_, a), (_, b)| (&a.time, &a.manager).cmp(&(&b.time, &b.manager)))
            .map(|(i, _)| i)
        else {
            return;
        };
        let old = entries.remove(oldest);
        let bucket = entries.iter_mut().find(|e| {
            e.manager == ANCIENT_CHANGES
                && e.operation == Operation::Update
                && e.api_version == old.api_version
                && e.subresource.is_empty()
        });
        match bucket {
            Some(bucket) => {
                bucket.fields.union(&old.fields);
                bucket.time = bucket.time.clone().max(old.time);
            }
            None => entries.push(Entry {
                manager: ANCIENT_CHANGES.into(),
                subresource: String::new(),
                ..old
            }),
        }
    }
}

/// Fields another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owner, as messages name it (`"kubectl-client-side-apply" using apps/v1`).
    pub manager: String,
    pub path: Vec<Step>,
}

/// Why an apply did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    Conflicts(Vec<Conflict>),
    Invalid(Invalid),
}

/// The result of an apply: the merged object (before defaulting) and the new entries.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// The manager upstream gives the fields of an object that had no managedFields when it was
/// first applied to, so that the apply conflicts with them instead of taking them silently.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply of `config` by `writer` to `live` (absent: the apply creates), both without
/// managedFields: merge, then remove what the writer applied last time and no longer does
/// (unless someone else owns it), then check that nothing another manager owns changes value
/// (`force` takes such fields over instead).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    mut entries: Vec<Entry>,
    ty: Type<'_>,
    scope: Scope,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Applied, ApplyError> {
    let mut applied_set = typed::field_set(config, ty, true).map_err(ApplyError::Invalid)?;
    scope.restrict(&mut applied_set);
    if let Some(live) = live
        && entries.is_empty()
    {
        let before = Writer {
            manager: BEFORE_FIRST_APPLY,
            ..*writer
        };
        update(&mut entries, None, live, ty, scope, &before);
    }
    let mut merged = typed::merge(live, config, ty);
    let position = entries.iter().position(|e| e.is(writer, Operation::Apply));
    let last = position
        .map(|i| entries[i].fields.clone())
        .unwrap_or_default();
    let mut owned = applied_set.clone();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) != position {
            owned.union(&e.fields);
        }
    }
    typed::prune(&mut merged, &last, &owned, ty);

    let c = typed::compare(live, &merged, ty);
    let mut changed = c.changed();
    scope.restrict(&mut changed);
    let mut removed = c.removed.clone();
    scope.restrict(&mut removed);
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == position {
            continue;
        }
        let taken = e.fields.intersection(&changed);
        if !taken.is_empty() && !force {
            let manager = e.describe();
            conflicts.extend(taken.paths().into_iter().map(|path| Conflict {
                manager: manager.clone(),
                path,
            }));
        }
        e.fields.difference(&taken);
        e.fields.difference(&removed);
    }
    if !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.path).cmp(&(&b.manager, &b.path)));
        return Err(ApplyError::Conflicts(conflicts));
    }
    // The time moves when the object or the applier's set changes.
    let object_changed = live != Some(&merged);
    match position {
        Some(i) => {
            let e = &mut entries[i];
            if object_changed || e.fields != applied_set || e.time.is_none() {
                e.time = Some(writer.now.to_owned());
            }
            e.fields = applied_set;
            e.api_version = writer.api_version.to_owned();
        }
        None => entries.push(Entry {
            manager: writer.manager.to_owned(),
            operation: Operation::Apply,
            api_version: writer.api_version.to_owned(),
            subresource: writer.subresource.to_owned(),
            time: Some(writer.now.to_owned()),
            fields: applied_set,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(Applied {
        object: merged,
        entries,
    })
}

/// Upstream's message for apply conflicts: `Apply failed with 1 conflict: conflict with
/// "kubectl": .spec.replicas`, or for several, grouped by manager:
/// `Apply failed with 2 conflicts: conflicts with "a":\n- .x\n- .y`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager,
            display(&one.path)
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", display(&c.path)));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The conflicts kubectl may take over when it moves an object from client-side to
/// server-side apply: fields of the `last-applied-configuration` annotation whose live value is
/// still the one last applied (upstream's `lastAppliedManager`, for the manager `kubectl`).
pub fn allowed_by_last_applied(live: &Value, ty: Type<'_>) -> Option<FieldSet> {
    let text = live
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    let mut set = typed::field_set(&last, ty, false).ok()?;
    let c = typed::compare(Some(&last), live, ty);
    set.difference(&c.modified);
    Some(set)
}

/// Whether every conflict is in `allowed`.
pub fn all_allowed(conflicts: &[Conflict], allowed: &FieldSet) -> bool {
    conflicts.iter().all(|c| allowed.has(&c.path))
}
