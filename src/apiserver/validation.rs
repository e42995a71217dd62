//! PLACEHOLDER (being written by another engineer; replace this whole file): upstream
//! validation of every built-in kind.

use serde_json::Value;

use super::status::Cause;

/// The validation causes of `obj` (`old` on updates).
pub fn validate(_group: &str, _resource: &str, _obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    Vec::new()
}
