//! API discovery: the legacy documents (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`)
//! and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1), negotiated per request from
//! the Accept header exactly as client-go expects (a v2 document only to clients that ask for v2).

use serde_json::{Value, json};

use super::resources::Resource;

/// Which aggregated discovery version the client asked for, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregated {
    V2,
    V2Beta1,
}

impl Aggregated {
    /// From the Accept header: `v=v2` wins over `v=v2beta1`; anything else is legacy.
    pub fn negotiate(accept: Option<&str>) -> Option<Aggregated> {
        let accept = accept?;
        let mut beta = false;
        for item in accept.split(',') {
            let params: Vec<&str> = item.split(';').map(str::trim).collect();
            let is = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
            if !is("g=apidiscovery.k8s.io") || !is("as=APIGroupDiscoveryList") {
                continue;
            }
            if is("v=v2") {
                return Some(Aggregated::V2);
            }
            if is("v=v2beta1") {
                beta = true;
            }
        }
        beta.then_some(Aggregated::V2Beta1)
    }

    pub fn version(self) -> &'static str {
        match self {
            Aggregated::V2 => "v2",
            Aggregated::V2Beta1 => "v2beta1",
        }
    }

    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.version()
        )
    }
}

/// The groups in discovery order, each with its versions (preferred first).
fn groups(resources: &[Resource]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources {
        if r.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version.clone());
                }
            }
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    out
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list(resources: &[Resource]) -> Value {
    let groups: Vec<Value> = groups(resources)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, `None` for an unknown group.
pub fn api_group(resources: &[Resource], group: &str) -> Option<Value> {
    let (g, vs) = groups(resources).into_iter().find(|(g, _)| g == group)?;
    let mut doc = group_doc(&g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/<g>/<v>`, `None` when nothing is served there.
pub fn api_resource_list(resources: &[Resource], group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for s in &r.subresources {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if s.kind.is_empty() { r.kind.as_str() } else { s.kind },
                "verbs": s.verbs,
            });
            if !s.kind.is_empty() && (s.group != r.group || s.version != r.version) {
                e["group"] = json!(s.group);
                e["version"] = json!(s.version);
            }
            list.push(e);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) = if s.kind.is_empty() {
                    (r.group.as_str(), r.version.as_str(), r.kind.as_str())
                } else {
                    (s.group, s.version, s.kind)
                };
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": g, "version": v, "kind": k},
                    "verbs": s.verbs,
                })
            })
            .collect();
        e["subresources"] = json!(subs);
    }
    e
}

/// The aggregated document for `/api` (`core` = true) or `/apis`.
pub fn aggregated(resources: &[Resource], core: bool, version: Aggregated) -> Value {
    let mut items = Vec::new();
    let group_list: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(resources)
    };
    for (g, versions) in group_list {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let rs: Vec<Value> = resources
                    .iter()
                    .filter(|r| r.group == g && r.version == *v)
                    .map(aggregated_resource)
                    .collect();
                json!({"version": v, "resources": rs, "freshness": "Current"})
            })
            .collect();
        let metadata = if g.is_empty() {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": g, "creationTimestamp": null})
        };
        items.push(json!({"metadata": metadata, "versions": vs}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", version.version()),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::built_in;

    #[test]
    fn accept_headers_pick_the_version_clients_understand() {
        let k127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let k130 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Aggregated::negotiate(Some(k127)), Some(Aggregated::V2Beta1));
        assert_eq!(Aggregated::negotiate(Some(k130)), Some(Aggregated::V2));
        assert_eq!(Aggregated::negotiate(Some("application/json")), None);
        assert_eq!(Aggregated::negotiate(None), None);
    }

    #[test]
    fn legacy_documents_list_subresources_with_their_kinds() {
        let doc = api_resource_list(built_in(), "apps", "v1").unwrap();
        let scale = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        let groups = api_group_list(built_in());
        let autoscaling = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        assert!(api_resource_list(built_in(), "nope", "v1").is_none());
    }

    #[test]
    fn aggregated_core_document_has_no_group_name() {
        let doc = aggregated(built_in(), true, Aggregated::V2);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert!(doc["items"][0]["metadata"].get("name").is_none());
        let pods = doc["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"][0], "po");
    }
}
