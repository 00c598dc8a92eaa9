//! The control thread. It runs on the main lcore, never on a worker core,
//! and is the only place that changes what the workers see: it loads and
//! reloads the config, runs the health checks, and exports metrics.
#![deny(unsafe_code)]

pub mod announce;
pub mod ctl;
pub mod exporter;
pub mod health;
pub mod http;
pub mod notify;
pub mod status;
pub mod supervisor;
pub mod sync;

pub use supervisor::{run, RunError};
