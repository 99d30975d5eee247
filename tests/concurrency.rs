//! Concurrency against the real registry: many pulls of one image share the
//! downloads; pulls racing removes and removes racing removes end in a
//! consistent store; list and status stay correct while they run.

mod common;
use common::*;
use imgsvc::BlockingService;
use std::sync::atomic::{AtomicBool, Ordering};

fn layer_digests(repo: &str, tag: &str) -> Vec<String> {
    let (m, _) = registry_manifest(repo, tag);
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    out.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    out
}

/// What a reader may see of `id` at any moment: nothing, or the whole image.
fn check_view(svc: &BlockingService, id: &str, name: &str) {
    let listed = svc.list(None).unwrap();
    for i in &listed {
        assert!(i.size > 0 && !i.repo_digests.is_empty(), "half an image is listed: {i:?}");
    }
    if let Some(st) = svc.status(name, false).unwrap() {
        assert_eq!(st.image.id, id, "status of {name} answers another image");
        assert!(st.image.repo_tags.contains(&name.to_string()), "{:?}", st.image);
    }
}

#[test]
fn sixteen_threads_pulling_one_image_fetch_each_blob_once() {
    let repo = format!("test/conc16-{}", std::process::id());
    let name = private_copy("debian:v1", &format!("{repo}:v1"));
    let digests = layer_digests(&repo, "v1");
    let id = digests[0].clone();
    let root = temp_root();
    let svc = open(root.path());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pulls: Vec<_> = (0..16).map(|_| s.spawn(|| svc.pull(&name, None, None))).collect();
        // A reader alongside: never half an image.
        let reader = s.spawn(|| {
            let mut looks = 0;
            while !done.load(Ordering::Acquire) {
                check_view(&svc, &id, &name);
                looks += 1;
            }
            looks
        });
        for p in pulls {
            assert_eq!(p.join().unwrap().unwrap(), id);
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
    });
    for d in &digests {
        assert_eq!(blob_gets(&repo, d), Some(1), "blob {d} fetched more than once");
    }
    assert_eq!(svc.list(None).unwrap().len(), 1);
    assert!(svc.fsck(false).unwrap().is_clean());
}

#[test]
fn pull_racing_remove_ends_consistent() {
    let name = fixture("small:a");
    let root = temp_root();
    let svc = open(root.path());
    let id = registry_config_digest("fixture/small", "a");
    std::thread::scope(|s| {
        let puller = s.spawn(|| {
            for _ in 0..25 {
                svc.pull(&name, None, None).unwrap();
            }
        });
        let remover = s.spawn(|| {
            for _ in 0..25 {
                svc.remove(&name).unwrap();
                check_view(&svc, &id, &name);
            }
        });
        puller.join().unwrap();
        remover.join().unwrap();
    });
    // Whichever won last, the store is whole and agrees with itself.
    let report = svc.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    match svc.status(&name, false).unwrap() {
        Some(st) => assert_eq!(st.image.id, id),
        None => assert!(stored_blobs(root.path()).is_empty(), "blobs left after the last remove"),
    }
    assert_eq!(svc.pull(&name, None, None).unwrap(), id);
    assert!(svc.fsck(false).unwrap().is_clean());
}

#[test]
fn remove_racing_remove_ends_consistent() {
    let root = temp_root();
    let svc = open(root.path());
    let keep = svc.pull(&fixture("named:latest"), None, None).unwrap();
    for _ in 0..5 {
        let id = svc.pull(&fixture("debian:v1"), None, None).unwrap();
        std::thread::scope(|s| {
            let a = s.spawn(|| svc.remove(&id));
            let b = s.spawn(|| svc.remove(&fixture("debian:v1")));
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap();
        });
        assert!(svc.status(&id, false).unwrap().is_none());
        let ids: Vec<String> = svc.list(None).unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![keep.clone()], "the other image must survive");
        assert!(svc.fsck(false).unwrap().is_clean());
    }
}
