//! The owned error object a failed call hands back through `imgsvc_error **err`.

use crate::boundary::{guard, Failure};
use crate::{imgsvc_status, IMGSVC_OK};
use std::ffi::{c_char, CString};

/// Details of a failed call: its status code and a message for people.
///
/// Made by a failing function when its `err` argument is not NULL; owned by
/// the caller, who frees it with imgsvc_error_free(). Immutable, so it may be
/// read from several threads at once; free it once.
pub struct imgsvc_error {
    code: imgsvc_status,
    message: CString,
}

impl imgsvc_error {
    pub(crate) fn new_raw(failure: Failure) -> *mut imgsvc_error {
        // A message from outside (a registry's error text) could hold a NUL;
        // show it rather than cut the message short.
        let text = failure.message.replace('\0', "\\0");
        let message = CString::new(text).unwrap_or_default();
        Box::into_raw(Box::new(imgsvc_error { code: failure.code, message }))
    }
}

/// The status code of `err` (never IMGSVC_OK for an error a call made).
/// NULL gives IMGSVC_OK.
///
/// # Safety
/// `err` is NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_error_code(err: *const imgsvc_error) -> imgsvc_status {
    guard(IMGSVC_OK, || {
        // SAFETY: NULL or live, by the contract.
        unsafe { err.as_ref() }.map_or(IMGSVC_OK, |e| e.code)
    })
}

/// The message of `err`, UTF-8 and NUL-terminated. Borrowed: it lives as long
/// as `err` and must not be freed by the caller. NULL gives "".
///
/// # Safety
/// `err` is NULL or a live error from this library.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_error_message(err: *const imgsvc_error) -> *const c_char {
    let empty: *const c_char = c"".as_ptr();
    guard(empty, || {
        // SAFETY: NULL or live, by the contract.
        unsafe { err.as_ref() }.map_or(empty, |e| e.message.as_ptr())
    })
}

/// Free an error. NULL does nothing.
///
/// # Safety
/// `err` is NULL or an error from this library that was not freed before;
/// it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_error_free(err: *mut imgsvc_error) {
    guard((), || {
        if !err.is_null() {
            // SAFETY: made by Box::into_raw in new_raw and not freed before
            // (contract), so we own it again here.
            drop(unsafe { Box::from_raw(err) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn null_is_harmless_and_nul_bytes_survive() {
        // SAFETY: NULL is allowed everywhere here; `e` is live until freed.
        unsafe {
            assert_eq!(imgsvc_error_code(std::ptr::null()), IMGSVC_OK);
            assert_eq!(CStr::from_ptr(imgsvc_error_message(std::ptr::null())).to_bytes(), b"");
            imgsvc_error_free(std::ptr::null_mut());
            let e = imgsvc_error::new_raw(Failure::invalid("a\0b"));
            assert_eq!(CStr::from_ptr(imgsvc_error_message(e)).to_str().unwrap(), "a\\0b");
            imgsvc_error_free(e);
        }
    }
}
