//! The buffer the packet logic works on: a byte window with room to grow
//! at the front (headroom, for IPIP) and at the back. `dpdk::Mbuf`
//! implements it; so does [`VecBuf`], which tests and the benchmarks use, so
//! that parse, classify and rewrite run the same code with or without DPDK.

/// What the receiving NIC found of a packet's IPv4 header checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// It did not check (or cannot): the pipeline checks in software.
    #[default]
    Unknown,
    /// Checked and good: the pipeline does not check again.
    Good,
    /// Checked and bad.
    Bad,
}

/// A packet held in one contiguous buffer.
pub trait PacketBuf {
    /// The packet bytes, from the Ethernet header on.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes in front of the data.
    fn headroom(&self) -> usize;
    /// Grows the packet by `n` bytes at the front; false (and no change) if
    /// the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; false (no change) if shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end; false (no change) if shorter.
    fn trim(&mut self, n: usize) -> bool;
    /// Grows the packet by `n` bytes at the end; false (no change) if there
    /// is no room.
    fn append(&mut self, n: usize) -> bool;

    fn len(&self) -> usize {
        self.data().len()
    }

    /// What the NIC found of the IPv4 header checksum on receipt (devices
    /// that offer the check; `Unknown` for the rest).
    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }

    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

    /// Hints the CPU to load the cache line at `line` into its caches: the
    /// burst's flow-table slots and entries, ahead of their lookups. A hint
    /// only (any address is allowed and nothing is read). Nothing by
    /// default, since lb-core has no `unsafe`; the DPDK mbuf
    /// (`dataplane/src/dpdk`) prefetches, and so does every buffer whose
    /// platform offers it.
    #[inline(always)]
    fn prefetch(line: *const u8) {
        let _ = line;
    }

    /// Sets the length to exactly `len`, growing or shrinking at the end.
    fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len >= cur {
            self.append(len - cur)
        } else {
            self.trim(cur - len)
        }
    }
}

/// An owned buffer with headroom and tailroom, the shape of an mbuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// What a pretend NIC found of the IPv4 checksum (tests).
    rx_ip: RxChecksum,
}

impl VecBuf {
    /// The headroom DPDK gives an mbuf (RTE_PKTMBUF_HEADROOM).
    pub const DEFAULT_HEADROOM: usize = 128;
    /// The data room of a default mbuf, headroom excluded.
    pub const DEFAULT_ROOM: usize = 2048;

    /// A buffer holding `bytes` after the default headroom.
    pub fn from_bytes(bytes: &[u8]) -> VecBuf {
        Self::with_room(
            bytes,
            Self::DEFAULT_HEADROOM,
            Self::DEFAULT_ROOM.max(bytes.len()),
        )
    }

    /// A buffer holding `bytes` after `headroom` bytes, `room` bytes long
    /// after the headroom.
    pub fn with_room(bytes: &[u8], headroom: usize, room: usize) -> VecBuf {
        let room = room.max(bytes.len());
        let mut buf = vec![0u8; headroom + room];
        buf[headroom..headroom + bytes.len()].copy_from_slice(bytes);
        VecBuf {
            buf,
            start: headroom,
            end: headroom + bytes.len(),
            rx_ip: RxChecksum::Unknown,
        }
    }

    /// The same buffer, as if a NIC had checked its IPv4 header checksum
    /// and found `rx` (tests of the offload path).
    pub fn with_rx_ip_checksum(mut self, rx: RxChecksum) -> VecBuf {
        self.rx_ip = rx;
        self
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for VecBuf {
    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        self.rx_ip
    }

    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }

    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if n > self.buf.len() - self.end {
            return false;
        }
        self.end += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_its_room() {
        let mut b = VecBuf::with_room(&[1, 2, 3], 4, 8);
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.prepend(4));
        assert!(!b.prepend(1));
        assert_eq!(b.len(), 7);
        assert!(b.adj(4));
        assert!(b.append(5));
        assert!(!b.append(1));
        assert!(b.trim(5));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.trim(4));
        assert!(b.set_len(1));
        assert_eq!(b.data(), &[1]);
    }
}
