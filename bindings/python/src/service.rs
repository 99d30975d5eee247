//! `imgsvc.ImageService`: the blocking core service, with the GIL released
//! during every call that does I/O.
//!
//! A pull runs on a helper thread (the core service is Send + Sync and
//! shared through an Arc) so that the calling thread stays free to run the
//! Python progress callback and to notice Ctrl-C: it waits on a channel of
//! progress events in short slices, re-attaching to the interpreter between
//! slices to call the callback and check for signals. An exception from
//! either cancels the pull through its `CancelToken` and propagates as is.

use crate::errors;
use crate::types::{PyAuth, PyFilesystemUsage, PyFsckReport, PyImage, PyImageStatus, PyProgress};
use imgsvc::{BlockingService, CancelToken, ErrorKind, Options, RegistryOptions};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBool;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the calling thread waits for an event before it checks for
/// signals again: Ctrl-C is noticed within this (plus the cancel) time.
const POLL: Duration = Duration::from_millis(100);

/// Events queued for the Python callback. Bounded, so that a slow callback
/// cannot make events pile up in memory: the download never waits for the
/// callback, and a callback that falls far behind misses events (the core's
/// own event buffer skips the oldest) instead of slowing the pull.
const EVENT_QUEUE: usize = 256;

/// The image service over one store.
///
/// `ImageService(root=None, *, pinned=None, max_parallel_downloads=None,
/// progress_timeout=None, connect_timeout=None, registries_conf=None,
/// registries_conf_d=None, auth_file=None, docker_config=None,
/// certs_dir=None, system_registry_config=False, unpack=True,
/// max_layer_bytes=None)`; `root=None` means
/// `imgsvc.default_root()`. Safe to share between threads. A context
/// manager: leaving the `with` block closes it.
#[pyclass(frozen, module = "imgsvc", name = "ImageService")]
pub struct PyImageService {
    service: Mutex<Option<Arc<BlockingService>>>,
    root: PathBuf,
}

/// `seconds` as a Duration, for an option that must be finite and >= 0
/// (or > 0 when `zero_ok` is false).
fn seconds(py: Python<'_>, name: &str, seconds: f64, zero_ok: bool) -> PyResult<Duration> {
    let ok = seconds.is_finite() && (seconds > 0.0 || (zero_ok && seconds == 0.0));
    match Duration::try_from_secs_f64(seconds) {
        // A positive value too small for a nanosecond must not become 0 ("never").
        Ok(d) if ok && seconds > 0.0 => Ok(d.max(Duration::from_nanos(1))),
        Ok(d) if ok => Ok(d),
        _ => {
            let want = if zero_ok { ">= 0 (0 = never)" } else { "> 0" };
            Err(errors::invalid(py, format!("{name} must be a finite number of seconds {want}, got {seconds}")))
        }
    }
}

/// The registry configuration files: none, or with `system` the usual
/// locations; each path given replaces its file, an empty path meaning none.
/// Naming a registries.conf without a drop-in directory makes the core use
/// `<registries_conf>.d`, as the CLI does.
fn registry_options(
    system: bool,
    registries_conf: Option<PathBuf>,
    registries_conf_d: Option<PathBuf>,
    auth_file: Option<PathBuf>,
    docker_config: Option<PathBuf>,
    certs_dir: Option<PathBuf>,
) -> RegistryOptions {
    let mut r = if system { RegistryOptions::system_defaults() } else { RegistryOptions::default() };
    if registries_conf.is_some() {
        r.registries_conf_d = None;
    }
    let pick = |given: Option<PathBuf>, current: Option<PathBuf>| match given {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p),
        None => current,
    };
    r.registries_conf = pick(registries_conf, r.registries_conf);
    r.registries_conf_d = pick(registries_conf_d, r.registries_conf_d);
    r.auth_file = pick(auth_file, r.auth_file);
    r.docker_config = pick(docker_config, r.docker_config);
    r.certs_dir = pick(certs_dir, r.certs_dir);
    r
}

impl PyImageService {
    /// The open service, or InvalidArgumentError (a ValueError, as for a
    /// closed file) once closed.
    fn get(&self, py: Python<'_>) -> PyResult<Arc<BlockingService>> {
        self.service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| errors::invalid(py, "operation on a closed ImageService"))
    }
}

#[pymethods]
impl PyImageService {
    #[new]
    #[pyo3(signature = (
        root=None,
        *,
        pinned=None,
        max_parallel_downloads=None,
        progress_timeout=None,
        connect_timeout=None,
        registries_conf=None,
        registries_conf_d=None,
        auth_file=None,
        docker_config=None,
        certs_dir=None,
        system_registry_config=false,
        unpack=true,
        max_layer_bytes=None,
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        py: Python<'_>,
        root: Option<PathBuf>,
        pinned: Option<Vec<String>>,
        max_parallel_downloads: Option<i64>,
        progress_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        registries_conf: Option<PathBuf>,
        registries_conf_d: Option<PathBuf>,
        auth_file: Option<PathBuf>,
        docker_config: Option<PathBuf>,
        certs_dir: Option<PathBuf>,
        system_registry_config: bool,
        unpack: bool,
        max_layer_bytes: Option<i64>,
    ) -> PyResult<Self> {
        let mut options = Options::new(root.unwrap_or_else(Options::default_root));
        if let Some(pinned) = pinned {
            options.pinned = pinned;
        }
        if let Some(n) = max_parallel_downloads {
            // The core checks the upper bound; a negative count cannot reach it.
            options.max_parallel_downloads = usize::try_from(n).map_err(|_| {
                errors::invalid(py, format!("max_parallel_downloads must be between 1 and 64, got {n}"))
            })?;
        }
        if let Some(s) = progress_timeout {
            options.progress_timeout = seconds(py, "progress_timeout", s, true)?;
        }
        if let Some(s) = connect_timeout {
            options.connect_timeout = seconds(py, "connect_timeout", s, false)?;
        }
        options.unpack = unpack;
        if let Some(n) = max_layer_bytes {
            options.max_layer_bytes = u64::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| errors::invalid(py, format!("max_layer_bytes must be at least 1, got {n}")))?;
        }
        options.registry = registry_options(
            system_registry_config,
            registries_conf,
            registries_conf_d,
            auth_file,
            docker_config,
            certs_dir,
        );
        let root = options.root.clone();
        let service = py.detach(move || BlockingService::new(options)).map_err(|e| errors::to_py(py, e))?;
        Ok(PyImageService { service: Mutex::new(Some(Arc::new(service))), root })
    }

    /// The store's root directory.
    #[getter]
    fn root(&self) -> String {
        self.root.display().to_string()
    }

    /// True once `close()` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.service.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// All images, or with a non-empty `filter` just the one it names (0 or 1).
    #[pyo3(signature = (filter=None))]
    fn list(&self, py: Python<'_>, filter: Option<String>) -> PyResult<Vec<PyImage>> {
        let service = self.get(py)?;
        let images = py.detach(move || service.list(filter.as_deref())).map_err(|e| errors::to_py(py, e))?;
        Ok(images.into_iter().map(PyImage).collect())
    }

    /// The image `image` names (any name, digest, id or id prefix), or None
    /// when it is absent. `verbose` adds info["info"] with the image config.
    #[pyo3(signature = (image, verbose=false))]
    fn status(&self, py: Python<'_>, image: String, verbose: bool) -> PyResult<Option<PyImageStatus>> {
        let service = self.get(py)?;
        let status = py.detach(move || service.status(&image, verbose)).map_err(|e| errors::to_py(py, e))?;
        Ok(status.map(PyImageStatus))
    }

    /// Pull `image` and return its id (`sha256:<config digest>`).
    ///
    /// `progress(event: Progress)` runs on this thread. Raising from it
    /// cancels the pull and the exception propagates; returning False
    /// cancels it with CancelledError. Ctrl-C cancels it too.
    #[pyo3(signature = (image, auth=None, progress=None))]
    fn pull(
        &self,
        py: Python<'_>,
        image: String,
        auth: Option<PyRef<'_, PyAuth>>,
        progress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        if let Some(callback) = &progress {
            if !callback.is_callable() {
                let type_name = callback.get_type().name()?;
                return Err(PyTypeError::new_err(format!("progress must be callable or None, not {type_name}")));
            }
        }
        let service = self.get(py)?;
        let auth = auth.map(|a| a.0.clone());
        let cancel = CancelToken::new();
        let (events_tx, mut events) = mpsc::sync_channel::<imgsvc::Progress>(EVENT_QUEUE);
        let want_events = progress.is_some();
        let worker = {
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name("imgsvc-pull".into())
                .spawn(move || {
                    // A failed send means the caller stopped listening: cancel.
                    let mut forward = |event: &imgsvc::Progress| events_tx.send(event.clone()).is_ok();
                    let callback: Option<&mut (dyn FnMut(&imgsvc::Progress) -> bool + Send)> =
                        if want_events { Some(&mut forward) } else { None };
                    service.pull_cancellable(&image, auth.as_ref(), callback, &cancel)
                    // events_tx drops here: the caller's loop sees Disconnected.
                })
                .map_err(|e| {
                    errors::to_py(py, imgsvc::Error::new(ErrorKind::Internal, format!("starting the pull thread: {e}")))
                })?
        };

        // Why the caller stopped the pull, if it did.
        let mut stopped: Option<PyErr> = None;
        loop {
            // std's Receiver is not Sync, so it moves into the detached closure and back.
            let (rx, next) = py.detach(move || {
                let next = events.recv_timeout(POLL);
                (events, next)
            });
            events = rx;
            match next {
                Ok(event) => {
                    if let Some(callback) = &progress {
                        match callback.call1((Bound::new(py, PyProgress(event))?,)) {
                            Ok(answer) if answer.cast::<PyBool>().is_ok_and(|b| !b.is_true()) => {
                                stopped = Some(errors::to_py(
                                    py,
                                    imgsvc::Error::new(
                                        ErrorKind::Cancelled,
                                        "pull cancelled: the progress callback returned False",
                                    ),
                                ));
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                stopped = Some(e);
                                break;
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Err(e) = py.check_signals() {
                stopped = Some(e);
                break;
            }
        }
        if stopped.is_some() {
            cancel.cancel();
        }
        // A worker blocked on a full queue fails its send and stops.
        drop(events);
        let joined = py.detach(move || worker.join());
        if let Some(e) = stopped {
            return Err(e);
        }
        match joined {
            Ok(result) => result.map_err(|e| errors::to_py(py, e)),
            Err(_) => Err(errors::to_py(py, imgsvc::Error::new(ErrorKind::Internal, "the pull thread panicked"))),
        }
    }

    /// Remove the image `image` names, with all its names. Removing what is
    /// not there succeeds.
    fn remove(&self, py: Python<'_>, image: String) -> PyResult<()> {
        let service = self.get(py)?;
        py.detach(move || service.remove(&image)).map_err(|e| errors::to_py(py, e))
    }

    /// Drop one name; the image goes with its last name. An id is an
    /// InvalidArgumentError, an unknown name a NotFoundError.
    fn untag(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let service = self.get(py)?;
        py.detach(move || service.untag(&name)).map_err(|e| errors::to_py(py, e))
    }

    /// The image's unpacked layer directories, top layer first: the
    /// `lowerdir` list of an overlay mount. Layers not unpacked yet are
    /// unpacked now. An image the store lacks raises NotFoundError.
    fn rootfs(&self, py: Python<'_>, image: String) -> PyResult<Vec<String>> {
        let service = self.get(py)?;
        let dirs = py.detach(move || service.rootfs(&image)).map_err(|e| errors::to_py(py, e))?;
        Ok(dirs.iter().map(|p| p.display().to_string()).collect())
    }

    /// Write the image's merged root filesystem into `dir` (absent or
    /// empty). Files are hard-linked from the layer store where possible:
    /// copy a file before changing it in place.
    fn export_rootfs(&self, py: Python<'_>, image: String, dir: PathBuf) -> PyResult<()> {
        let service = self.get(py)?;
        py.detach(move || service.export_rootfs(&image, &dir)).map_err(|e| errors::to_py(py, e))
    }

    /// Usage of the store's filesystem by images.
    fn fsinfo(&self, py: Python<'_>) -> PyResult<PyFilesystemUsage> {
        let service = self.get(py)?;
        let usage = py.detach(move || service.fs_info()).map_err(|e| errors::to_py(py, e))?;
        Ok(PyFilesystemUsage(usage))
    }

    /// Check the store: every image's blobs present with the recorded size
    /// and digest (each re-hashed), no unreferenced blobs, no leftovers of a
    /// crash. With `repair`, also remove what is orphaned, corrupt blobs and
    /// the images that cannot be complete, until the store is clean. Problems
    /// found are in the report, not raised.
    #[pyo3(signature = (repair=false))]
    fn fsck(&self, py: Python<'_>, repair: bool) -> PyResult<PyFsckReport> {
        let service = self.get(py)?;
        let report = py.detach(move || service.fsck(repair)).map_err(|e| errors::to_py(py, e))?;
        Ok(PyFsckReport(report))
    }

    /// Release the store. Calls already running finish; later calls raise
    /// InvalidArgumentError. Closing twice is fine.
    fn close(&self, py: Python<'_>) {
        let service = self.service.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Dropping the last reference stops the runtime's threads: no GIL needed.
        py.detach(move || drop(service));
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let root = self.root().into_pyobject(py)?.repr()?.to_string();
        Ok(if self.closed() {
            format!("ImageService(root={root}, closed=True)")
        } else {
            format!("ImageService(root={root})")
        })
    }
}
