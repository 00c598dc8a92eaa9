use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::DpdkError;
use super::lcore::LcoreId;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is initialised in this process. There is at most one,
/// and it is never torn down: DPDK memory (mempools, mbufs) stays valid until
/// the process exits, which is what makes the other wrappers sound.
#[derive(Debug)]
pub struct Eal {
    info: EalInfo,
}

/// What the EAL found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalInfo {
    pub main_lcore: LcoreId,
    pub lcore_count: u32,
    pub socket_id: u32,
}

impl Eal {
    /// Runs `rte_eal_init` with `args` exactly as given (argv[0] is added).
    /// The EAL can be initialised once per process; a second call fails.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                op: "rte_eal_init".into(),
                errno: libc_ealready(),
                hint: "the EAL can be initialised only once per process",
            });
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("lb-appliance").expect("no NUL"));
        for a in args {
            match CString::new(a.as_ref()) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    return Err(DpdkError {
                        op: format!("EAL argument {:?}", a.as_ref()),
                        errno: 22,
                        hint: "an EAL argument must not contain a NUL byte",
                    })
                }
            }
        }
        // The EAL may keep pointers into argv (it reorders it and keeps some
        // strings): give it storage that lives as long as the process,
        // writable as `char **argv` says (found in audit: the pointers came
        // from `CString::as_ptr`, a shared borrow).
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc pointers to valid, writable NUL-terminated
        // strings (`CString::into_raw`, never taken back: they live for the
        // rest of the process); this is the only EAL initialisation (the
        // flag above), made before any other DPDK call.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(
                DpdkError::from_errno("EAL initialisation (rte_eal_init)").with_hint(
                    "check [dpdk] eal_args: without hugepages use --no-huge -m 512; with them, \
                 mount hugetlbfs and reserve pages (scripts/bind-nics.sh); check that every \
                 device exists and its driver is bound",
                ),
            );
        }
        // SAFETY: the EAL is initialised; these read its configuration.
        let info = unsafe {
            EalInfo {
                main_lcore: LcoreId(dpdk_sys::rte_get_main_lcore()),
                lcore_count: dpdk_sys::rte_lcore_count(),
                socket_id: dpdk_sys::rte_socket_id(),
            }
        };
        Ok(Eal { info })
    }

    pub fn info(&self) -> &EalInfo {
        &self.info
    }

    /// Ticks of [`super::rdtsc`] per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: the EAL is initialised (self exists); a plain getter.
        unsafe { dpdk_sys::rte_get_tsc_hz() }
    }

    /// Whether `lcore` is one the EAL runs (listed in `-l`/`--lcores`).
    pub fn lcore_enabled(&self, lcore: LcoreId) -> bool {
        if lcore.0 >= dpdk_sys::RTE_MAX_LCORE {
            return false;
        }
        // SAFETY: the EAL is initialised and the id is below RTE_MAX_LCORE.
        unsafe { dpdk_sys::rte_lcore_is_enabled(lcore.0) != 0 }
    }
}

fn libc_ealready() -> i32 {
    114 // EALREADY on Linux
}
