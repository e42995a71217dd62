//! Picks the manifest for this machine out of an image index, as containerd's default platform
//! matcher does: `linux` plus the GOARCH-style architecture, with the ARM variant ranked (an
//! arm64 machine is `v8`; a 32-bit ARM machine is taken to be `v7` and can also run `v6`/`v5`).
//! oci-client's own resolver ignores variants.

use oci_client::manifest::ImageIndexEntry;

/// The running machine as (GOARCH, variant).
pub fn host() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "riscv64" => ("riscv64", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    }
}

/// The platform resolver handed to oci-client.
pub fn resolve_current(entries: &[ImageIndexEntry]) -> Option<String> {
    let (arch, variant) = host();
    resolve(entries, "linux", arch, variant)
}

/// The digest of the best entry for `os`/`arch`/`variant`, the earliest among equals.
pub fn resolve(
    entries: &[ImageIndexEntry],
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Option<String> {
    entries
        .iter()
        .filter_map(|e| {
            let p = e.platform.as_ref()?;
            if p.os.to_string() != os || p.architecture.to_string() != arch {
                return None;
            }
            rank(arch, variant, p.variant.as_deref()).map(|r| (r, e))
        })
        .min_by_key(|(r, _)| *r)
        .map(|(_, e)| e.digest.clone())
}

/// Lower is better; `None` means the machine cannot run it.
fn rank(arch: &str, host: Option<&str>, entry: Option<&str>) -> Option<u32> {
    let entry = entry.filter(|v| !v.is_empty());
    match (arch, host, entry) {
        (_, Some(h), Some(e)) if h == e => Some(0),
        // An entry without a variant means the architecture's baseline.
        (_, _, None) => Some(1),
        ("arm", Some(h), Some(e)) => {
            let hv = version(h)?;
            let ev = version(e)?;
            // Older ARM revisions run on newer cores; the closest one is the best fit.
            (ev <= hv).then(|| 1 + hv - ev)
        }
        ("arm64", _, Some(e)) => (version(e)? <= 8).then_some(2),
        // amd64 v2/v3 variants: only the baseline is known to run everywhere.
        _ => None,
    }
}

fn version(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, arch: &str, variant: Option<&str>) -> ImageIndexEntry {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": 1,
            "platform": {"os": "linux", "architecture": arch, "variant": variant},
        }))
        .unwrap()
    }

    #[test]
    fn variants_are_ranked_like_containerd() {
        let idx = vec![
            entry("amd", "amd64", None),
            entry("v6", "arm", Some("v6")),
            entry("v7", "arm", Some("v7")),
            entry("a64", "arm64", Some("v8")),
        ];
        assert_eq!(
            resolve(&idx, "linux", "amd64", None).as_deref(),
            Some("amd")
        );
        assert_eq!(
            resolve(&idx, "linux", "arm", Some("v7")).as_deref(),
            Some("v7")
        );
        assert_eq!(
            resolve(&idx, "linux", "arm", Some("v6")).as_deref(),
            Some("v6")
        );
        assert_eq!(
            resolve(&idx, "linux", "arm64", Some("v8")).as_deref(),
            Some("a64")
        );
        assert_eq!(resolve(&idx, "linux", "s390x", None), None);
        let old_arm = vec![
            entry("v5", "arm", Some("v5")),
            entry("v8", "arm", Some("v8")),
        ];
        assert_eq!(
            resolve(&old_arm, "linux", "arm", Some("v7")).as_deref(),
            Some("v5")
        );
        let plain = vec![entry("x", "arm64", None)];
        assert_eq!(
            resolve(&plain, "linux", "arm64", Some("v8")).as_deref(),
            Some("x")
        );
    }
}
