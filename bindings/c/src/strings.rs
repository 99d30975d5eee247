//! Strings handed to the caller. They are allocated with malloc(3) so that a
//! caller who edits one in place (shortening it with a NUL, say) can still
//! free it safely; imgsvc_string_free() is the documented way.

use crate::boundary::{guard, Failure};
use std::ffi::c_char;

/// Copy `s` into a new malloc'd, NUL-terminated string owned by the caller.
pub(crate) fn to_c_string(s: &str) -> Result<*mut c_char, Failure> {
    if s.as_bytes().contains(&0) {
        return Err(Failure::internal("a result string contains a NUL byte"));
    }
    // SAFETY: malloc has no preconditions; the result is checked for NULL.
    let ptr = unsafe { libc::malloc(s.len() + 1) }.cast::<u8>();
    if ptr.is_null() {
        return Err(Failure::internal("out of memory"));
    }
    // SAFETY: `ptr` has room for len + 1 bytes and does not overlap `s`.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr, s.len());
        *ptr.add(s.len()) = 0;
    }
    Ok(ptr.cast())
}

/// Free a string this library handed out (JSON results, image ids). NULL
/// does nothing.
///
/// # Safety
/// `s` is NULL or a string from this library that was not freed before.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_string_free(s: *mut c_char) {
    guard((), || {
        // SAFETY: NULL, or allocated by malloc in to_c_string and not freed
        // before (contract); free(NULL) does nothing.
        unsafe { libc::free(s.cast()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn round_trip() {
        let p = to_c_string("{\"images\":[]}").unwrap();
        // SAFETY: p is a live string from to_c_string, freed once.
        unsafe {
            assert_eq!(CStr::from_ptr(p).to_str().unwrap(), "{\"images\":[]}");
            imgsvc_string_free(p);
            imgsvc_string_free(std::ptr::null_mut());
        }
        assert!(to_c_string("a\0b").is_err());
    }
}
