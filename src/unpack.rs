//! Unpacking one layer blob (a tar, plain, gzip or zstd) into a directory.
//!
//! The tar is parsed with the `tar` crate, but every file is created here, by
//! path, inside a fresh directory only we write to: paths are cleaned
//! (`..` and absolute names refused), no parent directory may be a symlink,
//! symlinks and hard links may not point out of the layer, and the
//! uncompressed stream is counted (a size limit stops decompression bombs)
//! and hashed (it must equal the config's diff_id). OCI whiteouts become
//! overlayfs whiteouts (a 0/0 character device, the `trusted.overlay.opaque`
//! xattr) when we may create them, so the layer directories can be overlay
//! lower directories; otherwise the `.wh.` files are kept as they are.

use crate::error::{Error, Result};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer directory records deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Whiteouts {
    /// overlayfs form: 0/0 character devices and the opaque xattr.
    Overlay,
    /// OCI form, as in the tar: `.wh.<name>` and `.wh..wh..opq` files.
    Oci,
}

/// What unpacking produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unpacked {
    /// Bytes of regular files written.
    pub bytes: u64,
    /// Filesystem objects created.
    pub inodes: u64,
    pub whiteouts: Whiteouts,
}

/// Whether this process may create device nodes, set ownership and trusted xattrs.
pub(crate) fn privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// Unpack `blob` into the empty directory `dest`, checking the uncompressed
/// stream against `diff_id`. `stop` is polled on every read of the stream.
pub(crate) fn unpack(blob: &Path, diff_id: &str, dest: &Path, max_bytes: u64, stop: &AtomicBool) -> Result<Unpacked> {
    let what = format!("layer {diff_id}");
    let file = File::open(blob).map_err(|e| Error::io(format!("opening the blob of {what}"), e))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let magic = {
        use std::io::BufRead;
        let buf = input.fill_buf().map_err(|e| Error::io(format!("reading the blob of {what}"), e))?;
        buf.get(..4).map(|m| [m[0], m[1], m[2], m[3]]).unwrap_or_default()
    };
    // By content rather than media type: mislabelled layers are common.
    let stream: Box<dyn Read> = match magic {
        [0x1f, 0x8b, _, _] => Box::new(flate2::read::MultiGzDecoder::new(input)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::io(format!("starting zstd for {what}"), e))?,
        ),
        _ => Box::new(input),
    };
    let mut counted =
        Counted { inner: stream, hasher: HashThread::start(), bytes: 0, limit: max_bytes, stop, broken: None };
    let mut writer = Writer::new(dest, privileged());
    let result = (|| {
        // tar reads 512-byte headers and 8 KiB pieces of files: serve those
        // from a buffer so the decoder and the hasher see large reads.
        let mut archive = tar::Archive::new(BufReader::with_capacity(HASH_BATCH, &mut counted));
        let entries = archive.entries().map_err(|e| bad_stream(&what, e))?;
        for entry in entries {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::cancelled());
            }
            let mut entry = entry.map_err(|e| bad_stream(&what, e))?;
            writer.entry(&mut entry).map_err(|e| e.in_layer(&what))?;
        }
        writer.finish()?;
        Ok(())
    })();
    if let Err(e) = result {
        // A tar error may really be a stop, the size limit or a decoder failure.
        return Err(counted.why_stopped(&what).unwrap_or(e));
    }
    // The diff_id covers the whole stream, padding after the end marker included.
    let drained = io::copy(&mut counted, &mut io::sink());
    if let Some(e) = counted.why_stopped(&what) {
        return Err(e);
    }
    drained.map_err(|e| bad_stream(&what, e))?;
    let actual = format!("sha256:{}", hex::encode(counted.hasher.finish()?));
    if actual != diff_id {
        return Err(Error::integrity(format!(
            "{what}: the uncompressed layer has digest {actual}, but the image config says {diff_id}"
        )));
    }
    Ok(Unpacked { bytes: writer.bytes, inodes: writer.inodes, whiteouts: writer.whiteouts })
}

fn bad_stream(what: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::io(what, e),
        _ => Error::integrity(format!("{what}: the layer is not a valid tar stream: {e}")),
    }
}

/// Counts and hashes what the decoder produces, and stops at the limit.
struct Counted<'a, R> {
    inner: R,
    hasher: HashThread,
    bytes: u64,
    limit: u64,
    /// Polled on every read, so a stop takes effect inside a big file too.
    stop: &'a AtomicBool,
    /// Why the decoder failed (a truncated or corrupt stream), which the tar
    /// reader would otherwise report as if an entry were to blame.
    broken: Option<String>,
}

impl<R> Counted<'_, R> {
    /// The error to report when reading ended because of a stop, the limit
    /// or a broken stream.
    fn why_stopped(&self, what: &str) -> Option<Error> {
        if self.stop.load(Ordering::Relaxed) {
            return Some(Error::cancelled());
        }
        if let Some(why) = &self.broken {
            return Some(Error::integrity(format!("{what}: the layer stream is truncated or corrupt: {why}")));
        }
        (self.bytes > self.limit).then(|| {
            Error::integrity(format!(
                "{what}: uncompresses to more than the limit of {} bytes (a decompression bomb?)",
                self.limit
            ))
        })
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("unpacking stopped"));
        }
        if self.bytes > self.limit {
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        let n = self.inner.read(buf).inspect_err(|e| self.broken = Some(e.to_string()))?;
        self.hasher.update(&buf[..n])?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Bytes handed to the hashing thread at a time.
const HASH_BATCH: usize = 128 << 10;

/// SHA-256 on a thread of its own: hashing the uncompressed stream costs
/// about a third of what decompressing it does, and the unpacking thread,
/// which decompresses and creates files, is what a pull waits for.
struct HashThread {
    batch: Vec<u8>,
    full: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<[u8; 32]>>,
}

impl HashThread {
    fn start() -> HashThread {
        // Two batches queued at most: memory stays at a few of them.
        let (full, todo) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let thread = std::thread::Builder::new()
            .name("imgsvc-diffid".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for mut batch in todo {
                    hasher.update(&batch);
                    batch.clear();
                    let _ = give_back.try_send(batch);
                }
                hasher.finalize().into()
            })
            .ok();
        HashThread { batch: Vec::with_capacity(HASH_BATCH), full: Some(full), empty, thread }
    }

    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        self.batch.extend_from_slice(data);
        if self.batch.len() >= HASH_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(HASH_BATCH));
        let batch = std::mem::replace(&mut self.batch, next);
        match &self.full {
            Some(full) if self.thread.is_some() => {
                full.send(batch).map_err(|_| io::Error::other("the hashing thread stopped"))
            }
            _ => Err(io::Error::other("could not start the hashing thread")),
        }
    }

    fn finish(&mut self) -> Result<[u8; 32]> {
        let sent = if self.batch.is_empty() { Ok(()) } else { self.send() };
        self.full = None; // the thread's loop ends when the queue closes
        let thread = self.thread.take();
        sent.map_err(|e| Error::internal(format!("hashing the layer: {e}")))?;
        thread
            .ok_or_else(|| Error::internal("could not start the hashing thread"))?
            .join()
            .map_err(|_| Error::internal("the hashing thread panicked"))
    }
}

/// An entry-level failure: refused content, or an I/O error while writing.
enum Refusal {
    Hostile(String),
    Io(String, io::Error),
}

impl Refusal {
    fn in_layer(self, what: &str) -> Error {
        match self {
            Refusal::Hostile(why) => Error::integrity(format!("{what}: refused: {why}")),
            Refusal::Io(op, e) => Error::io(format!("{what}: {op}"), e),
        }
    }
}

type Step<T = ()> = std::result::Result<T, Refusal>;

fn io_err(op: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> Refusal {
    move |e| Refusal::Io(op(), e)
}

/// `path` as normal components only, or why it is refused.
pub(crate) fn clean_path(path: &Path) -> std::result::Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("the path {path:?} contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(format!("the path {path:?} is absolute")),
        }
    }
    Ok(out)
}

/// Metadata applied to directories once all their children exist.
struct DirMeta {
    path: PathBuf,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Writer<'a> {
    root: &'a Path,
    privileged: bool,
    whiteouts: Whiteouts,
    /// Directories known to be real directories (not symlinks) under root.
    dirs: HashSet<PathBuf>,
    deferred: Vec<DirMeta>,
    bytes: u64,
    inodes: u64,
}

impl<'a> Writer<'a> {
    fn new(root: &'a Path, privileged: bool) -> Self {
        Writer {
            root,
            privileged,
            whiteouts: if privileged { Whiteouts::Overlay } else { Whiteouts::Oci },
            dirs: HashSet::from([PathBuf::new()]),
            deferred: Vec::new(),
            bytes: 0,
            inodes: 0,
        }
    }

    /// Make sure every parent of `rel` is a real directory, creating missing ones.
    fn parents(&mut self, rel: &Path) -> Step {
        let mut prefix = PathBuf::new();
        let Some(parent) = rel.parent() else { return Ok(()) };
        for c in parent.components() {
            prefix.push(c);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let full = self.root.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Refusal::Hostile(format!("{rel:?} would be written through the symlink {prefix:?}")))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Refusal::Hostile(format!("{rel:?} is under {prefix:?}, which is not a directory")))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&full).map_err(io_err(|| format!("creating {prefix:?}")))?;
                    self.inodes += 1;
                }
                Err(e) => return Err(Refusal::Io(format!("checking {prefix:?}"), e)),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Remove whatever is at `rel` (an earlier entry of the same path).
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Step<bool> {
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(&full).map_err(io_err(|| format!("replacing {rel:?}")))?;
                self.dirs.retain(|d| !d.starts_with(rel));
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(&full).map_err(io_err(|| format!("replacing {rel:?}")))?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Refusal::Io(format!("checking {rel:?}"), e)),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Step {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(kind, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink) {
            return Ok(());
        }
        let raw = entry.path().map_err(|e| Refusal::Hostile(format!("an entry has an unreadable name: {e}")))?;
        let rel = clean_path(&raw).map_err(Refusal::Hostile)?;
        if rel.as_os_str().is_empty() {
            // "./": the layer's root directory itself.
            if kind == T::Directory {
                let meta = self.meta(entry, PathBuf::new());
                self.deferred.push(meta);
            }
            return Ok(());
        }
        self.parents(&rel)?;
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            if target.starts_with(WHITEOUT_PREFIX) && name != OPAQUE_MARKER {
                return Ok(()); // aufs bookkeeping (.wh..wh.plnk and the like): not content
            }
            return self.whiteout(&rel, target);
        }
        let full = self.root.join(&rel);
        let existing_dir = self.clear(&rel, kind == T::Directory)?;
        match kind {
            T::Directory => {
                if !existing_dir {
                    fs::create_dir(&full).map_err(io_err(|| format!("creating {rel:?}")))?;
                    self.inodes += 1;
                }
                self.dirs.insert(rel.clone());
                let meta = self.meta(entry, rel.clone());
                self.deferred.push(meta);
                self.xattrs(entry, &full)?;
                return Ok(());
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&full)
                    .map_err(io_err(|| format!("creating {rel:?}")))?;
                let mut out = crate::writeback::Writer::new(&mut f);
                io::copy(entry, &mut out).map_err(|e| match e.kind() {
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                        Refusal::Io(format!("writing {rel:?}"), e)
                    }
                    _ => Refusal::Hostile(format!("{rel:?}: {e}")),
                })?;
                self.bytes += out.finish();
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| Refusal::Hostile(format!("the symlink {rel:?} has no target")))?;
                if escapes(&rel, &target) {
                    return Err(Refusal::Hostile(format!("the symlink {rel:?} -> {target:?} leads out of the layer")));
                }
                std::os::unix::fs::symlink(&target, &full).map_err(io_err(|| format!("creating symlink {rel:?}")))?;
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| Refusal::Hostile(format!("the hard link {rel:?} has no target")))?;
                let target = clean_path(&target)
                    .map_err(|why| Refusal::Hostile(format!("the hard link {rel:?} leads out of the layer: {why}")))?;
                let source = self.root.join(&target);
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() && self.within(&target) => {}
                    _ => {
                        return Err(Refusal::Hostile(format!(
                            "the hard link {rel:?} points to {target:?}, which is not a file of this layer"
                        )))
                    }
                }
                // A second name of an inode already counted and given its metadata.
                fs::hard_link(&source, &full).map_err(io_err(|| format!("linking {rel:?}")))?;
                return Ok(());
            }
            T::Char | T::Block => {
                if !self.privileged {
                    tracing::warn!(path = ?rel, "skipping a device node: creating it needs privileges");
                    return Ok(());
                }
                let ft = if kind == T::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(CWD, &full, ft, Mode::from_raw_mode(0o600), rustix::fs::makedev(major, minor))
                    .map_err(|e| Refusal::Io(format!("creating device {rel:?}"), e.into()))?;
            }
            T::Fifo => {
                rustix::fs::mknodat(CWD, &full, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|e| Refusal::Io(format!("creating fifo {rel:?}"), e.into()))?;
            }
            other => {
                tracing::warn!(path = ?rel, kind = ?other, "skipping a tar entry of an unsupported type");
                return Ok(());
            }
        }
        self.inodes += 1;
        let meta = self.meta(entry, rel.clone());
        self.apply(&meta, kind != T::Symlink)?;
        self.xattrs(entry, &full)?;
        Ok(())
    }

    /// Whether `rel` lies under no symlinked directory (checked for hard-link targets).
    fn within(&self, rel: &Path) -> bool {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                prefix.push(c);
                match fs::symlink_metadata(self.root.join(&prefix)) {
                    Ok(m) if m.is_dir() => {}
                    _ => return false,
                }
            }
        }
        true
    }

    fn whiteout(&mut self, rel: &Path, target: &str) -> Step {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if self.whiteouts == Whiteouts::Oci {
            // Kept as an empty file; export and fsck read this form.
            self.clear(rel, false)?;
            File::create(self.root.join(rel)).map_err(io_err(|| format!("creating {rel:?}")))?;
            self.inodes += 1;
            return Ok(());
        }
        if rel.file_name().and_then(|n| n.to_str()) == Some(OPAQUE_MARKER) {
            let dir = self.root.join(parent);
            rustix::fs::lsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| Refusal::Io(format!("marking {parent:?} opaque"), e.into()))?;
            return Ok(());
        }
        if target.is_empty() || target.contains('/') || target == "." || target == ".." {
            return Err(Refusal::Hostile(format!("the whiteout {rel:?} names no file")));
        }
        let victim = parent.join(target);
        self.clear(&victim, false)?;
        rustix::fs::mknodat(CWD, self.root.join(&victim), FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(|e| Refusal::Io(format!("creating the whiteout for {victim:?}"), e.into()))?;
        self.inodes += 1;
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &tar::Entry<'_, R>, path: PathBuf) -> DirMeta {
        let h = entry.header();
        DirMeta {
            path,
            mode: h.mode().unwrap_or(0o755) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
        }
    }

    /// Owner, then mode (chown clears setuid bits), then modification time.
    fn apply(&self, m: &DirMeta, set_mode: bool) -> Step {
        let full = self.root.join(&m.path);
        if self.privileged {
            let (uid, gid) = (u32::try_from(m.uid).ok(), u32::try_from(m.gid).ok());
            std::os::unix::fs::lchown(&full, uid, gid).map_err(io_err(|| format!("chown {:?}", m.path)))?;
        }
        if set_mode {
            fs::set_permissions(&full, fs::Permissions::from_mode(m.mode))
                .map_err(io_err(|| format!("chmod {:?}", m.path)))?;
        }
        let t = Timespec { tv_sec: m.mtime.min(i64::MAX as u64) as i64, tv_nsec: 0 };
        let times = Timestamps { last_access: t, last_modification: t };
        rustix::fs::utimensat(CWD, &full, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Refusal::Io(format!("setting the time of {:?}", m.path), e.into()))?;
        Ok(())
    }

    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, full: &Path) -> Step {
        let Ok(Some(exts)) = entry.pax_extensions() else { return Ok(()) };
        for ext in exts.flatten() {
            let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else { continue };
            match rustix::fs::lsetxattr(full, name, ext.value_bytes(), XattrFlags::empty()) {
                Ok(()) => {}
                // Unprivileged, or a filesystem without xattrs: the file is still usable.
                Err(e) if !self.privileged || e == rustix::io::Errno::NOTSUP => {
                    tracing::warn!(path = ?full, xattr = name, error = %e, "extended attribute not set");
                }
                Err(e) => return Err(Refusal::Io(format!("setting xattr {name} on {full:?}"), e.into())),
            }
        }
        Ok(())
    }

    /// Directory metadata, deepest first, once every child exists.
    fn finish(&mut self) -> Result<()> {
        let mut deferred = std::mem::take(&mut self.deferred);
        deferred.sort_by_key(|m| std::cmp::Reverse(m.path.components().count()));
        for m in &deferred {
            self.apply(m, true).map_err(|e| e.in_layer("layer"))?;
        }
        Ok(())
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        r.in_layer("layer")
    }
}

/// Whether a relative symlink target climbs above the layer's root.
/// Absolute targets resolve inside the root filesystem that holds them.
fn escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn symlink_escape_rules() {
        assert!(!escapes(Path::new("a/b/link"), Path::new("../c")));
        assert!(!escapes(Path::new("a/b/link"), Path::new("../../c")));
        assert!(escapes(Path::new("a/b/link"), Path::new("../../../etc/passwd")));
        assert!(escapes(Path::new("link"), Path::new("..")));
        assert!(escapes(Path::new("a/link"), Path::new("x/../../..")));
        assert!(!escapes(Path::new("link"), Path::new("/etc/passwd")));
        assert!(!escapes(Path::new("usr/bin/awk"), Path::new("/etc/alternatives/awk")));
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path(Path::new("./a/./b")).unwrap(), PathBuf::from("a/b"));
        assert!(clean_path(Path::new("a/../../b")).is_err());
        assert!(clean_path(Path::new("/etc/passwd")).is_err());
        assert_eq!(clean_path(Path::new("./")).unwrap(), PathBuf::new());
    }

    #[test]
    fn kinds_of_refusals() {
        let e = Refusal::Hostile("x".into()).in_layer("layer sha256:1");
        assert_eq!(e.kind(), ErrorKind::Integrity);
    }
}
