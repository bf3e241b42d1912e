//! rampart's dataplane: the per-packet path.
//!
//! Threads: one worker per queue ([`engine::Workers`]), pinned to its core,
//! runs [`engine::poll_loop`] over its AF_XDP sockets ([`xdp::Io`]) and
//! decides each burst with [`worker::Worker::process_batch`]; workers share
//! nothing but the snapshot (read through `arc-swap`) and, with several
//! queues, the hand-off mailboxes ([`handoff`]).
//!
//! Modules:
//! - [`classify`]: the multi-field classifier engine that decides first packets;
//! - [`snapshot`]: the immutable snapshot workers read lock-free, which the
//!   control side compiles from the model, in copy-on-write tables ([`cow`])
//!   so that a new snapshot shares what did not change with the last one;
//! - [`wire`], [`conntrack`], [`worker`], [`stats`], [`reason`]: zero-copy
//!   parsing, the per-core connection table, the batch pipeline, per-worker
//!   counters and drop reasons; [`hugepage`] backs the big tables;
//! - [`xdp`] and [`engine`]: AF_XDP sockets sharing a UMEM per worker, and the
//!   pinned poll-mode worker threads that run the pipeline between them;
//!   [`handoff`] passes a frame to the worker that owns its flow.
//!
//! What it must never do: allocate, lock, log or make a system call per packet;
//! know about HTTP, serde or files. The control crate is its only writer,
//! through one door: publishing a compiled snapshot.
//!
//! The security-group semantics it enforces exist as the reference evaluator in
//! `rampart_control::model::eval`; the snapshot is tested against it.

// `unsafe` is denied here except in the modules that cannot do without it
// (`hugepage`, `xdp`, the AVX-512 lookups in `classify::bitvec` and
// `classify::dtree`, and the prefetch hint in `conntrack::table`), each block
// with its safety argument.
#![deny(unsafe_code)]

pub mod classify;
pub mod conntrack;
pub mod cow;
pub mod engine;
pub mod handoff;
pub mod hugepage;
pub mod reason;
pub mod snapshot;
pub mod stats;
pub mod wire;
pub mod worker;
pub mod xdp;
