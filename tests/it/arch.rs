//! The module-import invariants of ARCHITECTURE.md, checked on the source tree.

use std::collections::BTreeMap;
use std::path::Path;

/// Which top-level modules each module may name with `crate::`.
fn allowed(module: &str) -> &'static [&'static str] {
    match module {
        // Composition roots wire everything together.
        "cli" | "server" | "agent" => &["*"],
        // Only the API server touches the store. `quota` is a pure library (upstream's
        // pkg/quota/v1) that quota admission and the quota controller share.
        "apiserver" => &["store", "data_dir", "pki", "quota"],
        "controllers" => &["data_dir", "quota"],
        // The kubelet drives the pod network through its seam (`network::HostNetwork`); it
        // sums pod requests and limits with the pure `quota` library (its eviction ranking, as
        // upstream's kubelet uses the shared resource helpers).
        "kubelet" => &["data_dir", "network", "quota"],
        // The node's service components drive host networking through its adapters.
        "proxy" | "dns" | "netpol" => &["data_dir", "network"],
        // Everything else: data_dir only (components never import each other).
        _ => &["data_dir"],
    }
}

/// `crate::<module>` references in `src/<module>/**` that the table does not allow.
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let module = path
            .trim_start_matches("src/")
            .split(['/', '.'])
            .next()
            .unwrap_or_default()
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let ok = allowed(&module);
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(pos) = rest.find("crate::") {
                rest = &rest[pos + 7..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `use crate::{a, b}` groups name several modules.
                let targets: Vec<String> = if target.is_empty() && rest.starts_with('{') {
                    rest[1..]
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(|t| t.trim().split("::").next().unwrap_or_default().to_string())
                        .collect()
                } else {
                    vec![target]
                };
                for t in targets {
                    if t.is_empty() || t == module || ok.contains(&"*") || ok.contains(&t.as_str())
                    {
                        continue;
                    }
                    out.push(format!("{path}:{}: {module} uses crate::{t}", i + 1));
                }
            }
        }
    }
    out
}

fn read_tree(dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .display()
                .to_string();
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn components_only_import_what_the_architecture_allows() {
    let mut files = BTreeMap::new();
    read_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 5, "the source tree was not found");
    let v = violations(&files);
    assert!(v.is_empty(), "import invariants broken:\n{}", v.join("\n"));
}

#[test]
fn the_checker_catches_a_forbidden_import() {
    let files = BTreeMap::from([
        (
            "src/store/x.rs".to_string(),
            "use crate::cli::Config;\nuse crate::data_dir::DataDir;\n".to_string(),
        ),
        (
            "src/proxy/y.rs".to_string(),
            "use crate::{store, data_dir};\n".to_string(),
        ),
        (
            "src/apiserver/z.rs".to_string(),
            "use crate::store::Store;\n".to_string(),
        ),
    ]);
    assert_eq!(
        violations(&files),
        vec![
            "src/proxy/y.rs:1: proxy uses crate::store".to_string(),
            "src/store/x.rs:1: store uses crate::cli".to_string(),
        ]
    );
}
