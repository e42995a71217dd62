//! k3s `registries.yaml`: registry mirrors (an endpoint list per registry, `"*"` for all),
//! repository rewrites, and per-host auth and TLS settings. The file format is k3s's
//! (docs.k3s.io "Private Registry Configuration"); the resolution order is containerd's hosts
//! logic as k3s configures it: each mirror endpoint in order, then the registry itself.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

/// The parsed `registries.yaml`; `Registries::empty()` when the file does not exist.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    mirrors: HashMap<String, Mirror>,
    configs: HashMap<String, HostConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct File {
    mirrors: HashMap<String, Mirror>,
    configs: HashMap<String, HostConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Mirror {
    endpoint: Vec<String>,
    /// Regular expression → replacement (with `$1` groups) applied to the repository name.
    rewrite: BTreeMap<String, String>,
}

/// `configs.<host>` of registries.yaml.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`, as in a docker config.
    pub auth: Option<String>,
    pub identitytoken: Option<String>,
    pub token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// One place to try a pull from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` that is contacted.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub http: bool,
    /// Repository name at this endpoint (after rewrites).
    pub repository: String,
    /// Whether this is a mirror (containerd then adds `?ns=<registry>` to requests).
    pub mirror: bool,
}

impl Registries {
    pub fn empty() -> Registries {
        Registries::default()
    }

    /// Reads `path`; a missing file is the empty configuration, as in k3s.
    pub fn load(path: &Path) -> Result<Registries, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registries::empty()),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Registries::parse(&text).map_err(|message| Error::RegistriesFile {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the YAML text of a registries.yaml.
    pub fn parse(text: &str) -> Result<Registries, String> {
        if text.trim().is_empty() {
            return Ok(Registries::empty());
        }
        let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (registry, mirror) in &file.mirrors {
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| {
                    format!("mirrors.{registry}.rewrite: bad pattern {pattern:?}: {e}")
                })?;
            }
        }
        Ok(Registries {
            mirrors: file.mirrors,
            configs: file.configs,
        })
    }

    /// Where to pull `registry/repository` from, in order: the mirror endpoints of `registry`
    /// (or of `"*"`), then the registry itself. Rewrites apply to mirror endpoints only, as in
    /// k3s, so the default endpoint always sees the name the user wrote.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        if let Some(mirror) = mirror {
            let rewritten = rewrite(&mirror.rewrite, repository);
            for url in &mirror.endpoint {
                let (host, http) = split_endpoint(url);
                if host.is_empty() {
                    continue;
                }
                let is_default = host == registry
                    || (registry == "docker.io"
                        && matches!(host.as_str(), "registry-1.docker.io" | "index.docker.io"));
                let endpoint = Endpoint {
                    http: http || is_loopback(&host),
                    repository: if is_default {
                        repository.to_string()
                    } else {
                        rewritten.clone()
                    },
                    mirror: !is_default,
                    host,
                };
                if !out.contains(&endpoint) {
                    out.push(endpoint);
                }
            }
        }
        let default = Endpoint {
            host: registry.to_string(),
            http: is_loopback(registry),
            repository: repository.to_string(),
            mirror: false,
        };
        if !out
            .iter()
            .any(|e| e.host == default.host && e.repository == default.repository)
        {
            out.push(default);
        }
        out
    }

    /// The `configs` entry for an endpoint host (`"*"` as the fallback, like k3s).
    pub fn config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| self.configs.get("*"))
    }
}

/// Applies the first matching rewrite (patterns in sorted order, since YAML maps carry none).
fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex::Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

/// `https://mirror:5000/v2` → (`mirror:5000`, false); `http://x` → (`x`, true). A bare host
/// means HTTPS, as containerd assumes.
fn split_endpoint(url: &str) -> (String, bool) {
    let (rest, http) = if let Some(r) = url.strip_prefix("http://") {
        (r, true)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, false)
    } else {
        (url, false)
    };
    let host = rest.split('/').next().unwrap_or_default().to_string();
    (host, http)
}

/// Whether `host[:port]` is a loopback address, which containerd and k3s talk to over plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or_default()
    } else {
        host
    };
    if name == "localhost" {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://mirror.local:5000"
      - "https://registry-1.docker.io"
    rewrite:
      "^library/(.*)": "hub/$1"
  "*":
    endpoint: ["https://all.local"]
configs:
  "mirror.local:5000":
    auth:
      username: u
      password: p
    tls:
      insecure_skip_verify: true
"#;

    #[test]
    fn mirrors_come_first_then_the_registry_itself() {
        let r = Registries::parse(YAML).unwrap();
        let eps = r.endpoints("docker.io", "library/busybox");
        assert_eq!(
            eps,
            vec![
                Endpoint {
                    host: "mirror.local:5000".into(),
                    http: true,
                    repository: "hub/busybox".into(),
                    mirror: true
                },
                Endpoint {
                    host: "registry-1.docker.io".into(),
                    http: false,
                    repository: "library/busybox".into(),
                    mirror: false
                },
                Endpoint {
                    host: "docker.io".into(),
                    http: false,
                    repository: "library/busybox".into(),
                    mirror: false
                },
            ]
        );
        let other = r.endpoints("quay.io", "a/b");
        assert_eq!(other[0].host, "all.local");
        assert!(!other[0].http);
        assert_eq!(other[1].host, "quay.io");
        let cfg = r.config("mirror.local:5000").unwrap();
        assert_eq!(cfg.auth.as_ref().unwrap().username.as_deref(), Some("u"));
        assert!(cfg.tls.as_ref().unwrap().insecure_skip_verify);
    }

    #[test]
    fn loopback_registries_use_http() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.8.0.1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1:5000", "docker.io", "ghcr.io:443"] {
            assert!(!is_loopback(h), "{h}");
        }
        let eps = Registries::empty().endpoints("127.0.0.1:5000", "busybox");
        assert_eq!(eps.len(), 1);
        assert!(eps[0].http);
    }

    #[test]
    fn missing_or_empty_file_is_empty_config() {
        let r = Registries::load(Path::new("/nonexistent/registries.yaml")).unwrap();
        assert!(r.mirrors.is_empty());
        assert!(Registries::parse("").unwrap().configs.is_empty());
        assert!(Registries::parse("mirrors: [").is_err());
    }
}
