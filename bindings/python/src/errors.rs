//! The exception hierarchy (DESIGN.md, "One error model") and the one
//! mapping from `imgsvc::ErrorKind` to it.
//!
//! Several classes also derive from a built-in exception (`ValueError`,
//! `LookupError`, `OSError`, `TimeoutError`) so that code which already
//! catches those keeps working. pyo3's `create_exception!` takes one base
//! only, so the classes are made at module init by calling `type(...)`.

use imgsvc::ErrorKind;
use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::PyTypeInfo;

/// One exception class: its name, the built-in it also derives from, and its doc.
struct Spec {
    name: &'static str,
    builtin: Option<fn(Python<'_>) -> Bound<'_, PyType>>,
    doc: &'static str,
}

const BASE: &str = "ImgsvcError";

/// Every class below `ImgsvcError`, in the order of the DESIGN.md table.
const SPECS: &[Spec] = &[
    Spec {
        name: "InvalidArgumentError",
        builtin: Some(PyValueError::type_object),
        doc: "A malformed reference or option, an ambiguous id prefix or short name.",
    },
    Spec {
        name: "NotFoundError",
        builtin: Some(PyLookupError::type_object),
        doc: "The registry has no such manifest, or no such image where one is required.",
    },
    Spec { name: "AuthenticationError", builtin: None, doc: "The registry wants credentials, or rejected them." },
    Spec {
        name: "PermissionDeniedError",
        builtin: None,
        doc: "The registry denied access (403, DENIED), or the registry is blocked.",
    },
    Spec {
        name: "RegistryUnavailableError",
        builtin: None,
        doc: "The registry could not be reached, or kept failing (5xx, 429) after retries.",
    },
    Spec { name: "IntegrityError", builtin: None, doc: "A digest or size mismatch, or a corrupt store." },
    Spec {
        name: "UnsupportedError",
        builtin: None,
        doc: "Docker schema 1, a non-image artifact, no manifest for this platform, a manifest over 4 MiB.",
    },
    Spec { name: "StorageFullError", builtin: None, doc: "The disk holding the store is full." },
    Spec { name: "StoreError", builtin: Some(PyOSError::type_object), doc: "An I/O or other error of the store." },
    Spec {
        name: "CancelledError",
        builtin: None,
        doc: "The operation was cancelled (a progress callback returned False).",
    },
    Spec {
        name: "TimeoutError",
        builtin: Some(PyTimeoutError::type_object),
        doc: "A pull made no progress within `progress_timeout` seconds.",
    },
];

/// The class for each kind. The one exhaustive mapping of this surface.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "InvalidArgumentError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::Unauthenticated => "AuthenticationError",
        ErrorKind::PermissionDenied => "PermissionDeniedError",
        ErrorKind::Unavailable => "RegistryUnavailableError",
        ErrorKind::Integrity => "IntegrityError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::StorageFull => "StorageFullError",
        ErrorKind::Io => "StoreError",
        ErrorKind::Cancelled => "CancelledError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::Internal => BASE,
        // ErrorKind is #[non_exhaustive]: a kind added later is still an ImgsvcError.
        _ => BASE,
    }
}

/// The classes, made once per process (pyo3 refuses sub-interpreters).
static CLASSES: PyOnceLock<Vec<(&'static str, Py<PyType>)>> = PyOnceLock::new();

fn make_class<'py>(py: Python<'py>, name: &str, bases: Bound<'py, PyTuple>, doc: &str) -> PyResult<Bound<'py, PyType>> {
    let namespace = PyDict::new(py);
    // Shown as imgsvc.NotFoundError in tracebacks, where users import it from.
    namespace.set_item("__module__", "imgsvc")?;
    namespace.set_item("__doc__", doc)?;
    Ok(PyType::type_object(py).call1((name, bases, namespace))?.cast_into::<PyType>()?)
}

fn classes(py: Python<'_>) -> PyResult<&Vec<(&'static str, Py<PyType>)>> {
    CLASSES.get_or_try_init(py, || {
        let base = make_class(
            py,
            BASE,
            PyTuple::new(py, [PyException::type_object(py)])?,
            "Base class of every error imgsvc raises; also raised as is for internal errors.",
        )?;
        let mut out = vec![(BASE, base.clone().unbind())];
        for spec in SPECS {
            let mut bases = vec![base.clone()];
            bases.extend(spec.builtin.map(|builtin| builtin(py)));
            let class = make_class(py, spec.name, PyTuple::new(py, bases)?, spec.doc)?;
            out.push((spec.name, class.unbind()));
        }
        Ok(out)
    })
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    classes(py)?
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, class)| class.bind(py).clone())
        .ok_or_else(|| pyo3::exceptions::PySystemError::new_err(format!("imgsvc: no exception class {name}")))
}

/// Add every class to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    for (name, class) in classes(module.py())? {
        module.add(*name, class.bind(module.py()))?;
    }
    Ok(())
}

/// A core error as the Python exception of its kind, with the core's message.
pub fn to_py(py: Python<'_>, err: imgsvc::Error) -> PyErr {
    match class(py, class_name(err.kind())) {
        Ok(class) => PyErr::from_type(class, (err.message().to_string(),)),
        Err(e) => e,
    }
}

/// An `InvalidArgumentError` raised by the binding itself (bad option values).
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, imgsvc::Error::new(ErrorKind::InvalidArgument, message))
}
