//! Interface addresses with a prefix length (`198.18.0.2/24`,
//! `2001:2::2/64`): the host address is kept, the connected network is
//! derived from it. One type per family, with the same API, so that a value
//! says which family it is without a match at every use.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 address together with the prefix length of its connected network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address itself (host bits are kept).
    pub address: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Builds a CIDR; `None` when `prefix_len > 32`.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Ipv4Cidr {
            address,
            prefix_len,
        })
    }

    fn mask_bits(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n if n >= 32 => u32::MAX,
            n => u32::MAX << (32 - u32::from(n)),
        }
    }

    /// The netmask, e.g. `255.255.255.0` for `/24`.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask_bits())
    }

    /// The directed broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask_bits())
    }

    /// The network in `network/len` form, e.g. `198.18.0.0/24`.
    pub fn network_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            address: self.network(),
            prefix_len: self.prefix_len,
        }
    }

    /// True when `addr` lies in this connected network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask_bits() == u32::from(self.network())
    }

    /// True when `addr` is this network's network or broadcast address,
    /// which names no host (a /31's two and a /32's one are hosts, RFC
    /// 3021).
    pub fn is_network_end(&self, addr: Ipv4Addr) -> bool {
        self.prefix_len < 31 && (addr == self.network() || addr == self.broadcast())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid address {s:?}: expected a.b.c.d/len (e.g. 198.18.0.2/24)");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(address, prefix_len)
            .ok_or_else(|| format!("invalid address {s:?}: prefix length must be at most 32"))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// An IPv6 address together with the prefix length of its connected network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The address itself (host bits are kept).
    pub address: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    /// Builds a CIDR; `None` when `prefix_len > 128`.
    pub fn new(address: Ipv6Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 128).then_some(Ipv6Cidr {
            address,
            prefix_len,
        })
    }

    fn mask_bits(&self) -> u128 {
        match self.prefix_len {
            0 => 0,
            n if n >= 128 => u128::MAX,
            n => u128::MAX << (128 - u32::from(n)),
        }
    }

    /// The netmask, e.g. `ffff:ffff:ffff:ffff::` for `/64`.
    pub fn netmask(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.mask_bits())
    }

    /// The network address (host bits cleared); for a prefix of 126 or
    /// less also the subnet-router anycast address (RFC 4291, 2.6.1).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.address) & self.mask_bits())
    }

    /// The network in `network/len` form, e.g. `2001:2::/64`.
    pub fn network_cidr(&self) -> Ipv6Cidr {
        Ipv6Cidr {
            address: self.network(),
            prefix_len: self.prefix_len,
        }
    }

    /// True when `addr` lies in this connected network.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & self.mask_bits() == u128::from(self.network())
    }

    /// True when `addr` is this network's subnet-router anycast address
    /// (the prefix with zero host bits; a /127's and /128's are hosts).
    pub fn is_subnet_router(&self, addr: Ipv6Addr) -> bool {
        self.prefix_len < 127 && addr == self.network()
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid address {s:?}: expected an IPv6 address/len (e.g. 2001:2::2/64)");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let address: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        Ipv6Cidr::new(address, prefix_len)
            .ok_or_else(|| format!("invalid address {s:?}: prefix length must be at most 128"))
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_math() {
        let c: Ipv4Cidr = "198.18.0.2/24".parse().unwrap();
        assert_eq!(c.address, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.network(), Ipv4Addr::new(198, 18, 0, 0));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.to_string(), "198.18.0.2/24");
        assert_eq!(c.network_cidr().to_string(), "198.18.0.0/24");
    }

    #[test]
    fn edge_prefixes() {
        let all: Ipv4Cidr = "10.0.0.1/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let host: Ipv4Cidr = "10.0.0.1/32".parse().unwrap();
        assert_eq!(host.netmask(), Ipv4Addr::BROADCAST);
        assert!(host.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!host.contains(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn rejects_bad_forms() {
        for s in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0/24",
            "10.0.0.1/+4",
            "x/24",
        ] {
            assert!(s.parse::<Ipv4Cidr>().is_err(), "{s}");
        }
    }

    #[test]
    fn v6_parse_and_math() {
        let c: Ipv6Cidr = "2001:2::2/64".parse().unwrap();
        assert_eq!(c.address, Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2));
        assert_eq!(c.prefix_len, 64);
        assert_eq!(c.network(), Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0));
        assert_eq!(
            c.netmask(),
            Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0, 0, 0, 0)
        );
        assert!(c.contains("2001:2::ffff:1".parse().unwrap()));
        assert!(!c.contains("2001:2:0:1::1".parse().unwrap()));
        assert_eq!(c.to_string(), "2001:2::2/64");
        assert_eq!(c.network_cidr().to_string(), "2001:2::/64");
        // An odd prefix cuts inside a group.
        let c: Ipv6Cidr = "2001:2::2/63".parse().unwrap();
        assert!(c.contains("2001:2:0:1::9".parse().unwrap()));
        assert!(!c.contains("2001:2:0:2::9".parse().unwrap()));
    }

    #[test]
    fn v6_edge_prefixes() {
        let all: Ipv6Cidr = "2001:2::1/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv6Addr::UNSPECIFIED);
        assert!(all.contains(Ipv6Addr::LOCALHOST));
        let host: Ipv6Cidr = "2001:2::1/128".parse().unwrap();
        assert_eq!(host.netmask(), Ipv6Addr::from(u128::MAX));
        assert!(host.contains("2001:2::1".parse().unwrap()));
        assert!(!host.contains("2001:2::2".parse().unwrap()));
        assert_eq!(Ipv6Cidr::new(Ipv6Addr::LOCALHOST, 129), None);
    }

    #[test]
    fn v6_rejects_bad_forms() {
        for s in [
            "2001:2::1",
            "2001:2::1/129",
            "2001:2::1/",
            "2001:2::1/0128",
            "2001:2::1/+4",
            "2001:2:::1/64",
            "198.18.0.2/24",
            "[2001:2::1]/64",
            "x/64",
        ] {
            assert!(s.parse::<Ipv6Cidr>().is_err(), "{s}");
        }
        assert!("2001:2::1/129"
            .parse::<Ipv6Cidr>()
            .unwrap_err()
            .contains("at most 128"));
    }
}
