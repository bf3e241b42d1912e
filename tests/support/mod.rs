//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod api;
pub mod daemon;
pub mod netns;
pub mod prometheus;
pub mod random_model;
