//! TCP options (RFC 9293 section 3.2): the ones a SYN proxy reads, writes
//! or translates. Maximum segment size (kind 2), window scale (3, RFC 7323),
//! SACK permitted (4) and SACK blocks (5, RFC 2018), timestamps (8, RFC
//! 7323).
//!
//! Every byte is the sender's choice: parsing never panics and never reads
//! past the slice. It stops at end-of-list, at a length byte below 2 or
//! one that runs past the end (what follows cannot be framed), and skips
//! an option whose length is wrong for its kind, as Linux does.

use super::{read_u16, read_u32, write_u16, write_u32};

pub const KIND_EOL: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WSCALE: u8 = 3;
pub const KIND_SACK_PERMITTED: u8 = 4;
pub const KIND_SACK: u8 = 5;
pub const KIND_TIMESTAMPS: u8 = 8;

const LEN_MSS: usize = 4;
const LEN_WSCALE: usize = 3;
const LEN_SACK_PERMITTED: usize = 2;
const LEN_TIMESTAMPS: usize = 10;
/// A SACK block: left and right edge.
const SACK_BLOCK: usize = 8;

/// The largest window-scale shift (RFC 7323 2.3); larger values are read
/// as this.
pub const MAX_WSCALE: u8 = 14;

/// The longest option list [`TcpOptions::emit`] writes.
pub const MAX_EMIT_LEN: usize = 24;
/// The length of the option list [`emit_timestamps`] writes.
pub const TIMESTAMPS_EMIT_LEN: usize = 12;

/// TSval and TSecr of a timestamps option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamps {
    pub val: u32,
    pub ecr: u32,
}

/// The options of a segment that matter to a SYN proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// The shift, at most [`MAX_WSCALE`].
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<Timestamps>,
}

/// Walks an option list: calls `f(kind, start, len)` for every option with
/// a length byte that fits (`start` is where its kind byte is, `len` its
/// whole length). Stops at EOL or at a length that cannot be framed.
#[inline]
fn walk(opts: &[u8], mut f: impl FnMut(u8, usize, usize)) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            KIND_EOL => return,
            KIND_NOP => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { return };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return;
                }
                f(kind, i, len);
                i += len;
            }
        }
    }
}

impl TcpOptions {
    /// Reads the options of a segment (the bytes after the fixed header).
    pub fn parse(opts: &[u8]) -> TcpOptions {
        let mut out = TcpOptions::default();
        walk(opts, |kind, at, len| match (kind, len) {
            (KIND_MSS, LEN_MSS) => out.mss = Some(read_u16(opts, at + 2)),
            (KIND_WSCALE, LEN_WSCALE) => out.wscale = Some(opts[at + 2].min(MAX_WSCALE)),
            (KIND_SACK_PERMITTED, LEN_SACK_PERMITTED) => out.sack_permitted = true,
            (KIND_TIMESTAMPS, LEN_TIMESTAMPS) => {
                out.timestamps = Some(Timestamps {
                    val: read_u32(opts, at + 2),
                    ecr: read_u32(opts, at + 6),
                })
            }
            _ => {}
        });
        out
    }

    /// How long [`emit`](Self::emit) makes the list: a multiple of 4, at
    /// most [`MAX_EMIT_LEN`].
    pub fn emit_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamps.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.wscale.is_some() {
            n += 4;
        }
        n
    }

    /// Writes the options as a SYN or SYN-ACK carries them (the layout
    /// Linux uses: MSS, SACK permitted and timestamps, NOP and window
    /// scale, padded with NOPs to words). `buf` is at least
    /// [`emit_len`](Self::emit_len) long; returns that length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let mut at = 0;
        if let Some(mss) = self.mss {
            buf[at] = KIND_MSS;
            buf[at + 1] = LEN_MSS as u8;
            write_u16(buf, at + 2, mss);
            at += 4;
        }
        if let Some(ts) = self.timestamps {
            if self.sack_permitted {
                buf[at] = KIND_SACK_PERMITTED;
                buf[at + 1] = LEN_SACK_PERMITTED as u8;
            } else {
                buf[at] = KIND_NOP;
                buf[at + 1] = KIND_NOP;
            }
            write_timestamps(&mut buf[at + 2..at + 12], ts);
            at += 12;
        } else if self.sack_permitted {
            buf[at] = KIND_NOP;
            buf[at + 1] = KIND_NOP;
            buf[at + 2] = KIND_SACK_PERMITTED;
            buf[at + 3] = LEN_SACK_PERMITTED as u8;
            at += 4;
        }
        if let Some(ws) = self.wscale {
            buf[at] = KIND_NOP;
            buf[at + 1] = KIND_WSCALE;
            buf[at + 2] = LEN_WSCALE as u8;
            buf[at + 3] = ws.min(MAX_WSCALE);
            at += 4;
        }
        at
    }
}

fn write_timestamps(buf: &mut [u8], ts: Timestamps) {
    buf[0] = KIND_TIMESTAMPS;
    buf[1] = LEN_TIMESTAMPS as u8;
    write_u32(buf, 2, ts.val);
    write_u32(buf, 6, ts.ecr);
}

/// Writes NOP, NOP, timestamps (what every segment after the handshake
/// carries when timestamps are in use): [`TIMESTAMPS_EMIT_LEN`] bytes.
pub fn emit_timestamps(buf: &mut [u8], ts: Timestamps) -> usize {
    buf[0] = KIND_NOP;
    buf[1] = KIND_NOP;
    write_timestamps(&mut buf[2..TIMESTAMPS_EMIT_LEN], ts);
    TIMESTAMPS_EMIT_LEN
}

/// Reads the SACK blocks (left, right edge) of an option list into `out`;
/// returns how many.
pub fn sack_blocks(opts: &[u8], out: &mut [(u32, u32)]) -> usize {
    let mut n = 0;
    walk(opts, |kind, at, len| {
        if kind == KIND_SACK && len > 2 && (len - 2) % SACK_BLOCK == 0 {
            let mut edge = at + 2;
            while edge < at + len && n < out.len() {
                out[n] = (read_u32(opts, edge), read_u32(opts, edge + 4));
                n += 1;
                edge += SACK_BLOCK;
            }
        }
    });
    n
}

/// Writes NOP, NOP and a SACK option with `blocks` (at most 4) to `buf`;
/// returns the length written (a multiple of 4).
pub fn emit_sack(buf: &mut [u8], blocks: &[(u32, u32)]) -> usize {
    let blocks = &blocks[..blocks.len().min(4)];
    buf[0] = KIND_NOP;
    buf[1] = KIND_NOP;
    buf[2] = KIND_SACK;
    buf[3] = (2 + SACK_BLOCK * blocks.len()) as u8;
    for (i, &(l, r)) in blocks.iter().enumerate() {
        write_u32(buf, 4 + i * SACK_BLOCK, l);
        write_u32(buf, 8 + i * SACK_BLOCK, r);
    }
    4 + SACK_BLOCK * blocks.len()
}

/// Translates an option list in place: `val_add` is added to TSval,
/// `ecr_add` to TSecr, `sack_add` to both edges of every SACK block (all
/// modulo 2^32). Options that cannot be framed are left as they are.
/// Returns whether anything changed (the caller then updates the checksum
/// from the list's sums before and after, which works whatever the
/// alignment of the fields).
pub fn translate(opts: &mut [u8], val_add: u32, ecr_add: u32, sack_add: u32) -> bool {
    let mut spots = [(0u8, 0usize, 0usize); 20];
    let mut n = 0;
    walk(opts, |kind, at, len| {
        if n < spots.len() {
            spots[n] = (kind, at, len);
            n += 1;
        }
    });
    let mut changed = false;
    for &(kind, at, len) in &spots[..n] {
        match kind {
            KIND_TIMESTAMPS if len == LEN_TIMESTAMPS && (val_add | ecr_add) != 0 => {
                let val = read_u32(opts, at + 2);
                let ecr = read_u32(opts, at + 6);
                write_u32(opts, at + 2, val.wrapping_add(val_add));
                write_u32(opts, at + 6, ecr.wrapping_add(ecr_add));
                changed = true;
            }
            KIND_SACK if sack_add != 0 && len > 2 && (len - 2) % SACK_BLOCK == 0 => {
                let mut edge = at + 2;
                while edge < at + len {
                    let v = read_u32(opts, edge);
                    write_u32(opts, edge, v.wrapping_add(sack_add));
                    edge += 4;
                }
                changed = true;
            }
            _ => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// MSS 1460, SACK permitted, timestamps (1, 0), NOP, window scale 7: a
    /// Linux SYN's options.
    const LINUX_SYN: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn a_linux_syn_reads_back_and_emits_the_same_bytes() {
        let o = TcpOptions::parse(&LINUX_SYN);
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { val: 1, ecr: 0 }),
            }
        );
        let mut buf = [0u8; MAX_EMIT_LEN];
        let n = o.emit(&mut buf);
        assert_eq!(n, o.emit_len());
        assert_eq!(&buf[..n], &LINUX_SYN);
    }

    #[test]
    fn every_combination_emits_what_it_parses() {
        for bits in 0..16u8 {
            let o = TcpOptions {
                mss: (bits & 1 != 0).then_some(1220),
                wscale: (bits & 2 != 0).then_some(9),
                sack_permitted: bits & 4 != 0,
                timestamps: (bits & 8 != 0).then_some(Timestamps { val: 7, ecr: 9 }),
            };
            let mut buf = [0xeeu8; MAX_EMIT_LEN];
            let n = o.emit(&mut buf);
            assert_eq!(n, o.emit_len());
            assert_eq!(n % 4, 0);
            assert_eq!(TcpOptions::parse(&buf[..n]), o, "{bits:04b}");
        }
    }

    #[test]
    fn hostile_lists_stop_cleanly() {
        // Length 0 and 1 cannot be framed: nothing after them is read.
        assert_eq!(TcpOptions::parse(&[2, 0, 5, 0xb4]), TcpOptions::default());
        assert_eq!(TcpOptions::parse(&[3, 1, 7]), TcpOptions::default());
        // Overlong: runs past the end.
        assert_eq!(TcpOptions::parse(&[2, 40, 5, 0xb4]), TcpOptions::default());
        // Truncated: the kind without its length.
        assert_eq!(TcpOptions::parse(&[1, 1, 2]), TcpOptions::default());
        // EOL ends the list even when more follows.
        assert_eq!(
            TcpOptions::parse(&[0, 2, 4, 5, 0xb4]),
            TcpOptions::default()
        );
        // A wrong length for the kind is skipped, the rest still read.
        let o = TcpOptions::parse(&[2, 3, 5, 4, 2, 3, 3, 20]);
        assert_eq!(o.mss, None);
        assert!(o.sack_permitted);
        assert_eq!(o.wscale, Some(MAX_WSCALE), "a shift above 14 is read as 14");
        assert_eq!(TcpOptions::parse(&[]), TcpOptions::default());
        let mut opts = [8u8, 10, 0, 0];
        assert!(
            !translate(&mut opts, 1, 1, 1),
            "a cut-off option is left alone"
        );
        assert_eq!(opts, [8, 10, 0, 0]);
    }

    #[test]
    fn translation_moves_timestamps_and_sack_edges() {
        // NOP NOP TS(100, 200) NOP NOP SACK(1000-2000, 3000-4000)
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&100u32.to_be_bytes());
        o.extend_from_slice(&200u32.to_be_bytes());
        o.extend_from_slice(&[1, 1, 5, 18]);
        for v in [1000u32, 2000, 3000, 4000] {
            o.extend_from_slice(&v.to_be_bytes());
        }
        assert!(translate(&mut o, 5, u32::MAX, 10));
        assert_eq!(
            TcpOptions::parse(&o).timestamps,
            Some(Timestamps { val: 105, ecr: 199 })
        );
        let edges: Vec<u32> = o[16..]
            .chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(edges, [1010, 2010, 3010, 4010]);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_and_translate_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), a in any::<u32>(), b in any::<u32>(), c in any::<u32>()) {
            let _ = TcpOptions::parse(&bytes);
            let mut m = bytes.clone();
            translate(&mut m, a, b, c);
            prop_assert_eq!(m.len(), bytes.len());
            // Translating back restores the bytes.
            translate(&mut m, a.wrapping_neg(), b.wrapping_neg(), c.wrapping_neg());
            prop_assert_eq!(m, bytes);
        }
    }
}
