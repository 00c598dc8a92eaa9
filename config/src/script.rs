//! What a script health check runs, looked at when the file is loaded:
//! the interpreter a `#!` line of its program names (the kernel runs it,
//! as root under the unit, whatever the program's owner), and the user it
//! runs as (`[services.health_check] user`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most bytes of a program the kernel reads for its `#!` line
/// (`BINPRM_BUF_SIZE`); so do we.
pub(crate) const SHEBANG_BYTES: usize = 256;

/// How many `#!` programs the kernel runs one through the other before it
/// gives up (`ELOOP`): a script whose interpreter is a script, and so on.
pub(crate) const MAX_INTERPRETERS: usize = 4;

/// The interpreter the `#!` line of the program at `path` names, if it
/// starts with one, read as the kernel reads it (`fs/binfmt_script.c`): at
/// most [`SHEBANG_BYTES`], the line ends at a line feed or a NUL, the name
/// is its first word after `#!` and optional spaces or tabs. `path` is
/// opened without following a symlink (the caller resolved them) and
/// without blocking (a FIFO swapped in does not hang the load). A program
/// that cannot be read is refused: the kernel reads its `#!` line with no
/// permission check, so an unreadable one may still name an interpreter.
pub(crate) fn interpreter(path: &Path) -> Result<Option<PathBuf>, String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        format!("could not be read to look for a #! line ({e}); give root read permission")
    })?;
    let file = std::fs::File::from(fd);
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err("is not a regular file".into()),
        Err(e) => return Err(format!("could not be looked at ({e})")),
    }
    let mut head = Vec::with_capacity(SHEBANG_BYTES);
    file.take(SHEBANG_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("could not be read to look for a #! line ({e})"))?;
    shebang(&head)
}

/// [`interpreter`] over the first bytes of a program.
pub(crate) fn shebang(head: &[u8]) -> Result<Option<PathBuf>, String> {
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let ended = rest.iter().position(|&b| b == b'\n' || b == 0);
    let line = &rest[..ended.unwrap_or(rest.len())];
    let spacetab = |b: &u8| *b == b' ' || *b == b'\t';
    let Some(start) = line.iter().position(|b| !spacetab(b)) else {
        return Err("has a #! line that names no interpreter".into());
    };
    let word = &line[start..];
    let end = word.iter().position(spacetab);
    // The whole buffer without the end of the line nor of the name: the
    // kernel cannot tell the name is whole, and refuses to run it.
    if ended.is_none() && end.is_none() && head.len() >= SHEBANG_BYTES {
        return Err(format!(
            "has a #! line whose interpreter does not end within its first {SHEBANG_BYTES} bytes"
        ));
    }
    let name = Path::new(OsStr::from_bytes(&word[..end.unwrap_or(word.len())]));
    if !name.is_absolute() {
        return Err(format!(
            "has a #! line naming {}, which is not an absolute path (it would be looked for from the appliance's working folder)",
            name.display()
        ));
    }
    Ok(Some(name.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shebang_is_read_as_the_kernel_reads_it() {
        let name = |h: &[u8]| shebang(h).map(|p| p.map(|p| p.display().to_string()));
        assert_eq!(name(b"\x7fELF\x02\x01"), Ok(None));
        assert_eq!(name(b""), Ok(None));
        assert_eq!(name(b"# !/bin/sh\n"), Ok(None));
        assert_eq!(name(b"#!/bin/sh\nexit 0\n").unwrap().unwrap(), "/bin/sh");
        assert_eq!(name(b"#! \t/bin/sh -e\n").unwrap().unwrap(), "/bin/sh");
        assert_eq!(name(b"#!/usr/bin/env python3\n").unwrap().unwrap(), "/usr/bin/env");
        assert_eq!(name(b"#!/bin/sh").unwrap().unwrap(), "/bin/sh", "no newline");
        assert_eq!(name(b"#!/bin/sh\0/x\n").unwrap().unwrap(), "/bin/sh");
        assert!(name(b"#!\n").unwrap_err().contains("names no interpreter"));
        assert!(name(b"#!   \n").unwrap_err().contains("names no interpreter"));
        assert!(name(b"#!sh\n").unwrap_err().contains("not an absolute path"));
        // A name that fills the buffer may be cut: refused.
        let mut long = b"#!/".to_vec();
        long.resize(SHEBANG_BYTES, b'a');
        assert!(name(&long).unwrap_err().contains("does not end"));
        // A long argument after a whole name is fine, as for the kernel.
        let mut long_arg = b"#!/bin/sh ".to_vec();
        long_arg.resize(SHEBANG_BYTES, b'a');
        assert_eq!(name(&long_arg).unwrap().unwrap(), "/bin/sh");
    }
}
