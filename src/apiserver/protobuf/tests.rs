//! Tests of the protobuf codec: hand-built messages checked field by field, golden request
//! bodies captured from kubectl, JSON round trips, the field table against the OpenAPI schemas,
//! and malformed input.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::table::{Kind, Shape, Table};
use super::*;

/// A protobuf message under construction, written with prost's encoding helpers.
#[derive(Debug, Default, Clone)]
struct Msg(Vec<u8>);

impl Msg {
    fn new() -> Msg {
        Msg::default()
    }

    fn str(mut self, tag: u32, value: &str) -> Msg {
        prost::encoding::string::encode(tag, &value.to_owned(), &mut self.0);
        self
    }

    fn bytes(mut self, tag: u32, value: &[u8]) -> Msg {
        prost::encoding::bytes::encode(tag, &value.to_vec(), &mut self.0);
        self
    }

    fn int(mut self, tag: u32, value: i64) -> Msg {
        prost::encoding::int64::encode(tag, &value, &mut self.0);
        self
    }

    fn int32(mut self, tag: u32, value: i32) -> Msg {
        prost::encoding::int32::encode(tag, &value, &mut self.0);
        self
    }

    fn bool(mut self, tag: u32, value: bool) -> Msg {
        prost::encoding::bool::encode(tag, &value, &mut self.0);
        self
    }

    fn msg(self, tag: u32, inner: Msg) -> Msg {
        self.bytes(tag, &inner.0)
    }

    /// A `map<string, string>` entry.
    fn entry(self, tag: u32, key: &str, value: &str) -> Msg {
        self.msg(tag, Msg::new().str(1, key).str(2, value))
    }

    /// A `map<string, message>` entry.
    fn entry_msg(self, tag: u32, key: &str, value: Msg) -> Msg {
        self.msg(tag, Msg::new().str(1, key).msg(2, value))
    }

    /// The whole request body: magic and runtime.Unknown around this message.
    fn body(self, api_version: &str, kind: &str) -> Vec<u8> {
        let unknown = Msg::new()
            .msg(1, Msg::new().str(1, api_version).str(2, kind))
            .bytes(2, &self.0)
            .str(3, "")
            .str(4, "");
        [MAGIC, &unknown.0].concat()
    }
}

fn quantity(text: &str) -> Msg {
    Msg::new().str(1, text)
}

fn int_port(port: i32) -> Msg {
    Msg::new().int(1, 0).int32(2, port).str(3, "")
}

fn named_port(name: &str) -> Msg {
    Msg::new().int(1, 1).int32(2, 0).str(3, name)
}

/// ObjectMeta as go-to-protobuf writes it: every non-pointer field, set or not.
fn object_meta(name: &str, namespace: &str) -> Msg {
    Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Msg::new())
}

fn decoded(body: &[u8]) -> Value {
    let object = decode(body).unwrap();
    // Whatever decodes must encode again and decode to the same object.
    let again = decode(&encode(&object).unwrap()).unwrap();
    assert_eq!(again, object, "round trip through encode");
    object
}

#[test]
fn config_map_decodes_metadata_data_and_binary_data() {
    let body = Msg::new()
        .msg(
            1,
            object_meta("app-config", "team1")
                .entry(11, "app", "web")
                .entry(11, "tier", "front")
                .entry(12, "note", ""),
        )
        .entry(2, "greeting", "hello")
        .entry(2, "empty", "")
        .msg(3, Msg::new().str(1, "blob").bytes(2, b"\x00\xff\xfe"))
        .body("v1", "ConfigMap");
    let object = decoded(&body);
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "app-config",
                "namespace": "team1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": ""},
            },
            "data": {"greeting": "hello", "empty": ""},
            "binaryData": {"blob": "AP/+"},
        })
    );
}

#[test]
fn secret_data_is_base64_and_string_data_is_text() {
    let body = Msg::new()
        .msg(1, object_meta("db", "default"))
        .msg(2, Msg::new().str(1, "password").bytes(2, b"hunter2"))
        .str(3, "Opaque")
        .entry(4, "user", "admin")
        .bool(5, false)
        .body("v1", "Secret");
    let object = decoded(&body);
    assert_eq!(object["data"], json!({"password": "aHVudGVyMg=="}));
    assert_eq!(object["type"], "Opaque");
    assert_eq!(object["stringData"], json!({"user": "admin"}));
    // A pointer field on the wire is printed even when false.
    assert_eq!(object["immutable"], false);
}

#[test]
fn deployment_decodes_the_pod_template() {
    let env_from_secret = Msg::new().str(1, "PASSWORD").msg(
        3,
        // EnvVarSource.secretKeyRef: SecretKeySelector with the inline LocalObjectReference.
        Msg::new().msg(
            4,
            Msg::new()
                .msg(1, Msg::new().str(1, "db"))
                .str(2, "password")
                .bool(3, true),
        ),
    );
    let container = Msg::new()
        .str(1, "web")
        .str(2, "nginx:1.27")
        .str(3, "nginx")
        .str(3, "-g")
        .msg(6, Msg::new().str(1, "http").int32(3, 80).str(4, "TCP"))
        .msg(6, Msg::new().str(1, "").int32(3, 443).str(4, "TCP"))
        .msg(7, Msg::new().str(1, "MODE").str(2, "prod"))
        .msg(7, env_from_secret)
        .msg(
            8,
            Msg::new()
                .entry_msg(1, "memory", quantity("128Mi"))
                .entry_msg(2, "cpu", quantity("100m")),
        )
        // livenessProbe: Probe with the inline ProbeHandler holding httpGet on a named port.
        .msg(
            10,
            Msg::new()
                .msg(
                    1,
                    Msg::new().msg(2, Msg::new().str(1, "/healthz").msg(2, named_port("http"))),
                )
                .int32(2, 5)
                .int32(3, 0),
        )
        // readinessProbe on a numeric port.
        .msg(
            11,
            Msg::new().msg(1, Msg::new().msg(3, Msg::new().msg(1, int_port(8080)))),
        )
        .msg(8, Msg::new())
        .bool(16, false);
    let template = Msg::new()
        .msg(1, object_meta("", "").entry(11, "app", "web"))
        .msg(2, Msg::new().msg(2, container).str(3, "Always"));
    let body = Msg::new()
        .msg(1, object_meta("web", "default").entry(11, "app", "web"))
        .msg(
            2,
            Msg::new()
                .int32(1, 0)
                .msg(2, Msg::new().entry(1, "app", "web"))
                .msg(3, template)
                .msg(4, Msg::new()),
        )
        .msg(3, Msg::new())
        .body("apps/v1", "Deployment");
    let object = decoded(&body);
    assert_eq!(object["apiVersion"], "apps/v1");
    assert_eq!(object["kind"], "Deployment");
    assert_eq!(
        object["metadata"],
        json!({"name": "web", "namespace": "default", "labels": {"app": "web"}})
    );
    let spec = &object["spec"];
    assert_eq!(spec["replicas"], 0, "a pointer set to zero stays");
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(spec["strategy"], json!({}));
    assert_eq!(object["status"], json!({}));
    assert_eq!(
        spec["template"]["metadata"],
        json!({"labels": {"app": "web"}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "web");
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["command"], json!(["nginx", "-g"]));
    assert_eq!(
        container["ports"],
        json!([
            {"name": "http", "containerPort": 80, "protocol": "TCP"},
            {"containerPort": 443, "protocol": "TCP"},
        ])
    );
    assert_eq!(
        container["env"],
        json!([
            {"name": "MODE", "value": "prod"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": true}}},
        ])
    );
    // The second resources occurrence merges into the first, as protobuf merges messages.
    assert_eq!(
        container["resources"],
        json!({"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        container["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5})
    );
    assert_eq!(
        container["readinessProbe"],
        json!({"tcpSocket": {"port": 8080}})
    );
    assert!(
        container.get("stdin").is_none(),
        "omitempty false is dropped"
    );
}

#[test]
fn service_ports_take_int_or_string_target_ports() {
    let body = Msg::new()
        .msg(1, object_meta("web", "default"))
        .msg(
            2,
            Msg::new()
                .msg(
                    1,
                    Msg::new()
                        .str(1, "http")
                        .str(2, "TCP")
                        .int32(3, 80)
                        .msg(4, int_port(8080))
                        .int32(5, 30080),
                )
                .msg(
                    1,
                    Msg::new()
                        .str(1, "https")
                        .str(2, "TCP")
                        .int32(3, 443)
                        .msg(4, named_port("https"))
                        .int32(5, 0),
                )
                .entry(2, "app", "web")
                .str(3, "")
                .str(4, "NodePort"),
        )
        .msg(3, Msg::new().msg(1, Msg::new()))
        .body("v1", "Service");
    let object = decoded(&body);
    assert_eq!(
        object["spec"],
        json!({
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"},
            ],
            "selector": {"app": "web"},
            "type": "NodePort",
        })
    );
    assert_eq!(object["status"], json!({"loadBalancer": {}}));
}

#[test]
fn namespace_decodes_with_times_and_finalizers() {
    let body = Msg::new()
        .msg(
            1,
            object_meta("team1", "")
                .msg(8, Msg::new().int(1, 1_714_979_289).int32(2, 0))
                .str(14, "example.com/cleanup"),
        )
        .msg(2, Msg::new().str(1, "kubernetes"))
        .msg(3, Msg::new().str(1, "Active"))
        .body("v1", "Namespace");
    assert_eq!(
        decoded(&body),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team1",
                "creationTimestamp": "2024-05-06T07:08:09Z",
                "finalizers": ["example.com/cleanup"],
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        })
    );
}

#[test]
fn empty_self_subject_review_has_only_type_meta() {
    assert_eq!(
        decoded(&Msg::new().body("authentication.k8s.io/v1", "SelfSubjectReview")),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    );
}

#[test]
fn eviction_carries_delete_options() {
    let body = Msg::new()
        .msg(1, object_meta("web-1", "default"))
        .msg(
            2,
            Msg::new()
                .int(1, 0)
                .msg(2, Msg::new().str(1, "pod-uid").str(2, "42"))
                .str(4, "Foreground")
                .str(5, "All")
                .bool(6, false),
        )
        .body("policy/v1", "Eviction");
    assert_eq!(
        decoded(&body),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "pod-uid", "resourceVersion": "42"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"],
                "ignoreStoreReadErrorWithClusterBreakingPotential": false,
            },
        })
    );
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let body = Msg::new().int(1, 30).body("apps/v1", "DeleteOptions");
    assert_eq!(
        decoded(&body),
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 30})
    );
}

#[test]
fn micro_times_keep_microseconds_and_times_whole_seconds() {
    let event = Msg::new()
        .msg(1, object_meta("e", "default"))
        .msg(2, Msg::new().int(1, 1_714_979_289).int32(2, 123_456_789))
        .str(7, "Scheduled")
        .msg(
            3,
            Msg::new()
                .int32(1, 2)
                .msg(2, Msg::new().int(1, 1_714_979_290).int32(2, 5_000)),
        )
        .body("events.k8s.io/v1", "Event");
    let object = decoded(&event);
    assert_eq!(object["eventTime"], "2024-05-06T07:08:09.123456Z");
    assert_eq!(
        object["series"],
        json!({"count": 2, "lastObservedTime": "2024-05-06T07:08:10.000005Z"})
    );
    let nanos = Msg::new()
        .msg(
            1,
            object_meta("n", "").msg(9, Msg::new().int(1, 10).int32(2, 999_999_999)),
        )
        .body("v1", "Namespace");
    assert_eq!(
        decode(&nanos).unwrap()["metadata"]["deletionTimestamp"],
        "1970-01-01T00:00:10Z"
    );
}

#[test]
fn raw_json_fields_decode_and_nested_envelopes_unwrap() {
    let managed = Msg::new()
        .str(1, "kubectl")
        .str(2, "Update")
        .str(3, "v1")
        .str(6, "FieldsV1")
        .msg(7, Msg::new().bytes(1, br#"{"f:data":{".":{}}}"#));
    let config_map = Msg::new()
        .msg(1, object_meta("c", "default").msg(17, managed))
        .body("v1", "ConfigMap");
    let object = decoded(&config_map);
    assert_eq!(
        object["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {".": {}}})
    );
    // A ControllerRevision whose data is itself a protobuf object.
    let revision = Msg::new()
        .msg(1, object_meta("r", "default"))
        .msg(2, Msg::new().bytes(1, &config_map))
        .int(3, 7)
        .body("apps/v1", "ControllerRevision");
    let object = decode(&revision).unwrap();
    assert_eq!(object["data"]["kind"], "ConfigMap");
    assert_eq!(object["revision"], 7);
}

#[test]
fn string_lists_and_packed_repeated_ints_decode() {
    let review = Msg::new()
        .msg(
            2,
            Msg::new()
                .str(3, "bob")
                .entry_msg(5, "scopes", Msg::new().str(1, "a").str(1, "b")),
        )
        .body("authorization.k8s.io/v1", "SubjectAccessReview");
    assert_eq!(
        decoded(&review)["spec"],
        json!({"user": "bob", "extra": {"scopes": ["a", "b"]}})
    );
    // podFailurePolicy.rules[0].onExitCodes.values, packed as a proto3 writer would.
    let mut packed = Vec::new();
    prost::encoding::int32::encode_packed(3, &[1, 2, 42], &mut packed);
    let job = Msg::new()
        .msg(
            2,
            Msg::new().msg(
                11,
                Msg::new().msg(
                    1,
                    Msg::new()
                        .str(1, "FailJob")
                        .msg(2, Msg(packed).str(2, "In").int32(3, 7)),
                ),
            ),
        )
        .body("batch/v1", "Job");
    assert_eq!(
        decoded(&job)["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"],
        json!({"operator": "In", "values": [1, 2, 42, 7]})
    );
}

#[test]
fn negative_ints_and_unknown_fields() {
    let body = Msg::new()
        .msg(1, object_meta("p", ""))
        .int32(2, -5)
        .int(99, 1)
        .str(100, "ignored")
        .body("scheduling.k8s.io/v1", "PriorityClass");
    assert_eq!(
        decoded(&body),
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "p"},
            "value": -5,
        })
    );
}

#[test]
fn kinds_map_to_definitions() {
    let table = Table::get();
    let name = |api_version: &str, kind: &str| {
        definition(table, api_version, kind).map(|index| {
            table
                .names()
                .find(|(_, i)| *i == index)
                .map(|(name, _)| name.to_owned())
                .unwrap()
        })
    };
    assert_eq!(name("v1", "Pod").unwrap(), "io.k8s.api.core.v1.Pod");
    assert_eq!(
        name("rbac.authorization.k8s.io/v1", "ClusterRole").unwrap(),
        "io.k8s.api.rbac.v1.ClusterRole"
    );
    assert_eq!(
        name("flowcontrol.apiserver.k8s.io/v1", "FlowSchema").unwrap(),
        "io.k8s.api.flowcontrol.v1.FlowSchema"
    );
    assert_eq!(
        name("autoscaling/v2", "HorizontalPodAutoscaler").unwrap(),
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"
    );
    assert_eq!(
        name("meta.k8s.io/v1", "Status").unwrap(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
    );
    assert_eq!(name("rbac.example.com/v1", "Role"), None);
    assert_eq!(name("example.com/v1", "Widget"), None);
    assert_eq!(name("apps/v1beta1", "Deployment"), None);
    assert_eq!(name("v1", ""), None);
}

#[test]
fn content_types_are_recognised() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/VND.Kubernetes.Protobuf; charset=utf-8"
    ));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf;stream=watch"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf+json"));
    assert!(!is_protobuf(""));
}

#[test]
fn malformed_bodies_are_errors_naming_the_field() {
    let error = |body: &[u8]| decode(body).unwrap_err().to_string();
    assert!(error(b"{\"kind\":\"Pod\"}").contains("magic"));
    assert!(error(b"k8s\0\x0a\x05").contains("length 5 runs past"));
    assert_eq!(
        error(&Msg::new().body("example.com/v1", "Widget")),
        "no protobuf schema is known for kind \"Widget\" in apiVersion \"example.com/v1\""
    );
    let wrong_wire = Msg::new()
        .msg(2, Msg::new().str(1, "three"))
        .body("apps/v1", "Deployment");
    assert_eq!(
        error(&wrong_wire),
        "malformed protobuf at spec.replicas: wire type Len where Varint was expected"
    );
    let bad_container = Msg::new()
        .msg(
            2,
            Msg::new().msg(
                3,
                Msg::new().msg(
                    2,
                    Msg::new().msg(2, Msg::new()).msg(2, Msg::new().int(6, 1)),
                ),
            ),
        )
        .body("apps/v1", "Deployment");
    assert_eq!(
        error(&bad_container),
        "malformed protobuf at spec.template.spec.containers[1].ports[0]: wire type Varint where Len was expected"
    );
    let bad_json = Msg::new()
        .msg(
            1,
            Msg::new().msg(17, Msg::new().msg(7, Msg::new().bytes(1, b"{nope"))),
        )
        .body("v1", "ConfigMap");
    assert!(
        error(&bad_json)
            .starts_with("invalid JSON in raw field at metadata.managedFields[0].fieldsV1")
    );
    let encoded = Msg::new().bytes(2, b"").str(3, "gzip");
    let encoded = [MAGIC, &encoded.0].concat();
    assert!(error(&encoded).contains("content encoding \"gzip\""));
    let bad_time = Msg::new()
        .msg(1, Msg::new().msg(8, Msg::new().int(1, i64::MAX)))
        .body("v1", "ConfigMap");
    assert!(error(&bad_time).contains("outside years 0-9999"));
}

#[test]
fn deeply_nested_raw_extensions_are_refused() {
    let mut body = Msg::new().body("v1", "ConfigMap");
    for _ in 0..100 {
        body = Msg::new()
            .msg(2, Msg::new().bytes(1, &body))
            .body("apps/v1", "ControllerRevision");
    }
    assert!(matches!(decode(&body), Err(Error::TooDeep { .. })));
}

#[test]
fn encode_writes_sorted_maps_and_rejects_bad_values() {
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"b": "2", "a": "1"}},
        "unknownField": true,
    });
    let body = encode(&object).unwrap();
    let expected = Msg::new()
        .msg(
            1,
            Msg::new()
                .str(1, "c")
                .entry(11, "a", "1")
                .entry(11, "b", "2"),
        )
        .body("v1", "ConfigMap");
    assert_eq!(body, expected);
    let error = |object: Value| encode(&object).unwrap_err().to_string();
    assert_eq!(
        error(json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "3"}})),
        "cannot encode at spec.replicas as protobuf: expected an integer"
    );
    assert_eq!(
        error(json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "%%%"}}))
            .split(':')
            .next()
            .unwrap(),
        "cannot encode at data[k] as protobuf"
    );
    assert!(error(json!({"kind": "Pod"})).contains("no apiVersion"));
    assert!(error(json!(["not", "an", "object"])).contains("not a JSON object"));
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/protobuf")
}

fn golden_bodies() -> Vec<(String, Vec<u8>)> {
    let mut bodies: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pb"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    bodies.sort();
    bodies
}

/// Every body kubectl 1.32/1.33 sent (see tests/data/protobuf/README.md) decodes to the object
/// kubectl prints for the same command with `--dry-run=client -o json` (its `null`s dropped),
/// or, for requests that have no dry run, to the reviewed JSON beside it.
#[test]
fn kubectl_request_bodies_decode_to_their_json() {
    let bodies = golden_bodies();
    assert!(bodies.len() >= 20, "{} golden bodies", bodies.len());
    let mut failures = Vec::new();
    for (name, body) in bodies {
        let object = decoded(&body);
        let expected = std::fs::read(golden_dir().join(format!("{name}.json")))
            .ok()
            .and_then(|text| serde_json::from_slice::<Value>(&text).ok());
        if expected.as_ref() != Some(&object) {
            failures.push(format!(
                "{name}.pb decodes to\n{}",
                serde_json::to_string_pretty(&object).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The JSON names of the fields an inline message contributes to its parent.
fn inline_names(table: &Table, kind: Kind) -> Vec<&'static str> {
    match kind {
        Kind::Message(index) => inline_names_of(table, index),
        _ => Vec::new(),
    }
}

/// The JSON names of message `index`, with those of its inline messages.
fn inline_names_of(table: &Table, index: usize) -> Vec<&'static str> {
    table
        .message(index)
        .fields
        .iter()
        .flat_map(|field| {
            if field.inline {
                inline_names(table, field.kind)
            } else {
                vec![field.name]
            }
        })
        .collect()
}

/// Each field of the table is a property of the k8s-openapi schema of its message, with a
/// matching JSON type; this catches transcription slips in names and kinds.
#[test]
fn field_table_agrees_with_the_openapi_schemas() {
    use crate::apiserver::patch::Schemas;
    let schemas = Schemas::built_in();
    let table = Table::get();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, index) in table.names() {
        let Some(schema) = schemas.get(name) else {
            continue;
        };
        let properties = &schema["properties"];
        for field in &table.message(index).fields {
            if field.inline {
                // The embedded message's fields (and theirs, when embedded again) sit in this
                // schema instead.
                for inner in inline_names(table, field.kind) {
                    if properties.get(inner).is_none() {
                        problems.push(format!("{name}: inline {inner} is not in the schema"));
                    }
                }
                continue;
            }
            let Some(property) = properties.get(field.name) else {
                problems.push(format!("{name}.{} is not in the schema", field.name));
                continue;
            };
            let (_, property) = schemas.resolve(property);
            let property = property.unwrap_or(&Value::Null);
            let json_type = property["type"].as_str().unwrap_or("");
            let expected = match field.shape {
                Shape::Repeated => "array",
                Shape::Map => "object",
                Shape::Single => match field.kind {
                    Kind::String | Kind::Bytes | Kind::Time | Kind::MicroTime => "string",
                    Kind::Duration => "string",
                    Kind::Int => "integer",
                    Kind::Bool => "boolean",
                    Kind::StringList => "array",
                    Kind::Message(_) => "object",
                    Kind::IntOrString | Kind::Json | Kind::Quantity => json_type,
                },
            };
            // Quantity's and IntOrString's schemas carry no type; RawExtension and FieldsV1 are
            // objects or any JSON.
            if json_type != expected {
                problems.push(format!(
                    "{name}.{}: table says {expected}, schema says {json_type:?}",
                    field.name
                ));
            }
            if field.shape == Shape::Single
                && field.kind == Kind::Bytes
                && property["format"] != "byte"
            {
                problems.push(format!("{name}.{}: bytes without format byte", field.name));
            }
            checked += 1;
        }
        // And the other way round: every property but the type meta has a field number.
        let names = inline_names_of(table, index);
        for property in properties.as_object().into_iter().flat_map(|p| p.keys()) {
            if property != "apiVersion" && property != "kind" && !names.contains(&property.as_str())
            {
                problems.push(format!("{name}.{property} has no field number"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 1500, "only {checked} fields checked");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = decode(&[MAGIC, &bytes].concat());
    }

    #[test]
    fn random_messages_of_real_kinds_never_panic(
        kind in prop::sample::select(vec![
            ("v1", "Pod"), ("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
            ("policy/v1", "Eviction"), ("authorization.k8s.io/v1", "SubjectAccessReview"),
            ("events.k8s.io/v1", "Event"), ("apps/v1", "ControllerRevision"),
        ]),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let body = Msg(bytes).body(kind.0, kind.1);
        if let Ok(object) = decode(&body) {
            // Anything that decodes can be encoded again.
            prop_assert!(encode(&object).is_ok());
        }
    }

    #[test]
    fn corrupted_kubectl_bodies_never_panic(
        index in 0usize..20,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let bodies = golden_bodies();
        let (_, mut body) = bodies[index % bodies.len()].clone();
        for (at, byte) in flips {
            let at = at.index(body.len());
            body[at] = byte;
        }
        let _ = decode(&body);
    }
}
