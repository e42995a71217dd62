//! The cluster's certificates: three CAs (server, client, request-header), the API server's
//! serving certificate, the admin client certificate, the service-account signing key, and the
//! admin kubeconfig built from them.
//!
//! Everything lives as PEM files in one directory (`<data-dir>/server/tls/`), created at first
//! start and reused afterwards, the way k3s keeps `server/tls/`. Leaf certificates within 90 days
//! of expiry, and a serving certificate that lacks a requested name, are issued again at start.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// CAs last ten years, leaves one year (as k3s issues them).
const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);
/// A leaf this close to its end is issued again at start.
const RENEW_BEFORE: Duration = Duration::days(90);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("issuing {what}: {source}")]
    Issue {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

/// The names the serving certificate must carry.
#[derive(Debug, Clone, Default)]
pub struct Sans {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Sans {
    /// The names every API server answers to, plus `extra` (`--tls-san`, node names and IPs).
    /// `service_ip` is the first address of the service CIDR (the `kubernetes` Service).
    pub fn standard(cluster_domain: &str, service_ip: IpAddr, extra: &[String]) -> Sans {
        let mut s = Sans::default();
        for d in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ] {
            s.dns.insert(d.to_string());
        }
        s.dns
            .insert(format!("kubernetes.default.svc.{cluster_domain}"));
        s.ips.insert(IpAddr::from([127, 0, 0, 1]));
        s.ips
            .insert("::1".parse().unwrap_or(IpAddr::from([0u16; 8])));
        s.ips.insert(service_ip);
        for e in extra {
            match e.parse::<IpAddr>() {
                Ok(ip) => {
                    s.ips.insert(ip);
                }
                Err(_) => {
                    s.dns.insert(e.clone());
                }
            }
        }
        s
    }
}

/// One certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The loaded PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: CertKey,
    pub client_ca: CertKey,
    pub request_header_ca: CertKey,
    pub serving: CertKey,
    pub admin: CertKey,
    /// PKCS#8 PEM of the ECDSA P-256 key that signs service-account tokens.
    pub service_account_key: String,
}

impl Pki {
    /// Loads the PKI under `dir`, creating whatever is missing and renewing leaves that are
    /// close to expiry or lack one of `sans`.
    pub fn load_or_create(dir: &Path, sans: &Sans) -> Result<Pki, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        set_mode(dir, 0o700)?;
        let now = OffsetDateTime::now_utc();
        let server_ca = ca(dir, "server-ca", "rk3s-server-ca", now)?;
        let client_ca = ca(dir, "client-ca", "rk3s-client-ca", now)?;
        let request_header_ca = ca(dir, "request-header-ca", "rk3s-request-header-ca", now)?;
        let serving = leaf(
            dir,
            "serving-kube-apiserver",
            &server_ca,
            now,
            Leaf::Server(sans),
        )?;
        let admin = leaf(
            dir,
            "client-admin",
            &client_ca,
            now,
            Leaf::Client {
                user: "system:admin",
                groups: &["system:masters"],
            },
        )?;
        let sa_path = dir.join("service.key");
        let service_account_key = match read(&sa_path)? {
            Some(pem) => pem,
            None => {
                let key = KeyPair::generate().map_err(|source| Error::Issue {
                    what: "the service-account key".into(),
                    source,
                })?;
                let pem = key.serialize_pem();
                write_private(&sa_path, &pem)?;
                pem
            }
        };
        Ok(Pki {
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            request_header_ca,
            serving,
            admin,
            service_account_key,
        })
    }

    /// Issues a client certificate from the client CA (CN = user, O = groups).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertKey, Error> {
        let issuer = issuer(&self.dir.join("client-ca.crt"), &self.client_ca)?;
        issue(
            &issuer,
            client_params(user, groups, OffsetDateTime::now_utc()),
            user,
        )
    }

    /// The admin kubeconfig pointing at `server` (e.g. `https://127.0.0.1:6443`).
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        kubeconfig(server, &self.server_ca.cert_pem, &self.admin)
    }
}

/// A kubeconfig with one cluster, user and context, all named `default` (as k3s writes it).
pub fn kubeconfig(server: &str, ca_pem: &str, client: &CertKey) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

/// Writes `contents` to `path` with `mode`, atomically (temporary file + rename), creating the
/// parent directory.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

enum Leaf<'a> {
    Server(&'a Sans),
    Client {
        user: &'a str,
        groups: &'a [&'a str],
    },
}

fn read(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_private(path: &Path, pem: &str) -> Result<(), Error> {
    write_file(path, pem, 0o600)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn ca(dir: &Path, name: &str, cn: &str, now: OffsetDateTime) -> Result<CertKey, Error> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if let (Some(cert_pem), Some(key_pem)) = (read(&crt)?, read(&key)?) {
        let ck = CertKey { cert_pem, key_pem };
        // Parse both now, so a damaged file is reported at start with its name.
        issuer(&crt, &ck)?;
        return Ok(ck);
    }
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("{cn}@{}", now.unix_timestamp()));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + CA_VALIDITY;
    let what = |source| Error::Issue {
        what: name.to_string(),
        source,
    };
    let key_pair = KeyPair::generate().map_err(what)?;
    let cert = p.self_signed(&key_pair).map_err(what)?;
    let ck = CertKey {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
    };
    write_private(&key, &ck.key_pem)?;
    write_file(&crt, &ck.cert_pem, 0o644)?;
    tracing::info!(ca = name, "created certificate authority");
    Ok(ck)
}

fn issuer(crt: &Path, ca: &CertKey) -> Result<Issuer<'static, KeyPair>, Error> {
    let invalid = |e: rcgen::Error| Error::Invalid {
        path: crt.to_path_buf(),
        message: e.to_string(),
    };
    let key = KeyPair::from_pem(&ca.key_pem).map_err(invalid)?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(invalid)
}

fn client_params(user: &str, groups: &[&str], now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for g in groups {
        p.distinguished_name.push(DnType::OrganizationName, *g);
    }
    p.distinguished_name.push(DnType::CommonName, user);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + LEAF_VALIDITY;
    p
}

fn server_params(sans: &Sans, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    p.subject_alt_names = sans
        .dns
        .iter()
        .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
        .chain(sans.ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + LEAF_VALIDITY;
    p
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    params: CertificateParams,
    what: &str,
) -> Result<CertKey, Error> {
    let err = |source| Error::Issue {
        what: what.to_string(),
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What an existing leaf certificate says about itself.
struct Existing {
    not_after: i64,
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
    issuer_matches: bool,
}

fn inspect(path: &Path, cert_pem: &str, ca_pem: &str) -> Result<Existing, Error> {
    use x509_parser::prelude::*;
    let invalid = |message: String| Error::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (_, pem) =
        parse_x509_pem(cert_pem.as_bytes()).map_err(|e| invalid(format!("not a PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| invalid(format!("not a certificate: {e}")))?;
    let (_, ca_pem) =
        parse_x509_pem(ca_pem.as_bytes()).map_err(|e| invalid(format!("CA not a PEM: {e}")))?;
    let ca = ca_pem
        .parse_x509()
        .map_err(|e| invalid(format!("CA not a certificate: {e}")))?;
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Existing {
        not_after: cert.validity().not_after.timestamp(),
        dns,
        ips,
        issuer_matches: cert.issuer() == ca.subject(),
    })
}

fn leaf(
    dir: &Path,
    name: &str,
    ca: &CertKey,
    now: OffsetDateTime,
    kind: Leaf<'_>,
) -> Result<CertKey, Error> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let ca_crt = dir.join(match kind {
        Leaf::Server(_) => "server-ca.crt",
        Leaf::Client { .. } => "client-ca.crt",
    });
    if let (Some(cert_pem), Some(key_pem)) = (read(&crt)?, read(&key)?) {
        let e = inspect(&crt, &cert_pem, &ca.cert_pem)?;
        let expiring = e.not_after - now.unix_timestamp() < RENEW_BEFORE.whole_seconds();
        let missing_names = match &kind {
            Leaf::Server(sans) => !(sans.dns.is_subset(&e.dns) && sans.ips.is_subset(&e.ips)),
            Leaf::Client { .. } => false,
        };
        if !expiring && !missing_names && e.issuer_matches {
            return Ok(CertKey { cert_pem, key_pem });
        }
        let why = if expiring {
            "it expires within 90 days"
        } else if missing_names {
            "it lacks a requested name"
        } else {
            "its CA changed"
        };
        tracing::info!(certificate = %crt.display(), reason = why, "issuing certificate again");
    }
    let issuer = issuer(&ca_crt, ca)?;
    let params = match kind {
        Leaf::Server(sans) => server_params(sans, now),
        Leaf::Client { user, groups } => client_params(user, groups, now),
    };
    let ck = issue(&issuer, params, name)?;
    write_private(&key, &ck.key_pem)?;
    write_file(&crt, &ck.cert_pem, 0o644)?;
    Ok(ck)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> Sans {
        Sans::standard(
            "cluster.local",
            "10.43.0.1".parse().unwrap(),
            &["node1".into(), "192.0.2.7".into()],
        )
    }

    #[test]
    fn first_start_creates_everything_and_a_restart_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &sans()).unwrap();
        let b = Pki::load_or_create(dir.path(), &sans()).unwrap();
        assert_eq!(a.server_ca.cert_pem, b.server_ca.cert_pem);
        assert_eq!(a.serving.cert_pem, b.serving.cert_pem);
        assert_eq!(a.admin.cert_pem, b.admin.cert_pem);
        assert_eq!(a.service_account_key, b.service_account_key);
        let e = inspect(Path::new("x"), &a.serving.cert_pem, &a.server_ca.cert_pem).unwrap();
        assert!(e.issuer_matches);
        assert!(e.dns.contains("kubernetes.default.svc.cluster.local"));
        assert!(e.dns.contains("node1"));
        assert!(e.ips.contains(&"10.43.0.1".parse().unwrap()));
        assert!(e.ips.contains(&"192.0.2.7".parse().unwrap()));
        let mode = std::fs::metadata(dir.path().join("client-ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_new_name_reissues_only_the_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &sans()).unwrap();
        let mut more = sans();
        more.dns.insert("api.example.org".into());
        let b = Pki::load_or_create(dir.path(), &more).unwrap();
        assert_eq!(a.server_ca.cert_pem, b.server_ca.cert_pem);
        assert_ne!(a.serving.cert_pem, b.serving.cert_pem);
        assert_eq!(a.admin.cert_pem, b.admin.cert_pem);
        let e = inspect(Path::new("x"), &b.serving.cert_pem, &b.server_ca.cert_pem).unwrap();
        assert!(e.dns.contains("api.example.org"));
    }

    #[test]
    fn a_damaged_ca_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path(), &sans()).unwrap();
        std::fs::write(dir.path().join("server-ca.crt"), "garbage").unwrap();
        let err = Pki::load_or_create(dir.path(), &sans()).unwrap_err();
        assert!(err.to_string().contains("server-ca.crt"), "{err}");
    }

    #[test]
    fn kubeconfig_embeds_the_ca_and_client_pair() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pki::load_or_create(dir.path(), &sans()).unwrap();
        let k = p.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(k.contains("server: https://127.0.0.1:6443"));
        assert!(k.contains("client-certificate-data: "));
        assert!(k.contains("current-context: default"));
    }
}
