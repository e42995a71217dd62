//! Airgap images end to end: tarballs in `<data-dir>/agent/images/` are imported when the
//! server's kubelet starts, with no registry anywhere, and pods with `imagePullPolicy: Never`
//! run from them. Root only, one at a time with the node tests (nextest group `node`).

use crate::kubectl::Cluster;
use crate::node::{NODE, is_root, phase, wait_node_ready, wait_pod};
use crate::support::registry::{TestImage, docker_archive, gzip, oci_layout, zstd};

const FROM_DOCKER: &str = "rk3s.invalid/airgap/busybox:docker";
const FROM_OCI: &str = "rk3s.invalid/airgap/busybox:oci";

#[test]
fn airgap_tarballs_run_pods_without_a_registry_kubectl_1_33() {
    if !is_root() {
        if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
            panic!("the airgap node test needs root and RK3S_TESTS_STRICT=1");
        }
        println!("SKIP: the airgap node test needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    let busybox = TestImage::busybox();
    std::fs::write(
        images.join("busybox-docker.tar.zst"),
        zstd(&docker_archive(&[FROM_DOCKER], &busybox, false)),
    )
    .unwrap();
    std::fs::write(
        images.join("busybox-oci.tar.gz"),
        gzip(&oci_layout(FROM_OCI, &busybox, None)),
    )
    .unwrap();
    std::fs::write(images.join("broken.tar"), b"not a tarball").unwrap();
    // The host name `rk3s.invalid` cannot resolve: any pull attempt would fail.
    let Some(mut c) =
        Cluster::start_in(33, dir, &["--enable-agent", &format!("--node-name={NODE}")])
    else {
        return;
    };
    wait_node_ready(&c);
    let log = c.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("Error encountered while importing") && l.contains("broken.tar")),
        "the corrupt tarball is reported:\n{log}"
    );

    let id = format!(
        "sha256:{}",
        crate::support::registry::hex_of(&busybox.config)
    );
    for (pod, image) in [("from-docker", FROM_DOCKER), ("from-oci", FROM_OCI)] {
        c.ok(&[
            "run",
            pod,
            &format!("--image={image}"),
            "--image-pull-policy=Never",
            "--",
            "sh",
            "-c",
            "echo ran; sleep 3600",
        ]);
        let v = wait_pod(&c, pod, "Running", |v| phase(v) == "Running");
        let cs = &v["status"]["containerStatuses"][0];
        // Imported images have no registry digest: the image id stands in, as with containerd.
        assert_eq!(cs["imageID"], id.as_str(), "{cs}");
        assert_eq!(cs["image"], image, "{cs}");
    }
    let node = c.json(&["get", "node", NODE]);
    let names: Vec<String> = node["status"]["images"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    for image in [FROM_DOCKER, FROM_OCI] {
        assert!(names.iter().any(|n| n == image), "{names:?}");
    }

    // After a restart the good tarballs are not imported again; the broken one is retried.
    c.kill9_and_restart();
    wait_node_ready(&c);
    let log = c.server_log();
    assert!(
        !log.contains("busybox-docker.tar.zst") && !log.contains("busybox-oci.tar.gz"),
        "imported tarballs are not imported again:\n{log}"
    );
    assert!(log.contains("broken.tar"), "{log}");
    let v = wait_pod(&c, "from-oci", "Running", |v| phase(v) == "Running");
    assert_eq!(v["status"]["containerStatuses"][0]["restartCount"], 0);

    // The CLI sees the kubelet's images, and refuses to remove one a container uses.
    let data_dir = format!("--data-dir={}", c.data_dir().display());
    let out = crate::support::rk3s(c.data_dir(), &[&data_dir, "images", "rm", FROM_DOCKER]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use"), "{err}");

    c.ok(&[
        "delete",
        "pod",
        "from-docker",
        "from-oci",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}
