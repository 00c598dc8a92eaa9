use std::ffi::{c_int, c_void};
use std::fmt;

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

/// A function running on a worker lcore; `wait` joins it.
#[derive(Debug)]
#[must_use = "a launched lcore must be waited for"]
pub struct LaunchedLcore {
    lcore: LcoreId,
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
        let job: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: `trampoline` matches lcore_function_t and takes ownership
        // of `arg`, a leaked Box<Job>; the lcore is enabled and not the main
        // one, and the job is Send + 'static.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if ret != 0 {
            // SAFETY: the launch failed, so the trampoline never ran and the
            // box is still ours to reclaim.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(
                DpdkError::from_ret(format!("launching a worker on {lcore}"), ret)
                    .with_hint("is that lcore already busy?"),
            );
        }
        Ok(LaunchedLcore { lcore })
    }
}

impl LaunchedLcore {
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Blocks until the job returns, and gives its return value.
    pub fn wait(self) -> i32 {
        // SAFETY: the lcore was launched by us and is waited for once (self
        // is consumed).
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore.0) }
    }
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `Eal::launch`, passed to
    // exactly one trampoline call.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    job()
}
