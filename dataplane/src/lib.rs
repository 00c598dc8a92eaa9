//! Everything that runs on a worker core.
//!
//! A packet's path through the tree: `dpdk` (receive a burst) -> `worker`
//! (the poll loop) -> `pipeline` (parse with `wire`, answer or forward) ->
//! `dpdk` (transmit). `dpdk` is the only module that talks to DPDK and the
//! only one allowed `unsafe`; everything else works on plain byte buffers
//! (`buffer::PacketBuf`) so that it runs the same in unit tests.
#![deny(unsafe_code)]

pub mod buffer;
pub mod dpdk;
pub mod engine;
pub mod flow;
pub mod forward;
pub mod keymap;
pub mod neighbor;
pub mod pipeline;
pub mod route;
pub mod scheduler;
pub mod snapshot;
pub mod stats;
pub mod wire;
pub mod worker;

pub use buffer::{PacketBuf, VecBuf};
pub use engine::{Dataplane, StartError};
pub use snapshot::Snapshot;
pub use stats::{DropReason, WorkerStats};
