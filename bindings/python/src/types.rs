//! Immutable Python views of the core's value types: `Image`, `ImageStatus`,
//! `FilesystemUsage`, `Progress`, `FsckReport`, and the `Auth` a caller
//! passes to a pull.
//!
//! Each wraps the core value unchanged; `to_dict()` returns what
//! `imgsvc::json` gives (CRI field names), so the CLI, the C ABI and Python
//! agree on names and value forms. Lists come back as tuples and dicts as
//! fresh copies, so nothing reachable from an object can change it.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::BoundObject;
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// A JSON value as plain Python objects (dict keeps the JSON field order).
pub fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// Python's `repr()` of a value, for building readable reprs.
fn r<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> PyResult<String>
where
    PyErr: From<T::Error>,
{
    Ok(value.into_pyobject(py)?.into_any().into_bound().repr()?.to_string())
}

fn hash_of(value: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

/// An image in the store, as the CRI `Image` message describes it.
#[pyclass(frozen, module = "imgsvc", name = "Image")]
pub struct PyImage(pub imgsvc::Image);

#[pymethods]
impl PyImage {
    /// `sha256:<hex of the config digest>`.
    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }
    /// Normalized names with a tag, e.g. `docker.io/library/debian:12`.
    #[getter]
    fn repo_tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.repo_tags)
    }
    /// `<repository>@<digest>` for each digest a name resolved to.
    #[getter]
    fn repo_digests<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.repo_digests)
    }
    /// Bytes of the image's blobs as stored.
    #[getter]
    fn size(&self) -> u64 {
        self.0.size
    }
    /// The config's numeric user, or None (0 is root, not absent).
    #[getter]
    fn uid(&self) -> Option<i64> {
        self.0.uid
    }
    /// The config's user when it is not numeric, else "".
    #[getter]
    fn username(&self) -> &str {
        &self.0.username
    }
    #[getter]
    fn pinned(&self) -> bool {
        self.0.pinned
    }
    /// The CRI JSON form (camelCase names, 64-bit integers as strings).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &imgsvc::json::image(&self.0))
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let i = &self.0;
        Ok(format!(
            "Image(id={}, repo_tags={}, repo_digests={}, size={}, uid={}, username={}, pinned={})",
            r(py, &i.id)?,
            r(py, self.repo_tags(py)?)?,
            r(py, self.repo_digests(py)?)?,
            i.size,
            r(py, i.uid)?,
            r(py, &i.username)?,
            r(py, i.pinned)?,
        ))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyImage>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        hash_of(&imgsvc::json::image(&self.0))
    }
}

/// The answer to `ImageService.status()` for a present image.
#[pyclass(frozen, module = "imgsvc", name = "ImageStatus")]
pub struct PyImageStatus(pub imgsvc::ImageStatus);

#[pymethods]
impl PyImageStatus {
    #[getter]
    fn image(&self) -> PyImage {
        PyImage(self.0.image.clone())
    }
    /// Verbose only: key "info" holds a JSON object string with "imageSpec".
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (k, v) in &self.0.info {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }
    /// crictl's `inspecti -o json` form: {"status": Image, "info": {...}}.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &imgsvc::json::image_status(&self.0))
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let keys: Vec<&str> = self.0.info.keys().map(String::as_str).collect();
        Ok(format!("ImageStatus(image={}, info_keys={})", self.image().__repr__(py)?, r(py, keys)?))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyImageStatus>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        hash_of(&imgsvc::json::image_status(&self.0))
    }
}

/// Usage of the filesystem holding the store, as the CRI `FilesystemUsage`.
#[pyclass(frozen, module = "imgsvc", name = "FilesystemUsage")]
pub struct PyFilesystemUsage(pub imgsvc::FilesystemUsage);

#[pymethods]
impl PyFilesystemUsage {
    /// When this was measured, in nanoseconds since the Unix epoch.
    #[getter]
    fn timestamp_ns(&self) -> i64 {
        self.0.timestamp_ns
    }
    /// The store's root directory.
    #[getter]
    fn mountpoint(&self) -> &str {
        &self.0.mountpoint
    }
    #[getter]
    fn used_bytes(&self) -> u64 {
        self.0.used_bytes
    }
    #[getter]
    fn inodes_used(&self) -> u64 {
        self.0.inodes_used
    }
    /// The CRI JSON form of one `FilesystemUsage`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &imgsvc::json::filesystem_usage(&self.0))
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let u = &self.0;
        Ok(format!(
            "FilesystemUsage(timestamp_ns={}, mountpoint={}, used_bytes={}, inodes_used={})",
            u.timestamp_ns,
            r(py, &u.mountpoint)?,
            u.used_bytes,
            u.inodes_used
        ))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyFilesystemUsage>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        hash_of(&imgsvc::json::filesystem_usage(&self.0))
    }
}

/// One event of a pull. `kind` says which; fields that do not apply to that
/// kind are None.
#[pyclass(frozen, module = "imgsvc", name = "Progress")]
pub struct PyProgress(pub imgsvc::Progress);

impl PyProgress {
    /// (field, value) pairs that apply to this event, in the core's order.
    fn fields(&self) -> Vec<(&'static str, Field<'_>)> {
        use imgsvc::Progress as P;
        match &self.0 {
            P::Resolved { image, manifest_digest, total_bytes, layers } => vec![
                ("image", Field::Str(image)),
                ("manifest_digest", Field::Str(manifest_digest)),
                ("total_bytes", Field::Int(*total_bytes)),
                ("layers", Field::Int(*layers as u64)),
            ],
            P::LayerStarted { digest, size } | P::LayerDone { digest, size } | P::LayerSkipped { digest, size } => {
                vec![("digest", Field::Str(digest)), ("size", Field::Int(*size))]
            }
            P::Bytes { digest, done, total } => {
                vec![("digest", Field::Str(digest)), ("done", Field::Int(*done)), ("total", Field::Int(*total))]
            }
            P::Committed { image_id } => vec![("image_id", Field::Str(image_id))],
        }
    }

    fn str_field(&self, name: &str) -> Option<String> {
        self.fields().into_iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
            Field::Str(s) => Some(s.to_string()),
            Field::Int(_) => None,
        })
    }

    fn int_field(&self, name: &str) -> Option<u64> {
        self.fields().into_iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
            Field::Int(i) => Some(i),
            Field::Str(_) => None,
        })
    }
}

enum Field<'a> {
    Str(&'a str),
    Int(u64),
}

#[pymethods]
impl PyProgress {
    /// "resolved", "layer_started", "bytes", "layer_done", "layer_skipped" or "committed".
    #[getter]
    fn kind(&self) -> &'static str {
        use imgsvc::Progress as P;
        match &self.0 {
            P::Resolved { .. } => "resolved",
            P::LayerStarted { .. } => "layer_started",
            P::Bytes { .. } => "bytes",
            P::LayerDone { .. } => "layer_done",
            P::LayerSkipped { .. } => "layer_skipped",
            P::Committed { .. } => "committed",
        }
    }
    /// resolved: the normalized reference being pulled.
    #[getter]
    fn image(&self) -> Option<String> {
        self.str_field("image")
    }
    /// resolved: the digest of the platform manifest.
    #[getter]
    fn manifest_digest(&self) -> Option<String> {
        self.str_field("manifest_digest")
    }
    /// resolved: bytes of the config and layers.
    #[getter]
    fn total_bytes(&self) -> Option<u64> {
        self.int_field("total_bytes")
    }
    /// resolved: number of layers.
    #[getter]
    fn layers(&self) -> Option<u64> {
        self.int_field("layers")
    }
    /// layer_*, bytes: the blob's digest.
    #[getter]
    fn digest(&self) -> Option<String> {
        self.str_field("digest")
    }
    /// layer_*: the blob's size.
    #[getter]
    fn size(&self) -> Option<u64> {
        self.int_field("size")
    }
    /// bytes: bytes of the blob received so far.
    #[getter]
    fn done(&self) -> Option<u64> {
        self.int_field("done")
    }
    /// bytes: the blob's size.
    #[getter]
    fn total(&self) -> Option<u64> {
        self.int_field("total")
    }
    /// committed: the image id.
    #[getter]
    fn image_id(&self) -> Option<String> {
        self.str_field("image_id")
    }
    /// The JSON form shared with the CLI and the C ABI (with a "type" field).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &imgsvc::json::progress(&self.0))
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec![format!("kind={}", r(py, self.kind())?)];
        for (name, value) in self.fields() {
            parts.push(match value {
                Field::Str(s) => format!("{name}={}", r(py, s)?),
                Field::Int(i) => format!("{name}={i}"),
            });
        }
        Ok(format!("Progress({})", parts.join(", ")))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyProgress>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        hash_of(&imgsvc::json::progress(&self.0))
    }
}

/// Registry credentials for one pull, as the CRI `AuthConfig`. The repr
/// shows the username and server only; secrets never appear in it.
#[pyclass(frozen, module = "imgsvc", name = "Auth")]
pub struct PyAuth(pub imgsvc::Auth);

#[pymethods]
impl PyAuth {
    #[new]
    #[pyo3(signature = (
        *,
        username = String::new(),
        password = String::new(),
        identity_token = String::new(),
        registry_token = String::new(),
        auth = String::new(),
        server_address = String::new(),
    ))]
    #[pyo3(
        text_signature = "(*, username='', password='', identity_token='', registry_token='', auth='', server_address='')"
    )]
    fn new(
        username: String,
        password: String,
        identity_token: String,
        registry_token: String,
        auth: String,
        server_address: String,
    ) -> Self {
        PyAuth(imgsvc::Auth { username, password, auth, server_address, identity_token, registry_token })
    }
    #[getter]
    fn username(&self) -> &str {
        &self.0.username
    }
    #[getter]
    fn password(&self) -> &str {
        &self.0.password
    }
    #[getter]
    fn identity_token(&self) -> &str {
        &self.0.identity_token
    }
    #[getter]
    fn registry_token(&self) -> &str {
        &self.0.registry_token
    }
    /// base64 of `user:password`.
    #[getter]
    fn auth(&self) -> &str {
        &self.0.auth
    }
    #[getter]
    fn server_address(&self) -> &str {
        &self.0.server_address
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Auth(username={}, server_address={}, ...)",
            r(py, &self.0.username)?,
            r(py, &self.0.server_address)?
        ))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyAuth>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }
}

/// What `ImageService.fsck()` found and, with repair, what it fixed.
#[pyclass(frozen, module = "imgsvc", name = "FsckReport")]
pub struct PyFsckReport(pub imgsvc::FsckReport);

impl PyFsckReport {
    /// The dict form: the same names as the C ABI's JSON.
    fn json(&self) -> Value {
        serde_json::json!({
            "clean": self.0.is_clean(),
            "problems": self.0.problems,
            "repaired": self.0.repaired,
            "remaining": self.0.remaining,
            "blobsChecked": self.0.blobs_checked,
        })
    }
}

#[pymethods]
impl PyFsckReport {
    /// True when no problem remains.
    #[getter]
    fn clean(&self) -> bool {
        self.0.is_clean()
    }
    /// Problems found, one sentence each.
    #[getter]
    fn problems<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.problems)
    }
    /// What repair did, one sentence each (empty without repair).
    #[getter]
    fn repaired<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.repaired)
    }
    /// Problems still there (all of them without repair).
    #[getter]
    fn remaining<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.remaining)
    }
    /// The number of blobs whose digest and size were verified.
    #[getter]
    fn blobs_checked(&self) -> usize {
        self.0.blobs_checked
    }
    /// `{"clean", "problems", "repaired", "remaining", "blobsChecked"}`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.json())
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "FsckReport(clean={}, problems={}, repaired={}, remaining={}, blobs_checked={})",
            r(py, self.clean())?,
            r(py, self.problems(py)?)?,
            r(py, self.repaired(py)?)?,
            r(py, self.remaining(py)?)?,
            self.0.blobs_checked,
        ))
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyFsckReport>().is_ok_and(|o| o.get().0 == self.0)
    }
    fn __hash__(&self) -> u64 {
        hash_of(&self.json())
    }
}
