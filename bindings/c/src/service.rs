//! The service handle and its verbs: open, list, status, pull, remove, untag,
//! fs_info, fsck. Each function checks its arguments, calls the blocking facade
//! and turns the answer into JSON with the core's `json` module.

use crate::boundary::{call, guard, handle, optional_str, required_str, Out};
use crate::cancel::imgsvc_cancel_token;
use crate::error::imgsvc_error;
use crate::imgsvc_status;
use crate::options::{parse_auth, parse_options};
use crate::strings::to_c_string;
use imgsvc_core::{json, BlockingService, CancelToken, FsckReport, Progress};
use std::ffi::{c_char, c_void, CString};

/// An image service on one store directory.
///
/// Made by imgsvc_service_open(), owned by the caller, freed with
/// imgsvc_service_free(). Thread-safe: any number of threads may call the
/// functions taking `const imgsvc_service *` on one service at once. It must
/// not be freed while any such call is running.
pub struct imgsvc_service {
    inner: BlockingService,
}

/// What a progress event reports (the `kind` of an imgsvc_progress).
#[repr(i32)]
#[derive(Clone, Copy)]
pub enum imgsvc_progress_kind {
    /// The reference was resolved to a manifest: `image` is the resolved
    /// name, `digest` the manifest digest, `total` the bytes to fetch,
    /// `layers` the number of layers.
    IMGSVC_PROGRESS_RESOLVED = 1,
    /// A blob download began: `digest`, `total` its size.
    IMGSVC_PROGRESS_LAYER_STARTED = 2,
    /// Bytes of a blob arrived: `digest`, `done` of `total` bytes (at most
    /// every few hundred milliseconds per blob).
    IMGSVC_PROGRESS_BYTES = 3,
    /// A blob was downloaded and verified: `digest`, `done` = `total` = size.
    IMGSVC_PROGRESS_LAYER_DONE = 4,
    /// A blob was already in the store: `digest`, `done` = `total` = size.
    IMGSVC_PROGRESS_LAYER_SKIPPED = 5,
    /// The image is recorded in the store: `image` is its id.
    IMGSVC_PROGRESS_COMMITTED = 6,
}

/// One progress event of a pull.
///
/// Borrowed: the struct and every string in it live only until the callback
/// returns; copy what you need. Strings are never NULL (empty when a field
/// does not apply to the kind); numbers that do not apply are 0.
#[repr(C)]
pub struct imgsvc_progress {
    /// One of the imgsvc_progress_kind values.
    pub kind: i32,
    /// RESOLVED: the resolved image name; COMMITTED: the image id.
    pub image: *const c_char,
    /// RESOLVED: the manifest digest; layer events: the blob digest.
    pub digest: *const c_char,
    /// Bytes of this blob done so far.
    pub done: u64,
    /// RESOLVED: bytes of the whole image; layer events: the blob size.
    pub total: u64,
    /// RESOLVED: the number of layers.
    pub layers: u64,
    /// The whole event as a JSON object with a "type" field ("resolved",
    /// "layer_started", "bytes", "layer_done", "layer_skipped", "committed").
    pub json: *const c_char,
}

/// Called for each progress event of a pull, on the thread that called
/// imgsvc_service_pull() and only during that call. Return 0 to go on, or
/// any other value to cancel the pull (it then fails with IMGSVC_CANCELLED).
/// `userdata` is the pointer given to imgsvc_service_pull(), passed through
/// untouched. The callback must not unwind (C++ exceptions, longjmp) out of
/// itself, and must not free the service it was called for; it may call the
/// other functions of that service (list, status, even another pull).
pub type imgsvc_progress_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const imgsvc_progress) -> i32>;

/// Open (creating if needed) the store at directory `root` and start a
/// service on it.
///
/// `root`: required, UTF-8. `options_json`: NULL for the defaults, or a JSON
/// object with any of these keys (any other key is IMGSVC_INVALID_ARGUMENT):
///   "pinned": array of image names reported as pinned (exact normalized
///             names, or "prefix*"),
///   "max_parallel_downloads": 1..64 blobs per pull at once (default 4),
///   "progress_timeout_ms": a pull receiving nothing for this long fails with
///             IMGSVC_TIMEOUT; 0 means never (default 300000),
///   "connect_timeout_ms": 1..4294967295 (default 30000),
///   "unpack": false to store layers without unpacking them while pulling
///             (imgsvc_service_rootfs() then unpacks on demand; default true),
///   "max_layer_bytes": a layer uncompressing to more is refused with
///             IMGSVC_INTEGRITY (default 68719476736, 64 GiB),
/// and the registry configuration files (none is read unless named here):
///   "registries_conf": a containers-registries.conf v2 file (short-name
///             search and aliases, mirrors, insecure and blocked registries);
///             it must exist,
///   "registries_conf_d": its drop-in directory (default:
///             "<registries_conf>.d"),
///   "auth_file": a containers auth.json with credentials (read first),
///   "docker_config": a Docker config.json with credentials (read after
///             auth_file; the file itself, not its directory),
///   "certs_dir": a certs.d root holding one "<host:port>/" directory per
///             registry (CA "*.crt", "client.cert" + "client.key"),
///   "system_registry_config": true to start from the usual locations
///             (/etc/containers/registries.conf and .d, $REGISTRY_AUTH_FILE or
///             the containers auth.json, $DOCKER_CONFIG/config.json or
///             ~/.docker/config.json, /etc/containers/certs.d), those that
///             exist; each path key above then replaces one of them, and ""
///             turns it off (default false).
/// A registries.conf that is missing or invalid is IMGSVC_INVALID_ARGUMENT,
/// with the file and line in the message.
///
/// On success *out_service is a new service the caller owns (free it with
/// imgsvc_service_free()).
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_open(
    root: *const c_char,
    options_json: *const c_char,
    out_service: *mut *mut imgsvc_service,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY (both): NUL-terminated and live for the call, by the contract.
        let root = unsafe { required_str(root, "root") }?;
        let options_json = unsafe { optional_str(options_json, "options_json") }?;
        let out = Out::new(out_service, "out_service")?;
        let options = parse_options(root, options_json)?;
        let service = BlockingService::new(options)?;
        let raw = Box::into_raw(Box::new(imgsvc_service { inner: service }));
        // SAFETY: out_service is writable (contract), checked non-NULL.
        unsafe { out.write(raw) };
        Ok(())
    })
}

/// Stop the service and free it. NULL does nothing. Background work that
/// outlived a call (a shared download whose callers all gave up) stops; the
/// store stays consistent.
///
/// # Safety
/// `service` is NULL or a service from imgsvc_service_open() that was not
/// freed before and that no running call uses.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_free(service: *mut imgsvc_service) {
    guard((), || {
        if !service.is_null() {
            // SAFETY: made by Box::into_raw in imgsvc_service_open and not
            // freed before, by the contract.
            drop(unsafe { Box::from_raw(service) });
        }
    })
}

/// List images, as a CRI ListImagesResponse: {"images": [Image, ...]}, each
/// Image {"id", "repoTags", "repoDigests", "size", "uid": {"value"} (only
/// when the user is numeric), "username", "pinned"}.
///
/// `filter`: NULL or "" for all images, otherwise a name, name@digest, id or
/// id prefix; then the list holds that one image or is empty.
/// On success *out_json is a new string the caller frees with
/// imgsvc_string_free().
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_list(
    service: *const imgsvc_service,
    filter: *const c_char,
    out_json: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and string for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let filter = unsafe { optional_str(filter, "filter") }?;
        let out = Out::new(out_json, "out_json")?;
        let images = service.inner.list(filter)?;
        let text = to_c_string(&json::image_list(&images).to_string())?;
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// Look up one image by a name, name@digest, id, or an unambiguous id prefix
/// of at least 3 hex digits.
///
/// On success *out_json is either NULL, meaning no such image (this is an
/// answer, not an error), or a new string the caller frees with
/// imgsvc_string_free(): {"status": Image} as in imgsvc_service_list(), and
/// when `verbose` also "info": {"imageSpec": <the image config>}.
/// An ambiguous prefix or malformed name is IMGSVC_INVALID_ARGUMENT.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_status(
    service: *const imgsvc_service,
    image: *const c_char,
    verbose: bool,
    out_json: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and string for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let image = unsafe { required_str(image, "image") }?;
        let out = Out::new(out_json, "out_json")?;
        let text = match service.inner.status(image, verbose)? {
            Some(status) => to_c_string(&json::image_status(&status).to_string())?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// Pull `image` from its registry into the store.
///
/// `auth_json`: NULL, or CRI AuthConfig credentials as a JSON object with
/// any of "username", "password", "auth", "serverAddress", "identityToken",
/// "registryToken" (snake_case spellings accepted too).
/// `progress`: NULL, or a callback for progress events (see
/// imgsvc_progress_callback); `userdata` is passed to it untouched.
/// `cancel`: NULL, or a token that stops the pull when cancelled from
/// another thread; it must stay alive until this call returns.
///
/// On success *out_image_id is the image id ("sha256:<hex>", plain text, not
/// JSON), a new string the caller frees with imgsvc_string_free().
/// A tag the registry lacks is IMGSVC_NOT_FOUND. Cancellation (token or
/// callback) is IMGSVC_CANCELLED; a pull cancelled before its image was
/// recorded leaves no image behind.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature: handle, inputs, outputs
pub unsafe extern "C" fn imgsvc_service_pull(
    service: *const imgsvc_service,
    image: *const c_char,
    auth_json: *const c_char,
    progress: imgsvc_progress_callback,
    userdata: *mut c_void,
    cancel: *const imgsvc_cancel_token,
    out_image_id: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service, strings and token for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let image = unsafe { required_str(image, "image") }?;
        // SAFETY: as above.
        let auth = unsafe { optional_str(auth_json, "auth_json") }?.map(parse_auth).transpose()?;
        // SAFETY: as above.
        let cancel = unsafe { cancel.as_ref() };
        let out = Out::new(out_image_id, "out_image_id")?;

        let never = CancelToken::new();
        let token = cancel.map_or(&never, |c| &c.token);
        let userdata = UserData(userdata);
        let mut forward = progress.map(|callback| {
            move |event: &Progress| -> bool {
                let event = EventStrings::new(event);
                let raw = event.as_raw();
                // SAFETY: `callback` is a valid function pointer and
                // `userdata` the caller's own pointer (contract); `raw` and
                // the strings it points to live until the call returns.
                unsafe { callback(userdata.get(), &raw) == 0 }
            }
        });
        let forward_ref = forward.as_mut().map(|f| f as &mut (dyn FnMut(&Progress) -> bool + Send));
        let id = service.inner.pull_cancellable(image, auth.as_ref(), forward_ref, token)?;
        let text = to_c_string(&id)?;
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// The caller's `userdata`, carried into the progress closure.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

impl UserData {
    // A method, so closures capture the whole wrapper (and its Send) rather
    // than the raw pointer field alone.
    fn get(self) -> *mut c_void {
        self.0
    }
}

// SAFETY: the core demands `Send` of progress closures, but
// BlockingService::pull_cancellable runs them on the calling thread and only
// during the call, so the pointer is only ever used on the thread that gave
// it to us.
unsafe impl Send for UserData {}

/// The owned strings behind one imgsvc_progress.
struct EventStrings {
    kind: imgsvc_progress_kind,
    image: CString,
    digest: CString,
    done: u64,
    total: u64,
    layers: u64,
    json: CString,
}

impl EventStrings {
    fn new(event: &Progress) -> Self {
        use imgsvc_progress_kind::*;
        // Names and digests never hold NUL; an empty string beats a panic.
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let none = CString::default;
        let (kind, image, digest, done, total, layers) = match event {
            Progress::Resolved { image, manifest_digest, total_bytes, layers } => {
                (IMGSVC_PROGRESS_RESOLVED, c(image), c(manifest_digest), 0, *total_bytes, *layers as u64)
            }
            Progress::LayerStarted { digest, size } => (IMGSVC_PROGRESS_LAYER_STARTED, none(), c(digest), 0, *size, 0),
            Progress::Bytes { digest, done, total } => (IMGSVC_PROGRESS_BYTES, none(), c(digest), *done, *total, 0),
            Progress::LayerDone { digest, size } => (IMGSVC_PROGRESS_LAYER_DONE, none(), c(digest), *size, *size, 0),
            Progress::LayerSkipped { digest, size } => {
                (IMGSVC_PROGRESS_LAYER_SKIPPED, none(), c(digest), *size, *size, 0)
            }
            Progress::Committed { image_id } => (IMGSVC_PROGRESS_COMMITTED, c(image_id), none(), 0, 0, 0),
        };
        let json = c(&json::progress(event).to_string());
        EventStrings { kind, image, digest, done, total, layers, json }
    }

    fn as_raw(&self) -> imgsvc_progress {
        imgsvc_progress {
            kind: self.kind as i32,
            image: self.image.as_ptr(),
            digest: self.digest.as_ptr(),
            done: self.done,
            total: self.total,
            layers: self.layers,
            json: self.json.as_ptr(),
        }
    }
}

/// Remove the image `image` names (a name, name@digest, id or id prefix),
/// with all its names. Removing an image that is not there succeeds. Blobs
/// no other image uses are deleted.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_remove(
    service: *const imgsvc_service,
    image: *const c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and string for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let image = unsafe { required_str(image, "image") }?;
        service.inner.remove(image)?;
        Ok(())
    })
}

/// Drop one name (a tag or name@digest) from its image; the image goes with
/// its last name. An image id is IMGSVC_INVALID_ARGUMENT (use remove); a
/// name no image has is IMGSVC_NOT_FOUND.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_untag(
    service: *const imgsvc_service,
    name: *const c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and string for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let name = unsafe { required_str(name, "name") }?;
        service.inner.untag(name)?;
        Ok(())
    })
}

/// The image's unpacked layer directories, top layer first: the `lowerdir`
/// list of an overlay mount. Layers not unpacked yet (the image was pulled
/// with "unpack": false) are unpacked now. An image the store does not have
/// is IMGSVC_NOT_FOUND.
///
/// On success *out_json is a new JSON array of absolute paths (strings) the
/// caller frees with imgsvc_string_free().
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_rootfs(
    service: *const imgsvc_service,
    image: *const c_char,
    out_json: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and string for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let image = unsafe { required_str(image, "image") }?;
        let out = Out::new(out_json, "out_json")?;
        let dirs: Vec<String> = service.inner.rootfs(image)?.iter().map(|p| p.display().to_string()).collect();
        let text = to_c_string(&serde_json::Value::from(dirs).to_string())?;
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// Write the image's merged root filesystem into directory `dir`, which must
/// be absent (it is created) or empty (else IMGSVC_INVALID_ARGUMENT). Files
/// are hard-linked from the layer store where the filesystem allows, so
/// they share inodes with it: copy a file before changing it in place.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_export_rootfs(
    service: *const imgsvc_service,
    image: *const c_char,
    dir: *const c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service and strings for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        // SAFETY: as above.
        let image = unsafe { required_str(image, "image") }?;
        // SAFETY: as above.
        let dir = unsafe { required_str(dir, "dir") }?;
        service.inner.export_rootfs(image, dir)?;
        Ok(())
    })
}

/// Filesystem usage of the store, as a CRI ImageFsInfoResponse:
/// {"imageFilesystems": [{"timestamp", "fsId": {"mountpoint"},
/// "usedBytes": {"value"}, "inodesUsed": {"value"}}],
/// "containerFilesystems": []}.
///
/// On success *out_json is a new string the caller frees with
/// imgsvc_string_free().
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_fs_info(
    service: *const imgsvc_service,
    out_json: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        let out = Out::new(out_json, "out_json")?;
        let usage = service.inner.fs_info()?;
        let text = to_c_string(&json::fs_info(&usage).to_string())?;
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// Check the store's consistency: every image's blobs present with the size
/// and digest recorded (each blob re-hashed), no unreferenced blobs, no
/// downloads or temporary files left by a crash. With `repair`, also remove
/// what is orphaned, corrupt blobs and the images that cannot be complete
/// (pull them again), until the store is clean.
///
/// Finding problems is not a failure: on success *out_json is a new string
/// the caller frees with imgsvc_string_free():
/// {"clean": true when nothing remains to fix,
///  "problems": ["blob sha256:... is corrupt: its content hashes to sha256:...",
///               "image sha256:... is incomplete", ...] (one sentence each),
///  "repaired": [what repair did, one sentence each; [] without repair],
///  "remaining": [problems still there; all of them without repair],
///  "blobsChecked": the number of blobs verified (a JSON number)}.
/// It holds the store's lock while it runs, so other calls that change the
/// store wait for it.
///
/// # Safety
/// Pointers are NULL or valid as described in the header's conventions.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_service_fsck(
    service: *const imgsvc_service,
    repair: bool,
    out_json: *mut *mut c_char,
    err: *mut *mut imgsvc_error,
) -> imgsvc_status {
    call(err, || {
        // SAFETY: live service for the call, by the contract.
        let service = unsafe { handle(service, "service") }?;
        let out = Out::new(out_json, "out_json")?;
        let report = service.inner.fsck(repair)?;
        let text = to_c_string(&fsck_json(&report).to_string())?;
        // SAFETY: writable by the contract, checked non-NULL.
        unsafe { out.write(text) };
        Ok(())
    })
}

/// The JSON form of a check's report.
fn fsck_json(report: &FsckReport) -> serde_json::Value {
    serde_json::json!({
        "clean": report.is_clean(),
        "problems": report.problems,
        "repaired": report.repaired,
        "remaining": report.remaining,
        "blobsChecked": report.blobs_checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsck_json_names_every_field() {
        let report = FsckReport {
            problems: vec!["blob sha256:aa is corrupt".into(), "image sha256:bb is incomplete".into()],
            repaired: vec!["deleted corrupt blob sha256:aa".into()],
            remaining: vec![],
            blobs_checked: 3,
        };
        assert_eq!(
            fsck_json(&report).to_string(),
            r#"{"clean":true,"problems":["blob sha256:aa is corrupt","image sha256:bb is incomplete"],"repaired":["deleted corrupt blob sha256:aa"],"remaining":[],"blobsChecked":3}"#
        );
        let dirty = FsckReport { remaining: vec!["x".into()], ..FsckReport::default() };
        assert_eq!(fsck_json(&dirty)["clean"], false);
    }
}
