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
            if e.file_type().is_ok_and(|t| t.is_dir()) {
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

/// A docker-registry process of a test's own (TLS, auth, proxy...), killed on drop.
pub struct OwnRegistry {
    pub addr: String,
    pub dir: PathBuf,
    child: std::process::Child,
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnRegistry {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
    pub fn blob_gets(&self) -> usize {
        self.log().lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:")).count()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start Debian's docker-registry with `http_extra` under `http:` (e.g. TLS)
/// and `extra` at the top level (e.g. `auth:` or `proxy:`).
pub fn start_registry(dir: &Path, http_extra: &str, extra: &str) -> OwnRegistry {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-{port}\n{http_extra}\n{extra}\n",
        dir.join("data").display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry (apt-get install docker-registry)");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..300 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return OwnRegistry { addr, dir: dir.to_path_buf(), child };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!(
        "registry in {} did not start: {}",
        dir.display(),
        std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    );
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key).
pub fn make_ca_and_server_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let s = |p: &PathBuf| p.display().to_string();
    let (ca, ca_key, crt, key, csr, ext) =
        (p("ca.crt"), p("ca.key"), p("server.crt"), p("server.key"), p("server.csr"), p("ext.cnf"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=imgsvc test CA",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", &s(&key), "-out", &s(&csr)]);
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&crt),
    ]);
    (ca, crt, key)
}

/// A client certificate signed by the CA in `dir`: (client.cert, client.key).
pub fn make_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let s = |p: &PathBuf| p.display().to_string();
    let (crt, key, csr, ext) = (p("client.cert"), p("client.key"), p("client.csr"), p("client-ext.cnf"));
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=imgsvc client",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    std::fs::write(&ext, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&p("ca.crt")),
        "-CAkey",
        &s(&p("ca.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&crt),
    ]);
    (crt, key)
}

/// Copy an image between registries with skopeo (extra flags for TLS/auth).
pub fn skopeo_copy(from: &str, to: &str, flags: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .args(flags)
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy {from} {to}: {}", String::from_utf8_lossy(&out.stderr));
}

/// curl that must succeed; its stdout.
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "-f"]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Upload `bytes` as a blob of `repo` over the registry API; its digest.
pub fn push_blob(repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    let reg = registry();
    let headers = curl(&["-i", "-X", "POST", &format!("http://{reg}/v2/{repo}/blobs/uploads/")]);
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .expect("upload location")
        .trim()
        .to_string();
    let url = if location.starts_with("http") { location } else { format!("http://{reg}{location}") };
    let sep = if url.contains('?') { '&' } else { '?' };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.path().display()),
        &format!("{url}{sep}digest={digest}"),
    ]);
    digest
}
