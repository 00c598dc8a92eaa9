//! Neighbor Discovery (RFC 4861) Neighbor Solicitation and Advertisement: a zero-copy
//! [`NeighborPacket`] view, the [`NdpOptions`] iterator, an owned [`NdpRepr`], the
//! receive checks of RFC 4861 §7.1.1/§7.1.2, and the multicast addresses NDP uses.
//!
//! NDP is IPv6's ARP: the appliance answers solicitations for its VIPs and own
//! addresses and solicits its next hops and reals. The view covers the whole ICMPv6
//! message (type 135 or 136; both have the same layout). Only the source and target
//! link-layer address options are interpreted, for Ethernet (6-byte addresses); other
//! options are skipped, as RFC 4861 §4.6 asks.

use core::fmt;
use core::ops::{BitOr, Range, RangeFrom};
use std::net::Ipv6Addr;

use super::ethernet::{mac_from_bytes, MacAddr};
use super::icmpv6::{Icmpv6Packet, Icmpv6Type};
use super::ipv6::addr_from_bytes;
use super::{write_u32, Error, Result};

/// The hop limit of every NDP message, sent and accepted: 255 proves the sender is on
/// the link (no router decremented it).
pub const HOP_LIMIT: u8 = 255;

/// Option type: source link-layer address.
pub const OPT_SOURCE_LINK_ADDR: u8 = 1;
/// Option type: target link-layer address.
pub const OPT_TARGET_LINK_ADDR: u8 = 2;

/// Length of a link-layer address option for Ethernet: type, length (1), 6-byte MAC.
pub const LINK_ADDR_OPT_LEN: usize = 8;

/// The flags of a Neighbor Advertisement: the top three bits of byte 4 (the rest of
/// the 32-bit word is reserved). A Neighbor Solicitation has none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NeighborFlags(pub u8);

impl NeighborFlags {
    /// R: the sender is a router.
    pub const ROUTER: NeighborFlags = NeighborFlags(0x80);
    /// S: the advertisement answers a solicitation.
    pub const SOLICITED: NeighborFlags = NeighborFlags(0x40);
    /// O: the advertisement overrides a cached link-layer address.
    pub const OVERRIDE: NeighborFlags = NeighborFlags(0x20);

    const MASK: u8 = 0xe0;

    /// No flags.
    pub const fn empty() -> NeighborFlags {
        NeighborFlags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: NeighborFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for NeighborFlags {
    type Output = NeighborFlags;
    fn bitor(self, rhs: NeighborFlags) -> NeighborFlags {
        NeighborFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for NeighborFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::ROUTER, "R"),
            (Self::SOLICITED, "S"),
            (Self::OVERRIDE, "O"),
        ];
        f.write_str("NeighborFlags(")?;
        for (flag, name) in names {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

mod field {
    use super::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const FLAGS: usize = 4;
    pub const RESERVED: Range<usize> = 4..8;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: RangeFrom<usize> = 24..;
}

/// Length of a Neighbor Solicitation or Advertisement without options.
pub const HEADER_LEN: usize = field::OPTIONS.start;

/// A read/write view of a Neighbor Solicitation or Advertisement (the whole ICMPv6
/// message). Type, code and checksum are the ICMPv6 ones; [`as_icmpv6`](Self::as_icmpv6)
/// gives the plain ICMPv6 view of the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NeighborPacket<T> {
    /// Wraps `buffer` without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> NeighborPacket<T> {
        NeighborPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<NeighborPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than 24 bytes (the RFC 4861 minimum
    /// ICMP length of both messages). The type is not looked at.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The ICMPv6 view of the same bytes.
    #[inline]
    pub fn as_icmpv6(&self) -> Icmpv6Packet<&[u8]> {
        Icmpv6Packet::new_unchecked(self.buffer.as_ref())
    }

    /// Message type (135 or 136 for a real NDP neighbor message).
    #[inline]
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code (0).
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.as_icmpv6().checksum()
    }

    /// Flags (meaningful in an advertisement; reserved in a solicitation).
    #[inline]
    pub fn flags(&self) -> NeighborFlags {
        NeighborFlags(self.buffer.as_ref()[field::FLAGS] & NeighborFlags::MASK)
    }

    /// Target address.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        addr_from_bytes(&self.buffer.as_ref()[field::TARGET])
    }

    /// The option bytes after the target address.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS]
    }

    /// The options, one by one.
    #[inline]
    pub fn option_iter(&self) -> NdpOptions<'_> {
        NdpOptions::new(self.options())
    }

    /// Whether the ICMPv6 checksum (with the IPv6 pseudo header) is correct. The buffer
    /// must be exactly the message.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.as_icmpv6().verify_checksum(src, dst)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NeighborPacket<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        Icmpv6Packet::new_unchecked(self.buffer.as_mut()).set_checksum(value);
    }

    /// Sets the flags and clears the reserved bits after them.
    #[inline]
    pub fn set_flags(&mut self, value: NeighborFlags) {
        write_u32(
            self.buffer.as_mut(),
            field::RESERVED.start,
            u32::from(value.0 & NeighborFlags::MASK) << 24,
        );
    }

    /// Sets the target address.
    #[inline]
    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&value.octets());
    }

    /// Mutable option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::OPTIONS]
    }

    /// Computes and writes the ICMPv6 checksum over the whole buffer, which must be
    /// exactly the message.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        Icmpv6Packet::new_unchecked(self.buffer.as_mut()).fill_checksum(src, dst);
    }
}

/// One NDP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpOption<'a> {
    /// Source link-layer address (type 1).
    SourceLinkAddr(MacAddr),
    /// Target link-layer address (type 2).
    TargetLinkAddr(MacAddr),
    /// Any other option: its type and its bytes after the type and length.
    Other {
        /// Option type.
        kind: u8,
        /// Option bytes after the 2-byte type and length.
        data: &'a [u8],
    },
}

/// The options of an NDP message, in order. An option with length 0 is `Malformed`
/// (RFC 4861 §4.6: it would make the walk loop forever), one that runs past the end is
/// `Truncated`, and a link-layer address option not 8 bytes long (not Ethernet) is
/// `Malformed`; after an error the iterator ends. Each step is constant time and the
/// walk ends after at most `len / 8 + 1` items.
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// The options in `data` (the bytes after the fixed part of an NDP message).
    pub fn new(data: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: data }
    }

    fn next_option(&mut self) -> Result<NdpOption<'a>> {
        let [kind, units, ..] = *self.rest else {
            return Err(Error::Truncated);
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Err(Error::Malformed);
        }
        let Some(option) = self.rest.get(..len) else {
            return Err(Error::Truncated);
        };
        self.rest = &self.rest[len..];
        let data = &option[2..];
        match kind {
            OPT_SOURCE_LINK_ADDR | OPT_TARGET_LINK_ADDR if len != LINK_ADDR_OPT_LEN => {
                Err(Error::Malformed)
            }
            OPT_SOURCE_LINK_ADDR => Ok(NdpOption::SourceLinkAddr(mac_from_bytes(data))),
            OPT_TARGET_LINK_ADDR => Ok(NdpOption::TargetLinkAddr(mac_from_bytes(data))),
            kind => Ok(NdpOption::Other { kind, data }),
        }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_option();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl core::iter::FusedIterator for NdpOptions<'_> {}

/// An owned Neighbor Solicitation or Advertisement with at most its link-layer address
/// option. Parsing checks the type and the options (not the code, the checksum or the
/// IPv6 fields: see [`validate_solicit`] and [`validate_advert`]) and ignores options
/// other than the one link-layer address option each message may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpRepr {
    /// Neighbor Solicitation (135).
    NeighborSolicit {
        /// The address whose link-layer address is asked for.
        target: Ipv6Addr,
        /// The sender's link-layer address (none in duplicate address detection).
        source_lladdr: Option<MacAddr>,
    },
    /// Neighbor Advertisement (136).
    NeighborAdvert {
        /// Router, Solicited and Override.
        flags: NeighborFlags,
        /// The address advertised.
        target: Ipv6Addr,
        /// Its link-layer address.
        target_lladdr: Option<MacAddr>,
    },
}

impl NdpRepr {
    /// Reads a Neighbor Solicitation or Advertisement: `Malformed` for another type or
    /// a bad option, `Truncated` for an option past the end.
    pub fn parse<T: AsRef<[u8]>>(packet: &NeighborPacket<T>) -> Result<NdpRepr> {
        packet.check_len()?;
        let target = packet.target_addr();
        let mut source_lladdr = None;
        let mut target_lladdr = None;
        for option in packet.option_iter() {
            match option? {
                NdpOption::SourceLinkAddr(mac) => source_lladdr = Some(mac),
                NdpOption::TargetLinkAddr(mac) => target_lladdr = Some(mac),
                NdpOption::Other { .. } => {}
            }
        }
        match packet.msg_type() {
            Icmpv6Type::NeighborSolicit => Ok(NdpRepr::NeighborSolicit {
                target,
                source_lladdr,
            }),
            Icmpv6Type::NeighborAdvert => Ok(NdpRepr::NeighborAdvert {
                flags: packet.flags(),
                target,
                target_lladdr,
            }),
            _ => Err(Error::Malformed),
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> Icmpv6Type {
        match self {
            NdpRepr::NeighborSolicit { .. } => Icmpv6Type::NeighborSolicit,
            NdpRepr::NeighborAdvert { .. } => Icmpv6Type::NeighborAdvert,
        }
    }

    /// The link-layer address option to emit, with its type.
    fn lladdr_option(&self) -> Option<(u8, MacAddr)> {
        match *self {
            NdpRepr::NeighborSolicit { source_lladdr, .. } => {
                source_lladdr.map(|m| (OPT_SOURCE_LINK_ADDR, m))
            }
            NdpRepr::NeighborAdvert { target_lladdr, .. } => {
                target_lladdr.map(|m| (OPT_TARGET_LINK_ADDR, m))
            }
        }
    }

    /// Length of the emitted message: 24, or 32 with a link-layer address option.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.lladdr_option().map_or(0, |_| LINK_ADDR_OPT_LEN)
    }

    /// Writes the message into the first [`buffer_len`](Self::buffer_len) bytes of the
    /// packet's buffer, checksummed for `src` -> `dst` (send it with hop limit
    /// [`HOP_LIMIT`]); bytes after those are left alone and not checksummed.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        packet: &mut NeighborPacket<T>,
    ) {
        let len = self.buffer_len();
        let mut p = NeighborPacket::new_unchecked(&mut packet.buffer.as_mut()[..len]);
        p.set_msg_type(self.msg_type());
        p.set_code(0);
        match *self {
            NdpRepr::NeighborSolicit { target, .. } => {
                p.set_flags(NeighborFlags::empty());
                p.set_target_addr(target);
            }
            NdpRepr::NeighborAdvert { flags, target, .. } => {
                p.set_flags(flags);
                p.set_target_addr(target);
            }
        }
        if let Some((kind, mac)) = self.lladdr_option() {
            let o = p.options_mut();
            o[0] = kind;
            o[1] = (LINK_ADDR_OPT_LEN / 8) as u8;
            o[2..LINK_ADDR_OPT_LEN].copy_from_slice(&mac.0);
        }
        p.fill_checksum(src, dst);
    }
}

/// Why a received Neighbor Solicitation or Advertisement must be dropped (RFC 4861
/// §7.1.1, §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpInvalid {
    /// The message is not of the type validated.
    Type,
    /// The IPv6 hop limit is not 255: it may come from off the link.
    HopLimit,
    /// The ICMPv6 code is not 0.
    Code,
    /// The ICMPv6 checksum is wrong.
    Checksum,
    /// The target address is multicast.
    TargetMulticast,
    /// An option has length 0, runs past the end, or is a link-layer address option of
    /// the wrong length.
    Option,
    /// Duplicate address detection (unspecified source) with a source link-layer
    /// address option.
    DadWithSourceLinkAddr,
    /// Duplicate address detection not sent to a solicited-node multicast address.
    DadNotToSolicitedNode,
    /// An advertisement sent to a multicast address with the Solicited flag.
    SolicitedToMulticast,
}

impl fmt::Display for NdpInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NdpInvalid::Type => "not the NDP message type expected",
            NdpInvalid::HopLimit => "NDP hop limit is not 255",
            NdpInvalid::Code => "NDP code is not 0",
            NdpInvalid::Checksum => "bad ICMPv6 checksum",
            NdpInvalid::TargetMulticast => "NDP target is a multicast address",
            NdpInvalid::Option => "malformed NDP option",
            NdpInvalid::DadWithSourceLinkAddr => {
                "duplicate address detection with a source link-layer address"
            }
            NdpInvalid::DadNotToSolicitedNode => {
                "duplicate address detection not sent to a solicited-node address"
            }
            NdpInvalid::SolicitedToMulticast => "solicited advertisement to a multicast address",
        })
    }
}

impl std::error::Error for NdpInvalid {}

/// The checks both messages share: type, hop limit, checksum, code, target and
/// options (RFC 4861 §7.1.1 and §7.1.2, in that order).
fn validate_common<T: AsRef<[u8]>>(
    expected: Icmpv6Type,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    packet: &NeighborPacket<T>,
) -> core::result::Result<(), NdpInvalid> {
    if packet.msg_type() != expected {
        return Err(NdpInvalid::Type);
    }
    if hop_limit != HOP_LIMIT {
        return Err(NdpInvalid::HopLimit);
    }
    if !packet.verify_checksum(src, dst) {
        return Err(NdpInvalid::Checksum);
    }
    if packet.code() != 0 {
        return Err(NdpInvalid::Code);
    }
    if packet.target_addr().is_multicast() {
        return Err(NdpInvalid::TargetMulticast);
    }
    if packet.option_iter().any(|o| o.is_err()) {
        return Err(NdpInvalid::Option);
    }
    Ok(())
}

/// The receive checks of a Neighbor Solicitation (RFC 4861 §7.1.1), given the IPv6
/// source, destination and hop limit it came with and the message (exactly the IPv6
/// upper-layer payload; the 24-byte minimum is the view's `check_len`). Duplicate
/// address detection (unspecified source) must go to a solicited-node multicast
/// address and carry no source link-layer address option.
pub fn validate_solicit<T: AsRef<[u8]>>(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    packet: &NeighborPacket<T>,
) -> core::result::Result<(), NdpInvalid> {
    validate_common(Icmpv6Type::NeighborSolicit, src, dst, hop_limit, packet)?;
    if src.is_unspecified() {
        if !is_solicited_node(dst) {
            return Err(NdpInvalid::DadNotToSolicitedNode);
        }
        let has_slla = packet
            .option_iter()
            .any(|o| matches!(o, Ok(NdpOption::SourceLinkAddr(_))));
        if has_slla {
            return Err(NdpInvalid::DadWithSourceLinkAddr);
        }
    }
    Ok(())
}

/// The receive checks of a Neighbor Advertisement (RFC 4861 §7.1.2), with the same
/// arguments as [`validate_solicit`]: an advertisement sent to a multicast address
/// must not have the Solicited flag.
pub fn validate_advert<T: AsRef<[u8]>>(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    packet: &NeighborPacket<T>,
) -> core::result::Result<(), NdpInvalid> {
    validate_common(Icmpv6Type::NeighborAdvert, src, dst, hop_limit, packet)?;
    if dst.is_multicast() && packet.flags().contains(NeighborFlags::SOLICITED) {
        return Err(NdpInvalid::SolicitedToMulticast);
    }
    Ok(())
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1): `ff02::1:ff00:0/104`
/// with the low 24 bits of `addr`. Solicitations for `addr` are sent there.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `addr` is a solicited-node multicast address (`ff02::1:ff00:0/104`).
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet address an IPv6 multicast address is sent to (RFC 2464 §7):
/// `33:33` and the address's last four bytes. Meaningful for multicast addresses only.
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetFrame, IpProtocol, Ipv6Packet};

    const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const LL1: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const SN_B: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2);
    const MAC1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const MAC2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    /// scapy 2.5: `Ether(src="02:00:00:00:00:01", dst="33:33:ff:00:00:02")
    /// / IPv6(src="fe80::1", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="2001:db8::2")
    /// / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")`.
    static NS_FRAME: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86,
        0xdd, // Ethernet
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, // IPv6: length 32, ICMPv6, hlim 255
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // src fe80::1
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00,
        0x02, // dst ff02::1:ff00:2
        0x87, 0x00, 0x4b, 0x5f, 0x00, 0x00, 0x00, 0x00, // NS, code 0, checksum, reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // target 2001:db8::2
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source link-layer address
    ];

    /// scapy 2.5: `Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    /// / IPv6(src="2001:db8::2", dst="fe80::1", hlim=255)
    /// / ICMPv6ND_NA(R=0, S=1, O=1, tgt="2001:db8::2")
    /// / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02")`.
    static NA_FRAME: [u8; 86] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86,
        0xdd, // Ethernet
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, // IPv6
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // src 2001:db8::2
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // dst fe80::1
        0x88, 0x00, 0xb9, 0xa9, 0x60, 0x00, 0x00, 0x00, // NA, code 0, checksum, S|O
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, // target
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // target link-layer address
    ];

    /// scapy 2.5: `IPv6(src="::", dst="ff02::1:ff00:2", hlim=255)
    /// / ICMPv6ND_NS(tgt="2001:db8::2")` (duplicate address detection).
    static DAD: [u8; 64] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02, // IPv6 header
        0x87, 0x00, 0x4c, 0xeb, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    /// The NDP message of a frame, found the way the pipeline will: Ethernet, IPv6,
    /// extension-header walk, then the view.
    fn message(frame: &[u8]) -> (Ipv6Packet<&[u8]>, NeighborPacket<&[u8]>) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), EtherType::Ipv6);
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let upper = ip.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::Icmpv6);
        let end = 40 + usize::from(ip.payload_len());
        let ndp = NeighborPacket::new_checked(&frame[14 + upper.offset..14 + end]).unwrap();
        (ip, ndp)
    }

    fn ns_repr() -> NdpRepr {
        NdpRepr::NeighborSolicit {
            target: B,
            source_lladdr: Some(MAC1),
        }
    }

    fn na_repr() -> NdpRepr {
        NdpRepr::NeighborAdvert {
            flags: NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE,
            target: B,
            target_lladdr: Some(MAC2),
        }
    }

    #[test]
    fn deconstruct_solicit() {
        let (ip, p) = message(&NS_FRAME);
        assert_eq!(p.msg_type(), Icmpv6Type::NeighborSolicit);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x4b5f);
        assert_eq!(p.flags(), NeighborFlags::empty());
        assert_eq!(p.target_addr(), B);
        assert_eq!(p.options(), &NS_FRAME[78..]);
        let options: Vec<_> = p.option_iter().collect();
        assert_eq!(options, [Ok(NdpOption::SourceLinkAddr(MAC1))]);
        assert!(p.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(p.as_icmpv6().msg_type(), Icmpv6Type::NeighborSolicit);
        assert_eq!(NdpRepr::parse(&p), Ok(ns_repr()));
        assert_eq!(
            validate_solicit(ip.src_addr(), ip.dst_addr(), ip.hop_limit(), &p),
            Ok(())
        );
        // Sent to the target's solicited-node address, at its multicast MAC.
        assert_eq!(ip.dst_addr(), solicited_node(B));
        assert!(is_solicited_node(ip.dst_addr()));
        assert_eq!(
            MacAddr(NS_FRAME[..6].try_into().unwrap()),
            multicast_mac(SN_B)
        );
    }

    #[test]
    fn deconstruct_advert() {
        let (ip, p) = message(&NA_FRAME);
        assert_eq!(p.msg_type(), Icmpv6Type::NeighborAdvert);
        assert_eq!(
            p.flags(),
            NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE
        );
        assert!(!p.flags().contains(NeighborFlags::ROUTER));
        assert_eq!(p.target_addr(), B);
        assert!(p.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(NdpRepr::parse(&p), Ok(na_repr()));
        assert_eq!(
            validate_advert(ip.src_addr(), ip.dst_addr(), ip.hop_limit(), &p),
            Ok(())
        );
        assert_eq!(
            validate_solicit(ip.src_addr(), ip.dst_addr(), ip.hop_limit(), &p),
            Err(NdpInvalid::Type)
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 32];
        let mut p = NeighborPacket::new_unchecked(&mut bytes[..]);
        p.set_msg_type(Icmpv6Type::NeighborAdvert);
        p.set_code(0);
        p.set_flags(NeighborFlags::SOLICITED | NeighborFlags::OVERRIDE);
        p.set_target_addr(B);
        p.options_mut()
            .copy_from_slice(&[2, 1, 0x02, 0, 0, 0, 0, 0x02]);
        p.fill_checksum(B, LL1);
        assert_eq!(p.into_inner(), &NA_FRAME[54..]);
    }

    #[test]
    fn emit_solicit_and_advert() {
        for (repr, frame, src, dst) in [
            (ns_repr(), &NS_FRAME, LL1, SN_B),
            (na_repr(), &NA_FRAME, B, LL1),
        ] {
            assert_eq!(repr.buffer_len(), 32);
            let mut bytes = [0xa5u8; 40];
            repr.emit(src, dst, &mut NeighborPacket::new_unchecked(&mut bytes[..]));
            assert_eq!(&bytes[..32], &frame[54..], "{repr:?}");
            assert!(bytes[32..].iter().all(|&b| b == 0xa5));
        }
        // Duplicate address detection: no option.
        let dad = NdpRepr::NeighborSolicit {
            target: B,
            source_lladdr: None,
        };
        assert_eq!(dad.buffer_len(), 24);
        let mut bytes = [0xa5u8; 24];
        dad.emit(
            Ipv6Addr::UNSPECIFIED,
            SN_B,
            &mut NeighborPacket::new_unchecked(&mut bytes[..]),
        );
        assert_eq!(bytes, DAD[40..]);
    }

    #[test]
    fn dad_rules() {
        let ip = Ipv6Packet::new_checked(&DAD[..]).unwrap();
        let p = NeighborPacket::new_checked(ip.payload()).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        assert!(src.is_unspecified());
        assert_eq!(validate_solicit(src, dst, 255, &p), Ok(()));
        assert_eq!(
            NdpRepr::parse(&p),
            Ok(NdpRepr::NeighborSolicit {
                target: B,
                source_lladdr: None
            })
        );
        // DAD to a unicast address.
        let mut to_unicast = [0u8; 24];
        to_unicast.copy_from_slice(ip.payload());
        let mut q = NeighborPacket::new_unchecked(&mut to_unicast[..]);
        q.fill_checksum(src, B);
        assert_eq!(
            validate_solicit(src, B, 255, &q),
            Err(NdpInvalid::DadNotToSolicitedNode)
        );
        // DAD with a source link-layer address option.
        let with_slla = ns_repr();
        let mut bytes = [0u8; 32];
        with_slla.emit(src, dst, &mut NeighborPacket::new_unchecked(&mut bytes[..]));
        let q = NeighborPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            validate_solicit(src, dst, 255, &q),
            Err(NdpInvalid::DadWithSourceLinkAddr)
        );
    }

    #[test]
    fn validation_failures() {
        let (ip, p) = message(&NS_FRAME);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        assert_eq!(
            validate_solicit(src, dst, 254, &p),
            Err(NdpInvalid::HopLimit)
        );
        assert_eq!(validate_solicit(src, B, 255, &p), Err(NdpInvalid::Checksum));
        let edit = |f: &dyn Fn(&mut NeighborPacket<&mut [u8]>)| {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(p.as_icmpv6().into_inner());
            let mut q = NeighborPacket::new_unchecked(&mut bytes[..]);
            f(&mut q);
            q.fill_checksum(src, dst);
            validate_solicit(src, dst, 255, &q)
        };
        assert_eq!(edit(&|q| q.set_code(1)), Err(NdpInvalid::Code));
        assert_eq!(
            edit(&|q| q.set_target_addr(SN_B)),
            Err(NdpInvalid::TargetMulticast)
        );
        assert_eq!(edit(&|q| q.options_mut()[1] = 0), Err(NdpInvalid::Option));
        assert_eq!(edit(&|q| q.options_mut()[1] = 2), Err(NdpInvalid::Option));
        // A solicited advertisement to all-nodes multicast.
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let mut bytes = [0u8; 32];
        na_repr().emit(
            B,
            all_nodes,
            &mut NeighborPacket::new_unchecked(&mut bytes[..]),
        );
        let q = NeighborPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            validate_advert(B, all_nodes, 255, &q),
            Err(NdpInvalid::SolicitedToMulticast)
        );
        // Unsolicited (O only) is fine there.
        let unsolicited = NdpRepr::NeighborAdvert {
            flags: NeighborFlags::OVERRIDE,
            target: B,
            target_lladdr: Some(MAC2),
        };
        unsolicited.emit(
            B,
            all_nodes,
            &mut NeighborPacket::new_unchecked(&mut bytes[..]),
        );
        let q = NeighborPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(validate_advert(B, all_nodes, 255, &q), Ok(()));
        assert_eq!(NdpInvalid::HopLimit.to_string(), "NDP hop limit is not 255");
    }

    #[test]
    fn options() {
        // Unknown option (nonce, type 14, 8 bytes), then a source link-layer address.
        let data = [14, 1, 1, 2, 3, 4, 5, 6, 1, 1, 2, 0, 0, 0, 0, 1];
        let got: Vec<_> = NdpOptions::new(&data).collect();
        assert_eq!(
            got,
            [
                Ok(NdpOption::Other {
                    kind: 14,
                    data: &[1, 2, 3, 4, 5, 6][..]
                }),
                Ok(NdpOption::SourceLinkAddr(MAC1)),
            ]
        );
        assert_eq!(NdpOptions::new(&[]).count(), 0);
        // Length 0 is malformed, and the walk stops there instead of looping.
        let zero = [1, 0, 2, 0, 0, 0, 0, 1];
        let got: Vec<_> = NdpOptions::new(&zero).collect();
        assert_eq!(got, [Err(Error::Malformed)]);
        // Past the end, or a lone byte.
        let got: Vec<_> = NdpOptions::new(&data[..12]).collect();
        assert_eq!(got.last(), Some(&Err(Error::Truncated)));
        assert_eq!(got.len(), 2);
        assert_eq!(
            NdpOptions::new(&[1]).collect::<Vec<_>>(),
            [Err(Error::Truncated)]
        );
        // A 16-byte link-layer address option is not Ethernet's.
        let long = [2u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            NdpOptions::new(&long).collect::<Vec<_>>(),
            [Err(Error::Malformed)]
        );
        // A repr refuses a message with a bad option.
        let mut bytes = [0u8; 32];
        bytes[..32].copy_from_slice(&NS_FRAME[54..]);
        bytes[25] = 0;
        assert_eq!(
            NdpRepr::parse(&NeighborPacket::new_checked(&bytes[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn other_types_do_not_parse() {
        let mut bytes = [0u8; 24];
        bytes[0] = 134; // router advertisement
        let p = NeighborPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn multicast_helpers() {
        let a: Ipv6Addr = "2001:db8::abcd:1234:5678".parse().unwrap();
        let sn = solicited_node(a);
        assert_eq!(sn, "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(sn));
        assert!(!is_solicited_node(a));
        assert!(!is_solicited_node("ff02::1".parse().unwrap()));
        assert_eq!(
            multicast_mac(sn),
            MacAddr([0x33, 0x33, 0xff, 0x34, 0x56, 0x78])
        );
        assert_eq!(
            multicast_mac("ff02::1".parse().unwrap()),
            MacAddr([0x33, 0x33, 0, 0, 0, 1])
        );
    }

    #[test]
    fn flags() {
        let f = NeighborFlags::ROUTER | NeighborFlags::OVERRIDE;
        assert_eq!(f.bits(), 0xa0);
        assert_eq!(format!("{f:?}"), "NeighborFlags(RO)");
        // Reserved bits neither read back nor written.
        let mut bytes = [0xffu8; 24];
        let mut p = NeighborPacket::new_unchecked(&mut bytes[..]);
        assert_eq!(p.flags().bits(), 0xe0);
        p.set_flags(NeighborFlags(0xff));
        assert_eq!(&bytes[4..8], &[0xe0, 0, 0, 0]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                NeighborPacket::new_checked(&NS_FRAME[54..54 + len]),
                Err(Error::Truncated)
            );
        }
        let bare = NeighborPacket::new_checked(&NS_FRAME[54..78]).unwrap();
        assert!(bare.options().is_empty());
        assert_eq!(
            NdpRepr::parse(&bare),
            Ok(NdpRepr::NeighborSolicit {
                target: B,
                source_lladdr: None
            })
        );
    }

    proptest::proptest! {
        /// No accessor panics, the option walk ends within `len / 8 + 1` items, and a
        /// parsed repr emits back into the same repr.
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), ty in 135..=136u8) {
            let mut data = data;
            if let Some(b) = data.first_mut() {
                *b = ty;
            }
            if let Ok(p) = NeighborPacket::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.flags(), p.target_addr());
                proptest::prop_assert!(p.option_iter().count() <= p.options().len() / 8 + 1);
                let _ = validate_solicit(LL1, SN_B, 255, &p);
                let _ = validate_advert(B, LL1, 255, &p);
                if let Ok(r) = NdpRepr::parse(&p) {
                    let mut out = vec![0u8; r.buffer_len()];
                    r.emit(B, LL1, &mut NeighborPacket::new_unchecked(&mut out[..]));
                    let q = NeighborPacket::new_checked(&out[..]).unwrap();
                    proptest::prop_assert!(q.verify_checksum(B, LL1));
                    proptest::prop_assert_eq!(NdpRepr::parse(&q), Ok(r));
                }
            }
        }
    }
}
