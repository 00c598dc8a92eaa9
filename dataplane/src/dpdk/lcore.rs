use std::collections::BTreeSet;
use std::ffi::{c_int, c_void};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::eal::Eal;
use super::error::DpdkError;

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

impl LcoreId {
    /// The lcore the calling thread runs as, or `None` for a thread the EAL
    /// did not create.
    pub fn current() -> Option<LcoreId> {
        // SAFETY: reads a thread-local; defined on every thread.
        let id = unsafe { dpdk_sys::lb_rte_lcore_id() };
        (id < dpdk_sys::RTE_MAX_LCORE).then_some(LcoreId(id))
    }
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// What a launched lcore runs: the job, and the flag it raises when the job
/// is over (returned or panicked).
struct Launch {
    job: Job,
    done: Arc<AtomicBool>,
}

/// The worker lcores launched and not yet waited for. DPDK's
/// `rte_eal_remote_launch` checks that the lcore is idle and then hands it
/// the job in steps that are not atomic, and the lcore is seen busy only
/// once it took the job: two launches on one lcore, from two threads or
/// one after the other before the first job started, would both succeed
/// with one job lost and the lcore stuck (found in review). Launches take
/// this lock and are refused on an lcore launched and not yet waited for.
static LAUNCHED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn launched() -> MutexGuard<'static, BTreeSet<u32>> {
    LAUNCHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`LaunchedLcore::wait`] gives for a job that panicked (the panic
/// was caught at the FFI boundary and logged).
pub const JOB_PANICKED: i32 = i32::MIN;

/// A function running on a worker lcore; `wait` joins it. Dropped without
/// `wait`, its lcore stays taken for good: the job may still be running,
/// so no other may be launched there.
#[derive(Debug)]
#[must_use = "a launched lcore must be waited for"]
pub struct LaunchedLcore {
    lcore: LcoreId,
    done: Arc<AtomicBool>,
}

impl Eal {
    /// Runs `job` on the worker `lcore` (`rte_eal_remote_launch`), pinned as
    /// the EAL pinned it. The main lcore and lcores the EAL does not run are
    /// refused.
    pub fn launch(
        &self,
        lcore: LcoreId,
        job: impl FnOnce() -> i32 + Send + 'static,
    ) -> Result<LaunchedLcore, DpdkError> {
        if !self.lcore_enabled(lcore) || lcore == self.info().main_lcore {
            return Err(DpdkError {
                op: format!("launching a worker on {lcore}"),
                errno: 22,
                hint:
                    "worker lcores must be in the EAL core list (-l) and differ from the main lcore",
            });
        }
        let mut busy = launched();
        if busy.contains(&lcore.0) {
            return Err(DpdkError {
                op: format!("launching a worker on {lcore}"),
                errno: 16,
                hint: "that lcore runs a job not yet waited for",
            });
        }
        let done = Arc::new(AtomicBool::new(false));
        let launch = Box::new(Launch {
            job: Box::new(job),
            done: Arc::clone(&done),
        });
        let arg = Box::into_raw(launch).cast::<c_void>();
        // SAFETY: `trampoline` matches lcore_function_t and takes ownership
        // of `arg`, a leaked Box<Launch>; the lcore is enabled, not the
        // main one and not launched (`busy`, held across the call, so no
        // other launch runs meanwhile), and the job is Send + 'static.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if ret != 0 {
            // SAFETY: the launch failed, so the trampoline never ran and the
            // box is still ours to reclaim.
            drop(unsafe { Box::from_raw(arg.cast::<Launch>()) });
            return Err(
                DpdkError::from_ret(format!("launching a worker on {lcore}"), ret)
                    .with_hint("is that lcore already busy?"),
            );
        }
        busy.insert(lcore.0);
        Ok(LaunchedLcore { lcore, done })
    }
}

impl LaunchedLcore {
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Whether the job is over (returned or panicked): then `wait` does
    /// not block. Does not block itself.
    pub fn is_finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Blocks until the job returns, and gives its return value
    /// ([`JOB_PANICKED`] if it panicked).
    pub fn wait(self) -> i32 {
        // SAFETY: the lcore was launched by us and is waited for once (self
        // is consumed).
        let rc = unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore.0) };
        // Idle again: it may be launched anew.
        launched().remove(&self.lcore.0);
        rc
    }
}

/// The lcore entry point DPDK calls. A panic must not unwind out of an
/// `extern "C"` function into DPDK's C frames (undefined behaviour before
/// Rust 1.81, an abort since), so it is caught here: logged with the lcore,
/// and reported as [`JOB_PANICKED`] for the engine, which stops the other
/// workers and has the control thread stop the appliance with status 1.
///
/// In a `panic = "abort"` build (not ours: the release profile unwinds) nothing unwinds and
/// `catch_unwind` catches nothing: the panic hook prints the message, naming
/// the thread (`lcore-worker-N`), and the process aborts with SIGABRT at
/// once, without a clean stop; systemd then restarts the unit
/// (`Restart=on-failure`). Either way no panic crosses into C.
extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Launch> leaked by `Eal::launch`, passed to
    // exactly one trampoline call.
    let Launch { job, done } = *unsafe { Box::from_raw(arg.cast::<Launch>()) };
    // The job owns everything it touches and is dropped while unwinding:
    // nothing half-updated is seen again, so asserting unwind safety is
    // sound.
    let rc = match catch_unwind(AssertUnwindSafe(job)) {
        Ok(rc) => rc,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".to_string());
            let lcore =
                LcoreId::current().map_or_else(|| "an lcore".to_string(), |l| l.to_string());
            log::error!("worker on {lcore} panicked: {what}; stopping the appliance");
            // Dropping the payload could panic in turn: keep it.
            std::mem::forget(payload);
            JOB_PANICKED
        }
    };
    done.store(true, Ordering::Release);
    rc
}
