//! rampart's control side: everything but the per-packet path. Nothing here
//! runs per packet; the dataplane sees only compiled snapshots.
//!
//! Threads of `rampart run` ([`daemon::run`]): the main thread sets up and
//! waits; the control thread serves the API ([`api::serve`]) and owns the
//! model behind [`apply::Control`]; one worker thread per queue
//! (`rampart_dataplane::engine::Workers`).
//!
//! Modules, by what they do:
//! - the model: [`model`] (objects, validation, the reference evaluator
//!   [`model::eval`]), [`config`] (the TOML file), [`settings`] and
//!   [`appliance`] (its other tables);
//! - the way in: [`apply`] (validate, save, compile, publish, wait for
//!   enforcement: the one door into the dataplane), [`compile`] (model to
//!   snapshot, incrementally), [`state`] (the crash-safe state directory),
//!   [`store`] (a fleet's model in etcd, named by [`cluster`]'s table);
//! - the front doors: [`api`] (REST, its contract in [`api::types`]),
//!   [`ctl`] (`rampart ctl`), [`daemon`] (`rampart run`);
//! - answers without a running appliance: [`explain`] (`rampart explain`),
//!   [`replay`] (`rampart replay`, a capture through the pipeline),
//!   [`export`] (`rampart export nftables`);
//! - [`metrics`] (Prometheus) and [`wake`] (the CPU latency request).
//!
//! Entry points: `src/main.rs` parses the command line and calls
//! [`daemon::run`], [`ctl::run`], [`explain::explain`], [`replay::replay`],
//! [`export::nftables`] or [`config::Config::load`] (`validate`).

#![forbid(unsafe_code)]

pub mod api;
pub mod appliance;
pub mod apply;
pub mod cluster;
pub mod compile;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod explain;
pub mod export;
pub mod metrics;
pub mod model;
pub mod replay;
pub mod settings;
pub mod state;
pub mod store;
pub mod wake;
