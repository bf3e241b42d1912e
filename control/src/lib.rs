//! rampart's control side.
//!
//! It owns the security-group model ([`model`]), validates every change to it,
//! reads the declarative configuration file ([`config`]) and the appliance
//! [`settings`], and answers "would this packet pass, and why?" with the reference
//! evaluator ([`model::eval`], surfaced by `rampart explain` through [`explain`]).
//!
//! Later issues add the snapshot compiler (the one door into the dataplane), the
//! REST API, persistence and metrics here. The dataplane never sees the model, only
//! compiled snapshots; nothing in this crate runs per packet.

#![forbid(unsafe_code)]

pub mod api;
pub mod appliance;
pub mod apply;
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
pub mod wake;
