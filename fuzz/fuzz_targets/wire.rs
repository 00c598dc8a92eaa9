//! The `wire` target: see `lb_fuzz_harness::Target::Wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lb_fuzz_harness::Target::Wire.fuzz(data);
});
