//! End-to-end tests of the image service against a real registry (Debian's docker-registry on
//! loopback, see `tests/it/support/registry.rs`): pull, content store, snapshots, overlay rootfs.

#[path = "../../../tests/it/support/registry.rs"]
mod registry;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::*;
use registry::{
    Layer, PASSWORD, Registry, TestImage, USERNAME, docker_archive, hex_of, oci_layout,
    oci_manifest, tar_of,
};

/// Root is needed for chown/mknod while unpacking and for mounting overlays.
fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
        panic!("image tests need root and RK3S_TESTS_STRICT=1");
    }
    println!("SKIP: image tests need root (chown, mknod, mount)");
    false
}

/// Unmounts a container rootfs even when the test fails half-way.
struct Rootfs<'a>(&'a Path);

impl Drop for Rootfs<'_> {
    fn drop(&mut self) {
        let _ = ImageService::unmount_rootfs(self.0);
    }
}

fn setup() -> Option<(tempfile::TempDir, Registry, ImageService)> {
    if !is_root() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(tmp.path())?;
    let service = ImageService::open(&tmp.path().join("agent"), Registries::empty()).unwrap();
    Some((tmp, registry, service))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_is_pulled_mounted_and_runs() {
    let Some((tmp, registry, service)) = setup() else {
        return;
    };
    let reference = registry.push_busybox("busybox:1");
    assert_eq!(reference, format!("{}/busybox:1", registry.addr));

    let image = service
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(image.reference, reference);
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert!(image.config.entrypoint.is_empty());
    assert_eq!(
        image.config.env,
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    assert!(digest_hex(&image.id).is_some(), "{}", image.id);
    let (repo, digest) = image.repo_digest.split_once('@').unwrap();
    assert_eq!(repo, format!("{}/busybox", registry.addr));
    assert!(digest_hex(digest).is_some());
    assert!(image.size > 100_000, "{}", image.size);
    assert_eq!(image.layers().len(), 1);

    // The blobs are in the content store, named by digest.
    let blob = tmp
        .path()
        .join("agent/content/blobs/sha256")
        .join(image.id.trim_start_matches("sha256:"));
    assert!(blob.exists());

    assert_eq!(service.get("127.0.0.1:1/other:1").map(|i| i.id), None);
    assert_eq!(service.get(&reference).unwrap().id, image.id);
    assert_eq!(service.list().len(), 1);

    let dir = tmp.path().join("containers/c1");
    let _guard = Rootfs(&dir);
    let rootfs = service.mount_rootfs(&image, &dir).unwrap();
    assert_eq!(rootfs, dir.join("rootfs"));
    // A second mount is a no-op.
    assert_eq!(service.mount_rootfs(&image, &dir).unwrap(), rootfs);
    let meta = std::fs::symlink_metadata(rootfs.join("tmp")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    let root = rootfs.clone();
    let mut cmd = Command::new("/bin/busybox");
    cmd.args(["echo", "hi"]);
    // SAFETY: chroot and chdir are async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi\n");

    // Writes land in the upper directory, never in the shared snapshot.
    std::fs::write(rootfs.join("etc/hostname"), "c1").unwrap();
    assert!(dir.join("upper/etc/hostname").exists());
    assert!(!image.layers()[0].join("etc/hostname").exists());

    ImageService::unmount_rootfs(&dir).unwrap();
    assert!(!dir.exists());
    ImageService::unmount_rootfs(&dir).unwrap();

    // Metadata survives a restart.
    drop(service);
    let again = ImageService::open(&tmp.path().join("agent"), Registries::empty()).unwrap();
    let found = again.get(&reference).unwrap();
    assert_eq!(found.id, image.id);
    assert_eq!(found.layers(), image.layers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_not_present_does_not_contact_the_registry_again() {
    let Some((_tmp, registry, service)) = setup() else {
        return;
    };
    let reference = registry.push_busybox("busybox:2");
    // Concurrent callers share one pull.
    let (a, b) = tokio::join!(
        service.ensure(&reference, PullPolicy::Always, &[]),
        service.ensure(&reference, PullPolicy::Always, &[]),
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    assert_eq!(lock(&service.inner.meta).snapshots.len(), 1);

    registry.stop();
    let image = service
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(image.config.cmd, vec!["sh"]);
    service
        .ensure(&reference, PullPolicy::Never, &[])
        .await
        .unwrap();
    let err = service
        .ensure(&reference, PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason, "ErrImagePull");
    assert!(err.message.contains("connect"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_invalid_images_fail_like_the_kubelet() {
    let Some((_tmp, registry, service)) = setup() else {
        return;
    };
    let nope = format!("{}/nope:1", registry.addr);
    let err = service
        .ensure(&nope, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason, "ErrImagePull");
    assert!(
        err.message
            .starts_with(&format!("Failed to pull image \"{nope}\": ")),
        "{}",
        err.message
    );
    assert!(err.message.contains("not found"), "{}", err.message);
    // The registry's own words are kept.
    assert!(err.message.contains("manifest unknown"), "{}", err.message);

    let err = service
        .ensure(&nope, PullPolicy::Never, &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason, "ErrImageNeverPull");
    assert_eq!(
        err.message,
        format!("Container image \"{nope}\" is not present with pull policy of Never")
    );

    let err = service
        .ensure("Bad Name", PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason, "InvalidImageName");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_hide_lower_layer_files_in_the_rootfs() {
    let Some((tmp, registry, service)) = setup() else {
        return;
    };
    let base = Layer::new()
        .dir("etc", 0o755)
        .file("etc/a", 0o644, b"a")
        .file("etc/b", 0o644, b"b")
        .dir("opt", 0o755)
        .file("opt/x", 0o644, b"x")
        .finish();
    let top = Layer::new()
        .dir("etc", 0o755)
        .file("etc/.wh.a", 0o644, b"")
        .dir("opt", 0o755)
        .file("opt/.wh..wh..opq", 0o644, b"")
        .file("opt/y", 0o644, b"y")
        .finish();
    let reference = registry.push_image(
        "wh:1",
        vec![base, top],
        serde_json::json!({"config": {"Entrypoint": ["/bin/x"], "WorkingDir": "/opt", "User": "65534"}}),
    );
    let image = service
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(image.config.entrypoint, vec!["/bin/x"]);
    assert_eq!(image.config.working_dir, "/opt");
    assert_eq!(image.config.user, "65534");
    assert_eq!(image.layers().len(), 2);

    let dir = tmp.path().join("containers/wh");
    let _guard = Rootfs(&dir);
    let rootfs = service.mount_rootfs(&image, &dir).unwrap();
    assert!(!rootfs.join("etc/a").exists());
    assert_eq!(std::fs::read(rootfs.join("etc/b")).unwrap(), b"b");
    assert!(!rootfs.join("opt/x").exists());
    assert_eq!(std::fs::read(rootfs.join("opt/y")).unwrap(), b"y");
    assert!(!rootfs.join("opt/.wh..wh..opq").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_layer_stays_inside_its_snapshot() {
    let Some((tmp, registry, service)) = setup() else {
        return;
    };
    // `tar::Builder` refuses `..`, so the hostile names are written into the header directly.
    let mut b = tar::Builder::new(Vec::new());
    for (kind, name, link) in [
        (tar::EntryType::Regular, "../../escape", ""),
        (tar::EntryType::Symlink, "up", "../../../.."),
        (tar::EntryType::Regular, "up/escape2", ""),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    let reference = registry.push_image(
        "evil:1",
        vec![b.into_inner().unwrap()],
        serde_json::json!({}),
    );
    let image = service
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    let fs = &image.layers()[0];
    assert!(fs.join("escape").exists());
    assert!(fs.join("escape2").exists());
    for outside in [
        tmp.path().join("escape"),
        tmp.path().join("agent/escape"),
        tmp.path().join("agent/snapshots/escape"),
        tmp.path().join("escape2"),
        tmp.path().join("agent/escape2"),
    ] {
        assert!(!outside.exists(), "{}", outside.display());
    }
}

#[test]
fn chain_ids_follow_the_image_spec() {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let ids = chain_ids(&[d('a'), d('b')]);
    assert_eq!(ids[0], d('a'));
    let want = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{} {}", d('a'), d('b')).as_bytes(),
    );
    assert_eq!(ids[1], format!("sha256:{}", unpack::hex(want.as_ref())));
    assert!(digest_hex("sha256:../../etc").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_comes_from_pull_secrets_or_registries_yaml() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start_with_auth(tmp.path()) else {
        return;
    };
    let reference = registry.push_busybox("private:1");

    let anonymous = ImageService::open(&tmp.path().join("a1"), Registries::empty()).unwrap();
    let err = anonymous
        .ensure(&reference, PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason, "ErrImagePull");
    assert!(
        err.message.contains("pull access denied"),
        "{}",
        err.message
    );

    let secret = Credential {
        registry: format!("http://{}/", registry.addr),
        username: USERNAME.to_string(),
        password: PASSWORD.to_string(),
    };
    let image = anonymous
        .ensure(&reference, PullPolicy::Always, &[secret])
        .await
        .unwrap();
    assert_eq!(image.config.cmd, vec!["sh"]);

    let yaml = format!(
        "configs:\n  \"{}\":\n    auth:\n      username: {USERNAME}\n      password: {PASSWORD}\n",
        registry.addr
    );
    let configured =
        ImageService::open(&tmp.path().join("a2"), Registries::parse(&yaml).unwrap()).unwrap();
    configured
        .ensure(&reference, PullPolicy::Always, &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_with_rewrites() {
    let Some((tmp, registry, _)) = setup() else {
        return;
    };
    registry.push_busybox("mirrored/busybox:m");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The first endpoint refuses connections; the second serves `library/x` as `mirrored/x`.
    let yaml = format!(
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{dead}\"\n      - \"http://{}\"\n    rewrite:\n      \"^library/(.*)\": \"mirrored/$1\"\n",
        registry.addr
    );
    let service =
        ImageService::open(&tmp.path().join("m"), Registries::parse(&yaml).unwrap()).unwrap();
    let image = service
        .ensure("busybox:m", PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(image.reference, "docker.io/library/busybox:m");
    assert!(
        image
            .repo_digest
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        image.repo_digest
    );
    assert_eq!(service.get("busybox:m").unwrap().id, image.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_index_resolves_to_this_machines_platform() {
    let Some((_tmp, registry, service)) = setup() else {
        return;
    };
    let native = registry.push_busybox("multi:native");
    let other_arch = if registry::goarch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    };
    let other = registry.push_image(
        "multi:other",
        vec![Layer::new().file("other", 0o644, b"x").finish()],
        serde_json::json!({"architecture": other_arch, "config": {"Cmd": ["other"]}}),
    );
    let addr = registry.addr.clone();
    let index_ref = format!("{addr}/multi:index");
    let target: Reference = index_ref.parse().unwrap();
    let (arch, variant) = platform::host();
    let native_ref = native.clone();
    let index = tokio::spawn(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let mut entries = Vec::new();
        for (r, arch, variant) in [(&other, other_arch, None), (&native_ref, arch, variant)] {
            let r: Reference = r.parse().unwrap();
            let (raw, digest) = client
                .pull_manifest_raw(
                    &r,
                    &RegistryAuth::Anonymous,
                    &["application/vnd.oci.image.manifest.v1+json"],
                )
                .await
                .unwrap();
            entries.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": raw.len(),
                "platform": {"os": "linux", "architecture": arch, "variant": variant},
            }));
        }
        let index: oci_client::manifest::OciImageIndex =
            serde_json::from_value(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }))
            .unwrap();
        client
            .push_manifest_list(&target, &RegistryAuth::Anonymous, index)
            .await
            .unwrap()
    })
    .await
    .unwrap();
    let image = service
        .ensure(&index_ref, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(image.config.cmd, vec!["sh"]);
    // The repo digest names the index (not the platform manifest), as containerd reports it.
    assert!(index.contains("multi"), "{index}");
    let native_image = service
        .ensure(&native, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(native_image.id, image.id);
    assert_ne!(native_image.repo_digest, image.repo_digest);
}

// ---- Airgap import (docker-archive and OCI layout tarballs), removal and garbage collection.

/// How a test archive is compressed as a whole.
#[derive(Clone, Copy, Debug)]
enum Packing {
    Tar,
    Gzip,
    Zstd,
}

fn pack(tar: Vec<u8>, packing: Packing) -> Vec<u8> {
    match packing {
        Packing::Tar => tar,
        Packing::Gzip => registry::gzip(&tar),
        Packing::Zstd => registry::zstd(&tar),
    }
}

/// A small image: a base layer, a top layer, and its config.
fn test_image(word: &str) -> TestImage {
    let base = Layer::new()
        .dir("etc", 0o755)
        .file("etc/base", 0o644, b"shared base")
        .finish();
    let top = Layer::new()
        .dir("srv", 0o755)
        .file("srv/word", 0o644, word.as_bytes())
        .finish();
    TestImage::new(
        vec![base, top],
        serde_json::json!({"config": {"Cmd": ["echo", word], "Env": ["WORD=1"]}}),
    )
}

fn import_setup() -> Option<(tempfile::TempDir, ImageService)> {
    if !is_root() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let service = ImageService::open(&tmp.path().join("agent"), Registries::empty()).unwrap();
    Some((tmp, service))
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// Nothing of a failed import is left: no image, no snapshot, no staged file.
fn assert_empty_store(tmp: &Path, service: &ImageService) {
    assert!(service.list().is_empty());
    let agent = tmp.join("agent");
    for dir in ["snapshots", "content/ingest"] {
        let left: Vec<_> = std::fs::read_dir(agent.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    assert!(lock(&service.inner.meta).snapshots.is_empty());
}

#[test]
fn both_archive_formats_import_in_every_compression() {
    let Some((tmp, _)) = import_setup() else {
        return;
    };
    let image = test_image("hello");
    let id = registry::sha256(&image.config);
    for packing in [Packing::Tar, Packing::Gzip, Packing::Zstd] {
        for (format, tar, reference) in [
            (
                "docker",
                docker_archive(&["hello:1"], &image, false),
                "docker.io/library/hello:1",
            ),
            (
                "docker-gzip-layers",
                docker_archive(&["example.com/team/hello:2"], &image, true),
                "example.com/team/hello:2",
            ),
            (
                "oci",
                oci_layout("docker.io/library/hello:3", &image, None),
                "docker.io/library/hello:3",
            ),
        ] {
            let what = format!("{format} {packing:?}");
            let root = tmp.path().join(&what);
            let service = ImageService::open(&root, Registries::empty()).unwrap();
            // The file name says nothing: the format is told by the bytes.
            let file = write(tmp.path(), &format!("{what}.bin"), &pack(tar, packing));
            let images = service
                .import(&file)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(images.len(), 1, "{what}");
            let got = service.get(reference).unwrap_or_else(|| panic!("{what}"));
            assert_eq!(got.id, id, "{what}");
            // No registry digest: containerd reports the image id as the imageID.
            assert_eq!(got.repo_digest, id, "{what}");
            assert_eq!(got.config.cmd, vec!["echo", "hello"], "{what}");
            assert_eq!(got.config.env, vec!["WORD=1"], "{what}");
            assert_eq!(got.layers().len(), 2, "{what}");
            assert_eq!(
                std::fs::read(got.layers()[1].join("srv/word")).unwrap(),
                b"hello"
            );
            assert!(got.size > 0, "{what}");
            let config_blob = root
                .join("content/blobs/sha256")
                .join(id.trim_start_matches("sha256:"));
            assert_eq!(std::fs::read(config_blob).unwrap(), image.config, "{what}");
            assert!(
                std::fs::read_dir(root.join("content/ingest"))
                    .unwrap()
                    .next()
                    .is_none(),
                "{what}: the staging directory is removed"
            );
        }
    }
}

#[test]
fn a_multi_arch_index_imports_this_machines_image_and_shares_layers() {
    let Some((_tmp, service)) = import_setup() else {
        return;
    };
    let image = test_image("native");
    let other_arch = if registry::goarch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    };
    let file = write(
        _tmp.path(),
        "multi.tar.gz",
        &pack(
            oci_layout(
                "multi:1",
                &image,
                Some((other_arch, &test_image("other-arch"))),
            ),
            Packing::Gzip,
        ),
    );
    let images = service.import(&file).unwrap();
    assert_eq!(images[0].reference, "docker.io/library/multi:1");
    assert_eq!(images[0].config.cmd, vec!["echo", "native"]);
    // A second image with the same base layer reuses its snapshot.
    let other = write(
        _tmp.path(),
        "other.tar",
        &docker_archive(&["other:1"], &test_image("second"), false),
    );
    service.import(&other).unwrap();
    let a = service.get("multi:1").unwrap();
    let b = service.get("other:1").unwrap();
    assert_eq!(a.layers()[0], b.layers()[0]);
    assert_ne!(a.layers()[1], b.layers()[1]);
    assert_eq!(lock(&service.inner.meta).snapshots.len(), 3);
}

#[test]
fn corrupt_and_truncated_archives_record_nothing() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let good = docker_archive(&["x:1"], &test_image("x"), false);
    let gz = registry::gzip(&good);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not a tarball at all, not even close".repeat(20),
            "reading the archive",
        ),
        ("empty", Vec::new(), "holds no files"),
        (
            "truncated-tar",
            good[..good.len() / 2].to_vec(),
            "truncated|reading the archive",
        ),
        ("truncated-gzip", gz[..gz.len() / 2].to_vec(), "reading"),
        (
            "zstd-garbage",
            [&[0x28, 0xb5, 0x2f, 0xfd][..], &[7u8; 64]].concat(),
            "reading",
        ),
        (
            "xz",
            vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2],
            "not supported",
        ),
        (
            "no-manifest",
            tar_of(&[("hello.txt".into(), b"hi".to_vec())]),
            "not an image archive",
        ),
    ];
    for (name, data, want) in cases {
        let file = write(tmp.path(), name, &data);
        let err = service.import(&file).unwrap_err().to_string();
        assert!(want.split('|').any(|w| err.contains(w)), "{name}: {err}");
        assert!(err.contains(&file.display().to_string()), "{name}: {err}");
        assert_empty_store(tmp.path(), &service);
    }
}

#[test]
fn blobs_and_layers_with_bad_digests_are_refused() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let image = test_image("y");
    // An OCI blob whose content does not hash to its name.
    let mut files = vec![];
    let mut blobs = vec![];
    let desc = oci_manifest(&image, &mut blobs);
    let bad_name = blobs[0].0.clone();
    blobs[0].1.push(b'!');
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
        "annotations": {"io.containerd.image.name": "docker.io/library/y:1"},
    }]});
    files.push((
        "index.json".to_string(),
        serde_json::to_vec(&index).unwrap(),
    ));
    files.extend(blobs);
    let file = write(tmp.path(), "bad-blob.tar", &tar_of(&files));
    let err = service.import(&file).unwrap_err().to_string();
    assert!(
        err.contains(&bad_name) && err.contains("does not match"),
        "{err}"
    );
    assert_empty_store(tmp.path(), &service);

    // A docker-archive whose second layer is not the one its config names: the first layer's
    // snapshot, already made, is removed again.
    let mut wrong = test_image("y");
    wrong.layers[1] = Layer::new().file("evil", 0o644, b"swapped").finish();
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["rootfs"]["diff_ids"][1] = registry::sha256(&image.layers[1]).into();
    wrong.config = serde_json::to_vec(&config).unwrap();
    let file = write(
        tmp.path(),
        "bad-layer.tar",
        &docker_archive(&["y:1"], &wrong, false),
    );
    let err = service.import(&file).unwrap_err().to_string();
    assert!(err.contains("uncompressed layer digest"), "{err}");
    assert_empty_store(tmp.path(), &service);

    // A config whose name is not its digest.
    let renamed = format!("{}.json", "0".repeat(64));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": renamed, "RepoTags": ["y:1"], "Layers": ["l0.tar", "l1.tar"],
    }]))
    .unwrap();
    let tar = tar_of(&[
        (renamed.clone(), image.config.clone()),
        ("l0.tar".into(), image.layers[0].clone()),
        ("l1.tar".into(), image.layers[1].clone()),
        ("manifest.json".into(), manifest),
    ]);
    let file = write(tmp.path(), "bad-config.tar", &tar);
    let err = service.import(&file).unwrap_err().to_string();
    assert!(err.contains("does not match its name"), "{err}");
    assert_empty_store(tmp.path(), &service);
}

#[test]
fn path_traversal_in_archives_is_refused() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    // `tar::Builder` refuses `..`, so the names are written into the headers directly.
    let raw = |entries: &[(tar::EntryType, &str, &str, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, name, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let escape = raw(&[(tar::EntryType::Regular, "../../escaped", "", b"x")]);
    let file = write(tmp.path(), "escape.tar", &escape);
    let err = service.import(&file).unwrap_err().to_string();
    assert!(err.contains("points outside the archive"), "{err}");

    let link = raw(&[(
        tar::EntryType::Symlink,
        "manifest.json",
        "../../etc/passwd",
        b"",
    )]);
    let file = write(tmp.path(), "link.tar", &link);
    let err = service.import(&file).unwrap_err().to_string();
    assert!(err.contains("points outside the archive"), "{err}");

    // A manifest naming a layer outside the archive.
    let image = test_image("z");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{}.json", hex_of(&image.config)),
        "RepoTags": ["z:1"],
        "Layers": ["../../../etc/passwd", "x"],
    }]))
    .unwrap();
    let tar = tar_of(&[
        (
            format!("{}.json", hex_of(&image.config)),
            image.config.clone(),
        ),
        ("manifest.json".into(), manifest),
    ]);
    let file = write(tmp.path(), "outside-layer.tar", &tar);
    let err = service.import(&file).unwrap_err().to_string();
    assert!(err.contains("points outside the archive"), "{err}");

    assert!(!tmp.path().join("escaped").exists());
    assert!(!tmp.path().join("agent/escaped").exists());
    assert!(!tmp.path().join("agent/content/escaped").exists());
    assert_empty_store(tmp.path(), &service);
}

#[test]
fn the_airgap_directory_is_imported_once_and_a_bad_file_does_not_stop_the_others() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let dir = tmp.path().join("agent/images");
    assert!(
        service.import_dir(&dir).is_empty(),
        "a missing directory is fine"
    );
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, "a-broken.tar", b"not a tarball");
    write(
        &dir,
        "b-good.tar.zst",
        &pack(
            docker_archive(&["good:1"], &test_image("good"), false),
            Packing::Zstd,
        ),
    );
    write(
        &dir,
        "c-oci.tgz",
        &pack(oci_layout("oci:1", &test_image("oci"), None), Packing::Gzip),
    );
    let results = service.import_dir(&dir);
    let outcome: Vec<(String, bool)> = results
        .iter()
        .map(|(p, r)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                r.is_ok(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        vec![
            ("a-broken.tar".to_string(), false),
            ("b-good.tar.zst".to_string(), true),
            ("c-oci.tgz".to_string(), true)
        ]
    );
    assert!(service.get("good:1").is_some());
    assert!(service.get("oci:1").is_some());
    // A restart tries only the file that failed.
    drop(service);
    let again = ImageService::open(&tmp.path().join("agent"), Registries::empty()).unwrap();
    let results = again.import_dir(&dir);
    assert_eq!(results.len(), 1);
    assert!(results[0].0.ends_with("a-broken.tar"));
    assert!(again.get("good:1").is_some());
}

#[test]
fn removal_refuses_images_in_use_and_frees_only_their_own_layers() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let a = write(
        tmp.path(),
        "a.tar",
        &docker_archive(&["a:1", "a:latest"], &test_image("a"), false),
    );
    let b = write(
        tmp.path(),
        "b.tar",
        &docker_archive(&["b:1"], &test_image("b"), false),
    );
    service.import(&a).unwrap();
    service.import(&b).unwrap();
    let image_a = service.get("a:1").unwrap();
    let image_b = service.get("b:1").unwrap();
    let dir = tmp.path().join("pods/p/rootfs/c1");
    let _guard = Rootfs(&dir);
    service.mount_rootfs(&image_a, &dir).unwrap();

    let err = service.remove("a:1").unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(err.to_string().contains("docker.io/library/a:1"), "{err}");
    assert!(matches!(service.remove("nope:1"), Err(Error::NotFound(_))));

    // b's own top layer goes; the base layer a shares stays.
    assert_eq!(
        service.remove("b:1").unwrap(),
        vec!["docker.io/library/b:1"]
    );
    assert!(!image_b.layers()[1].exists());
    assert!(image_b.layers()[0].exists());
    let b_config = tmp
        .path()
        .join("agent/content/blobs/sha256")
        .join(image_b.id.trim_start_matches("sha256:"));
    assert!(!b_config.exists());

    // Once the container is gone, removing by id removes every tag of it.
    ImageService::unmount_rootfs(&dir).unwrap();
    let short = &image_a.id["sha256:".len().."sha256:".len() + 12];
    let mut removed = service.remove(short).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        vec!["docker.io/library/a:1", "docker.io/library/a:latest"]
    );
    assert!(service.list().is_empty());
    assert!(lock(&service.inner.meta).snapshots.is_empty());
    assert!(!image_a.layers()[0].exists());
}

#[test]
fn another_process_sees_imports_and_removals_without_a_restart() {
    let Some((tmp, server)) = import_setup() else {
        return;
    };
    // The CLI opens the same store while the server's service is live.
    let cli = ImageService::open(&tmp.path().join("agent"), Registries::empty()).unwrap();
    assert!(server.get("shared:1").is_none());
    let file = write(
        tmp.path(),
        "s.tar",
        &docker_archive(&["shared:1"], &test_image("s"), false),
    );
    cli.import(&file).unwrap();
    let seen = server
        .get("shared:1")
        .expect("the server sees the CLI's import");
    assert_eq!(server.list().len(), 1);
    // The server records a pull-free use; the CLI's view follows.
    let dir = tmp.path().join("pods/p/rootfs/s");
    let guard = Rootfs(&dir);
    server.mount_rootfs(&seen, &dir).unwrap();
    assert!(matches!(cli.remove("shared:1"), Err(Error::InUse { .. })));
    ImageService::unmount_rootfs(&dir).unwrap();
    drop(guard);
    cli.remove("shared:1").unwrap();
    assert!(server.get("shared:1").is_none());
    assert!(server.list().is_empty());
}

#[test]
fn garbage_collection_removes_unused_images_and_keeps_used_ones() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let a = write(
        tmp.path(),
        "a.tar",
        &docker_archive(&["used:1"], &test_image("u"), false),
    );
    let b = write(
        tmp.path(),
        "b.tar",
        &docker_archive(&["idle:1"], &test_image("i"), false),
    );
    service.import(&a).unwrap();
    service.import(&b).unwrap();
    let used = service.get("used:1").unwrap();
    let dir = tmp.path().join("pods/p/rootfs/g");
    let _guard = Rootfs(&dir);
    service.mount_rootfs(&used, &dir).unwrap();
    // The defaults leave a fresh image alone, whatever the disk usage.
    if let Some(o) = service.collect_garbage(&GcPolicy::default()).unwrap() {
        assert!(o.removed.is_empty(), "{o:?}");
    }
    // Thresholds of 0%: any usage is too much, so every image no container uses goes.
    let policy = GcPolicy {
        high_threshold_percent: 0,
        low_threshold_percent: 0,
        min_age: Duration::ZERO,
    };
    let outcome = service.collect_garbage(&policy).unwrap().unwrap();
    assert_eq!(outcome.removed, vec!["docker.io/library/idle:1"]);
    assert!(outcome.freed > 0);
    assert!(service.get("used:1").is_some());
    assert!(service.get("idle:1").is_none());
}

#[test]
fn metadata_from_before_airgap_imports_is_moved_out_of_the_airgap_directory() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    let file = write(
        tmp.path(),
        "m.tar",
        &docker_archive(&["moved:1"], &test_image("m"), false),
    );
    service.import(&file).unwrap();
    drop(service);
    // The old layout kept the metadata in `agent/images/`, now the airgap directory.
    let agent = tmp.path().join("agent");
    std::fs::create_dir_all(agent.join("images")).unwrap();
    std::fs::rename(
        agent.join("content/metadata.json"),
        agent.join("images/metadata.json"),
    )
    .unwrap();
    let service = ImageService::open(&agent, Registries::empty()).unwrap();
    assert!(service.get("moved:1").is_some());
    assert!(!agent.join("images/metadata.json").exists());
    assert!(service.import_dir(&agent.join("images")).is_empty());
}

#[test]
fn layers_repeated_through_links_in_a_docker_archive_are_followed() {
    let Some((tmp, service)) = import_setup() else {
        return;
    };
    // Older `docker save` writes a repeated layer once and links to it from the second
    // directory; hard links name the archive path, symlinks a path relative to themselves.
    let layer = Layer::new().file("same", 0o644, b"again").finish();
    let image = TestImage::new(
        vec![layer.clone(), layer.clone(), layer.clone()],
        serde_json::json!({}),
    );
    let config_name = format!("{}.json", hex_of(&image.config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["linked:1"],
        "Layers": ["a/layer.tar", "b/layer.tar", "c/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&config_name, &image.config);
    add("a/layer.tar", &layer);
    add("manifest.json", &manifest);
    for (kind, name, target) in [
        (tar::EntryType::Symlink, "b/layer.tar", "../a/layer.tar"),
        (tar::EntryType::Link, "c/layer.tar", "a/layer.tar"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    let file = write(tmp.path(), "linked.tar", &b.into_inner().unwrap());
    let images = service.import(&file).unwrap();
    assert_eq!(images[0].layers().len(), 3);
    assert_eq!(
        std::fs::read(images[0].layers()[2].join("same")).unwrap(),
        b"again"
    );
}
