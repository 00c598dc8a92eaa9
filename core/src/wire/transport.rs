//! The part of a TCP or UDP header that address translation touches: the
//! two ports and the checksum. One view for both protocols, because a NAT
//! rewrite is the same for either; the checksum may lie beyond a short
//! buffer (a TCP header quoted in an ICMP error keeps only 8 bytes), and
//! is then left alone.
//!
//! The UDP rule lives here and nowhere else: a UDP checksum of 0 means "no
//! checksum" and stays 0; an updated checksum that comes out as 0 is sent
//! as 0xffff (RFC 768).

use super::checksum::Delta;
use super::{read_raw_u16, read_u16, write_raw_u16, write_u16, Error, IpProtocol, Result};

/// The ports of both protocols sit at the same offsets.
mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const TCP_CHECKSUM: usize = 16;
    pub const UDP_CHECKSUM: usize = 6;
}

/// The shortest buffer the view accepts: the two ports.
pub const PORTS_LEN: usize = 4;

/// Ports and checksum of a TCP or UDP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportHeader<T: AsRef<[u8]>> {
    udp: bool,
    buffer: T,
}

impl<T: AsRef<[u8]>> TransportHeader<T> {
    /// Views `buffer` as the header of `protocol`: `Malformed` for anything
    /// but TCP and UDP, `Truncated` when it cannot hold the two ports.
    #[inline(always)]
    pub fn new_checked(protocol: IpProtocol, buffer: T) -> Result<TransportHeader<T>> {
        let udp = match protocol {
            IpProtocol::Tcp => false,
            IpProtocol::Udp => true,
            _ => return Err(Error::Malformed),
        };
        if buffer.as_ref().len() < PORTS_LEN {
            return Err(Error::Truncated);
        }
        Ok(TransportHeader { udp, buffer })
    }

    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The source port in the machine's byte order, for checksum
    /// arithmetic ([`Delta`]: "raw" words).
    #[inline(always)]
    pub fn src_port_raw(&self) -> u16 {
        read_raw_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port in the machine's byte order, as
    /// [`Self::src_port_raw`].
    #[inline(always)]
    pub fn dst_port_raw(&self) -> u16 {
        read_raw_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline(always)]
    fn checksum_at(&self) -> Option<usize> {
        let at = if self.udp {
            field::UDP_CHECKSUM
        } else {
            field::TCP_CHECKSUM
        };
        (at + 2 <= self.buffer.as_ref().len()).then_some(at)
    }

    /// The checksum, if the buffer reaches it.
    #[inline(always)]
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_at()
            .map(|at| read_u16(self.buffer.as_ref(), at))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TransportHeader<T> {
    #[inline(always)]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    #[inline(always)]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Applies the checksum changes of a rewrite (RFC 1624), keeping UDP's
    /// "no checksum" and never producing a UDP checksum of 0. Nothing
    /// happens when the buffer does not reach the checksum.
    #[inline(always)]
    pub fn update_checksum(&mut self, delta: Delta) {
        let Some(at) = self.checksum_at() else {
            return;
        };
        let old = read_u16(self.buffer.as_ref(), at);
        if self.udp && old == 0 {
            return;
        }
        let mut new = delta.apply(old);
        if self.udp && new == 0 {
            new = 0xffff;
        }
        write_u16(self.buffer.as_mut(), at, new);
    }

    /// [`Self::update_checksum`] for a `delta` of words in the machine's
    /// byte order ([`Self::src_port_raw`]): the same result. UDP's two
    /// special values, 0 and 0xffff, read the same in either order.
    #[inline(always)]
    pub fn update_checksum_raw(&mut self, delta: Delta) {
        let Some(at) = self.checksum_at() else {
            return;
        };
        let old = read_raw_u16(self.buffer.as_ref(), at);
        if self.udp && old == 0 {
            return;
        }
        let mut new = delta.apply(old);
        if self.udp && new == 0 {
            new = 0xffff;
        }
        write_raw_u16(self.buffer.as_mut(), at, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_checksums_of_both_protocols() {
        let mut udp = [0x12, 0x34, 0x00, 0x35, 0x00, 0x08, 0xab, 0xcd];
        let mut h = TransportHeader::new_checked(IpProtocol::Udp, &mut udp[..]).unwrap();
        assert_eq!((h.src_port(), h.dst_port()), (0x1234, 53));
        assert_eq!(h.checksum(), Some(0xabcd));
        h.set_dst_port(54);
        h.update_checksum(Delta::default().change16(53, 54));
        assert_eq!(h.checksum(), Some(0xabcc));

        let mut tcp = [0u8; 20];
        tcp[16] = 0x11;
        let h = TransportHeader::new_checked(IpProtocol::Tcp, &mut tcp[..]).unwrap();
        assert_eq!(h.checksum(), Some(0x1100));
        // A quoted TCP header: 8 bytes, no checksum to update.
        let mut quoted = [0u8; 8];
        let mut h = TransportHeader::new_checked(IpProtocol::Tcp, &mut quoted[..]).unwrap();
        assert_eq!(h.checksum(), None);
        h.update_checksum(Delta::default().change16(0, 1));
        assert_eq!(quoted, [0u8; 8]);
    }

    #[test]
    fn udp_zero_checksum_rules() {
        // "No checksum" stays so.
        let mut none = [0, 1, 0, 2, 0, 8, 0, 0];
        let mut h = TransportHeader::new_checked(IpProtocol::Udp, &mut none[..]).unwrap();
        h.update_checksum(Delta::default().change16(2, 3));
        assert_eq!(h.checksum(), Some(0));
        // An update that comes out as 0 is sent as 0xffff.
        let mut zero = [0, 1, 0, 2, 0, 8, 0x00, 0x01];
        let mut h = TransportHeader::new_checked(IpProtocol::Udp, &mut zero[..]).unwrap();
        h.update_checksum(Delta::default().change16(0, 1));
        assert_eq!(h.checksum(), Some(0xffff));
    }

    #[test]
    fn refuses_other_protocols_and_short_buffers() {
        assert_eq!(
            TransportHeader::new_checked(IpProtocol::Icmp, &[0u8; 8][..]),
            Err(Error::Malformed)
        );
        assert_eq!(
            TransportHeader::new_checked(IpProtocol::Udp, &[0u8; 3][..]),
            Err(Error::Truncated)
        );
    }
}
