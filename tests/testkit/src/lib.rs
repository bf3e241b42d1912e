//! What the tests and benchmarks of rampart need and the appliance never runs.
//!
//! - [`gate`]: [`require_root!`], the one gate of tests that need root
//!   (namespaces, AF_XDP, nftables): skipped and counted as skipped on a
//!   developer's machine, a failure where `RAMPART_REQUIRE_ROOT=1` (CI);
//! - [`frames`]: well-formed frames from a [`frames::Spec`] (checksums
//!   filled in), their fragments, ARP requests; the traffic generator sends
//!   them too;
//! - [`classbench`]: ClassBench rule sets and traces as classifier rules and
//!   keys;
//! - [`stages`]: forwarding stages without the pipeline, the I/O ceilings of
//!   the forwarding benchmarks.

pub mod classbench;
pub mod frames;
pub mod gate;
pub mod stages;
