//! The `sync` target: see `lb_fuzz_harness::Target::Sync`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_fuzz_harness::Target::Sync.fuzz(data);
});
