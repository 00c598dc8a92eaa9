//! The `pipeline` target: see `lb_fuzz_harness::Target::Pipeline`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_fuzz_harness::Target::Pipeline.fuzz(data);
});
