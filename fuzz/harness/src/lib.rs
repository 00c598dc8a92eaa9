//! What the fuzz targets in `fuzz/fuzz_targets/` run: input decoding, a
//! driver that runs several workers' pipelines the way the dataplane's
//! worker loop does, and the invariants checked after every step. It builds
//! on stable, so `cargo test` replays the corpus and every regression
//! (`tests/replay.rs`) without nightly or libFuzzer.
//!
//! # Targets
//! - [`Target::Pipeline`]: bursts of frames through 1–3 worker pipelines
//!   over NAT, TUN and DR services (TCP and UDP; IPv4 and IPv6, 4in6
//!   too), a small flow table per family, the clock, sweeps and reloads,
//!   all driven by the input ([`driver`]; IPv6 frames: [`gen6`]).
//! - [`Target::Wire`]: the `lb_core::wire` views on arbitrary bytes
//!   ([`wire`]).
//! - [`Target::Sync`]: connection-sync datagrams parsed and installed into
//!   a worker's tables beside its own flows ([`sync`], which gives its
//!   input format).
//! - [`Target::Config`]: `lb.toml` text through validation and, when
//!   accepted, compilation into the workers' snapshot ([`config`]).
//!
//! # The `pipeline` input format
//! A 4-byte header (missing bytes read as 0), then ops to the end:
//!
//! | bytes | meaning |
//! |---|---|
//! | `h0` | topology `h0 % 2`: 0 three-arm (wan, lan, dmz), 1 one-arm ([`configs`]); `h0 & 0x80`: a scarce mbuf pool, every other buffer a worker asks for a SYN it sends again is not there (`no_mbuf`) |
//! | `h1` | workers: `1 + h1 % 3`; `h1 & 0x80`: bursts run in three stages, as with a large table (`Pipeline::set_deep_pipeline_from`) |
//! | `h2` | flow-table capacity per worker: `4 + h2 % 61` |
//! | `h3` | start of the clock (ms): 0 if `h3 == 0`, else `u32::MAX - h3 * 4096` (wraps soon) |
//!
//! | op | meaning |
//! |---|---|
//! | `0x00..=0x7f` | BURST of `1 + (op & 0x3f)` frames, through `process_burst` (`op & 0x40`: one `process` call each). Next byte: in-port `b & 3` (may not exist), worker `(b >> 2) % workers`. Then per frame: flags `u8`, length `u16` big-endian, that many bytes (fewer if the input ends) |
//! | `0x80..=0x9f` | clock `+= (op & 0x1f) * 125 + 1` ms |
//! | `0xa0..=0xaf` | every worker sweeps `((op & 0xf) + 1) * 8` entries |
//! | `0xb0..=0xbf` | clock `+= ((op & 0xf) + 1) * 60 s` |
//! | `0xc0..=0xc7` | RELOAD: every worker adopts snapshot `op & 3` of the topology |
//! | `0xc8..=0xcf` | IPV6: an IPv6 frame of kind `op & 7` built from the next six bytes (in-port and worker, addresses, mutations, the kind's byte, size, source port; see [`gen6`]) |
//! | `0xd0..=0xdf` | REPLY to the `(op & 0xf)`-th latest flow packet sent (from its destination, ports swapped; IPv4 or IPv6). Next bytes: TCP flags, then `b`: worker `b & 0x7f`; `b & 0x80`: the reply carries 32 bytes of data after what it copied |
//! | `0xe0..=0xef` | ICMP ERROR about the `(op & 0xf)`-th latest flow packet sent, from its destination. Next bytes: type/code (IPv4: `b & 1`: 3 else 11, code `(b >> 1) & 0xf`; IPv6: `b & 3`: unreachable, time exceeded, packet too big, parameter problem, code `(b >> 2) & 7`, `b & 0x20` quote cut to the headers; a Packet Too Big announces `1280 + 40 * ((b >> 2) & 7)`), worker; `b & 0x80`: about the packet's reply; `b & 0x40`: about the `(op & 0xf)`-th latest tunnel packet sent, outer header and all (IPIP quoted with the client's header and 8 bytes), from inside the tunnel |
//! | `0xf0..=0xff` | AGAIN: the `(op & 0xf)`-th latest input frame once more. Next bytes: TCP flags (0: unchanged), worker |
//!
//! Frame flags ([`packet::flag`]): `0x01` IPv4 total length := frame
//! length − 14 (IPv6 payload length := frame length − 54), `0x02` UDP
//! length := IP payload (IPv6: past the extension headers), `0x04`
//! recompute the TCP/UDP/ICMP/ICMPv6 checksum, `0x08` recompute the IPv4
//! header checksum,
//! `0x10` pad to 60 bytes, `0x20` no headroom, `0x40` Ethernet
//! destination := the port's MAC, `0x80` UDP checksum := 0. Seeds use
//! `0x0f` (the golden frames, kept right under mutation).
//!
//! # Invariants
//! See [`driver`] and [`packet`]: every frame in ends as sent (a
//! forwarded or answered frame), consumed or dropped under a counted
//! reason; what is sent is well formed and has valid checksums; the flow
//! counts agree with the tables. A broken invariant is a [`Violation`]
//! named by a stable id.

pub mod config;
pub mod configs;
pub mod driver;
pub mod gen6;
pub mod packet;
pub mod sync;
pub mod wire;

use std::fmt;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A stable name, e.g. `out.l4-checksum` (see [`KNOWN_OPEN`]).
    pub id: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.id, self.detail)
    }
}

/// The violations one input found (the first few of each id).
#[derive(Debug, Default)]
pub struct Violations {
    pub list: Vec<Violation>,
}

impl Violations {
    pub fn add(&mut self, id: &'static str, detail: String) {
        if self.list.iter().filter(|v| v.id == id).count() < 3 {
            self.list.push(Violation { id, detail });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The ids found, sorted, without repeats.
    pub fn ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self.list.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Invariants that fuzzing found broken in the pipeline, reported and not
/// yet fixed (the packet core is the lead's to change). The fuzz targets
/// tolerate these, so that they go on finding other things; their
/// regression files are listed in `fuzz/regressions/known-open.txt`, and
/// the replay test checks that those inputs still break exactly that
/// (so a fix shows up as a test to update: remove the id here and the line
/// there). Empty when everything found is fixed.
pub const KNOWN_OPEN: &[&str] = &[];

/// Fixes `lb_core::flow::owner_of`'s key. Which worker owns a client is
/// keyed per process in the appliance; here the key is fixed, so that an
/// input replays alike in any process (a crash libFuzzer found, the replay
/// test). Called by every target that runs more than one worker.
pub(crate) fn fix_owners() {
    assert!(
        lb_core::flow::fix_owner_key(0x2545_f491_4f6c_dd1d),
        "owner_of was used before the harness fixed its key"
    );
}

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Pipeline,
    Wire,
    Sync,
    Config,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Pipeline, Target::Wire, Target::Sync, Target::Config];

    /// The name of its fuzz target and of its corpus folder.
    pub fn name(self) -> &'static str {
        match self {
            Target::Pipeline => "pipeline",
            Target::Wire => "wire",
            Target::Sync => "sync",
            Target::Config => "config",
        }
    }

    /// Runs one input and returns what broke.
    pub fn run(self, data: &[u8]) -> Violations {
        match self {
            Target::Pipeline => driver::run(data),
            Target::Wire => wire::run(data),
            Target::Sync => sync::run(data),
            Target::Config => config::run(data),
        }
    }

    /// What a fuzz target does with an input: panics (a crash libFuzzer
    /// keeps) on any violation not in [`KNOWN_OPEN`].
    pub fn fuzz(self, data: &[u8]) {
        let v = self.run(data);
        let new: Vec<String> = v
            .list
            .iter()
            .filter(|v| !KNOWN_OPEN.contains(&v.id))
            .map(|v| v.to_string())
            .collect();
        assert!(
            new.is_empty(),
            "{} invariant violated:\n{}",
            self.name(),
            new.join("\n")
        );
    }
}
