//! Registries as people run them: TLS with certs.d, basic and token auth,
//! credential files, registries.conf search/aliases/mirrors/blocking. Every
//! registry here is a real docker-registry; only the token server is ours.

mod common;
use common::*;
use imgsvc::{Auth, BlockingService, ErrorKind, Options, RegistryOptions};
use std::path::Path;

fn open_reg(root: &Path, registry: RegistryOptions) -> BlockingService {
    let mut o = Options::new(root);
    o.registry = registry;
    o.max_parallel_downloads = 2;
    BlockingService::new(o).expect("open")
}

fn htpasswd(dir: &Path, user: &str, pass: &str) -> std::path::PathBuf {
    let out =
        std::process::Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("htpasswd (apache2-utils)");
    let p = dir.join("htpasswd");
    std::fs::write(&p, out.stdout).unwrap();
    p
}

fn auth_json(dir: &Path, host: &str, user: &str, pass: &str) -> std::path::PathBuf {
    use base64::Engine as _;
    let p = dir.join("auth.json");
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(&p, format!(r#"{{"auths": {{"{host}": {{"auth": "{enc}"}}}}}}"#)).unwrap();
    p
}

#[test]
fn tls_with_certs_d_and_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, crt, key) = make_ca_and_server_cert(dir.path());
    let hp = htpasswd(dir.path(), "alice", "secret");
    let tls = format!("  tls:\n    certificate: {}\n    key: {}", crt.display(), key.display());
    let auth = format!("auth:\n  htpasswd:\n    realm: test\n    path: {}", hp.display());
    let reg = start_registry(&dir.path().join("reg"), &tls, &auth);
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&reg.addr)).unwrap();
    std::fs::copy(&ca, certs.join(&reg.addr).join("ca.crt")).unwrap();
    let name = format!("{}/secure/small:a", reg.addr);
    skopeo_copy(
        &fixture("small:a"),
        &name,
        &["--dest-creds", "alice:secret", "--dest-cert-dir", &certs.join(&reg.addr).display().to_string()],
    );

    let root = temp_root();
    // Without the CA: a certificate error, never plain HTTP.
    let svc = open_reg(root.path(), RegistryOptions::default());
    let err = svc.pull(&name, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("certificate"), "{err}");

    // With the CA but no credentials: unauthenticated.
    let with_ca = RegistryOptions { certs_dir: Some(certs.clone()), ..Default::default() };
    let svc = open_reg(root.path(), with_ca.clone());
    let err = svc.pull(&name, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.message().contains("requires credentials"), "{err}");

    // A wrong password from the CRI auth: unauthenticated, and it is never printed.
    let wrong = Auth { username: "alice".into(), password: "not-the-password".into(), ..Default::default() };
    let err = svc.pull(&name, Some(&wrong), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.message().contains("rejected") && !err.message().contains("not-the-password"), "{err}");

    // Right credentials from auth.json.
    let files =
        RegistryOptions { auth_file: Some(auth_json(dir.path(), &reg.addr, "alice", "secret")), ..with_ca.clone() };
    let svc = open_reg(root.path(), files.clone());
    let id = svc.pull(&name, None, None).unwrap();
    assert_eq!(id, registry_config_digest("fixture/small", "a"));

    // The pull's own AuthConfig wins over the file (here: a wrong one).
    svc.remove(&id).unwrap();
    let err = svc.pull(&name, Some(&wrong), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    // ...unless its server_address names another registry.
    let elsewhere = Auth { server_address: "other.example:5000".into(), ..wrong.clone() };
    assert_eq!(svc.pull(&name, Some(&elsewhere), None).unwrap(), id);
    // The base64 `auth` form works too.
    let tmp_root = temp_root();
    let svc = open_reg(tmp_root.path(), with_ca);
    let b64 = Auth { auth: "YWxpY2U6c2VjcmV0".into(), ..Default::default() };
    assert_eq!(svc.pull(&name, Some(&b64), None).unwrap(), id);
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, crt, key) = make_ca_and_server_cert(dir.path());
    let (client_crt, client_key) = make_client_cert(dir.path());
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}",
        crt.display(),
        key.display(),
        ca.display()
    );
    let reg = start_registry(&dir.path().join("reg"), &tls, "");
    let host_dir = dir.path().join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    std::fs::copy(&client_crt, host_dir.join("client.cert")).unwrap();
    std::fs::copy(&client_key, host_dir.join("client.key")).unwrap();
    let name = format!("{}/mtls/small:a", reg.addr);
    skopeo_copy(&fixture("small:a"), &name, &["--dest-cert-dir", &host_dir.display().to_string()]);

    let certs_only_ca = dir.path().join("ca-only");
    std::fs::create_dir_all(certs_only_ca.join(&reg.addr)).unwrap();
    std::fs::copy(&ca, certs_only_ca.join(&reg.addr).join("ca.crt")).unwrap();
    let tmp_root = temp_root();
    let svc = open_reg(tmp_root.path(), RegistryOptions { certs_dir: Some(certs_only_ca), ..Default::default() });
    assert!(svc.pull(&name, None, None).is_err(), "no client certificate, no access");

    let tmp_root = temp_root();
    let svc = open_reg(
        tmp_root.path(),
        RegistryOptions { certs_dir: Some(dir.path().join("certs.d")), ..Default::default() },
    );
    assert_eq!(svc.pull(&name, None, None).unwrap(), registry_config_digest("fixture/small", "a"));
}

struct TokenServer {
    child: std::process::Child,
    log: std::path::PathBuf,
}
impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl TokenServer {
    fn grants(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A real registry in token mode, with our token server: (registry, token server).
fn token_registry(dir: &Path, exp_offset: i64) -> (OwnRegistry, TokenServer) {
    let (cert, key) = (dir.join("token.crt"), dir.join("token.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token signer", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let port = free_port();
    let log = dir.join("tokens.log");
    let child = std::process::Command::new("python3")
        .arg(repo_root().join("tests/support/tokenserver.py"))
        .args([
            &port.to_string(),
            &cert.display().to_string(),
            &key.display().to_string(),
            "imgsvc-test-issuer",
            "imgsvc-test-registry",
            "alice:secret",
            "good-refresh-token",
            &log.display().to_string(),
        ])
        .env("TOKEN_EXP_OFFSET", exp_offset.to_string())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: imgsvc-test-registry\n    issuer: imgsvc-test-issuer\n    rootcertbundle: {}",
        cert.display()
    );
    let reg = start_registry(&dir.join("reg"), "", &auth);
    (reg, TokenServer { child, log })
}

#[test]
fn bearer_tokens_from_a_token_server() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, tokens) = token_registry(dir.path(), 300);
    let name = format!("{}/tok/debian:v1", reg.addr);
    skopeo_copy(&fixture("debian:v1"), &name, &["--dest-tls-verify=false", "--dest-creds", "alice:secret"]);
    let before = tokens.grants().len();

    // Anonymous: the token server refuses, the error says credentials are needed.
    let tmp_root = temp_root();
    let svc = open_reg(tmp_root.path(), RegistryOptions::default());
    let err = svc.pull(&name, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    // Wrong password.
    let bad = Auth { username: "alice".into(), password: "wrong".into(), ..Default::default() };
    assert_eq!(svc.pull(&name, Some(&bad), None).unwrap_err().kind(), ErrorKind::Unauthenticated);
    // A revoked (unknown) refresh token.
    let revoked = Auth { identity_token: "revoked-token".into(), ..Default::default() };
    assert_eq!(svc.pull(&name, Some(&revoked), None).unwrap_err().kind(), ErrorKind::Unauthenticated);
    // A registry token that is not valid: the registry itself rejects it.
    let junk = Auth { registry_token: "not.a.jwt".into(), ..Default::default() };
    assert_eq!(svc.pull(&name, Some(&junk), None).unwrap_err().kind(), ErrorKind::Unauthenticated);

    // Basic credentials: one token for the pull's scope, reused by every request.
    let n = tokens.grants().len();
    let good = Auth { username: "alice".into(), password: "secret".into(), ..Default::default() };
    let id = svc.pull(&name, Some(&good), None).unwrap();
    assert_eq!(id, registry_config_digest("fixture/debian", "v1"));
    let grants: Vec<_> = tokens.grants()[n..].to_vec();
    assert_eq!(grants.len(), 1, "one token for the whole pull: {grants:?}");
    assert_eq!(grants[0]["scope"][0], "repository:tok/debian:pull", "the scope comes from the challenge");

    // An identity token is exchanged with the refresh-token grant.
    let tmp_root = temp_root();
    let svc = open_reg(tmp_root.path(), RegistryOptions::default());
    let refresh = Auth { identity_token: "good-refresh-token".into(), ..Default::default() };
    assert_eq!(svc.pull(&name, Some(&refresh), None).unwrap(), id);
    assert!(tokens.grants().iter().any(|g| g["grant"] == "refresh_token" && g["ok"] == true));
    assert!(tokens.grants().len() > before);
}

#[test]
fn an_expired_token_mid_pull_is_renewed_once() {
    // Tokens the registry accepts only within its 60 s clock leeway: valid for ~3 s.
    let dir = tempfile::tempdir().unwrap();
    let (reg, tokens) = token_registry(dir.path(), -57);
    let name = format!("{}/tok/debian:v1", reg.addr);
    skopeo_copy(&fixture("debian:v1"), &name, &["--dest-tls-verify=false", "--dest-creds", "alice:secret"]);
    let (m, _) = registry_manifest("fixture/debian", "v1");
    let big = m["layers"].as_array().unwrap().iter().max_by_key(|l| l["size"].as_u64()).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // Hold the download lock of the biggest layer for 5 s, so that layer is
    // fetched after the pull's token has expired.
    let root = temp_root();
    let svc = open_reg(root.path(), RegistryOptions::default());
    std::fs::create_dir_all(root.path().join("ingest")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.path().join("ingest").join(format!("{}.lock", &big[7..])))
        .unwrap();
    lock.lock().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(lock);
    });
    let n = tokens.grants().len();
    let good = Auth { username: "alice".into(), password: "secret".into(), ..Default::default() };
    let id = svc.pull(&name, Some(&good), None).unwrap();
    releaser.join().unwrap();
    assert_eq!(id, registry_config_digest("fixture/debian", "v1"));
    let grants = tokens.grants()[n..].len();
    assert_eq!(grants, 2, "the expired token was renewed once");
}

#[test]
fn registries_conf_search_aliases_mirrors_and_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let origin = registry();
    // A pull-through cache of the origin, and an empty registry that lacks everything.
    let cache = start_registry(&dir.path().join("cache"), "", &format!("proxy:\n  remoteurl: http://{origin}"));
    let empty = start_registry(&dir.path().join("empty"), "", "");
    let dead = format!("127.0.0.1:{}", free_port());
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
unqualified-search-registries = ["{dead}", "{origin}"]
short-name-mode = "permissive"

[aliases]
"smallalias" = "{origin}/fixture/small"

[[registry]]
prefix = "{origin}/fixture"
location = "{origin}/fixture"
[[registry.mirror]]
location = "{dead}/fixture"
[[registry.mirror]]
location = "{empty}/fixture"
[[registry.mirror]]
location = "{cache}/fixture"

[[registry]]
prefix = "blocked.example.com"
blocked = true
"#,
            empty = empty.addr,
            cache = cache.addr
        ),
    )
    .unwrap();
    let opts = RegistryOptions { registries_conf: Some(conf.clone()), ..Default::default() };
    let root = temp_root();
    let svc = open_reg(root.path(), opts.clone());

    // Mirrors in order: a dead one and an empty one are skipped, the cache serves.
    let gets = cache.blob_gets();
    let id = svc.pull(&fixture("named:latest"), None, None).unwrap();
    assert_eq!(id, registry_config_digest("fixture/named", "latest"));
    assert!(cache.blob_gets() > gets, "the blobs came from the mirror");
    let img = svc.list(None).unwrap().remove(0);
    assert_eq!(img.repo_tags, vec![fixture("named:latest")], "names are the origin's, not the mirror's");

    // A short name: the search list is tried in order (the dead registry first).
    let id = svc.pull("fixture/root:latest", None, None).unwrap();
    assert_eq!(svc.status("fixture/root:latest", false).unwrap().unwrap().image.id, id);
    assert!(svc.status(&fixture("root:latest"), false).unwrap().is_some());
    // An alias.
    let small = svc.pull("smallalias:a", None, None).unwrap();
    assert_eq!(svc.status("smallalias:a", false).unwrap().unwrap().image.repo_tags, vec![fixture("small:a")]);
    svc.remove("smallalias:a").unwrap();
    assert!(svc.status(&small, false).unwrap().is_none());

    // Blocked.
    let err = svc.pull("blocked.example.com/app:1", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // Enforcing mode: an ambiguous short name is an error naming the candidates.
    let d = dir.path().join("registries.conf.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("50-enforce.conf"), "short-name-mode = \"enforcing\"\n").unwrap();
    let svc = open_reg(root.path(), opts.clone());
    let err = svc.pull("fixture/root:latest", None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains(&dead) && err.message().contains(origin), "{err}");

    // A broken drop-in names its file and line.
    std::fs::write(d.join("60-broken.conf"), "\n[[registry]]\nprefix = \n").unwrap();
    let tmp_root = temp_root();
    let mut o = Options::new(tmp_root.path());
    o.registry = opts;
    let err = BlockingService::new(o).err().expect("invalid file");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("60-broken.conf") && err.message().contains("line 3"), "{err}");
}

#[test]
fn insecure_registries_accept_unverified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, crt, key) = make_ca_and_server_cert(dir.path());
    let reg = start_registry(
        &dir.path().join("reg"),
        &format!("  tls:\n    certificate: {}\n    key: {}", crt.display(), key.display()),
        "",
    );
    let name = format!("{}/insecure/small:a", reg.addr);
    skopeo_copy(&fixture("small:a"), &name, &["--dest-tls-verify=false"]);
    let conf = dir.path().join("registries.conf");
    std::fs::write(&conf, format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr)).unwrap();
    let tmp_root = temp_root();
    let svc = open_reg(tmp_root.path(), RegistryOptions { registries_conf: Some(conf), ..Default::default() });
    assert_eq!(svc.pull(&name, None, None).unwrap(), registry_config_digest("fixture/small", "a"));
}
