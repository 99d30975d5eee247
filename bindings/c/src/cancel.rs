//! The cancel token: lets another thread stop a pull.

use crate::boundary::guard;
use imgsvc_core::CancelToken;

/// Stops the pulls it is given to, from any thread.
///
/// Made by imgsvc_cancel_token_new(), owned by the caller, freed with
/// imgsvc_cancel_token_free() once no call that was given it is still
/// running. Thread-safe: imgsvc_cancel_token_cancel() and
/// imgsvc_cancel_token_is_cancelled() may be called from any thread at any
/// time, also while a pull uses the token. Once cancelled it stays
/// cancelled: use a new token for the next pull.
pub struct imgsvc_cancel_token {
    pub(crate) token: CancelToken,
}

/// A new, not yet cancelled token. NULL only if memory ran out.
#[no_mangle]
pub extern "C" fn imgsvc_cancel_token_new() -> *mut imgsvc_cancel_token {
    guard(std::ptr::null_mut(), || Box::into_raw(Box::new(imgsvc_cancel_token { token: CancelToken::new() })))
}

/// Cancel: every pull given this token stops promptly with IMGSVC_CANCELLED,
/// even one waiting for a registry that sends nothing. Safe from any thread,
/// any number of times. NULL does nothing. Not async-signal-safe: do not call
/// it from a signal handler (use a thread that waits for the signal).
///
/// # Safety
/// `token` is NULL or a live token from imgsvc_cancel_token_new().
#[no_mangle]
pub unsafe extern "C" fn imgsvc_cancel_token_cancel(token: *const imgsvc_cancel_token) {
    guard((), || {
        // SAFETY: NULL or live, by the contract.
        if let Some(t) = unsafe { token.as_ref() } {
            t.token.cancel();
        }
    })
}

/// Whether the token was cancelled. NULL gives false.
///
/// # Safety
/// `token` is NULL or a live token from imgsvc_cancel_token_new().
#[no_mangle]
pub unsafe extern "C" fn imgsvc_cancel_token_is_cancelled(token: *const imgsvc_cancel_token) -> bool {
    guard(false, || {
        // SAFETY: NULL or live, by the contract.
        unsafe { token.as_ref() }.is_some_and(|t| t.token.is_cancelled())
    })
}

/// Free a token. NULL does nothing.
///
/// # Safety
/// `token` is NULL or a token from imgsvc_cancel_token_new() that was not
/// freed before and that no running call still uses.
#[no_mangle]
pub unsafe extern "C" fn imgsvc_cancel_token_free(token: *mut imgsvc_cancel_token) {
    guard((), || {
        if !token.is_null() {
            // SAFETY: made by Box::into_raw in imgsvc_cancel_token_new and
            // not freed before, by the contract.
            drop(unsafe { Box::from_raw(token) });
        }
    })
}
