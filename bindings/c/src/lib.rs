//! The C ABI of imgsvc: `libimgsvc.so`, `libimgsvc.a` and, generated from
//! this crate by cbindgen, `include/imgsvc.h`.
//!
//! This crate owns the translation between C and the core: pointers and
//! NUL-terminated strings in, status codes, owned error objects and JSON
//! strings out. It contains no image logic of its own. It is the only place
//! in the project with `unsafe` code; every unsafe operation sits in an
//! explicit block with a `// SAFETY:` comment.
//!
//! Module map: `boundary` is the panic boundary and the argument checks,
//! `error` the owned error object, `strings` the strings we hand out,
//! `options` parses the JSON options and credentials, `service` the
//! service functions, `cancel` the cancel token.
//!
//! The doc comments on exported items are copied into the header, so they
//! speak C.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]

mod boundary;
mod cancel;
mod error;
mod options;
mod service;
mod strings;

pub use cancel::*;
pub use error::*;
pub use service::*;
pub use strings::*;

/// A status code: IMGSVC_OK (0) or one of the error codes below. The codes
/// are stable; new ones may be added, so treat unknown values like
/// IMGSVC_INTERNAL.
pub type imgsvc_status = i32;

/// Success.
pub const IMGSVC_OK: imgsvc_status = 0;
/// A malformed reference, option or argument (including NULL where a pointer
/// is required and strings that are not UTF-8), an ambiguous id prefix or
/// short name.
pub const IMGSVC_INVALID_ARGUMENT: imgsvc_status = 1;
/// The registry has no such manifest, or no such image where one is required.
pub const IMGSVC_NOT_FOUND: imgsvc_status = 2;
/// The registry wants credentials we do not have, or rejected them.
pub const IMGSVC_UNAUTHENTICATED: imgsvc_status = 3;
/// HTTP 403, registry DENIED, or a blocked registry.
pub const IMGSVC_PERMISSION_DENIED: imgsvc_status = 4;
/// Network failure, HTTP 5xx, 429 after retries.
pub const IMGSVC_UNAVAILABLE: imgsvc_status = 5;
/// Digest or size mismatch, corrupt store.
pub const IMGSVC_INTEGRITY: imgsvc_status = 6;
/// Docker schema 1, a non-image artifact, no manifest for this platform, a
/// manifest over 4 MiB.
pub const IMGSVC_UNSUPPORTED: imgsvc_status = 7;
/// The disk holding the store is full.
pub const IMGSVC_STORAGE_FULL: imgsvc_status = 8;
/// I/O and other store errors.
pub const IMGSVC_IO: imgsvc_status = 9;
/// The caller cancelled: a cancel token, or a progress callback returning
/// non-zero.
pub const IMGSVC_CANCELLED: imgsvc_status = 10;
/// A pull made no progress within progress_timeout_ms.
pub const IMGSVC_TIMEOUT: imgsvc_status = 11;
/// A bug in imgsvc, including a caught panic.
pub const IMGSVC_INTERNAL: imgsvc_status = 12;

/// The library version, e.g. "0.1.0". Static: never free it.
#[no_mangle]
pub extern "C" fn imgsvc_version() -> *const std::ffi::c_char {
    boundary::guard(std::ptr::null(), || concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// A short lowercase name for a status code ("ok", "invalid argument",
/// "not found", ...; "unknown" for values outside the table). Static: never
/// free it.
#[no_mangle]
pub extern "C" fn imgsvc_status_name(code: imgsvc_status) -> *const std::ffi::c_char {
    boundary::guard(c"unknown".as_ptr(), || status_name(code).as_ptr().cast())
}

fn status_name(code: imgsvc_status) -> &'static str {
    match code {
        IMGSVC_OK => "ok\0",
        IMGSVC_INVALID_ARGUMENT => "invalid argument\0",
        IMGSVC_NOT_FOUND => "not found\0",
        IMGSVC_UNAUTHENTICATED => "unauthenticated\0",
        IMGSVC_PERMISSION_DENIED => "permission denied\0",
        IMGSVC_UNAVAILABLE => "unavailable\0",
        IMGSVC_INTEGRITY => "integrity\0",
        IMGSVC_UNSUPPORTED => "unsupported\0",
        IMGSVC_STORAGE_FULL => "storage full\0",
        IMGSVC_IO => "i/o\0",
        IMGSVC_CANCELLED => "cancelled\0",
        IMGSVC_TIMEOUT => "timeout\0",
        IMGSVC_INTERNAL => "internal\0",
        _ => "unknown\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgsvc_core::ErrorKind;
    use std::ffi::CStr;

    #[test]
    fn codes_match_the_core_table() {
        // The core's ErrorKind::code() is the DESIGN.md table; the named
        // constants in the header must agree with it.
        let table = [
            (ErrorKind::InvalidArgument, IMGSVC_INVALID_ARGUMENT, "invalid argument"),
            (ErrorKind::NotFound, IMGSVC_NOT_FOUND, "not found"),
            (ErrorKind::Unauthenticated, IMGSVC_UNAUTHENTICATED, "unauthenticated"),
            (ErrorKind::PermissionDenied, IMGSVC_PERMISSION_DENIED, "permission denied"),
            (ErrorKind::Unavailable, IMGSVC_UNAVAILABLE, "unavailable"),
            (ErrorKind::Integrity, IMGSVC_INTEGRITY, "integrity"),
            (ErrorKind::Unsupported, IMGSVC_UNSUPPORTED, "unsupported"),
            (ErrorKind::StorageFull, IMGSVC_STORAGE_FULL, "storage full"),
            (ErrorKind::Io, IMGSVC_IO, "i/o"),
            (ErrorKind::Cancelled, IMGSVC_CANCELLED, "cancelled"),
            (ErrorKind::Timeout, IMGSVC_TIMEOUT, "timeout"),
            (ErrorKind::Internal, IMGSVC_INTERNAL, "internal"),
        ];
        for (kind, code, name) in table {
            assert_eq!(kind.code(), code, "{kind:?}");
            assert_eq!(kind.name(), name);
            // SAFETY: imgsvc_status_name returns a static NUL-terminated string.
            let got = unsafe { CStr::from_ptr(imgsvc_status_name(code)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(imgsvc_status_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown");
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: imgsvc_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(imgsvc_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
