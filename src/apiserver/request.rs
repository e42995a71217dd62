//! Reading a request: the resource path, query parameters and content negotiation, with
//! upstream's parsing rules (Go's ParseBool for booleans, the Table media type, …).

use std::collections::BTreeMap;

use super::status::{ApiError, Result};

/// What a resource path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    /// The resource's plural.
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits `/api/v1/...` and `/apis/<group>/<version>/...` paths. `None` when the path is not
/// a resource path (discovery documents are handled before).
pub fn parse_path(path: &str) -> Option<Path> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut p = Path {
        group: group.to_string(),
        version: version.to_string(),
        namespace: None,
        resource: String::new(),
        name: None,
        subresource: None,
    };
    let rest = match rest {
        // /namespaces/<ns>/<resource>/...: namespaced resources.
        ["namespaces", ns, resource, tail @ ..] => {
            p.namespace = Some(ns.to_string());
            p.resource = resource.to_string();
            tail
        }
        // /namespaces/<ns> and /namespaces/<ns>/<sub> of the namespace itself are handled by the
        // caller, which knows that `namespaces` is cluster-scoped.
        [resource, tail @ ..] => {
            p.resource = resource.to_string();
            tail
        }
        [] => return None,
    };
    match rest {
        [] => {}
        [name] => p.name = Some(name.to_string()),
        [name, sub] => {
            p.name = Some(name.to_string());
            p.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    Some(p)
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters; a repeated one keeps its first value, as Go's `url.Values.Get` does.
#[derive(Debug, Clone, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = BTreeMap::new();
        for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.entry(decode(k)).or_insert_with(|| decode(v));
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A non-empty value.
    pub fn value(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool`; a present but empty parameter is false, garbage is a 400.
    pub fn bool(&self, k: &str) -> Result<bool> {
        match self.get(k) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid boolean value for {k}: {v:?}"
            ))),
        }
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>> {
        match self.value(k) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }
}

/// How the response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `application/json;as=Table;v=v1(beta1);g=meta.k8s.io`.
    Table,
}

/// Picks the response format from `Accept`, in the client's order of preference, as upstream's
/// negotiation does. `None` means 406.
pub fn negotiate(accept: Option<&str>, table_ok: bool) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Format::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: BTreeMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => {
                match params.get("as").map(String::as_str) {
                    None => return Some(Format::Json),
                    Some("Table")
                        if table_ok
                            && params.get("g").map(String::as_str) == Some("meta.k8s.io")
                            && matches!(
                                params.get("v").map(String::as_str),
                                Some("v1" | "v1beta1")
                            ) =>
                    {
                        return Some(Format::Table);
                    }
                    // PartialObjectMetadata and unknown conversions: not offered; try the next.
                    _ => continue,
                }
            }
            "application/yaml" => return Some(Format::Yaml),
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_upstream() {
        let p = parse_path("/apis/apps/v1/namespaces/default/deployments/web/scale").unwrap();
        assert_eq!(p.group, "apps");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.resource, "deployments");
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        let p = parse_path("/api/v1/pods").unwrap();
        assert_eq!((p.group.as_str(), p.namespace), ("", None));
        let p = parse_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(p.namespace, None);
        assert_eq!(p.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("kube-system"));
        assert!(parse_path("/api/v1/namespaces/a/pods/b/c/d").is_none());
        assert!(parse_path("/healthz").is_none());
    }

    #[test]
    fn queries_decode_and_booleans_parse_like_go() {
        let q = Query::parse(Some("watch=True&labelSelector=app%3Dweb%2Ctier+in+(a)&x"));
        assert!(q.bool("watch").unwrap());
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(!q.bool("x").unwrap());
        assert!(q.bool("labelSelector").is_err());
        assert_eq!(Query::parse(Some("a=%zz")).get("a"), Some("%zz"));
        assert_eq!(Query::parse(Some("a=%4")).get("a"), Some("%4"));
    }

    #[test]
    fn accept_headers_of_real_clients() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl_get), true), Some(Format::Table));
        assert_eq!(negotiate(Some(kubectl_get), false), Some(Format::Json));
        assert_eq!(negotiate(None, true), Some(Format::Json));
        assert_eq!(negotiate(Some("*/*"), true), Some(Format::Json));
        assert_eq!(
            negotiate(
                Some("application/vnd.kubernetes.protobuf, application/json"),
                true
            ),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), true),
            None
        );
        assert_eq!(
            negotiate(Some("application/yaml"), true),
            Some(Format::Yaml)
        );
    }
}
