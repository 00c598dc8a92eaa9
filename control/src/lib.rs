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

/// A unit test that cannot run here says why (`SKIPPED <test>: <why>` on
/// stderr, as the integration tests' `common::privileged` does), and fails
/// instead where LB_REQUIRE_PRIVILEGED_TESTS=1 (CI runs every test).
#[cfg(test)]
pub(crate) fn skip_test(test: &str, why: &str) {
    if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("{test}: cannot run ({why}) but LB_REQUIRE_PRIVILEGED_TESTS=1");
    }
    eprintln!("SKIPPED {test}: {why}");
}
