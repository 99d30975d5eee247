//! Findings of an adversarial review, each kept fixed by a test: fsck never
//! takes files from a live writer, repairs one broken name without taking
//! the image's other names, and absurd input gets short, precise errors.

mod common;
use common::*;
use imgsvc::{BlockingService, ErrorKind, Options};

#[test]
fn fsck_repair_spares_temp_files_of_live_writers() {
    let root = temp_root();
    let svc = open(root.path());
    let blobs = root.path().join("blobs/sha256");
    // Ours (a live pid): a pull in this process may be about to rename it.
    let live = blobs.join(format!(".{}.{}.0.tmp", "a".repeat(64), std::process::id()));
    std::fs::write(&live, b"in flight").unwrap();
    // A pid that no longer runs: left by a crash.
    let dead_pid = (1_000_000u32..).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let dead = blobs.join(format!(".{}.{dead_pid}.0.tmp", "b".repeat(64)));
    std::fs::write(&dead, b"left over").unwrap();
    let report = svc.fsck(true).unwrap();
    assert!(live.exists(), "repair deleted a live writer's file: {report:?}");
    assert!(!dead.exists(), "{report:?}");
    assert!(report.problems.iter().any(|p| p.contains(&dead_pid.to_string())), "{report:?}");
    assert!(!report.problems.iter().any(|p| p.contains(&std::process::id().to_string())), "{report:?}");
}

#[test]
fn fsck_repair_removes_only_the_broken_name() {
    let root = temp_root();
    let svc = open(root.path());
    let id = svc.pull(&fixture("small:a"), None, None).unwrap();
    assert_eq!(svc.pull(&fixture("small-v2s2:latest"), None, None).unwrap(), id, "one config, one image");
    // Lose the manifest that only the name small:a uses.
    let (_, manifest) = registry_manifest("fixture/small", "a");
    std::fs::remove_file(root.path().join("blobs/sha256").join(&manifest[7..])).unwrap();
    let report = svc.fsck(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let img = svc.status(&id, false).unwrap().expect("the image keeps its complete name");
    assert_eq!(img.image.repo_tags, vec![fixture("small-v2s2:latest")]);
    assert!(svc.status(&fixture("small:a"), false).unwrap().is_none());
}

#[test]
fn absurd_input_gets_short_precise_errors() {
    let root = temp_root();
    let svc = open(root.path());
    // Longer than any id: not an id prefix.
    let err = svc.status(&"a".repeat(300), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = svc.remove(&"a".repeat(3 << 20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().len() < 1000, "a {} byte message", err.message().len());
    // A huge malformed reference is named, but clipped.
    let err = svc.pull(&format!("UPPER/{}", "x".repeat(5 << 20)), None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().len() < 1000 && err.message().contains("bytes)"), "{}", &err.message()[..200]);

    let err = BlockingService::new(Options::new("")).err().expect("an empty root is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // A configuration path naming an endless file is refused, not read forever.
    let mut o = Options::new(root.path().join("other"));
    o.registry.registries_conf = Some("/dev/zero".into());
    let err = BlockingService::new(o).err().expect("/dev/zero is no registries.conf");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("larger than"), "{err}");
}

#[test]
fn calls_from_inside_a_progress_callback_work() {
    let root = temp_root();
    let svc = open(root.path());
    let mut seen = Vec::new();
    let mut cb = |p: &imgsvc::Progress| {
        if matches!(p, imgsvc::Progress::Resolved { .. }) {
            // Re-entering the same service from its callback.
            seen.push(svc.list(None).map(|l| l.len()));
            seen.push(svc.status(&fixture("small:a"), false).map(|s| s.map(|s| s.image.id).unwrap_or_default().len()));
        }
        true
    };
    let id = svc.pull(&fixture("small:a"), None, Some(&mut cb)).unwrap();
    assert_eq!(seen, vec![Ok(0), Ok(0)]);
    assert!(svc.status(&id, false).unwrap().is_some());
}

#[test]
fn a_pull_failing_on_a_bad_config_leaves_the_store_as_it_was() {
    let root = temp_root();
    let svc = open(root.path());
    let repo = format!("test/badconfig-{}", std::process::id());
    let config = b"notjson";
    let cdigest = push_blob(&repo, config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": config.len()},
        "layers": [],
    })
    .to_string();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &format!("http://{}/v2/{repo}/manifests/v1", registry()),
    ]);
    let err = svc.pull(&format!("{}/{repo}:v1", registry()), None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(stored_blobs(root.path()).is_empty(), "{:?}", stored_blobs(root.path()));
    assert!(svc.fsck(false).unwrap().is_clean());
}
