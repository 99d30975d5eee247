//! Pulls from a real registry (Debian's docker-registry) of real images.

mod common;
use common::*;
use imgsvc::{CancelToken, ErrorKind, Progress};
use std::process::Command;

#[test]
fn debian_image_pull_has_cri_identity_and_is_an_oci_layout() {
    let root = temp_root();
    let svc = open(root.path());
    let reference = fixture("debian:v1");
    let mut events = vec![];
    let mut cb = |p: &Progress| {
        events.push(p.clone());
        true
    };
    let id = svc.pull(&reference, None, Some(&mut cb)).expect("pull debian");

    // Identity: the id is the config digest the registry serves.
    assert_eq!(id, registry_config_digest("fixture/debian", "v1"));
    let (manifest, manifest_digest) = registry_manifest("fixture/debian", "v1");
    let layers = manifest["layers"].as_array().unwrap();
    assert!(layers.len() >= 3, "the fixture has several layers");

    // Progress: resolved first, committed last, every blob started and done.
    assert!(matches!(&events[0], Progress::Resolved { layers: n, .. } if *n == layers.len()));
    assert_eq!(events.last(), Some(&Progress::Committed { image_id: id.clone() }));
    for l in layers {
        let d = l["digest"].as_str().unwrap();
        assert!(
            events.iter().any(|e| matches!(e, Progress::LayerDone { digest, .. } if digest == d)),
            "layer {d} done"
        );
    }

    let images = svc.list(None).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.repo_tags, vec![reference.clone()]);
    assert_eq!(img.repo_digests, vec![format!("{}/fixture/debian@{manifest_digest}", registry())]);
    let want_size: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum::<u64>()
        + manifest["config"]["size"].as_u64().unwrap()
        + std::fs::metadata(root.path().join("blobs/sha256").join(manifest_digest.trim_start_matches("sha256:")))
            .unwrap()
            .len();
    assert_eq!(img.size, want_size);
    assert_eq!(img.uid, Some(65534));
    assert_eq!(img.username, "");

    // Every blob verified in place, nothing left in ingest/.
    for l in layers {
        let d = l["digest"].as_str().unwrap();
        let bytes = std::fs::read(root.path().join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
        use sha2::Digest;
        assert_eq!(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))), d);
    }
    let leftovers: Vec<_> = files_under(&root.path().join("ingest"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "ingest leftovers: {leftovers:?}");

    // Standard tools read the store.
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{reference}", root.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(manifest_digest.as_str()));
    assert_eq!(v["Layers"].as_array().unwrap().len(), layers.len());
    let out = Command::new("umoci").args(["ls", "--layout"]).arg(root.path()).output().unwrap();
    assert!(out.status.success(), "umoci ls: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == reference), "umoci lists {reference}");

    // Verbose status carries the image config.
    let st = svc.status(&reference, true).unwrap().expect("present");
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "65534:65534");
    assert!(svc.status(&reference, false).unwrap().unwrap().info.is_empty());

    // Re-pull skips every blob and fetches none.
    let gets_before: Vec<_> =
        layers.iter().map(|l| blob_gets("fixture/debian", l["digest"].as_str().unwrap())).collect();
    let mut skipped = 0;
    let mut cb = |p: &Progress| {
        if matches!(p, Progress::LayerSkipped { .. }) {
            skipped += 1;
        }
        !matches!(p, Progress::LayerStarted { .. })
    };
    assert_eq!(svc.pull(&reference, None, Some(&mut cb)).unwrap(), id);
    assert_eq!(skipped, layers.len() + 1);
    let gets_after: Vec<_> =
        layers.iter().map(|l| blob_gets("fixture/debian", l["digest"].as_str().unwrap())).collect();
    assert_eq!(gets_before, gets_after, "a re-pull fetched blobs again");

    // fs_info counts what is stored and names the store's root.
    let fs = svc.fs_info().unwrap();
    assert_eq!(fs.mountpoint, root.path().display().to_string());
    assert!(fs.used_bytes >= want_size && fs.inodes_used >= layers.len() as u64 + 2 && fs.timestamp_ns > 0);

    // Remove: the image and all its blobs go.
    svc.remove(&reference).unwrap();
    assert!(svc.list(None).unwrap().is_empty());
    assert!(stored_blobs(root.path()).is_empty(), "blobs left: {:?}", stored_blobs(root.path()));
    assert!(svc.fs_info().unwrap().used_bytes < fs.used_bytes);
    svc.remove(&reference).unwrap(); // idempotent
}

#[test]
fn same_config_under_other_manifests_is_one_image() {
    let root = temp_root();
    let svc = open(root.path());
    let a = svc.pull(&fixture("small:a"), None, None).unwrap();
    let b = svc.pull(&fixture("small:b"), None, None).unwrap();
    assert_eq!(a, b, "two tags of one manifest are one image");
    let mut ids = vec![a.clone()];
    for name in ["small-v2s2:latest", "small-zstd:latest", "small-plain:latest", "nomediatype:latest"] {
        let id = svc.pull(&fixture(name), None, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let repo = format!("fixture/{}", name.split(':').next().unwrap());
        assert_eq!(id, registry_config_digest(&repo, "latest"), "{name}");
        ids.push(id);
    }
    let images = svc.list(None).unwrap();
    let small = images.iter().find(|i| i.id == a).unwrap();
    assert!(small.repo_tags.contains(&fixture("small:a")) && small.repo_tags.contains(&fixture("small:b")));
    // Every other name whose config is the same landed on the same image.
    for (name, id) in
        ["small-v2s2:latest", "small-zstd:latest", "small-plain:latest", "nomediatype:latest"].iter().zip(&ids[1..])
    {
        let img = images.iter().find(|i| &i.id == id).unwrap();
        assert!(img.repo_tags.contains(&fixture(name)), "{name} listed on {}", img.id);
        let (_, digest) = registry_manifest(&format!("fixture/{}", name.split(':').next().unwrap()), "latest");
        let rd = format!("{}/fixture/{}@{digest}", registry(), name.split(':').next().unwrap());
        assert!(img.repo_digests.contains(&rd), "{rd} in {:?}", img.repo_digests);
    }
    assert_eq!(
        images.len(),
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        "one image per config digest"
    );

    // untag: one name goes, the image stays while names remain.
    svc.untag(&fixture("small:a")).unwrap();
    let img = svc.status(&a, false).unwrap().expect("still there").image;
    assert!(!img.repo_tags.contains(&fixture("small:a")));
    assert_eq!(svc.untag(&fixture("small:a")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(svc.untag(&a).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(svc.untag(a.trim_start_matches("sha256:")).unwrap_err().kind(), ErrorKind::InvalidArgument);
    for name in img.repo_tags.clone() {
        svc.untag(&name).unwrap();
    }
    assert!(svc.status(&a, false).unwrap().is_none(), "the image went with its last name");
}

#[test]
fn lookups_by_every_kind_of_name() {
    let root = temp_root();
    let svc = open(root.path());
    let id = svc.pull(&fixture("small:a"), None, None).unwrap();
    let (_, digest) = registry_manifest("fixture/small", "a");
    let hex = id.trim_start_matches("sha256:");
    let names = [
        fixture("small:a"),
        format!("{}@{digest}", fixture("small")),
        id.clone(),
        hex.to_string(),
        hex[..13].to_string(),
        hex[..3].to_string(),
        format!("sha256:{}", &hex[..5]),
    ];
    for n in &names {
        let st = svc.status(n, false).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(st.map(|s| s.image.id), Some(id.clone()), "lookup {n}");
        assert_eq!(svc.list(Some(n)).unwrap().len(), 1, "list filter {n}");
    }
    // Absent is an empty answer, not an error.
    for n in [fixture("small:nope"), "busybox".to_string(), "fff".into(), format!("sha256:{}", "0".repeat(64))] {
        assert!(svc.status(&n, false).unwrap().is_none(), "{n}");
        assert!(svc.list(Some(&n)).unwrap().is_empty());
    }
    assert_eq!(svc.list(Some("")).unwrap().len(), 1, "an empty filter means all");
    for bad in ["", "Bad/Name", "a b", "x@sha256:12"] {
        assert_eq!(svc.status(bad, false).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    // Removing by a short id prefix removes every name.
    svc.pull(&fixture("small:b"), None, None).unwrap();
    svc.remove(&hex[..12]).unwrap();
    assert!(svc.list(None).unwrap().is_empty());
}

#[test]
fn users_pins_and_shared_blobs() {
    let root = temp_root();
    let svc =
        open_with(root.path(), |o| o.pinned = vec![fixture("root:latest"), format!("{}/fixture/nam*", registry())]);
    let root_id = svc.pull(&fixture("root:latest"), None, None).unwrap();
    let named_id = svc.pull(&fixture("named:latest"), None, None).unwrap();
    let small_id = svc.pull(&fixture("small:a"), None, None).unwrap();
    let get = |id: &str| svc.status(id, false).unwrap().unwrap().image;
    let (r, n, s) = (get(&root_id), get(&named_id), get(&small_id));
    assert_eq!((r.uid, r.username.as_str(), r.pinned), (Some(0), "", true));
    assert_eq!((n.uid, n.username.as_str(), n.pinned), (None, "nobody", true));
    assert_eq!((s.uid, s.username.as_str(), s.pinned), (Some(1000), "", false));
    assert!(r.size > 0 && n.size > 0 && s.size > 0);

    // Blobs another image still uses survive a remove; the rest go.
    let before = stored_blobs(root.path());
    svc.remove(&root_id).unwrap();
    let after = stored_blobs(root.path());
    let (m, _) = registry_manifest("fixture/named", "latest");
    for l in m["layers"].as_array().unwrap() {
        assert!(after.contains(l["digest"].as_str().unwrap()), "a layer of named was deleted");
    }
    assert!(!after.contains(&root_id), "root's config was kept");
    assert!(after.len() < before.len());
}

#[test]
fn multi_platform_index_resolves_to_this_machine() {
    let root = temp_root();
    let svc = open(root.path());
    let (index, index_digest) = registry_manifest("fixture/multi", "latest");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
        .expect("an amd64 entry")
        .clone();
    let id = svc.pull(&fixture("multi:latest"), None, None).unwrap();
    assert_eq!(id, registry_config_digest("fixture/multi", entry["digest"].as_str().unwrap()));
    let img = svc.status(&fixture("multi:latest"), false).unwrap().unwrap().image;
    assert_eq!(
        img.repo_digests,
        vec![format!("{}@{index_digest}", fixture("multi"))],
        "the repo digest is the index digest"
    );
    // Both the index and the platform manifest digest find it.
    for d in [index_digest.as_str(), entry["digest"].as_str().unwrap()] {
        assert_eq!(
            svc.status(&format!("{}@{d}", fixture("multi")), false).unwrap().map(|s| s.image.id),
            Some(id.clone())
        );
    }
    // Pulled by digest: no tag, one repo digest.
    let root2 = temp_root();
    let svc2 = open(root2.path());
    let by_digest = format!("{}@{}", fixture("multi"), index_digest);
    assert_eq!(svc2.pull(&by_digest, None, None).unwrap(), id);
    let img = svc2.list(None).unwrap().remove(0);
    assert!(img.repo_tags.is_empty());
    assert_eq!(img.repo_digests, vec![by_digest.clone()]);
}

#[test]
fn unsupported_and_missing_images_fail_clearly_and_change_nothing() {
    let root = temp_root();
    let svc = open(root.path());
    svc.pull(&fixture("small:a"), None, None).unwrap();
    let blobs = stored_blobs(root.path());
    let index = std::fs::read(root.path().join("index.json")).unwrap();
    let cases = [
        ("noplatform:latest", ErrorKind::Unsupported, "linux/s390x"),
        ("artifact:latest", ErrorKind::Unsupported, "not a container image"),
        ("small:does-not-exist", ErrorKind::NotFound, "does-not-exist"),
        ("no-such-repo:v1", ErrorKind::NotFound, "no-such-repo"),
    ];
    for (name, kind, text) in cases {
        let err = svc.pull(&fixture(name), None, None).unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(err.message().contains(text), "{name}: {err}");
    }
    for bad in ["", "UPPER/case", "a b", "x@sha256:abc"] {
        assert_eq!(svc.pull(bad, None, None).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    // A closed port is unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = svc.pull(&format!("127.0.0.1:{port}/x:y"), None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(stored_blobs(root.path()), blobs);
    assert_eq!(std::fs::read(root.path().join("index.json")).unwrap(), index);
}

#[test]
fn cancelling_leaves_no_partial_image() {
    let root = temp_root();
    let svc = open_with(root.path(), |o| o.max_parallel_downloads = 1);
    // The callback cancels at the first bytes of the first layer.
    let mut cb = |p: &Progress| !matches!(p, Progress::Bytes { .. });
    let err = svc.pull(&fixture("debian:v1"), None, Some(&mut cb)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(svc.list(None).unwrap().is_empty());
    // The job stops with its last waiter; give it a moment, then nothing partial remains.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let partial: Vec<_> = files_under(&root.path().join("ingest"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(partial.is_empty(), "partial downloads left: {partial:?}");

    // A cancel token from another thread.
    let token = CancelToken::new();
    let t2 = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        t2.cancel();
    });
    let err = svc.pull_cancellable(&fixture("debian:v1"), None, None, &token).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(svc.list(None).unwrap().is_empty());
    // And the next pull completes.
    svc.pull(&fixture("debian:v1"), None, None).unwrap();
    assert_eq!(svc.list(None).unwrap().len(), 1);
}

#[test]
fn concurrent_pulls_fetch_each_blob_once() {
    let repo = format!("test/concurrent-{}", std::process::id());
    let reference = private_copy("debian:v1", &format!("{repo}:v1"));
    let root = temp_root();
    let svc = std::sync::Arc::new(open(root.path()));
    let (m, _) = registry_manifest(&repo, "v1");
    let digests: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .chain(std::iter::once(m["config"]["digest"].as_str().unwrap().to_string()))
        .collect();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (svc, reference) = (svc.clone(), reference.clone());
            std::thread::spawn(move || svc.pull(&reference, None, None))
        })
        .collect();
    let ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(svc.list(None).unwrap().len(), 1);
    if registry_log().is_some() {
        for d in &digests {
            assert_eq!(blob_gets(&repo, d), Some(1), "blob {d} fetched once");
        }
    }
}

/// A one-route HTTP server for what no real registry will serve (schema 1).
fn serve_once_per_connection(body: &'static str, content_type: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 8192];
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let response = if !req.starts_with("GET ") {
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else if req.starts_with("GET /v2/ ") {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    addr
}

#[test]
fn schema1_is_unsupported() {
    let schema1 = r#"{"schemaVersion":1,"name":"old/app","tag":"v1","architecture":"amd64","fsLayers":[{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],"history":[{"v1Compatibility":"{}"}]}"#;
    let addr = serve_once_per_connection(schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws");
    let root = temp_root();
    let svc = open(root.path());
    let err = svc.pull(&format!("{addr}/old/app:v1"), None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("schema 1"), "{err}");
    assert!(svc.list(None).unwrap().is_empty());
}

#[test]
fn loopback_tls_with_an_untrusted_certificate_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let regdir = dir.path().join("reg");
    let script = repo_root().join("scripts/registry.sh");
    let out = Command::new(&script).arg("start").arg(&regdir).arg("--tls").arg(&cert).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let addr = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let root = temp_root();
    let svc = open(root.path());
    let err = svc.pull(&format!("{addr}/fixture/small:a"), None, None).unwrap_err();
    let _ = Command::new(&script).arg("stop").arg(&regdir).status();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("certificate"), "{err}");
    assert!(err.message().contains("refusing to fall back"), "{err}");
}

#[test]
fn a_tag_that_moves_leaves_the_old_image_listed_by_digest() {
    let repo = format!("test/moving-{}", std::process::id());
    let reference = private_copy("small:a", &format!("{repo}:v1"));
    let root = temp_root();
    let svc = open(root.path());
    let old = svc.pull(&reference, None, None).unwrap();
    let (_, old_digest) = registry_manifest(&repo, "v1");
    private_copy("root:latest", &format!("{repo}:v1"));
    let new = svc.pull(&reference, None, None).unwrap();
    assert_ne!(old, new);
    let old_img = svc.status(&old, false).unwrap().expect("the old image stays").image;
    assert!(old_img.repo_tags.is_empty());
    assert_eq!(old_img.repo_digests, vec![format!("{}/{repo}@{old_digest}", registry())]);
    assert_eq!(svc.status(&reference, false).unwrap().unwrap().image.id, new);
    assert_eq!(svc.list(None).unwrap().len(), 2);
}
