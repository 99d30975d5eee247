//! Consistency check of a store: every image's blobs present with the right
//! size and digest (re-hashed), no orphaned downloads, no unreferenced
//! blobs, no temporary files left by a crash. `repair` removes what is
//! orphaned and the images that cannot be complete, until the store is clean.

use crate::catalog::{annotation, IMAGE_ID, INDEX_DIGEST};
use crate::error::Result;
use crate::manifest::{self, Document};
use crate::service::Inner;
use crate::store::REF_NAME;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What a check found, and (with repair) what it fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Problems found, one sentence each.
    pub problems: Vec<String>,
    /// What repair did, one sentence each.
    pub repaired: Vec<String>,
    /// Problems still there after repair (all of them without repair).
    pub remaining: Vec<String>,
    /// Blobs whose digest and size were verified.
    pub blobs_checked: usize,
}

impl FsckReport {
    /// Whether the store is clean now.
    pub fn is_clean(&self) -> bool {
        self.remaining.is_empty()
    }
}

pub(crate) fn run(inner: &Inner, repair: bool) -> Result<FsckReport> {
    let _lock = inner.store.lock()?;
    let mut report = check(inner, repair)?;
    if repair && !report.problems.is_empty() {
        let after = check(inner, false)?;
        report.remaining = after.problems;
    } else {
        report.remaining = report.problems.clone();
    }
    Ok(report)
}

/// One pass; the caller holds the metadata lock.
fn check(inner: &Inner, repair: bool) -> Result<FsckReport> {
    let store = &inner.store;
    let mut report = FsckReport::default();
    let (mut index, _) = match store.read_index() {
        Ok(x) => x,
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };

    // Check every blob each entry needs, hashing each blob once.
    let mut verdict: BTreeMap<String, Option<String>> = BTreeMap::new(); // digest -> problem
    let mut check = |digest: &str, size: Option<u64>, report: &mut FsckReport| -> bool {
        let problem = verdict
            .entry(digest.to_string())
            .or_insert_with(|| match store.hash_blob(digest) {
                Err(_) => Some(format!("blob {digest} is missing")),
                Ok((actual, _)) if actual != digest => {
                    Some(format!("blob {digest} is corrupt: its content hashes to {actual}"))
                }
                Ok((_, n)) if size.is_some_and(|s| s != n) => {
                    Some(format!("blob {digest} has {n} bytes, its descriptor says {}", size.unwrap_or(0)))
                }
                Ok(_) => {
                    report.blobs_checked += 1;
                    None
                }
            })
            .clone();
        problem.is_none()
    };
    let mut referenced: HashSet<String> = HashSet::new();
    // Entries (one image name each) that cannot be complete: one broken
    // name does not take the image's other, complete names with it.
    let mut broken: BTreeSet<(String, String, String)> = BTreeSet::new(); // (id, name, manifest digest)
    for d in &index.manifests {
        let id = annotation(d, IMAGE_ID).unwrap_or("?").to_string();
        let name = annotation(d, REF_NAME).map(str::to_string).unwrap_or_else(|| d.digest.clone());
        let mut needed: Vec<(String, Option<u64>)> = vec![(d.digest.clone(), Some(d.size))];
        if let Some(ix) = annotation(d, INDEX_DIGEST) {
            needed.push((ix.to_string(), None));
        }
        if check(&d.digest, Some(d.size), &mut report) {
            let body = store.read_blob(&d.digest, manifest::MANIFEST_MAX as u64)?;
            match manifest::parse_document(&body, None, &name) {
                Ok(Document::Manifest { manifest, .. }) => {
                    needed.push((manifest.config.digest.clone(), Some(manifest.config.size)));
                    needed.extend(manifest.layers.iter().map(|l| (l.digest.clone(), Some(l.size))));
                    if manifest.config.digest != id {
                        report.problems.push(format!(
                            "{name}: recorded as image {id}, but its manifest's config is {}",
                            manifest.config.digest
                        ));
                        broken.insert((id.clone(), name.clone(), d.digest.clone()));
                    }
                }
                _ => {
                    report.problems.push(format!("{name}: manifest {} is not an image manifest", d.digest));
                    broken.insert((id.clone(), name.clone(), d.digest.clone()));
                }
            }
        }
        for (digest, size) in &needed {
            referenced.insert(digest.clone());
            if !check(digest, *size, &mut report) {
                broken.insert((id.clone(), name.clone(), d.digest.clone()));
            }
        }
    }
    let problems: Vec<String> = verdict.values().flatten().cloned().collect();
    report.problems.extend(problems);
    let broken_ids: BTreeSet<&String> = broken.iter().map(|(id, _, _)| id).collect();
    for id in broken_ids {
        report.problems.push(format!("image {id} is incomplete"));
    }

    // Blobs nothing references (and no in-flight pull needs).
    let leased = store.leased_blobs()?;
    let unreferenced: Vec<String> =
        store.list_blobs()?.into_iter().filter(|b| !referenced.contains(b) && !leased.contains(b)).collect();
    for b in &unreferenced {
        report.problems.push(format!("blob {b} is not used by any image"));
    }
    let orphans = store.orphaned_ingest();
    for p in &orphans {
        report.problems.push(format!("orphaned download {}", p.display()));
    }
    let strays = store.stray_temp_files();
    for p in &strays {
        report.problems.push(format!("temporary file left by a crash: {}", p.display()));
    }
    // Unpacked layers: unfinished or half-deleted directories, and layers no
    // image (nor an in-flight pull) needs.
    let layer_strays = inner.layers.strays();
    for p in &layer_strays {
        report.problems.push(format!("unfinished layer directory left by a crash: {}", p.display()));
    }
    let wanted = inner.wanted_layers(&index, &leased);
    for chain in inner.layers.list().iter().filter(|c| !wanted.contains(*c)) {
        if !layer_strays.iter().any(|p| p.ends_with(chain.trim_start_matches("sha256:"))) {
            report.problems.push(format!("unpacked layer {chain} is not used by any image"));
        }
    }

    if repair {
        let name_of = |d: &crate::manifest::Descriptor| annotation(d, REF_NAME).unwrap_or(&d.digest).to_string();
        index.manifests.retain(|d| {
            let id = annotation(d, IMAGE_ID).unwrap_or("?").to_string();
            !broken.contains(&(id, name_of(d), d.digest.clone()))
        });
        for (id, name, _) in &broken {
            report.repaired.push(format!("removed incomplete image {id} ({name})"));
        }
        if !broken.is_empty() {
            store.write_index(&index)?;
            inner.forget_cache();
        }
        // Corrupt blobs go too, so the next pull fetches them again.
        for (digest, problem) in &verdict {
            if problem.as_deref().is_some_and(|p| !p.ends_with("is missing")) {
                store.remove_blob(digest)?;
                report.repaired.push(format!("deleted corrupt blob {digest}"));
            }
        }
        // Blobs only broken images used are unreferenced now.
        let keep: HashSet<String> = {
            let mut k = leased;
            for d in &index.manifests {
                k.extend(inner.entry_blobs(d)?);
            }
            k
        };
        for b in store.list_blobs()? {
            if !keep.contains(&b) {
                store.remove_blob(&b)?;
                report.repaired.push(format!("deleted unreferenced blob {b}"));
            }
        }
        for p in orphans.iter().chain(&strays) {
            if std::fs::remove_file(p).is_ok() {
                report.repaired.push(format!("deleted {}", p.display()));
            }
        }
        for p in &layer_strays {
            if crate::layers::remove_tree(p).is_ok() {
                report.repaired.push(format!("deleted {}", p.display()));
            }
        }
        let wanted = inner.wanted_layers(&index, &keep);
        for chain in inner.layers.list().into_iter().filter(|c| !wanted.contains(c)) {
            inner.layers.remove(&chain)?;
            report.repaired.push(format!("deleted unused layer {chain}"));
        }
        // Free lock files are not a problem, only clutter.
        for p in store.stale_locks() {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(report)
}
