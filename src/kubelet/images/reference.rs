//! Image reference normalisation, as Docker and containerd do it (the "familiar name" rules of
//! github.com/distribution/reference): `busybox` → `docker.io/library/busybox:latest`,
//! `user/x` → `docker.io/user/x:latest`, `host:port/x` keeps its host, digests are kept.

use oci_client::Reference;

/// A parsed image reference together with its canonical string form, which is the key of the
/// local image store and what the node status lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// `docker.io/library/busybox:latest`, `127.0.0.1:5000/x@sha256:…`.
    pub normalized: String,
    pub reference: Reference,
}

/// Parses `image` the way the kubelet's `applyDefaultImageTag` plus containerd's
/// `reference.ParseNormalizedNamed` do. The error text is the one upstream gives
/// (`invalid reference format`, `repository name must be lowercase`).
pub fn parse(image: &str) -> Result<Name, String> {
    let trimmed = image.trim();
    if trimmed.is_empty() || trimmed != image {
        return Err("invalid reference format".to_string());
    }
    let reference = Reference::try_from(image).map_err(|e| {
        // The regex rejects upper case as a general format error; upstream names the cause.
        if image.chars().any(|c| c.is_ascii_uppercase())
            && Reference::try_from(image.to_ascii_lowercase().as_str()).is_ok()
        {
            "repository name must be lowercase".to_string()
        } else {
            e.to_string()
        }
    })?;
    let normalized = reference.whole();
    Ok(Name {
        normalized,
        reference,
    })
}

/// `registry/repository` of a reference, without tag or digest: the prefix of a repo digest
/// (`127.0.0.1:5000/busybox@sha256:…`).
pub fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The registry host a credential key names, reduced to the form references use: docker config
/// keys may be URLs (`https://index.docker.io/v1/`), and Docker Hub has several aliases.
pub fn credential_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_normalized_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/x", "docker.io/user/x:latest"),
            ("index.docker.io/user/x:2", "docker.io/user/x:2"),
            ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1"),
            ("localhost/x", "localhost/x:latest"),
            ("ghcr.io/a/b/c:v1", "ghcr.io/a/b/c:v1"),
            (
                "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap().normalized, want, "{input}");
        }
    }

    #[test]
    fn bad_names_are_rejected_with_upstream_wording() {
        assert_eq!(
            parse("Busybox").unwrap_err(),
            "repository name must be lowercase"
        );
        assert_eq!(parse("a b").unwrap_err(), "invalid reference format");
        assert_eq!(parse("").unwrap_err(), "invalid reference format");
        assert!(parse("x@sha256:12").is_err());
    }

    #[test]
    fn credential_keys_are_reduced_to_hosts() {
        assert_eq!(credential_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(credential_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(credential_host("http://reg.local:5000/"), "reg.local:5000");
    }
}
