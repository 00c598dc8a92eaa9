//! A worker's neighbor caches: one for ARP (IPv4) and one for neighbor
//! discovery (IPv6), the same code over the address type. Static
//! `[[neighbors]]` (in the snapshot) win; the rest are learned from ARP
//! and NDP traffic and shared with the other workers
//! through the worker's neighbor updates, since an ARP reply reaches only
//! one queue. Fixed size, no allocation after start.

use std::net::Ipv4Addr;

use crate::flow::FlowAddr;

use lb_config::MacAddr;

/// How long a learned entry is used before it is confirmed again (it keeps
/// being used while the new request is out).
pub const REFRESH_MS: u32 = 60_000;
/// How often an unresolved address is asked for.
pub const REQUEST_INTERVAL_MS: u32 = 1_000;

const SLOTS: usize = 4096;
const PROBE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Entry<A> {
    ip: A,
    mac: MacAddr,
    resolved: bool,
    learned_at: u32,
    requested_at: u32,
    used: bool,
}

/// Whether to send an ARP request for an address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(MacAddr),
    /// Known, but old: use it and ask again.
    Refresh(MacAddr),
    /// Unknown: hold or drop, and ask (if `ask`).
    Missing {
        ask: bool,
    },
}

#[derive(Debug)]
pub struct NeighborCache<A: FlowAddr = Ipv4Addr> {
    slots: Vec<Entry<A>>,
}

impl<A: FlowAddr> Default for NeighborCache<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: FlowAddr> NeighborCache<A> {
    pub fn new() -> NeighborCache<A> {
        NeighborCache {
            slots: vec![
                Entry {
                    ip: A::UNSPECIFIED,
                    mac: MacAddr::ZERO,
                    resolved: false,
                    learned_at: 0,
                    requested_at: 0,
                    used: false,
                };
                SLOTS
            ],
        }
    }

    #[inline]
    fn home(ip: A) -> usize {
        // IPv4: the address times a constant, as ever; IPv6 folds first.
        ((ip.fold() as u32).wrapping_mul(0x9e37_79b1) >> 20) as usize % SLOTS
    }

    fn find(&self, ip: A) -> Option<usize> {
        let h = Self::home(ip);
        (0..PROBE)
            .map(|i| (h + i) % SLOTS)
            .find(|&s| self.slots[s].used && self.slots[s].ip == ip)
    }

    /// A slot for `ip`: its own, a free one, or the stalest in its probe
    /// window (a full cache forgets rather than refuses).
    fn slot_for(&mut self, ip: A) -> usize {
        if let Some(s) = self.find(ip) {
            return s;
        }
        let h = Self::home(ip);
        let window = (0..PROBE).map(|i| (h + i) % SLOTS);
        if let Some(s) = window.clone().find(|&s| !self.slots[s].used) {
            return s;
        }
        window
            .min_by_key(|&s| self.slots[s].learned_at)
            .unwrap_or(h)
    }

    /// Looks `ip` up at time `now`, marking that a request is due when one
    /// should be sent.
    #[inline]
    pub fn lookup(&mut self, ip: A, now: u32) -> Lookup {
        match self.find(ip) {
            Some(s) => {
                let e = &mut self.slots[s];
                let due = now.wrapping_sub(e.requested_at) >= REQUEST_INTERVAL_MS;
                if e.resolved {
                    if now.wrapping_sub(e.learned_at) < REFRESH_MS || !due {
                        Lookup::Found(e.mac)
                    } else {
                        e.requested_at = now;
                        Lookup::Refresh(e.mac)
                    }
                } else {
                    if due {
                        e.requested_at = now;
                    }
                    Lookup::Missing { ask: due }
                }
            }
            None => {
                let s = self.slot_for(ip);
                self.slots[s] = Entry {
                    ip,
                    mac: MacAddr::ZERO,
                    resolved: false,
                    learned_at: now,
                    requested_at: now,
                    used: true,
                };
                Lookup::Missing { ask: true }
            }
        }
    }

    /// Records that `ip` is at `mac`. Returns whether that is news.
    pub fn learn(&mut self, ip: A, mac: MacAddr, now: u32) -> bool {
        let s = self.slot_for(ip);
        let e = &mut self.slots[s];
        let news = !(e.used && e.ip == ip && e.resolved && e.mac == mac);
        *e = Entry {
            ip,
            mac,
            resolved: true,
            learned_at: now,
            requested_at: if news {
                now.wrapping_sub(REQUEST_INTERVAL_MS)
            } else {
                e.requested_at
            },
            used: true,
        };
        news
    }

    /// The learned address of `ip`, if any, without side effects.
    pub fn get(&self, ip: A) -> Option<MacAddr> {
        self.find(ip)
            .and_then(|s| self.slots[s].resolved.then_some(self.slots[s].mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);

    #[test]
    fn unknown_addresses_are_asked_for_once_a_second() {
        let mut c = NeighborCache::new();
        assert_eq!(c.lookup(A, 0), Lookup::Missing { ask: true });
        assert_eq!(c.lookup(A, 10), Lookup::Missing { ask: false });
        assert_eq!(c.lookup(A, 1000), Lookup::Missing { ask: true });
        assert!(c.learn(A, MAC, 1100));
        assert!(!c.learn(A, MAC, 1200), "same answer is no news");
        assert_eq!(c.lookup(A, 1300), Lookup::Found(MAC));
        assert_eq!(c.lookup(A, 1200 + REFRESH_MS + 1), Lookup::Refresh(MAC));
        assert_eq!(c.lookup(A, 1200 + REFRESH_MS + 2), Lookup::Found(MAC));
        assert_eq!(c.get(A), Some(MAC));
    }

    #[test]
    fn a_full_window_forgets_the_stalest() {
        let mut c = NeighborCache::new();
        for i in 0..20_000u32 {
            c.learn(Ipv4Addr::from(0xc612_0000 + i), MAC, i);
        }
        assert_eq!(c.get(Ipv4Addr::from(0xc612_0000 + 19_999)), Some(MAC));
    }

    #[test]
    fn ipv6_neighbors_are_kept_apart_by_every_bit() {
        let mut c = NeighborCache::<std::net::Ipv6Addr>::new();
        let a: std::net::Ipv6Addr = "2001:2::11".parse().unwrap();
        let b: std::net::Ipv6Addr = "2001:2:0:1::11".parse().unwrap();
        assert_eq!(c.lookup(a, 0), Lookup::Missing { ask: true });
        assert!(c.learn(a, MAC, 10));
        assert_eq!(c.get(a), Some(MAC));
        assert_eq!(c.get(b), None);
        assert_eq!(c.lookup(a, 20), Lookup::Found(MAC));
    }
}
