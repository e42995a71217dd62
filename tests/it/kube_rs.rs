//! kube-rs (the Rust client) against `rk3s server` over HTTPS with the kubeconfig rk3s writes:
//! typed CRUD, and the watcher/reflector machinery controllers are built on, including
//! pagination and the re-list a 410 Gone forces.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};

use crate::support::{Process, etcdctl, have_etcdctl};

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("client")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"suite": "kube-rs"}},
        "data": {"v": value},
    }))
    .unwrap()
}

#[test]
fn typed_crud_and_a_watcher_that_pages_and_relists_after_410() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Process::server(dir.path(), &[]);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = client(&kubeconfig).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        for i in 0..25 {
            cms.create(&PostParams::default(), &configmap(&format!("cm-{i:02}"), "0"))
                .await
                .unwrap();
        }
        // Pagination: 25 objects in pages of 10, one consistent resourceVersion.
        let page = cms.list(&ListParams::default().limit(10)).await.unwrap();
        assert_eq!(page.items.len(), 10);
        let token = page.metadata.continue_.clone().expect("a continue token");
        let rv = page.metadata.resource_version.clone();
        let page2 = cms
            .list(&ListParams::default().limit(10).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(page2.items.len(), 10);
        assert_eq!(page2.metadata.resource_version, rv);
        assert_eq!(page2.items[0].metadata.name.as_deref(), Some("cm-10"));

        // Optimistic concurrency: a stale update is a 409.
        let mut first = cms.get("cm-00").await.unwrap();
        let mut stale = first.clone();
        first.data = Some([("v".to_string(), "1".to_string())].into());
        cms.replace("cm-00", &PostParams::default(), &first).await.unwrap();
        stale.data = Some([("v".to_string(), "2".to_string())].into());
        let err = cms
            .replace("cm-00", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => assert_eq!(s.code, 409, "{s:?}"),
            other => panic!("expected a 409, got {other:?}"),
        }

        // A watcher with small pages and short watches (so it resumes often).
        let cfg = watcher::Config::default()
            .labels("suite=kube-rs")
            .page_size(10)
            .timeout(1);
        let mut events = watcher::watcher(cms.clone(), cfg).boxed();
        let mut inits = 0;
        let mut listed = 0;
        // The first list: Init, 25 InitApply (over 3 pages), InitDone.
        loop {
            match tokio::time::timeout(Duration::from_secs(20), events.next())
                .await
                .expect("watcher event")
                .expect("stream open")
                .expect("watcher ok")
            {
                Event::Init => inits += 1,
                Event::InitApply(_) => listed += 1,
                Event::InitDone => break,
                e => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((inits, listed), (1, 25));
        cms.create(&PostParams::default(), &configmap("cm-new", "0"))
            .await
            .unwrap();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(20), events.next())
                .await
                .expect("watcher event")
                .expect("stream open")
                .expect("watcher ok");
            if let Event::Apply(cm) = e {
                assert_eq!(cm.metadata.name.as_deref(), Some("cm-new"));
                break;
            }
        }
        // Move the store on with other kinds, then compact past the watcher's position: its
        // next resume gets 410 Gone and it must list again.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        for i in 0..5 {
            let s: Secret = serde_json::from_value(
                serde_json::json!({"metadata": {"name": format!("s{i}")}, "stringData": {"a": "b"}}),
            )
            .unwrap();
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        let status = etcdctl(&server.endpoint, &["endpoint", "status", "-w", "json"], None);
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let revision = v[0]["Status"]["header"]["revision"].as_i64().unwrap();
        let out = etcdctl(&server.endpoint, &["compaction", &revision.to_string()], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The open watch ends within a second and resumes below the compaction: 410, Init.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let e = tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("the watcher re-lists after 410 Gone")
                .expect("stream open");
            // The 410 itself surfaces as an error first.
            if let Ok(Event::Init) = e {
                break;
            }
        }
        let mut relisted = 0;
        loop {
            match tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("the re-list completes")
                .expect("stream open")
                .expect("watcher ok")
            {
                Event::InitApply(_) => relisted += 1,
                Event::InitDone => break,
                e => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(relisted, 26, "the re-list has every object");
        cms.delete("cm-01", &DeleteParams::default()).await.unwrap();
        loop {
            let e = tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("the delete is seen")
                .expect("stream open");
            if let Ok(Event::Delete(cm)) = e {
                assert_eq!(cm.metadata.name.as_deref(), Some("cm-01"));
                break;
            }
        }
        let names: Vec<String> = cms
            .list(&ListParams::default().labels("suite=kube-rs"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert_eq!(names.len(), 25);
        assert!(!names.contains(&"cm-01".to_string()));
    });
}
