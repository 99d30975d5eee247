//! Shared test harness: a real registry with the fixture images, temp stores,
//! and small helpers to ask the registry what it serves.
#![allow(dead_code)]

use imgsvc::{BlockingService, Options};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (tests of the cli crate include this file too).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if here.join("scripts").exists() {
        here
    } else {
        here.parent().unwrap().to_path_buf()
    }
}

struct Registry {
    addr: String,
    log: Option<PathBuf>,
}

/// The registry under test: `$IMGSVC_TEST_REGISTRY` (with fixtures already
/// pushed), or one started here with scripts/registry.sh and stopped by a
/// watchdog when this test process exits.
fn registry_state() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        if let Ok(addr) = std::env::var("IMGSVC_TEST_REGISTRY") {
            let log = std::env::var_os("IMGSVC_TEST_REGISTRY_LOG").map(PathBuf::from);
            return Registry { addr, log };
        }
        let dir = std::env::temp_dir().join(format!("imgsvc-test-registry-{}", std::process::id()));
        let script = repo_root().join("scripts/registry.sh");
        let out = Command::new(&script).arg("start").arg(&dir).output().expect("run scripts/registry.sh");
        assert!(out.status.success(), "registry.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let addr = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let watchdog = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; {} stop {}; rm -rf {}",
            std::process::id(),
            script.display(),
            dir.display(),
            dir.display()
        );
        Command::new("setsid").args(["sh", "-c", &watchdog]).spawn().expect("start watchdog");
        let push = Command::new(repo_root().join("scripts/fixtures.sh")).arg("push").arg(&addr).status().unwrap();
        assert!(push.success(), "fixtures.sh push failed");
        Registry { addr, log: Some(dir.join("registry.log")) }
    })
}

/// `host:port` of the registry holding the fixtures.
pub fn registry() -> &'static str {
    &registry_state().addr
}

/// The registry's access log, if we know where it is.
pub fn registry_log() -> Option<&'static Path> {
    registry_state().log.as_deref()
}

/// `host:port/fixture/<name>`.
pub fn fixture(name: &str) -> String {
    format!("{}/fixture/{name}", registry())
}

pub fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("imgsvc-test-").tempdir().unwrap()
}

pub fn open(root: &Path) -> BlockingService {
    BlockingService::new(Options::new(root)).expect("open store")
}

pub fn open_with(root: &Path, f: impl FnOnce(&mut Options)) -> BlockingService {
    let mut o = Options::new(root);
    f(&mut o);
    BlockingService::new(o).expect("open store")
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry serves it: (parsed, digest of the bytes).
pub fn registry_manifest(repo: &str, reference: &str) -> (serde_json::Value, String) {
    let url = format!("http://{}/v2/{repo}/manifests/{reference}", registry());
    let out = Command::new("curl").args(["-sf", "-H", &format!("Accept: {ACCEPT}"), &url]).output().unwrap();
    assert!(out.status.success(), "GET {url} failed");
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)));
    (serde_json::from_slice(&out.stdout).unwrap(), digest)
}

/// The config digest (the image id) of a single-platform tag.
pub fn registry_config_digest(repo: &str, reference: &str) -> String {
    let (m, _) = registry_manifest(repo, reference);
    m["config"]["digest"].as_str().expect("manifest has a config").to_string()
}

/// How many times the registry served `GET /v2/<repo>/blobs/<digest>` so far.
pub fn blob_gets(repo: &str, digest: &str) -> Option<usize> {
    let log = registry_log()?;
    let text = std::fs::read_to_string(log).ok()?;
    let needle = format!("\"GET /v2/{repo}/blobs/{digest} ");
    Some(text.lines().filter(|l| l.contains(&needle)).count())
}

/// Copy a fixture to a repository of its own, so request counts are not
/// disturbed by tests running at the same time.
pub fn private_copy(fixture_name: &str, repo: &str) -> String {
    let dest = format!("{}/{repo}", registry());
    let st = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}", fixture(fixture_name)))
        .arg(format!("docker://{dest}"))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy to {dest}");
    dest
}

/// Files directly under `dir` (recursively), for "nothing left behind" checks.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Blob digests present in a store.
pub fn stored_blobs(root: &Path) -> std::collections::BTreeSet<String> {
    files_under(&root.join("blobs/sha256"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(|n| format!("sha256:{n}")))
        .collect()
}
