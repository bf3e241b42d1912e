//! rampart's bundled traffic generator and its benchmarks.
//!
//! Planned (see the issue tracker): the classifier benchmark on ClassBench files
//! against DPDK's rte_acl (issue 3), the in-memory pipeline benchmark (issue 4), and
//! `rampart-gen`, the AF_XDP traffic generator with the end-to-end comparison
//! against the kernel's nftables (issue 7). Every benchmark prints a table and, with
//! `--json`, one JSON object per result, with a baseline measured in the same run.
//!
//! Nothing is implemented here yet.

#![forbid(unsafe_code)]
