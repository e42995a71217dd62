//! End-to-end tests of the image service against a real registry (Debian's docker-registry on
//! loopback, see `tests/it/support/registry.rs`): pull, content store, snapshots, overlay rootfs.

#[path = "../../../tests/it/support/registry.rs"]
mod registry;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::*;
use registry::{Layer, PASSWORD, Registry, USERNAME};

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
