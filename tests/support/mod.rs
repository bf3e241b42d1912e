//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

/// A scratch directory for one test, removed when dropped, also when the
/// test fails.
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rampart-{tag}-"))
        .tempdir()
        .expect("a temporary directory")
}

pub mod api;
pub mod daemon;
pub mod etcd;
pub mod fixture;
pub mod netns;
pub mod prometheus;
pub mod random_model;
