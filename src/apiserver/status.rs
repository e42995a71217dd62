//! The one place that turns errors into `metav1.Status` responses with their HTTP codes, using
//! upstream's reasons and message formats (k8s.io/apimachinery/pkg/api/errors).

use serde_json::{Value, json};

/// One `StatusCause` (serialized with its type under `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", display_value(value)),
            field: field.into(),
        }
    }

    pub fn unsupported(field: impl Into<String>, value: &Value, allowed: &[&str]) -> Cause {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                display_value(value),
                allowed.join(", ")
            ),
            field: field.into(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", display_value(value)),
            field: field.into(),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
            field: field.into(),
        }
    }

    /// The text upstream puts in the Status message: `field: message`.
    pub fn text(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Go's `%q`-ish rendering of a value in validation messages.
fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The object a Status is about.
#[derive(Debug, Clone)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
}

/// An API error: HTTP code, Status reason, message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status: name, group and kind (boxed: errors travel in every `Result`).
    pub details: Option<Box<Details>>,
    pub causes: Vec<Cause>,
    pub retry_after: Option<u64>,
}

pub type Result<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn details(mut self, name: &str, group: &str, kind: &str) -> ApiError {
        self.details = Some(Box::new(Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
        }));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// A refusal about one object, worded as upstream's `NewForbidden`:
    /// `configmaps "x" is forbidden: <why>`, or `configmaps is forbidden: <why>` without a name.
    pub fn forbidden_object(
        group: &str,
        plural: &str,
        qualified: &str,
        name: &str,
        why: &str,
    ) -> ApiError {
        let message = if name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} \"{name}\" is forbidden: {why}")
        };
        ApiError::new(403, "Forbidden", message).details(name, group, plural)
    }

    /// `pods "web" not found`; `plural` is the qualified resource (`deployments.apps`).
    pub fn not_found(group: &str, plural: &str, qualified: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .details(name, group, plural)
    }

    /// 404 for a path that names no resource.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(verb: &str, qualified: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {qualified})"
            ),
        )
    }

    pub fn not_acceptable(accept: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept})"
            ),
        )
    }

    pub fn already_exists(group: &str, plural: &str, qualified: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .details(name, group, plural)
    }

    /// The optimistic-concurrency conflict, in upstream's words.
    pub fn conflict(group: &str, plural: &str, qualified: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .details(name, group, plural)
    }

    pub fn conflict_message(
        group: &str,
        plural: &str,
        qualified: &str,
        name: &str,
        why: &str,
    ) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
        )
        .details(name, group, plural)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                if accepted.is_empty() {
                    content_type.to_string()
                } else {
                    accepted.join(", ")
                }
            ),
        )
    }

    /// 422 with causes: `Deployment.apps "web" is invalid: [spec.replicas: Invalid value: …]`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let texts: Vec<String> = causes.iter().map(Cause::text).collect();
        let list = if texts.len() == 1 {
            texts[0].clone()
        } else {
            format!("[{}]", texts.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {list}"),
        )
        .details(name, group, kind);
        e.causes = causes;
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.details.is_some() || !self.causes.is_empty() || self.retry_after.is_some() {
            let mut d = serde_json::Map::new();
            if let Some(det) = &self.details {
                d.insert("name".into(), json!(det.name));
                if !det.group.is_empty() {
                    d.insert("group".into(), json!(det.group));
                }
                d.insert("kind".into(), json!(det.kind));
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| {
                        // `field` is omitempty in upstream's StatusCause.
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() {
                            cause["field"] = json!(c.field);
                        }
                        cause
                    })
                    .collect();
                d.insert("causes".into(), Value::Array(causes));
            }
            if let Some(r) = self.retry_after {
                d.insert("retryAfterSeconds".into(), json!(r));
            }
            s["details"] = Value::Object(d);
        }
        s
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> ApiError {
        use crate::store::Error as E;
        match e {
            E::Compacted => ApiError::gone("The resourceVersion for the provided list is too old."),
            E::Stopped => ApiError::unavailable("the storage is shutting down"),
            E::RequestTooLarge => ApiError::too_large("Request entity too large: limit is 3145728"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// The success Status some deletes return.
pub fn success(group: &str, kind: &str, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_causes_like_upstream() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![
                Cause::invalid(
                    "spec.replicas",
                    &json!(-1),
                    "must be greater than or equal to 0",
                ),
                Cause::required("spec.selector"),
            ],
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.selector: Required value]"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][1]["field"], "spec.selector");
        assert_eq!(s["details"]["kind"], "Deployment");
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::not_found("apps", "deployments", "deployments.apps", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.to_status()["details"]["group"], "apps");
    }

    #[test]
    fn forbidden_object_names_the_object_when_it_has_a_name() {
        let e = ApiError::forbidden_object("", "configmaps", "configmaps", "x", "no room");
        assert_eq!(e.code, 403);
        assert_eq!(e.message, "configmaps \"x\" is forbidden: no room");
        let s = e.to_status();
        assert_eq!(s["details"]["kind"], "configmaps");
        assert_eq!(s["details"]["name"], "x");
        let e = ApiError::forbidden_object("apps", "deployments", "deployments.apps", "", "no");
        assert_eq!(e.message, "deployments.apps is forbidden: no");
    }
}
