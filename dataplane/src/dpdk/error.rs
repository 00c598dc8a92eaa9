use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: which operation, DPDK's errno and its text, and, where
/// we know one, what the operator can try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
    pub hint: &'static str,
}

impl DpdkError {
    /// Builds an error from the negative return code (`-errno`) of a call
    /// that reports its error that way, as every `rte_eth_*` call and
    /// `rte_eal_remote_launch` do: -1 is `-EPERM` there, not "see
    /// `rte_errno`" (found in review: a refused operation was reported
    /// with whatever `rte_errno` held). A call that returns NULL or -1 and
    /// sets `rte_errno` takes [`DpdkError::from_errno`].
    pub(crate) fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        let errno = if ret < 0 {
            ret.checked_neg().unwrap_or(i32::MAX)
        } else {
            current_errno()
        };
        DpdkError {
            op: op.into(),
            errno,
            hint: "",
        }
    }

    pub(crate) fn from_errno(op: impl Into<String>) -> Self {
        DpdkError {
            op: op.into(),
            errno: current_errno(),
            hint: "",
        }
    }

    pub(crate) fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = hint;
        self
    }

    /// DPDK's text for the errno (it knows its own codes beyond libc's).
    pub fn reason(&self) -> String {
        if self.errno == 0 {
            // Some drivers fail with -1 and leave rte_errno alone.
            return "the driver gave no reason (see the EAL log above)".to_string();
        }
        // SAFETY: rte_strerror returns a pointer to a NUL-terminated string
        // owned by DPDK (static or thread-local), valid until the next call
        // on this thread; we copy it at once.
        let s = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.errno)) };
        s.to_string_lossy().into_owned()
    }
}

fn current_errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno; no preconditions.
    unsafe { dpdk_sys::lb_rte_errno() }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            self.reason(),
            self.errno
        )?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for DpdkError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_return_is_its_errno_minus_one_included() {
        assert_eq!(DpdkError::from_ret("op", -1).errno, libc::EPERM);
        assert_eq!(DpdkError::from_ret("op", -libc::ENODEV).errno, libc::ENODEV);
        assert_eq!(DpdkError::from_ret("op", i32::MIN).errno, i32::MAX);
    }
}
