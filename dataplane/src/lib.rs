//! The DPDK side of the appliance: the wrapper over DPDK, the poll-mode
//! worker loop and the engine that starts them.
//!
//! A packet's path: `dpdk` (receive a burst) -> `worker` (the poll loop)
//! -> `lb_core::pipeline` (classify, answer or forward) -> `dpdk`
//! (transmit). `dpdk` is the only module that talks to DPDK and the only one
//! allowed `unsafe`; every decision about a packet is made in `lb-core`, on
//! plain byte buffers, so that it runs the same in tests and fuzzing.
#![deny(unsafe_code)]

pub mod backoff;
pub mod dpdk;
pub mod engine;
pub mod kernel;
pub mod sync;
pub mod worker;

pub use engine::{Dataplane, StartError, WorkerEnd};
pub use lb_core::{DropReason, WorkerStats};
pub use lb_core::{PacketBuf, Snapshot, VecBuf};
