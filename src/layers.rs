//! The layer store: unpacked layers beside `blobs/`, one directory per chain id.
//!
//! ```text
//! ROOT/layers/sha256/<chain hex>/diff/         the layer's files (an overlay lower dir)
//! ROOT/layers/sha256/<chain hex>/layer.json    what it holds (diff_id, size, whiteout form)
//! ROOT/layers/.tmp-<chain hex>-...             a layer being unpacked
//! ROOT/layers/.trash-<chain hex>-...           a layer being deleted
//! ROOT/layers/<chain hex>.lock                 one unpacker per layer, across processes
//! ```
//!
//! A chain id covers a layer and every layer under it, so images that share a
//! base share its directories. A layer directory appears by one rename, after
//! its content was checked against the diff_id and synced, so a crash leaves
//! either nothing or a whole layer (plus a `.tmp-` directory fsck removes).

use crate::error::{Error, Result};
use crate::unpack::{self, Whiteouts};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What `layer.json` records about an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LayerInfo {
    pub chain_id: String,
    pub diff_id: String,
    /// The blob it was unpacked from.
    pub blob: String,
    /// Bytes of regular files.
    pub size: u64,
    pub inodes: u64,
    pub whiteouts: Whiteouts,
}

/// Chain ids of a stack of diff_ids, bottom layer first (OCI image spec).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{parent} {d}").as_bytes()))),
        };
        out.push(next);
    }
    out
}

fn hex_of(chain_id: &str) -> Result<&str> {
    let hex = chain_id.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::integrity(format!("malformed layer id {chain_id:?}")));
    }
    Ok(hex)
}

#[derive(Debug)]
pub(crate) struct Layers {
    dir: PathBuf,
}

impl Layers {
    pub fn open(root: &Path) -> Result<Layers> {
        let dir = root.join("layers");
        fs::create_dir_all(dir.join("sha256")).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Layers { dir })
    }

    fn path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join("sha256").join(hex_of(chain_id)?))
    }

    /// The directory holding the layer's files (for overlay `lowerdir`).
    pub fn diff_dir(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.path(chain_id)?.join("diff"))
    }

    /// The layer's record, if it is unpacked.
    pub fn info(&self, chain_id: &str) -> Option<LayerInfo> {
        let bytes = fs::read(self.path(chain_id).ok()?.join("layer.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn has(&self, chain_id: &str) -> bool {
        self.path(chain_id).is_ok_and(|p| p.join("layer.json").exists())
    }

    /// Unpack `blob` as the layer `chain_id` unless it is there already.
    /// Returns whether this call unpacked it. Blocks: run off the async runtime.
    pub fn ensure(
        &self,
        chain_id: &str,
        diff_id: &str,
        blob_digest: &str,
        blob: &Path,
        max_bytes: u64,
        stop: &AtomicBool,
    ) -> Result<bool> {
        let hex = hex_of(chain_id)?;
        if self.has(chain_id) {
            return Ok(false);
        }
        // One unpacker per layer in any process; the others wait, then find it done.
        let lock_path = self.dir.join(format!("{hex}.lock"));
        let lock = crate::store::lock_file(&lock_path)?;
        if self.has(chain_id) {
            return Ok(false);
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{hex}-{}-{n}", std::process::id()));
        let result = (|| {
            fs::create_dir(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
            let diff = tmp.join("diff");
            fs::create_dir(&diff).map_err(|e| Error::io(format!("creating {}", diff.display()), e))?;
            let unpacked = unpack::unpack(blob, diff_id, &diff, max_bytes, stop)?;
            let info = LayerInfo {
                chain_id: chain_id.to_string(),
                diff_id: diff_id.to_string(),
                blob: blob_digest.to_string(),
                size: unpacked.bytes,
                inodes: unpacked.inodes,
                whiteouts: unpacked.whiteouts,
            };
            let json = serde_json::to_vec(&info).map_err(|e| Error::internal(format!("encoding layer.json: {e}")))?;
            fs::write(tmp.join("layer.json"), json).map_err(|e| Error::io("writing layer.json", e))?;
            // One syncfs makes every file of the layer durable before it becomes visible.
            let dir = File::open(&tmp).map_err(|e| Error::io(format!("opening {}", tmp.display()), e))?;
            rustix::fs::syncfs(&dir).map_err(|e| Error::io("syncing the unpacked layer", e.into()))?;
            crate::failpoint::hit("before-layer-rename");
            let dest = self.path(chain_id)?;
            fs::rename(&tmp, &dest).map_err(|e| Error::io(format!("storing layer {chain_id}"), e))?;
            File::open(dest.parent().unwrap_or(&self.dir))
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("syncing the layer directory", e))
        })();
        if result.is_err() {
            let _ = remove_tree(&tmp);
        }
        let _ = fs::remove_file(&lock_path);
        drop(lock);
        result.map(|()| true)
    }

    /// Delete a layer: renamed away first, so it vanishes at once and whole.
    pub fn remove(&self, chain_id: &str) -> Result<()> {
        let path = self.path(chain_id)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let trash = self.dir.join(format!(".trash-{}-{}-{n}", hex_of(chain_id)?, std::process::id()));
        match fs::rename(&path, &trash) {
            Ok(()) => remove_tree(&trash).map_err(|e| Error::io(format!("removing layer {chain_id}"), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing layer {chain_id}"), e)),
        }
    }

    /// Chain ids of every unpacked layer.
    pub fn list(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.dir.join("sha256")) else { return vec![] };
        rd.flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64)
            .map(|n| format!("sha256:{n}"))
            .collect()
    }

    /// Bytes and inodes of all unpacked layers, from their records.
    pub fn usage(&self) -> (u64, u64) {
        self.list().iter().filter_map(|c| self.info(c)).fold((0, 0), |(b, i), l| (b + l.size, i + l.inodes + 3))
    }

    /// `.tmp-` and `.trash-` directories no live unpacker owns, and layer
    /// directories without a record: what a crash leaves.
    pub fn strays(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for path in rd.flatten().map(|e| e.path()) {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                if let Some(rest) = name.strip_prefix(".tmp-") {
                    let hex = rest.split('-').next().unwrap_or("");
                    let held = File::options()
                        .write(true)
                        .open(self.dir.join(format!("{hex}.lock")))
                        .is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
                    if !held {
                        out.push(path);
                    }
                } else if let Some(rest) = name.strip_prefix(".trash-") {
                    // .trash-<hex>-<pid>-<n>: its remover may still be at work.
                    if !crate::store::writer_alive(rest.split('-').nth(1)) {
                        out.push(path);
                    }
                }
            }
        }
        if let Ok(rd) = fs::read_dir(self.dir.join("sha256")) {
            out.extend(rd.flatten().map(|e| e.path()).filter(|p| !p.join("layer.json").exists()));
        }
        out
    }
}

/// remove_dir_all that first makes read-only directories writable again
/// (a layer may hold `chmod 0555` directories).
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            for entry in walk_dirs(path) {
                let _ = fs::set_permissions(&entry, fs::Permissions::from_mode(0o700));
            }
            fs::remove_dir_all(path)
        }
    }
}

fn walk_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expect = format!("sha256:{}", hex::encode(Sha256::digest(format!("{a} {b}").as_bytes())));
        assert_eq!(ids[1], expect);
        assert!(chain_ids(&[]).is_empty());
    }
}
