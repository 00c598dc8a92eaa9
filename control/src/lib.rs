//! The control thread. It runs on the main lcore, never on a worker core,
//! and is the only place that changes what the workers see: it loads the
//! config, starts the dataplane, and watches for signals.
#![deny(unsafe_code)]

pub mod supervisor;

pub use supervisor::{run, RunError};
