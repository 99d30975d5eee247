//! The listening socket: created with the requested mode in a directory that
//! is made if missing, never stealing a path another server answers on, and
//! removed on the way out only if it is still ours.

use imgsvc::{Error, ErrorKind};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Our socket file; removed when dropped (or by `remove`) if it is still the
/// file we created. Holds the lock that keeps a second `imgsvc serve` away.
pub struct Socket {
    path: PathBuf,
    identity: (u64, u64),
    _lock: File,
}

impl Socket {
    /// Unlink the socket so no new client can connect; idempotent.
    pub fn remove(&self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                match fs::remove_file(&self.path) {
                    Ok(()) => tracing::info!(socket = %self.path.display(), "socket removed"),
                    Err(e) => tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the socket"),
                }
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.remove();
    }
}

fn io_error(what: String, e: io::Error) -> Error {
    let kind = if e.kind() == io::ErrorKind::PermissionDenied { ErrorKind::PermissionDenied } else { ErrorKind::Io };
    Error::new(kind, format!("{what}: {e}"))
}

/// Bind `path` with permission bits `mode`.
///
/// A socket file nobody listens on (left by a crash) is replaced; one that
/// answers, or any other kind of file, is an error. The socket is bound under
/// a temporary name, given its mode, then renamed into place, so it never
/// exists with looser permissions than asked for.
pub fn bind(path: &Path, mode: u32) -> imgsvc::Result<(tokio::net::UnixListener, Socket)> {
    let name = path.file_name().ok_or_else(|| {
        Error::new(ErrorKind::InvalidArgument, format!("socket path {} has no file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))?;

    // Two servers starting at once would both see no socket; the lock decides.
    let lock_path = dir.join(format!("{}.lock", name.to_string_lossy()));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(format!("opening {}", lock_path.display()), e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("another imgsvc serve is running on {} (it holds {})", path.display(), lock_path.display()),
            ))
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_error(format!("locking {}", lock_path.display()), e)),
    }

    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{} is in use: a server answers on it; stop that server or choose another --listen",
                        path.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing a stale socket nobody listens on");
                fs::remove_file(path)
                    .map_err(|e| io_error(format!("removing the stale socket {}", path.display()), e))?;
            }
            Err(e) => return Err(io_error(format!("checking whether {} is live", path.display()), e)),
        },
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(format!("checking {}", path.display()), e)),
    }

    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let _ = fs::remove_file(&temp); // left by an earlier crash of this pid
    let listener = std::os::unix::net::UnixListener::bind(&temp)
        .map_err(|e| io_error(format!("binding {}", temp.display()), e))?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(format!("setting the mode of {}", temp.display()), e))
        .and_then(|()| {
            fs::rename(&temp, path).map_err(|e| io_error(format!("moving the socket to {}", path.display()), e))
        })
        .and_then(|()| fs::symlink_metadata(path).map_err(|e| io_error(format!("checking {}", path.display()), e)));
    let meta = match placed {
        Ok(meta) => meta,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    let socket = Socket { path: path.to_path_buf(), identity: (meta.dev(), meta.ino()), _lock: lock };
    listener.set_nonblocking(true).map_err(|e| io_error(format!("configuring {}", path.display()), e))?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| io_error(format!("registering {}", path.display()), e))?;
    Ok((listener, socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn creates_directory_with_mode_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/imgsvc.sock");
        let rt = runtime();
        let _guard = rt.enter();
        let (listener, socket) = bind(&path, 0o640).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        // A second server on the same path is refused while we hold it.
        let err = bind(&path, 0o660).err().unwrap();
        assert!(err.message().contains("another imgsvc serve"), "{}", err.message());
        drop(listener);
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let rt = runtime();
        let _guard = rt.enter();
        // Stale: bound, then the listener closed; the file stays.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (_l, socket) = bind(&path, 0o660).unwrap();
        drop(socket);
        // Live: something else listens there.
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = bind(&path, 0o660).err().unwrap();
        assert!(err.message().contains("is in use"), "{}", err.message());
        assert!(path.exists(), "the live socket must stay");
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("not-a-socket");
        fs::write(&path, b"keep me").unwrap();
        let rt = runtime();
        let _guard = rt.enter();
        let err = bind(&path, 0o660).err().unwrap();
        assert!(err.message().contains("not a socket"), "{}", err.message());
        assert_eq!(fs::read(&path).unwrap(), b"keep me");
    }
}
