//! The on-disk store: an OCI image layout plus our own small files beside it.
//!
//! ```text
//! ROOT/oci-layout, ROOT/index.json, ROOT/blobs/sha256/<hex>   (OCI layout)
//! ROOT/ingest/        partial downloads and per-blob download locks
//! ROOT/leases/        blobs an in-flight pull needs (GC must keep them)
//! ROOT/imgsvc.lock    flock taken for every metadata change
//! ```
//!
//! Only this module touches the disk. Every file we replace is written to a
//! temporary file, fsynced, renamed and its directory fsynced; a blob becomes
//! visible only after its digest and size were checked.

use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The layout's top-level `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LayoutIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Default for LayoutIndex {
    fn default() -> Self {
        LayoutIndex { schema_version: 2, media_type: Some(crate::manifest::OCI_INDEX.into()), manifests: vec![] }
    }
}

/// Identity of index.json on disk; every write renames a new file in, so a
/// changed identity means the catalog must be re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
}

/// Holds the exclusive metadata lock until dropped.
pub(crate) struct MetaLock {
    _file: File,
}

fn hex_of(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| Error::invalid(format!("unsupported digest {digest:?}")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::invalid(format!("malformed digest {digest:?}")));
    }
    Ok(hex)
}

/// fsync a directory so a rename inside it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

impl Store {
    /// Open (creating if needed) a store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
        for dir in [root.to_path_buf(), store.blob_dir(), store.ingest_dir(), store.lease_dir()] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock()?;
            if !store.index_path().exists() {
                store.write_index(&LayoutIndex::default())?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }
    pub fn lease_dir(&self) -> PathBuf {
        self.root.join("leases")
    }
    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blob_dir().join(hex_of(digest)?))
    }

    /// Whether a verified blob of this digest and size is present.
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest).ok().and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.len() == size)
    }

    /// Read a whole (small) blob, refusing more than `max` bytes.
    pub fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let file = File::open(&path).map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        let mut buf = Vec::new();
        file.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        if buf.len() as u64 > max {
            return Err(Error::integrity(format!("blob {digest} is larger than {max} bytes")));
        }
        Ok(buf)
    }

    /// Store bytes already in memory as a blob, after checking their digest.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if actual != digest {
            return Err(Error::integrity(format!("content digest mismatch: expected {digest}, got {actual}")));
        }
        if self.has_blob(digest, bytes.len() as u64) {
            return Ok(());
        }
        self.write_atomic(&self.blob_path(digest)?, bytes)
    }

    /// Create a new ingest file for `digest`; it is removed on drop unless committed.
    pub fn ingest(&self, digest: &str) -> Result<Ingest> {
        let hex = hex_of(digest)?;
        let path = self.temp_path(&self.ingest_dir(), hex);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating ingest file for {digest}"), e))?;
        Ok(Ingest {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            written: 0,
            digest: digest.to_string(),
            writeback: Default::default(),
        })
    }

    /// Take the per-blob download lock without blocking; `None` if another
    /// pull (in any process) is fetching the same blob right now.
    pub fn try_lock_blob(&self, digest: &str) -> Result<Option<File>> {
        let path = self.ingest_dir().join(format!("{}.lock", hex_of(digest)?));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// Remove a blob's download lock file (while still holding it), then release it.
    pub fn unlock_blob(&self, digest: &str, lock: File) {
        if let Ok(hex) = hex_of(digest) {
            let _ = fs::remove_file(self.ingest_dir().join(format!("{hex}.lock")));
        }
        drop(lock);
    }

    /// Take the exclusive metadata lock (blocks).
    pub fn lock(&self) -> Result<MetaLock> {
        Ok(MetaLock { _file: lock_file(&self.root.join("imgsvc.lock"))? })
    }

    pub fn generation(&self) -> Result<Generation> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(self.index_path()).map_err(|e| Error::io("reading index.json", e))?;
        Ok(Generation {
            ino: m.ino(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            len: m.len(),
        })
    }

    pub fn read_index(&self) -> Result<(LayoutIndex, Generation)> {
        // Read the identity first: if a writer renames in between we re-read next time.
        let generation = self.generation()?;
        let bytes = fs::read(self.index_path()).map_err(|e| Error::io("reading index.json", e))?;
        let index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::integrity(format!("{}: index.json is corrupt: {e}", self.root.display())))?;
        Ok((index, generation))
    }

    /// Replace index.json atomically. The caller holds the metadata lock.
    pub fn write_index(&self, index: &LayoutIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| Error::internal(format!("encoding index.json: {e}")))?;
        self.write_atomic(&self.index_path(), &bytes)
    }

    fn temp_path(&self, dir: &Path, stem: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()))
    }

    /// temp file, fsync, rename, fsync the directory.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = self.temp_path(dir, name);
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            crate::failpoint::hit(&format!("before-rename:{name}"));
            fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", path.display()), e));
        }
        sync_dir(dir)
    }

    pub fn remove_blob(&self, digest: &str) -> Result<u64> {
        let path = self.blob_path(digest)?;
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(format!("removing blob {digest}"), e)),
        }
    }

    /// Bytes and inodes used by the store, counted once by listing blobs.
    pub fn usage(&self) -> Result<(u64, u64)> {
        let mut bytes = 0u64;
        let mut inodes = 0u64;
        for dir in [self.root.clone(), self.root.join("blobs"), self.blob_dir(), self.ingest_dir(), self.lease_dir()] {
            inodes += 1;
            let entries = fs::read_dir(&dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            for entry in entries.flatten() {
                if let Ok(m) = entry.metadata() {
                    if m.is_file() {
                        bytes += m.len();
                        inodes += 1;
                    }
                }
            }
        }
        Ok((bytes, inodes))
    }

    /// Write a lease naming the blobs an in-flight pull needs; GC keeps them
    /// while the returned lease's lock is held (by any process).
    pub fn lease(&self, digests: &[String]) -> Result<Lease> {
        let path = self.temp_path(&self.lease_dir(), "lease");
        let mut file =
            OpenOptions::new().create_new(true).write(true).open(&path).map_err(|e| Error::io("creating lease", e))?;
        file.lock().map_err(|e| Error::io("locking lease", e))?;
        file.write_all(digests.join("\n").as_bytes()).map_err(|e| Error::io("writing lease", e))?;
        Ok(Lease { path, _file: file })
    }

    /// Blobs protected by live leases; leases of dead processes are removed.
    pub fn leased_blobs(&self) -> Result<HashSet<String>> {
        let mut set = HashSet::new();
        let entries = fs::read_dir(self.lease_dir()).map_err(|e| Error::io("listing leases", e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(mut f) = OpenOptions::new().read(true).write(true).open(&path) else { continue };
            match f.try_lock() {
                Ok(()) => {
                    // Nobody holds it: its pull is gone.
                    let _ = fs::remove_file(&path);
                }
                Err(_) => {
                    let mut text = String::new();
                    if f.read_to_string(&mut text).is_ok() {
                        set.extend(text.lines().map(str::to_string));
                    }
                }
            }
        }
        Ok(set)
    }

    /// Temporary files a crash left in the root and blobs/sha256: those
    /// whose writer (the pid in their name) is gone. A live process may be
    /// about to rename its file into place.
    pub fn stray_temp_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in [self.root.clone(), self.blob_dir()] {
            if let Ok(rd) = fs::read_dir(&dir) {
                out.extend(rd.flatten().map(|e| e.path()).filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix('.')?.strip_suffix(".tmp"))
                        .is_some_and(|n| !writer_alive(n.rsplit('.').nth(1)))
                }));
            }
        }
        out
    }

    /// Ingest files no live download owns (its blob lock is free), and lock
    /// files nobody holds.
    pub fn orphaned_ingest(&self) -> Vec<PathBuf> {
        self.free_ingest_files().into_iter().filter(|p| p.extension().is_none_or(|e| e != "lock")).collect()
    }

    /// Blob lock files no pull holds: harmless leftovers of a crash.
    pub fn stale_locks(&self) -> Vec<PathBuf> {
        self.free_ingest_files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "lock")).collect()
    }

    /// Files in `ingest/` whose blob lock nobody holds (checked without
    /// creating lock files).
    fn free_ingest_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.ingest_dir()) else { return out };
        for path in rd.flatten().map(|e| e.path()) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let hex = name.trim_start_matches('.').split('.').next().unwrap_or("");
            let lock_path = self.ingest_dir().join(format!("{hex}.lock"));
            let held = match File::options().write(true).open(&lock_path) {
                Ok(f) => matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)),
                Err(_) => false, // no lock file: nobody is fetching this blob
            };
            if !held {
                out.push(path);
            }
        }
        out
    }

    /// sha256 of a stored blob, streamed.
    pub fn hash_blob(&self, digest: &str) -> Result<(String, u64)> {
        let path = self.blob_path(digest)?;
        let mut f = File::open(&path).map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
        Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
    }

    /// Digests of all blob files present.
    pub fn list_blobs(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(self.blob_dir()).map_err(|e| Error::io("listing blobs", e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64)
            .map(|n| format!("sha256:{n}"))
            .collect())
    }
}

/// Open (creating) `path` and take an exclusive flock on it, blocking;
/// held until the file is closed.
pub(crate) fn lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    file.lock().map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
    Ok(file)
}

/// Whether the process `pid` (as written in a temporary name) still runs.
pub(crate) fn writer_alive(pid: Option<&str>) -> bool {
    pid.and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

/// A lease file, deleted on drop.
pub(crate) struct Lease {
    path: PathBuf,
    _file: File,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A blob being downloaded: bytes are hashed as they are written.
pub(crate) struct Ingest {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    digest: String,
    writeback: crate::writeback::Hints,
}

impl Ingest {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        let file = self.file.as_mut().ok_or_else(|| Error::internal("ingest already closed"))?;
        file.write_all(chunk).map_err(|e| Error::io(format!("writing blob {}", self.digest), e))?;
        self.writeback.wrote(file, self.written);
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Throw away what was written, to start over (a registry that ignored `Range`).
    pub fn reset(&mut self) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| Error::internal("ingest already closed"))?;
        file.set_len(0).map_err(|e| Error::io("truncating ingest file", e))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io("rewinding ingest file", e))?;
        self.hasher = Sha256::new();
        self.written = 0;
        self.writeback = Default::default();
        Ok(())
    }

    /// Verify digest and size, fsync, and rename into blobs/.
    pub fn commit(mut self, store: &Store, size: u64) -> Result<()> {
        if self.written != size {
            return Err(Error::integrity(format!(
                "blob {} has {} bytes, but its descriptor says {size}",
                self.digest, self.written
            )));
        }
        let actual = format!("sha256:{}", hex::encode(std::mem::take(&mut self.hasher).finalize()));
        if actual != self.digest {
            return Err(Error::integrity(format!("blob digest mismatch: expected {}, got {actual}", self.digest)));
        }
        let file = self.file.take().ok_or_else(|| Error::internal("ingest already closed"))?;
        file.sync_all().map_err(|e| Error::io(format!("syncing blob {}", self.digest), e))?;
        drop(file);
        let dest = store.blob_path(&self.digest)?;
        crate::failpoint::hit("before-blob-rename");
        fs::rename(&self.path, &dest).map_err(|e| Error::io(format!("storing blob {}", self.digest), e))?;
        crate::failpoint::hit("after-blob-rename");
        self.path = PathBuf::new();
        sync_dir(dest.parent().unwrap_or(store.root()))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}
