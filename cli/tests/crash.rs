//! Crash safety: `imgsvc pull` of the multi-layer Debian image killed with
//! SIGKILL at many moments (timed kills, and failpoints for the moments a
//! timer cannot hit) leaves a store that opens, lists only complete images,
//! passes fsck (after --repair at most), and lets the next pull finish while
//! reusing the blobs already verified.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NO_SYSTEM_CONFIG: [&str; 4] = ["--registries-conf=", "--auth-file=", "--docker-config=", "--cert-dir="];

fn imgsvc(root: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsvc"));
    c.arg("--root").arg(root).args(NO_SYSTEM_CONFIG).env_remove("IMGSVC_FAILPOINT");
    c
}

fn fsck(root: &std::path::Path, repair: bool) -> (i32, String) {
    let mut c = imgsvc(root);
    c.arg("fsck");
    if repair {
        c.arg("--repair");
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn killed_pulls_leave_a_consistent_store() {
    let repo = format!("test/crash-{}", std::process::id());
    let reference = private_copy("debian:v1", &format!("{repo}:v1"));
    let (m, _) = registry_manifest(&repo, "v1");
    let blobs: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .chain(std::iter::once(m["config"]["digest"].as_str().unwrap().to_string()))
        .collect();
    let id = m["config"]["digest"].as_str().unwrap().to_string();
    let gets = || blobs.iter().map(|b| blob_gets(&repo, b).unwrap_or(0)).sum::<usize>();

    // How long a whole pull takes here, to spread the timed kills over it.
    let probe = temp_root();
    let t = Instant::now();
    assert!(imgsvc(probe.path()).args(["pull", &reference]).output().unwrap().status.success());
    let full = t.elapsed().max(Duration::from_millis(100));

    let mut points: Vec<(String, Option<Duration>)> =
        (0..16).map(|i| (format!("kill at {}/16", i), Some(full * i / 14))).collect();
    for fp in [
        "before-blob-rename",
        "after-blob-rename",
        "before-index-write",
        "before-rename:index.json",
        "after-index-write",
        "before-layer-rename",
    ] {
        points.push((fp.to_string(), None));
    }
    assert!(points.len() >= 20);
    let mut outcomes = Vec::new();
    for (label, delay) in &points {
        let root = temp_root();
        // Create the store first, so the index.json failpoint hits the pull's update.
        assert!(imgsvc(root.path()).arg("images").output().unwrap().status.success());
        let mut cmd = imgsvc(root.path());
        cmd.args(["pull", &reference]).stdout(Stdio::null()).stderr(Stdio::null());
        if delay.is_none() {
            cmd.env("IMGSVC_FAILPOINT", label);
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(d) = delay {
            std::thread::sleep(*d);
            let _ = child.kill(); // SIGKILL
        }
        let status = child.wait().unwrap();

        // The store opens and lists only complete images.
        let svc = open(root.path());
        let images = svc.list(None).unwrap();
        assert!(images.len() <= 1, "{label}: {images:?}");
        let complete = images.len() == 1;
        if complete {
            assert_eq!(images[0].id, id, "{label}");
            for b in &blobs {
                assert!(root.path().join("blobs/sha256").join(&b[7..]).exists(), "{label}: listed image lacks {b}");
            }
            // An image becomes visible only once its layers are unpacked.
            let layers = std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count();
            assert_eq!(layers, blobs.len() - 1, "{label}: listed image has {layers} unpacked layers");
        }
        drop(svc);
        // fsck: clean, or only leftovers of the killed pull (never a broken image).
        let (code, text) = fsck(root.path(), false);
        assert!(code == 0 || code == 1, "{label}: fsck exit {code}: {text}");
        assert!(!text.contains("incomplete") && !text.contains("corrupt"), "{label}: {text}");

        // The next pull finishes, fetching only what was not yet verified.
        let present = blobs.iter().filter(|b| root.path().join("blobs/sha256").join(&b[7..]).exists()).count();
        // The registry logs a request when it ends; let the killed pull's requests land first.
        let mut before = gets();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = gets();
            if now == before {
                break;
            }
            before = now;
        }
        let out = imgsvc(root.path()).args(["pull", &reference]).output().unwrap();
        assert!(out.status.success(), "{label}: next pull: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
        if registry_log().is_some() {
            assert_eq!(gets() - before, blobs.len() - present, "{label}: verified blobs were fetched again");
        }
        // Whatever the kill left behind, --repair removes it and the store is clean.
        let (code, text) = fsck(root.path(), false);
        if code != 0 {
            assert!(!text.contains("incomplete") && !text.contains("corrupt"), "{label}: {text}");
            let (code, text) = fsck(root.path(), true);
            assert_eq!(code, 0, "{label}: fsck --repair: {text}");
        }
        assert_eq!(fsck(root.path(), false).0, 0, "{label}: not clean after repair");
        assert_eq!(open(root.path()).list(None).unwrap().len(), 1, "{label}: repair kept the image");
        outcomes.push(format!("{label}: killed={} complete={complete} blobs kept={present}", !status.success()));
    }
    eprintln!("{}", outcomes.join("\n"));
}

#[test]
fn fsck_reports_corruption_precisely_and_repair_cleans() {
    let root = temp_root();
    let r = root.path();
    assert!(imgsvc(r).args(["pull", &fixture("small:a")]).output().unwrap().status.success());
    assert!(imgsvc(r).args(["pull", &fixture("named:latest")]).output().unwrap().status.success());
    assert_eq!(fsck(r, false).0, 0);
    // Flip a byte in one layer of small, and leave an orphan blob and an orphan download.
    let (m, _) = registry_manifest("fixture/small", "a");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = r.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let orphan = format!("sha256:{}", "ab".repeat(32));
    std::fs::write(r.join("blobs/sha256").join(&orphan[7..]), b"orphan").unwrap();
    std::fs::write(r.join("ingest").join(format!(".{}.1.0.tmp", "cd".repeat(32))), b"partial").unwrap();

    let (code, text) = fsck(r, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("blob {layer} is corrupt")), "{text}");
    assert!(text.contains(&format!("blob {orphan} is not used")), "{text}");
    assert!(text.contains("orphaned download"), "{text}");
    let (code, text) = fsck(r, true);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("removed incomplete image"), "{text}");
    assert_eq!(fsck(r, false).0, 0);
    // The intact image is still there; the corrupt one is gone and pulls again.
    let svc = open(r);
    assert!(svc.status(&fixture("named:latest"), false).unwrap().is_some());
    assert!(svc.status(&fixture("small:a"), false).unwrap().is_none());
    svc.pull(&fixture("small:a"), None, None).unwrap();
    assert_eq!(svc.fsck(false).unwrap().remaining, Vec::<String>::new());
}
