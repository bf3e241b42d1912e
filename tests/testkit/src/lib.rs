//! What the tests and benchmarks of rampart need and the appliance never runs.
//!
//! - [`gate`]: [`require_root!`], the one gate of tests that need root
//!   (namespaces, AF_XDP, nftables): skipped and counted as skipped on a
//!   developer's machine, a failure where `RAMPART_REQUIRE_ROOT=1` (CI).

pub mod gate;
