//! The gate of tests that need root.
//!
//! Without root a gated test returns at once and says so; `scripts/test.sh`
//! counts it as skipped, not passed (it gives the file named by
//! `RAMPART_SKIPPED_LOG`, where each skipped test appends its name). With
//! `RAMPART_REQUIRE_ROOT=1`, as `.ci/run` sets it, a test that cannot run
//! fails instead: where root is there, a test that cannot set up is broken.

use std::io::Write as _;

/// Returns from the calling test when it cannot run here (no root), after
/// recording the skip; panics instead when `RAMPART_REQUIRE_ROOT=1`.
/// The argument says what the test needs root for.
#[macro_export]
macro_rules! require_root {
    ($needs:expr) => {
        if $crate::gate::skip_without_root($needs) {
            return;
        }
    };
}

/// Whether the caller must skip: false as root; otherwise records the skip
/// and answers true, or panics when `RAMPART_REQUIRE_ROOT=1`.
pub fn skip_without_root(needs: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        std::env::var("RAMPART_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test} needs root ({needs}) and RAMPART_REQUIRE_ROOT=1 says this machine gives it: run it as root"
    );
    eprintln!("skipped: {test} needs root ({needs})");
    if let Some(log) = std::env::var_os("RAMPART_SKIPPED_LOG") {
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{test}"));
        if let Err(e) = recorded {
            eprintln!("could not record the skip in {}: {e}", log.to_string_lossy());
        }
    }
    true
}
