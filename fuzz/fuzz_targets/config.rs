//! The `config` target: see `lb_fuzz_harness::Target::Config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_fuzz_harness::Target::Config.fuzz(data);
});
