//! Hostile or broken registries: a real registry behind a small fault proxy
//! (tests/support/faultproxy.py). Each pull ends in success or in the right
//! error kind, and a failed pull leaves the store as it was.

mod common;
use common::*;
use imgsvc::{BlockingService, ErrorKind, Options};
use std::time::{Duration, Instant};

struct Proxy {
    addr: String,
    log: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}
impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl Proxy {
    fn start() -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("proxy.log");
        let child = std::process::Command::new("python3")
            .arg(repo_root().join("tests/support/faultproxy.py"))
            .args([port.to_string(), registry().to_string(), log.display().to_string()])
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Proxy { addr, log, child, _dir: dir }
    }
    fn name(&self, fault: &str, image: &str) -> String {
        format!("{}/fault-{fault}/fixture/{image}", self.addr)
    }
    /// Requests the proxy saw for one fault.
    fn requests(&self, fault: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["fault"] == fault)
            .collect()
    }
}

fn snapshot(root: &std::path::Path) -> (Vec<u8>, std::collections::BTreeSet<String>) {
    (std::fs::read(root.join("index.json")).unwrap(), stored_blobs(root))
}

fn service(root: &std::path::Path) -> BlockingService {
    let mut o = Options::new(root);
    o.progress_timeout = Duration::from_secs(2);
    BlockingService::new(o).unwrap()
}

#[test]
fn each_fault_ends_in_success_or_the_right_error() {
    let proxy = Proxy::start();
    let root = temp_root();
    let svc = service(root.path());
    svc.pull(&fixture("named:latest"), None, None).unwrap();
    let clean = snapshot(root.path());
    let mut report = Vec::new();

    let failing = [
        ("corrupt", "small:a", ErrorKind::Integrity, "digest mismatch"),
        ("long", "small:a", ErrorKind::Integrity, "longer than"),
        ("huge", "small:a", ErrorKind::Unsupported, "4194304-byte limit"),
        ("wrongdigest", "small:a", ErrorKind::Integrity, "Docker-Content-Digest"),
        ("cutall", "debian:v1", ErrorKind::Unavailable, "attempts"),
        ("500", "small:a", ErrorKind::Unavailable, "500"),
        ("stall", "debian:v1", ErrorKind::Timeout, "no progress"),
        ("stallmanifest", "small:a", ErrorKind::Timeout, "no progress"),
    ];
    for (fault, image, kind, text) in failing {
        let t = Instant::now();
        let err = svc.pull(&proxy.name(fault, image), None, None).unwrap_err();
        report.push(format!("{fault}: {:?} in {:?}: {err}", err.kind(), t.elapsed()));
        assert_eq!(err.kind(), kind, "{fault}: {err}");
        assert!(err.message().contains(text), "{fault}: {err}");
        assert_eq!(snapshot(root.path()), clean, "{fault}: a failed pull changed the store");
        assert!(svc.fsck(false).unwrap().is_clean(), "{fault}: {:?}", svc.fsck(false).unwrap());
    }
    // Retries are bounded.
    let cut_blob_requests =
        proxy.requests("cutall").iter().filter(|r| r["path"].as_str().unwrap().contains("/blobs/")).count();
    assert!(cut_blob_requests <= 5 * 5, "cutall: {cut_blob_requests} blob requests");
    let e500 = proxy.requests("500").iter().filter(|r| r["path"].as_str().unwrap().contains("/blobs/")).count();
    let (small, _) = registry_manifest("fixture/small", "a");
    let small_blobs = 1 + small["layers"].as_array().unwrap().len();
    assert!(e500 <= small_blobs * 5, "500: {e500} blob requests for {small_blobs} blobs");

    let recovering = ["ok", "cut", "cutnorange", "429", "500once"];
    for fault in recovering {
        let t = Instant::now();
        let image = if fault.starts_with("cut") { "debian:v1" } else { "small:a" };
        let id = svc.pull(&proxy.name(fault, image), None, None).unwrap_or_else(|e| panic!("{fault}: {e}"));
        report.push(format!("{fault}: ok in {:?}", t.elapsed()));
        let repo = if image == "debian:v1" { "fixture/debian" } else { "fixture/small" };
        assert_eq!(id, registry_config_digest(repo, image.split(':').nth(1).unwrap()), "{fault}");
        if fault == "429" {
            assert!(t.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");
        }
        svc.remove(&id).unwrap();
    }
    // A cut download resumed with Range where the registry allows it.
    let ranged = proxy.requests("cut").iter().filter(|r| r["range"].as_str().is_some_and(|r| r != "bytes=0-")).count();
    assert!(ranged >= 1, "no Range request after a cut");
    assert!(svc.fsck(false).unwrap().is_clean());
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_progress_timeout_of_zero_means_never() {
    // The manifest request hangs; with no timeout the pull waits until cancelled.
    let proxy = Proxy::start();
    let root = temp_root();
    let mut o = Options::new(root.path());
    o.progress_timeout = Duration::ZERO;
    let svc = BlockingService::new(o).unwrap();
    let token = imgsvc::CancelToken::new();
    let t2 = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        t2.cancel();
    });
    let t = Instant::now();
    let err = svc.pull_cancellable(&proxy.name("stallmanifest", "small:a"), None, None, &token).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(t.elapsed() >= Duration::from_secs(4), "gave up before it was cancelled");
}
