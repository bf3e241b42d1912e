//! rampart's bundled traffic generator and its benchmarks.
//!
//! Binaries: `rampart-gen` (`src/bin/rampart-gen.rs`, the AF_XDP traffic
//! generator: [`gen::run`]) and `rampart-bench` (`src/bin/rampart-bench.rs`,
//! one subcommand per module below). Every benchmark prints a table and, with
//! `--json`, one JSON object per result; a speed is always printed next to a
//! baseline measured in the same run.
//!
//! - [`gen`]: the generator itself: UDP, TCP SYN floods, complete TCP
//!   sessions, ICMP echo; v4/v6; paced or at full rate; loss, latency and
//!   expectations checked on what comes back.
//! - [`api`]: one-rule changes through the running daemon's REST API, call
//!   to enforced (`rampart-bench api`, root; needs the `rampart` binary).
//! - [`fleet`]: the same through a fleet sharing its model in etcd, answered
//!   when every node enforces it, beside one standalone appliance
//!   (`rampart-bench fleet`, root; needs `rampart` and etcd).
//! - [`classify`]: the classifier benchmark on ClassBench files, with a linear
//!   scan measured in the same run as the baseline (`rampart-bench classify`).
//! - [`pipeline`]: the per-packet path in memory: established-flow and
//!   new-flow rates against the parse-only ceiling (`rampart-bench pipeline`).
//! - [`e2e`]: the end-to-end benchmark: the same traffic from `rampart-gen`
//!   through a pass-through AF_XDP forwarder, rampart, and the kernel's bridge
//!   with the exported nftables ruleset (`rampart-bench e2e`, root).
//! - [`forward`]: end-to-end AF_XDP forwarding on veth in namespaces, rampart
//!   next to a pass-through forwarder measured in the same run
//!   (`rampart-bench forward`, root).
//! - [`netns`]: namespaces and veth pairs, shared by `forward` and the
//!   namespace tests.
//! - [`wakeup`]: the adaptive idle policy's wake-up latency, next to a busy
//!   worker in the same run (`rampart-bench wakeup`, root).
//! - [`update`]: how fast one rule change is compiled into the next snapshot,
//!   beside a full compilation (`rampart-bench update`).

#![forbid(unsafe_code)]

pub mod api;
pub mod classify;
pub mod e2e;
pub mod fleet;
pub mod forward;
pub mod gen;
pub mod netns;
pub mod pipeline;
pub mod update;
pub mod wakeup;
