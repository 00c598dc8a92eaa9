//! Log lines for the systemd journal. When systemd connects stderr to the
//! journal it says so in `$JOURNAL_STREAM` (`DEV:INODE` of that stream), and
//! journald then reads a `<N>` prefix on each line as its syslog priority
//! (`sd-daemon(3)`), so `journalctl -p err` finds the errors. journald
//! stamps each line itself, so the prefix replaces our timestamp.
//! Elsewhere (a terminal, a file, a wrapper that moved stderr) the usual
//! format stays.
#![deny(unsafe_code)]

use std::os::unix::fs::MetadataExt;

/// Whether stderr is the journal stream `$JOURNAL_STREAM` names: it must
/// be the very stream, not one a child inherited the variable beside.
pub fn stderr_is_journal() -> bool {
    std::env::var("JOURNAL_STREAM")
        .ok()
        .is_some_and(|v| names_stderr(&v))
}

/// Whether `value` (`DEV:INODE`, decimal) names our stderr.
fn names_stderr(value: &str) -> bool {
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // stat() of /proc/self/fd/2 is fstat(2) of the descriptor, also for
    // a socket (journald's stream is one), without unsafe code.
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a log level (sd-daemon.h: `SD_ERR` 3,
/// `SD_WARNING` 4, `SD_INFO` 6, `SD_DEBUG` 7).
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `text` with `<priority>` before each of its lines: journald takes every
/// line as an entry of its own, and a continuation line without the
/// prefix would fall to the default priority (info), out of `-p err`.
pub fn prefixed(priority: u8, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("<{priority}>{line}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_sd_daemon_priorities() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
        assert_eq!(priority(log::Level::Trace), 7);
    }

    #[test]
    fn every_line_carries_the_prefix() {
        assert_eq!(
            prefixed(3, "refused:\n  a\n  b"),
            "<3>refused:\n<3>  a\n<3>  b"
        );
        assert_eq!(prefixed(6, "one line"), "<6>one line");
    }

    #[test]
    fn only_our_own_stderr_is_the_journal() {
        let fd2 = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(names_stderr(&format!("{}:{}", fd2.dev(), fd2.ino())));
        assert!(!names_stderr(&format!("{}:{}", fd2.dev(), fd2.ino() + 1)));
        assert!(!names_stderr("garbage"));
        assert!(!names_stderr("1:"));
    }
}
