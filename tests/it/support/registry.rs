//! A real OCI registry for image tests: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port, with helpers that build small images (busybox from the host's static binary,
//! or arbitrary layers) and push them to it.

// Shared by the integration tests and the image service's unit tests; each uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets `push_busybox` links to `bin/busybox`.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "httpd", "wget", "nslookup", "env", "id", "hostname",
    "mkdir", "touch", "true", "false", "head", "tail", "dd", "yes", "printf", "test", "grep",
    "seq", "date", "ps", "kill", "mount", "ip", "tar", "tty", "wc",
];

/// The login of a registry started with [`Registry::start_with_auth`].
pub const USERNAME: &str = "tester";
pub const PASSWORD: &str = "s3cret";
/// bcrypt of [`PASSWORD`] (cost 4), as distribution's htpasswd auth wants it.
const HTPASSWD: &str = "tester:$2a$04$pUv8Jvtoh6/VhzweH5Yf7OvEeOSASR2D9J/5adkT5egMFy5Wu6xYa\n";

/// A running registry, killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    log: PathBuf,
    /// Whether pushes and pulls need [`USERNAME`]/[`PASSWORD`] (HTTP basic auth).
    auth: bool,
}

fn strict() -> bool {
    std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1")
}

impl Registry {
    /// Starts a registry storing under `dir`, or `None` (with a printed SKIP) when the binaries
    /// are missing; under `RK3S_TESTS_STRICT=1` that is a failure instead.
    pub fn start(dir: &Path) -> Option<Registry> {
        Registry::launch(dir, false)
    }

    /// Like [`Registry::start`], but every request needs basic auth as [`USERNAME`] with
    /// [`PASSWORD`] (distribution's htpasswd auth).
    pub fn start_with_auth(dir: &Path) -> Option<Registry> {
        Registry::launch(dir, true)
    }

    fn launch(dir: &Path, auth: bool) -> Option<Registry> {
        for (path, package) in [
            (DOCKER_REGISTRY, "docker-registry"),
            (BUSYBOX, "busybox-static"),
        ] {
            if !Path::new(path).exists() {
                if strict() {
                    panic!("{path} is missing (apt-get install {package}) and RK3S_TESTS_STRICT=1");
                }
                println!("SKIP: {path} is not installed (apt-get install {package})");
                return None;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage).expect("registry storage dir");
        let config = dir.join("registry.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if auth {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).expect("write htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rk3s-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).expect("write registry config");
        let log = dir.join("registry.log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("registry log"))
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            addr,
            child,
            log,
            auth,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", registry.log());
            }
            // 401 is the answer of a registry that wants a login: it is up.
            if registry.get("/v2/").is_some_and(|s| s == 200 || s == 401) {
                return Some(registry);
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}:\n{}",
                registry.addr,
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// HTTP status of a plain GET (HTTP/1.0, so the answer ends with the connection).
    pub fn get(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.split_whitespace().nth(1)?.parse().ok()
    }

    /// Stops the registry now (tests that check nothing contacts it afterwards).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Builds the busybox test image and pushes it as `name` (`busybox:1`); returns the full
    /// reference `127.0.0.1:PORT/busybox:1`.
    pub fn push_busybox(&self, name: &str) -> String {
        let config = serde_json::json!({
            "config": {
                "Cmd": ["sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            }
        });
        self.push_image(name, vec![busybox_layer()], config)
    }

    /// Pushes an image made of `layers` (uncompressed tars, gzipped here) and `config` (its
    /// `rootfs`, `os` and `architecture` are filled in); returns the full reference.
    pub fn push_image(
        &self,
        name: &str,
        layers: Vec<Vec<u8>>,
        mut config: serde_json::Value,
    ) -> String {
        let reference = format!("{}/{name}", self.addr);
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        if config.get("os").is_none() {
            config["os"] = "linux".into();
        }
        if config.get("architecture").is_none() {
            config["architecture"] = goarch().into();
        }
        let layers: Vec<ImageLayer> = layers
            .iter()
            .map(|l| ImageLayer::oci_v1_gzip(gzip(l), None))
            .collect();
        let config = Config::oci_v1(serde_json::to_vec(&config).expect("config json"), None);
        let target: Reference = reference.parse().expect("test image reference");
        let auth = if self.auth {
            RegistryAuth::Basic(USERNAME.to_string(), PASSWORD.to_string())
        } else {
            RegistryAuth::Anonymous
        };
        // Own thread and runtime: callers may be sync tests or inside a tokio runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = Client::new(ClientConfig {
                    protocol: ClientProtocol::Http,
                    ..Default::default()
                });
                client
                    .push(&target, &layers, config, &auth, None)
                    .await
                    .expect("push test image");
            });
        })
        .join()
        .expect("push thread");
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GOARCH of the machine, which the image config and index entries name.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// A tar being built for a test layer: root-owned entries with fixed times.
pub struct Layer(tar::Builder<Vec<u8>>);

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Layer {
        let mut h = Layer::header(tar::EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Layer {
        let mut h = Layer::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("tar file");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Layer::header(tar::EntryType::Symlink, 0o777, 0);
        self.0
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar in memory")
    }
}

/// The busybox layer: `bin/busybox` plus applet links, `etc/passwd`, `etc/group`, `tmp/`.
pub fn busybox_layer() -> Vec<u8> {
    let busybox =
        std::fs::read(BUSYBOX).expect("read /bin/busybox (apt-get install busybox-static)");
    let mut layer = Layer::new()
        .dir("bin", 0o755)
        .dir("dev", 0o755)
        .dir("etc", 0o755)
        .dir("proc", 0o755)
        .dir("root", 0o700)
        .dir("sys", 0o755)
        .dir("tmp", 0o1777)
        .file("bin/busybox", 0o755, &busybox);
    for applet in APPLETS {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n")
        .finish()
}

/// An image as files: its layers (uncompressed tars) and its config JSON.
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
}

impl TestImage {
    /// `config` gets its `rootfs`, `os` and `architecture` filled in.
    pub fn new(layers: Vec<Vec<u8>>, mut config: serde_json::Value) -> TestImage {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        config["os"] = "linux".into();
        if config.get("architecture").is_none() {
            config["architecture"] = goarch().into();
        }
        TestImage {
            layers,
            config: serde_json::to_vec(&config).expect("config json"),
        }
    }

    /// The busybox image of [`Registry::push_busybox`].
    pub fn busybox() -> TestImage {
        TestImage::new(
            vec![busybox_layer()],
            serde_json::json!({
                "config": {
                    "Cmd": ["sh"],
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                }
            }),
        )
    }
}

/// A tar of `(path, bytes)` regular files.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data.as_slice())
            .expect("tar in memory");
    }
    b.into_inner().expect("tar in memory")
}

/// The hex part of the sha256 of `data`.
pub fn hex_of(data: &[u8]) -> String {
    sha256(data).trim_start_matches("sha256:").to_string()
}

/// What classic `docker save` writes (`<config hex>.json`, `<n>/layer.tar`, `manifest.json`
/// last); the layers gzip'd if asked.
pub fn docker_archive(tags: &[&str], image: &TestImage, gzip_layers: bool) -> Vec<u8> {
    let config_name = format!("{}.json", hex_of(&image.config));
    let mut files = vec![(config_name.clone(), image.config.clone())];
    let mut layer_names = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        let data = if gzip_layers { gzip(l) } else { l.clone() };
        files.push((name.clone(), data));
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": layer_names,
    }]);
    files.push((
        "manifest.json".to_string(),
        serde_json::to_vec(&manifest).expect("manifest json"),
    ));
    tar_of(&files)
}

/// Adds the blobs of an OCI image manifest for `image` (gzip layers) to `blobs`; returns the
/// manifest's descriptor.
pub fn oci_manifest(image: &TestImage, blobs: &mut Vec<(String, Vec<u8>)>) -> serde_json::Value {
    let mut layers = Vec::new();
    for l in &image.layers {
        let gz = gzip(l);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256(&gz),
            "size": gz.len(),
        }));
        blobs.push((format!("blobs/sha256/{}", hex_of(&gz)), gz));
    }
    blobs.push((
        format!("blobs/sha256/{}", hex_of(&image.config)),
        image.config.clone(),
    ));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&image.config),
            "size": image.config.len(),
        },
        "layers": layers,
    }))
    .expect("manifest json");
    let desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&manifest),
        "size": manifest.len(),
    });
    blobs.push((format!("blobs/sha256/{}", hex_of(&manifest)), manifest));
    desc
}

/// An OCI image layout holding `image` as `name` (annotation `io.containerd.image.name`). With
/// `other_arch`, the name points to an index of `image` for this machine and `other` for that
/// architecture.
pub fn oci_layout(name: &str, image: &TestImage, other: Option<(&str, &TestImage)>) -> Vec<u8> {
    let mut blobs = Vec::new();
    let mut top = oci_manifest(image, &mut blobs);
    if let Some((other_arch, other)) = other {
        let mut foreign = oci_manifest(other, &mut blobs);
        foreign["platform"] = serde_json::json!({"os": "linux", "architecture": other_arch});
        let mut native = top.clone();
        native["platform"] = serde_json::json!({"os": "linux", "architecture": goarch()});
        if goarch() == "arm64" {
            native["platform"]["variant"] = "v8".into();
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [foreign, native],
        }))
        .expect("index json");
        top = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha256(&index),
            "size": index.len(),
        });
        blobs.push((format!("blobs/sha256/{}", hex_of(&index)), index));
    }
    top["annotations"] = serde_json::json!({
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": "latest",
    });
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".to_string(),
            serde_json::to_vec(&index).expect("index json"),
        ),
    ];
    files.extend(blobs);
    tar_of(&files)
}

/// zstd of `data`, for `.tar.zst` archives.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd in memory")
}
