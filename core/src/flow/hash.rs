//! Hashes of flow keys. Fixed constants, no per-process seed: the Maglev
//! choice for a flow must be the same after a restart and on another box.

use std::net::Ipv4Addr;

/// A strong 64-bit mixer (the splitmix64 finaliser).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of a client-side 5-tuple: what the flow table and the
/// schedulers key on.
#[inline]
pub fn flow_hash(
    proto: u8,
    client: Ipv4Addr,
    client_port: u16,
    vip: Ipv4Addr,
    vip_port: u16,
) -> u64 {
    let a = (u64::from(u32::from(client)) << 32) | u64::from(u32::from(vip));
    let b = (u64::from(client_port) << 24) | (u64::from(vip_port) << 8) | u64::from(proto);
    mix64(a ^ mix64(b ^ 0x9e37_79b9_7f4a_7c15))
}

/// The hash of a NAT reply's key (real endpoint and client endpoint).
#[inline]
pub fn reply_hash(
    proto: u8,
    real: Ipv4Addr,
    real_port: u16,
    client: Ipv4Addr,
    client_port: u16,
) -> u64 {
    // A different domain from flow_hash so that the two keys of one flow do
    // not collide by construction.
    let a = (u64::from(u32::from(real)) << 32) | u64::from(u32::from(client));
    let b = (u64::from(real_port) << 24) | (u64::from(client_port) << 8) | u64::from(proto);
    mix64(a ^ mix64(b ^ 0xd6e8_feb8_6659_fd93))
}

/// The hash of a client address alone (source hashing, persistence).
#[inline]
pub fn source_hash(client: Ipv4Addr) -> u64 {
    mix64(u64::from(u32::from(client)) ^ 0x2545_f491_4f6c_dd1d)
}

/// The worker that owns every flow of `client`: both directions of a NAT
/// flow carry the client address, so each can be steered to its owner, and
/// all flows of one client (persistence) share one worker.
#[inline]
pub fn owner_of(client: Ipv4Addr, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    ((source_hash(client) >> 32) as usize) % workers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_across_runs() {
        // Pinned values: changing them moves every Maglev flow on upgrade.
        let h = flow_hash(
            6,
            Ipv4Addr::new(198, 19, 0, 10),
            40000,
            Ipv4Addr::new(198, 18, 1, 100),
            80,
        );
        assert_eq!(
            h,
            flow_hash(
                6,
                Ipv4Addr::new(198, 19, 0, 10),
                40000,
                Ipv4Addr::new(198, 18, 1, 100),
                80
            )
        );
        assert_ne!(
            h,
            flow_hash(
                17,
                Ipv4Addr::new(198, 19, 0, 10),
                40000,
                Ipv4Addr::new(198, 18, 1, 100),
                80
            )
        );
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
    }

    #[test]
    fn owners_spread_over_workers() {
        let mut count = [0usize; 4];
        for i in 0..40_000u32 {
            count[owner_of(Ipv4Addr::from(0xc612_0000 + i), 4)] += 1;
        }
        for c in count {
            assert!((9_000..11_000).contains(&c), "{count:?}");
        }
        assert_eq!(owner_of(Ipv4Addr::new(1, 2, 3, 4), 1), 0);
    }
}
