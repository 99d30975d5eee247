//! The `imgsvc._native` Python extension module: pyo3 classes over the
//! blocking core service. The Python package `imgsvc` (python/imgsvc)
//! re-exports it. Bindings translate types and errors only; CRI semantics
//! live in the core crate.

mod errors;
mod service;
mod types;

use pyo3::prelude::*;

/// The store root used when `ImageService(root=None)`: `$IMGSVC_ROOT`, else
/// `/var/lib/imgsvc` for root, else `$XDG_DATA_HOME/imgsvc` (or
/// `~/.local/share/imgsvc`).
#[pyfunction]
fn default_root() -> String {
    imgsvc::Options::default_root().display().to_string()
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<service::PyImageService>()?;
    module.add_class::<types::PyImage>()?;
    module.add_class::<types::PyImageStatus>()?;
    module.add_class::<types::PyFilesystemUsage>()?;
    module.add_class::<types::PyProgress>()?;
    module.add_class::<types::PyFsckReport>()?;
    module.add_class::<types::PyAuth>()?;
    module.add_function(wrap_pyfunction!(default_root, module)?)?;
    errors::register(module)?;
    Ok(())
}
