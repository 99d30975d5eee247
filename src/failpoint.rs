//! Test-only failpoints: with `IMGSVC_FAILPOINT=<name>` in the environment the
//! process aborts (no destructors, no cleanup, like SIGKILL) when it reaches
//! that point, so crash tests can hit moments a timed kill cannot. Unset, a
//! failpoint costs one load of a cached value.

use std::sync::OnceLock;

pub(crate) fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("IMGSVC_FAILPOINT").ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(name) {
        eprintln!("imgsvc: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
