//! The virtual, never-stored resources that answer questions about the caller:
//! SelfSubjectReview (`kubectl auth whoami`) and the access reviews (`kubectl auth can-i`).

use http::StatusCode;
use serde_json::{Value, json};

use super::handlers::Call;
use super::status::{ApiError, Result};
use super::{Reply, authorize};

pub fn create(call: &Call<'_>, mut obj: Value) -> Result<Reply> {
    let user = call.user;
    match (call.resource.group.as_str(), call.resource.plural.as_str()) {
        ("authentication.k8s.io", "selfsubjectreviews") => {
            obj["status"] = json!({"userInfo": user.info()});
        }
        ("authorization.k8s.io", "selfsubjectaccessreviews") => {
            let attrs = obj.pointer("/spec/resourceAttributes").cloned();
            let allowed = authorize(user, &attrs.unwrap_or(Value::Null)).is_ok();
            obj["status"] = json!({"allowed": allowed});
        }
        ("authorization.k8s.io", "selfsubjectrulesreview")
        | ("authorization.k8s.io", "selfsubjectrulesreviews") => {
            let everything = user.groups.iter().any(|g| g == "system:masters");
            obj["status"] = if everything {
                json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                })
            } else {
                json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false})
            };
        }
        ("authorization.k8s.io", "subjectaccessreviews" | "localsubjectaccessreviews") => {
            let subject = super::User {
                name: obj
                    .pointer("/spec/user")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                groups: obj
                    .pointer("/spec/groups")
                    .and_then(Value::as_array)
                    .map(|g| {
                        g.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let attrs = obj.pointer("/spec/resourceAttributes").cloned();
            let allowed = authorize(&subject, &attrs.unwrap_or(Value::Null)).is_ok();
            obj["status"] = json!({"allowed": allowed});
        }
        ("authentication.k8s.io", "tokenreviews") => {
            // No token authenticators exist yet: every token is unknown.
            obj["status"] =
                json!({"authenticated": false, "error": "token authentication is not enabled"});
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "create",
                &call.resource.qualified(),
            ));
        }
    }
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    Ok(Reply::object(StatusCode::CREATED, obj))
}

/// `kubectl get componentstatuses` (deprecated upstream): the datastore's health.
pub fn component_statuses(store_ok: bool) -> Value {
    let condition = if store_ok {
        json!({"type": "Healthy", "status": "True", "message": "ok"})
    } else {
        json!({"type": "Healthy", "status": "False", "error": "the datastore is not answering"})
    };
    json!({
        "kind": "ComponentStatusList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [{
            "kind": "ComponentStatus",
            "apiVersion": "v1",
            "metadata": {"name": "etcd-0"},
            "conditions": [condition],
        }],
    })
}
