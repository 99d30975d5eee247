//! The panic boundary and the checks every argument from C goes through.
//!
//! Each exported function runs its body through [`call`] (or [`guard`] for
//! functions that cannot report an error), so a panic never unwinds into C
//! (since Rust 1.81 that would abort the process) and becomes
//! IMGSVC_INTERNAL instead. Arguments are checked here, before any work, so
//! a NULL or a non-UTF-8 string is an invalid argument, never a crash.

use crate::error::imgsvc_error;
use crate::{imgsvc_status, IMGSVC_INTERNAL, IMGSVC_INVALID_ARGUMENT, IMGSVC_OK};
use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a call failed: a status code and a message for people.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: imgsvc_status,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure { code: IMGSVC_INVALID_ARGUMENT, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure { code: IMGSVC_INTERNAL, message: message.into() }
    }

    fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".to_string());
        Failure::internal(format!("internal error (panic in imgsvc): {what}"))
    }
}

impl From<imgsvc_core::Error> for Failure {
    fn from(e: imgsvc_core::Error) -> Self {
        // ErrorKind::code() is the one mapping from kinds to C codes.
        Failure { code: e.kind().code(), message: e.message().to_string() }
    }
}

/// Run `body` behind the panic boundary and turn its outcome into a status
/// code; on failure, hand the caller an owned error object through `err`
/// when `err` is not NULL.
pub(crate) fn call(err: *mut *mut imgsvc_error, body: impl FnOnce() -> Result<(), Failure>) -> imgsvc_status {
    // AssertUnwindSafe: after a panic nothing the body touched is used again
    // except through the service, whose state the core keeps consistent
    // (its mutexes recover from poisoning).
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(Failure::from_panic(payload)));
    match outcome {
        Ok(()) => IMGSVC_OK,
        Err(failure) => {
            let code = failure.code;
            if !err.is_null() {
                let boxed =
                    catch_unwind(AssertUnwindSafe(|| imgsvc_error::new_raw(failure))).unwrap_or(std::ptr::null_mut());
                // SAFETY: `err` is not NULL, and the caller promises it points
                // to writable storage for one pointer (header contract).
                unsafe { *err = boxed };
            }
            code
        }
    }
}

/// Run `body` behind the panic boundary, answering `fallback` if it panics.
/// For functions with nothing to report (frees, accessors).
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A required string argument, borrowed for the call.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for the lifetime `'a` (the call).
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    // SAFETY: forwarded from this function's contract.
    unsafe { optional_str(ptr, name) }?.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As for [`required_str`].
pub(crate) unsafe fn optional_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL, and NUL-terminated and valid for 'a by the contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map(Some).map_err(|e| Failure::invalid(format!("{name} is not valid UTF-8 ({e})")))
}

/// A required handle argument, borrowed for the call.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` made by this library that is not
/// freed during `'a`.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Failure> {
    // SAFETY: forwarded from this function's contract; as_ref checks NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
}

/// An out-pointer, checked for NULL before any work is done so a bad call
/// fails without side effects; written only on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    pub fn new(ptr: *mut T, name: &str) -> Result<Self, Failure> {
        if ptr.is_null() {
            return Err(Failure::invalid(format!("{name} is NULL")));
        }
        Ok(Out(ptr))
    }

    /// # Safety
    /// The pointer given to [`Out::new`] points to writable storage for a `T`.
    pub unsafe fn write(self, value: T) {
        // SAFETY: not NULL (checked in new) and writable by the contract;
        // `write` because the old contents are the caller's and not ours to drop.
        unsafe { self.0.write(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{imgsvc_error_code, imgsvc_error_free, imgsvc_error_message};
    use crate::IMGSVC_NOT_FOUND;
    use std::ffi::CString;

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let mut err: *mut imgsvc_error = std::ptr::null_mut();
        let code = call(&mut err, || panic!("boom {}", 42));
        assert_eq!(code, IMGSVC_INTERNAL);
        assert!(!err.is_null());
        // SAFETY: err was just made by `call` and is freed once below.
        unsafe {
            assert_eq!(imgsvc_error_code(err), IMGSVC_INTERNAL);
            let msg = CStr::from_ptr(imgsvc_error_message(err)).to_str().unwrap().to_string();
            assert!(msg.contains("boom 42"), "{msg}");
            imgsvc_error_free(err);
        }
        // Without an error pointer the code still comes back.
        assert_eq!(call(std::ptr::null_mut(), || panic!("static str")), IMGSVC_INTERNAL);
        assert_eq!(guard(7, || panic!("in a free")), 7);
    }

    #[test]
    fn errors_keep_kind_and_message_and_success_leaves_err_alone() {
        let mut err: *mut imgsvc_error = std::ptr::null_mut();
        let code =
            call(&mut err, || Err(imgsvc_core::Error::new(imgsvc_core::ErrorKind::NotFound, "no such thing").into()));
        assert_eq!(code, IMGSVC_NOT_FOUND);
        // SAFETY: err was made by `call` and is freed once.
        unsafe {
            assert_eq!(CStr::from_ptr(imgsvc_error_message(err)).to_str().unwrap(), "no such thing");
            imgsvc_error_free(err);
        }
        let sentinel = 0x10 as *mut imgsvc_error;
        let mut err = sentinel;
        assert_eq!(call(&mut err, || Ok(())), IMGSVC_OK);
        assert_eq!(err, sentinel, "success must not touch *err");
    }

    #[test]
    fn strings_are_checked() {
        // SAFETY: every pointer below is NULL or a live NUL-terminated string.
        unsafe {
            let e = required_str(std::ptr::null(), "image").unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (IMGSVC_INVALID_ARGUMENT, "image is NULL"));
            assert_eq!(optional_str(std::ptr::null(), "filter").unwrap(), None);
            let bad = CString::new(vec![b'a', 0xff, 0xfe]).unwrap();
            let e = required_str(bad.as_ptr(), "image").unwrap_err();
            assert_eq!(e.code, IMGSVC_INVALID_ARGUMENT);
            assert!(e.message.starts_with("image is not valid UTF-8"), "{}", e.message);
            let good = CString::new("fixture/small:a").unwrap();
            assert_eq!(required_str(good.as_ptr(), "image").unwrap(), "fixture/small:a");
        }
        assert_eq!(Out::<u8>::new(std::ptr::null_mut(), "out").err().unwrap().code, IMGSVC_INVALID_ARGUMENT);
    }
}
