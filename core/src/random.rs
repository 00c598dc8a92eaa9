//! Secret random numbers: the keys of the flow index's hash, the SYN
//! cookies, the neighbor caches' slot hash and the worker that owns a
//! client. They come from the kernel's random source (`getrandom(2)`),
//! which is what it is for; the standard library's `RandomState`, used
//! before, is seeded from it too, but promises nothing about its keys.

use std::hash::BuildHasher;

/// 64 random bits from the kernel, never waiting for it. Should
/// `getrandom(2)` fail (a kernel older than 3.17, a seccomp filter) or
/// have no entropy yet (early boot on an old kernel: found in review, a
/// blocking call could stall the start), the standard library's
/// per-process random keys are used instead: they come from the same
/// source through its own fallbacks, so the key is still not predictable.
pub fn secret_u64() -> u64 {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::NONBLOCK) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return fallback(),
        }
    }
    u64::from_ne_bytes(buf)
}

#[cold]
fn fallback() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x6c62_2d73_6563_7265_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        // 2^-64 of a false failure per pair.
        let a = secret_u64();
        let b = secret_u64();
        let c = secret_u64();
        assert!(a != b && b != c && a != c, "{a:x} {b:x} {c:x}");
    }

    #[test]
    fn fallback_is_random_too() {
        assert_ne!(fallback(), fallback());
    }
}
