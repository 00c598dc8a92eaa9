//! The unit tests' EAL (the integration tests run theirs in another
//! process): virtual memory only, no devices at start. Shared by every
//! unit test of this binary, since the EAL starts once per process.

use std::sync::OnceLock;

use super::{Eal, Mempool};

pub(crate) struct TestEal {
    pub eal: Eal,
    /// Shared by the tests that do not count what is in use.
    pub pool: Mempool,
    /// A pool of its own, for a test that counts what is in use (found
    /// when a fresh clone's test run failed: the test threads share
    /// `pool`, and another test's allocations moved the count).
    pub counted: Mempool,
}

pub(crate) fn get() -> &'static TestEal {
    static EAL: OnceLock<TestEal> = OnceLock::new();
    EAL.get_or_init(|| {
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "64",
            "--no-pci",
            "--no-shconf",
            "--log-level=lib.eal:warning",
            "--file-prefix=lbt-dataplane-unit",
            "--lcores",
            "0@0",
        ])
        .expect("EAL starts with --no-huge");
        let pool = Mempool::create(&eal, "unit_pool", 255, 2176).expect("mempool");
        let counted = Mempool::create(&eal, "unit_pool_counted", 63, 2176).expect("mempool");
        TestEal { eal, pool, counted }
    })
}
