//! Manifest, index and config documents: media types, parsing, platform choice.
//!
//! Only what the pull and the store need is modelled; unknown fields are
//! ignored, and the raw bytes are what we store (their digest is the identity).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What we send in `Accept`: schema 1 is included so we can name it in the error.
pub const ACCEPTED: &[&str] =
    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1];

/// Largest manifest or index we read, as containers/image and containerd do.
pub const MANIFEST_MAX: usize = 4 << 20;
/// Largest image config we read.
pub const CONFIG_MAX: u64 = 8 << 20;

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform as written in an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a fetched manifest document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest { media_type: String, manifest: Manifest },
    Index { index: Index },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parse a manifest or index body. `content_type` is the response header, used
/// only when the body has no top-level `mediaType` and its shape is ambiguous.
pub fn parse_document(body: &[u8], content_type: Option<&str>, what: &str) -> Result<Document> {
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Error::integrity(format!("{what}: manifest is not valid JSON: {e}")))?;
    let declared =
        probe.media_type.clone().or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()));
    if probe.schema_version == Some(1) || matches!(declared.as_deref(), Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
        return Err(Error::unsupported(format!(
            "{what}: Docker schema 1 manifests are not supported (the image must be re-pushed with schema 2 or OCI)"
        )));
    }
    if probe.schema_version != Some(2) {
        return Err(Error::unsupported(format!(
            "{what}: unsupported manifest schemaVersion {:?}",
            probe.schema_version
        )));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(Error::unsupported(format!("{what}: unsupported manifest media type {other:?}"))),
        // No top-level mediaType (allowed by OCI): decide by shape.
        None => probe.manifests.is_some() && probe.config.is_none(),
    };
    if is_index {
        let index: Index = serde_json::from_slice(body)
            .map_err(|e| Error::integrity(format!("{what}: malformed image index: {e}")))?;
        Ok(Document::Index { index })
    } else {
        let manifest: Manifest = serde_json::from_slice(body)
            .map_err(|e| Error::integrity(format!("{what}: malformed image manifest: {e}")))?;
        let media_type = probe.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Document::Manifest { media_type, manifest })
    }
}

impl Manifest {
    /// Refuse what is not a container image (OCI artifacts, odd layers).
    pub fn check_is_image(&self, what: &str) -> Result<()> {
        if let Some(t) = &self.artifact_type {
            return Err(Error::unsupported(format!("{what}: is an OCI artifact of type {t:?}, not a container image")));
        }
        let ct = self.config.media_type.as_str();
        if ct != OCI_CONFIG && ct != DOCKER_CONFIG {
            return Err(Error::unsupported(format!("{what}: is not a container image (config media type {ct:?})")));
        }
        for layer in &self.layers {
            if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
                return Err(Error::unsupported(format!(
                    "{what}: layer {} has unsupported media type {:?}",
                    layer.digest, layer.media_type
                )));
            }
        }
        for d in std::iter::once(&self.config).chain(&self.layers) {
            crate::reference::parse_digest(&d.digest).map_err(|e| Error::unsupported(format!("{what}: {e}")))?;
        }
        Ok(())
    }
}

/// The platform this process runs on, in OCI terms, with acceptable variants
/// in order of preference.
pub fn host_platform() -> (String, String, Vec<&'static str>) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    let variants: Vec<&'static str> = match arch {
        "amd64" => amd64_variants(),
        "arm64" => vec!["", "v8"],
        "arm" => vec!["v7", "", "v6", "v5"],
        _ => vec![""],
    };
    (std::env::consts::OS.to_string(), arch.to_string(), variants)
}

#[cfg(target_arch = "x86_64")]
fn amd64_variants() -> Vec<&'static str> {
    // Prefer the highest micro-architecture level this CPU runs.
    let v2 = std::arch::is_x86_feature_detected!("sse4.2") && std::arch::is_x86_feature_detected!("popcnt");
    let v3 = v2 && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("bmi2");
    let mut v = Vec::new();
    if v3 {
        v.push("v3");
    }
    if v2 {
        v.push("v2");
    }
    v.extend(["", "v1"]);
    v
}

#[cfg(not(target_arch = "x86_64"))]
fn amd64_variants() -> Vec<&'static str> {
    vec!["", "v1"]
}

/// Choose the index entry for (os, arch) with the most preferred variant;
/// attestation entries and entries without a platform are skipped.
pub fn choose_platform<'a>(
    entries: &'a [Descriptor],
    os: &str,
    arch: &str,
    variants: &[&str],
) -> Option<&'a Descriptor> {
    let candidates = entries.iter().filter(|d| {
        d.annotations.get("vnd.docker.reference.type").map(String::as_str) != Some("attestation-manifest")
            && d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch)
            && matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | "")
    });
    let rank = |d: &Descriptor| {
        let v = d.platform.as_ref().and_then(|p| p.variant.as_deref()).unwrap_or("");
        variants.iter().position(|x| *x == v)
    };
    candidates.filter_map(|d| rank(d).map(|r| (r, d))).min_by_key(|(r, _)| *r).map(|(_, d)| d)
}

/// The parts of an image config we use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The config's `rootfs`: digests of the uncompressed layers, bottom first.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

impl ImageConfig {
    pub fn parse(body: &[u8]) -> Result<Self> {
        serde_json::from_slice(body).map_err(|e| Error::integrity(format!("image config is not valid JSON: {e}")))
    }
    pub fn user(&self) -> &str {
        self.config.as_ref().and_then(|c| c.user.as_deref()).unwrap_or("")
    }

    /// The diff_ids, checked against the manifest's layer count and digest form.
    pub fn diff_ids(&self, layers: usize, what: &str) -> Result<Vec<String>> {
        let ids = self.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
        if ids.len() != layers {
            return Err(Error::integrity(format!(
                "{what}: the image config lists {} diff_ids for {layers} layers",
                ids.len()
            )));
        }
        for d in &ids {
            crate::reference::parse_digest(d).map_err(|e| Error::integrity(format!("{what}: diff_id {e}")))?;
        }
        Ok(ids)
    }
}

/// uid / username from a config `User`, as CRI runtimes compute them: the part
/// before ':'; numeric (Go ParseInt rules) is a uid, anything else a username.
pub fn user_to_uid(user: &str) -> (Option<i64>, String) {
    if user.is_empty() {
        return (None, String::new());
    }
    let head = user.split(':').next().unwrap_or("");
    match parse_go_int(head) {
        Some(uid) => (Some(uid), String::new()),
        None => (None, head.to_string()),
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        let cases: &[(&str, Option<i64>, &str)] = &[
            ("", None, ""),
            ("1000:1000", Some(1000), ""),
            ("0", Some(0), ""),
            ("0:0", Some(0), ""),
            ("nginx", None, "nginx"),
            ("nginx:nginx", None, "nginx"),
            (":1000", None, ""),
            ("007", Some(7), ""),
            ("+5", Some(5), ""),
            ("-1", Some(-1), ""),
            ("1 ", None, "1 "),
            ("99999999999999999999", None, "99999999999999999999"),
        ];
        for (user, uid, name) in cases {
            assert_eq!(user_to_uid(user), (*uid, name.to_string()), "user {user:?}");
        }
    }

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform { os: os.into(), architecture: arch.into(), variant: variant.map(Into::into) }),
            annotations: Default::default(),
        }
    }

    #[test]
    fn platforms() {
        let mut att = entry("unknown", "unknown", None, "att");
        att.annotations.insert("vnd.docker.reference.type".into(), "attestation-manifest".into());
        let entries = vec![
            att,
            entry("linux", "arm", Some("v6"), "arm6"),
            entry("linux", "arm", Some("v7"), "arm7"),
            entry("linux", "arm64", Some("v8"), "arm64"),
            entry("windows", "amd64", None, "win"),
            entry("linux", "amd64", None, "amd64"),
        ];
        let pick = |arch: &str, v: &[&str]| choose_platform(&entries, "linux", arch, v).map(|d| d.digest.clone());
        assert_eq!(pick("amd64", &["v3", "v2", "", "v1"]).as_deref(), Some("amd64"));
        assert_eq!(pick("arm64", &["", "v8"]).as_deref(), Some("arm64"));
        assert_eq!(pick("arm", &["v7", "", "v6", "v5"]).as_deref(), Some("arm7"));
        assert_eq!(pick("arm", &["v6", "v5"]).as_deref(), Some("arm6"));
        assert_eq!(pick("s390x", &[""]), None);
        assert_eq!(choose_platform(&entries, "unknown", "unknown", &[""]), None);
    }

    #[test]
    fn documents() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
        assert!(matches!(parse_document(m, None, "x").unwrap(), Document::Manifest { .. }));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(i, None, "x").unwrap(), Document::Index { .. }));
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let e = parse_document(s1, None, "x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        assert!(e.message().contains("schema 1"));
        let e = parse_document(b"{not json", None, "x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Integrity);
    }
}
