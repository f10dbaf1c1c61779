//! Crash points for tests that prove a write survives the process dying
//! midway. `LABELLOOP_FAILPOINT=<name>` makes the process abort (no unwinding,
//! no destructors, no commit: as `kill -9` would) when it reaches the point
//! of that name. Unset, a point costs one cached comparison.

use std::sync::OnceLock;

/// Abort the process here if `LABELLOOP_FAILPOINT` names this point.
pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("LABELLOOP_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}
