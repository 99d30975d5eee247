//! Exporting an image's merged root filesystem into a directory.
//!
//! Layers are applied bottom to top: whiteouts delete, opaque directories
//! drop what lower layers put in them, everything else is hard-linked from
//! the layer store (copied where a hard link is impossible, such as across
//! filesystems). Hard-linked files share their inode with the layer store, so
//! a runtime that writes into an export must copy first, or use `rootfs` and
//! an overlay mount with an upper directory of its own.

use crate::error::{Error, Result};
use crate::unpack::{Whiteouts, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use rustix::fs::{AtFlags, FileType, Mode, Timestamps, XattrFlags, CWD};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Merge `layers` (bottom first, each its diff directory and whiteout form)
/// into `dest`, which must be absent or an empty directory.
pub(crate) fn export(layers: &[(PathBuf, Whiteouts)], dest: &Path) -> Result<()> {
    match fs::read_dir(dest) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::invalid(format!("export directory {} is not empty", dest.display())));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        }
        Err(e) => return Err(Error::io(format!("opening export directory {}", dest.display()), e)),
    }
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (layer, whiteouts) in layers {
        apply(layer, dest, *whiteouts, &mut dirs)
            .map_err(|e| Error::io(format!("exporting {} into {}", layer.display(), dest.display()), e))?;
    }
    // Directory metadata last (the top-most layer that has the directory
    // wins), so creating children does not disturb modification times.
    for (src, dst) in &dirs {
        if dst.exists() {
            let m = fs::symlink_metadata(src).map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
            copy_meta(src, dst, &m, true).map_err(|e| Error::io(format!("setting {}", dst.display()), e))?;
        }
    }
    Ok(())
}

fn is_whiteout(name: &str, m: &Metadata, form: Whiteouts) -> Option<String> {
    match form {
        Whiteouts::Overlay => (m.file_type().is_char_device() && m.rdev() == 0).then(|| name.to_string()),
        Whiteouts::Oci => name.strip_prefix(WHITEOUT_PREFIX).filter(|_| name != OPAQUE_MARKER).map(str::to_string),
    }
}

fn is_opaque(dir: &Path, form: Whiteouts) -> bool {
    match form {
        Whiteouts::Overlay => {
            let mut buf = [0u8; 4];
            rustix::fs::lgetxattr(dir, OVERLAY_OPAQUE_XATTR, &mut buf[..]).is_ok_and(|n| &buf[..n] == b"y")
        }
        Whiteouts::Oci => dir.join(OPAQUE_MARKER).exists(),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => crate::layers::remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn apply(src: &Path, dst: &Path, form: Whiteouts, dirs: &mut Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
    dirs.push((src.to_path_buf(), dst.to_path_buf()));
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let s = entry.path();
        let d = dst.join(&name);
        let m = fs::symlink_metadata(&s)?;
        let name_str = name.to_str().unwrap_or("");
        if form == Whiteouts::Oci && name_str == OPAQUE_MARKER {
            continue;
        }
        if let Some(victim) = is_whiteout(name_str, &m, form) {
            remove_any(&dst.join(victim))?;
            continue;
        }
        if m.is_dir() {
            match fs::symlink_metadata(&d) {
                Ok(dm) if dm.is_dir() => {
                    if is_opaque(&s, form) {
                        crate::layers::remove_tree(&d)?;
                        fs::create_dir(&d)?;
                    }
                }
                Ok(_) => {
                    fs::remove_file(&d)?;
                    fs::create_dir(&d)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&d)?,
                Err(e) => return Err(e),
            }
            apply(&s, &d, form, dirs)?;
        } else {
            remove_any(&d)?;
            if fs::hard_link(&s, &d).is_err() {
                copy_node(&s, &d, &m)?;
            }
        }
    }
    Ok(())
}

/// Copy one non-directory when it cannot be hard-linked.
fn copy_node(s: &Path, d: &Path, m: &Metadata) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(s)?, d)?;
    } else if ft.is_file() {
        fs::copy(s, d)?;
    } else {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else if ft.is_block_device() {
            FileType::BlockDevice
        } else if ft.is_fifo() {
            FileType::Fifo
        } else {
            return Ok(()); // sockets are not layer content
        };
        rustix::fs::mknodat(CWD, d, kind, Mode::from_raw_mode(0o600), m.rdev())?;
    }
    copy_meta(s, d, m, !ft.is_symlink())
}

/// Owner (when root), mode, extended attributes and modification time.
fn copy_meta(s: &Path, d: &Path, m: &Metadata, set_mode: bool) -> io::Result<()> {
    if crate::unpack::privileged() {
        std::os::unix::fs::lchown(d, Some(m.uid()), Some(m.gid()))?;
    }
    if set_mode {
        fs::set_permissions(d, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let mut names = vec![0u8; 64 * 1024];
    if let Ok(n) = rustix::fs::llistxattr(s, &mut names[..]) {
        let mut value = vec![0u8; 64 * 1024];
        for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if name.starts_with(b"trusted.overlay.") {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if let Ok(len) = rustix::fs::lgetxattr(s, name, &mut value[..]) {
                let _ = rustix::fs::lsetxattr(d, name, &value[..len], XattrFlags::empty());
            }
        }
    }
    let t = rustix::fs::Timespec { tv_sec: m.mtime(), tv_nsec: m.mtime_nsec() };
    rustix::fs::utimensat(CWD, d, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
