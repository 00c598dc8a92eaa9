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

/// What a program's first bytes say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// A `#!` script, and the interpreter its line names.
    Script(PathBuf),
    /// An ELF binary: the kernel loads it.
    Binary,
    /// Neither: the kernel refuses it (`ENOEXEC`), unless a `binfmt_misc`
    /// format takes it, and run as a `user` (fork and `execvp`) glibc's
    /// fallback hands it to `/bin/sh`, which reads it as that user.
    Other,
}

/// What the program at `path` is ([`Head`]): the interpreter its `#!`
/// line names, if it starts with one, read as the kernel reads it (`fs/binfmt_script.c`): at
/// most [`SHEBANG_BYTES`], the line ends at a line feed or a NUL, the name
/// is its first word after `#!` and optional spaces or tabs. `path` is
/// opened without following a symlink (the caller resolved them) and
/// without blocking (a FIFO swapped in does not hang the load). A program
/// that cannot be read is refused: the kernel reads its `#!` line with no
/// permission check, so an unreadable one may still name an interpreter.
/// Without one, a binary (ELF) is told from anything else.
pub(crate) fn head(path: &Path) -> Result<Head, String> {
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
    Ok(match shebang(&head)? {
        Some(i) => Head::Script(i),
        None if head.starts_with(b"\x7fELF") => Head::Binary,
        None => Head::Other,
    })
}

/// [`head`]'s `#!` line, over the first bytes of a program.
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

/// Where users are looked up. Only this file: users of other sources
/// (LDAP, sssd) are not found, as a program without NSS sees them.
pub(crate) const PASSWD: &str = "/etc/passwd";

/// The most bytes of [`PASSWD`] read: far above any real one (some
/// 100,000 users), low enough that a huge or endless file stops.
pub(crate) const MAX_PASSWD_BYTES: u64 = 32 << 20;

/// The longest `user`: Linux user names are at most 32 bytes.
pub(crate) const MAX_USER_NAME: usize = 32;

/// The user `spec` (a name, or a uid in digits) names, from [`PASSWD`]:
/// its uid and its primary group's gid.
pub(crate) fn lookup_user(spec: &str) -> Result<crate::ScriptUser, String> {
    let wanted = parse_user(spec)?;
    let file = std::fs::File::open(PASSWD).map_err(|e| format!("{PASSWD}: {e}"))?;
    let mut passwd = Vec::new();
    file.take(MAX_PASSWD_BYTES + 1)
        .read_to_end(&mut passwd)
        .map_err(|e| format!("{PASSWD}: {e}"))?;
    if passwd.len() as u64 > MAX_PASSWD_BYTES {
        return Err(format!(
            "{PASSWD} is larger than {} MiB: not read",
            MAX_PASSWD_BYTES >> 20
        ));
    }
    let (uid, gid) = find_user(&passwd, &wanted).ok_or_else(|| match wanted {
        Wanted::Name(_) => {
            format!("no user {spec:?} in {PASSWD} (users of LDAP or sssd are not looked up)")
        }
        Wanted::Uid(_) => {
            format!("no user with uid {spec} in {PASSWD}, so its primary group is not known")
        }
    })?;
    Ok(crate::ScriptUser {
        name: spec.to_string(),
        uid,
        gid,
    })
}

/// A user as `user` names it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    Name(String),
    Uid(u32),
}

/// `user` read: digits are a uid, anything else must be a user name as
/// `useradd` allows them (letters, digits, `._-`, not first `-`, maybe a
/// last `$`), so that no `:` or line feed can match across the fields or
/// lines of [`PASSWD`].
pub(crate) fn parse_user(spec: &str) -> Result<Wanted, String> {
    if spec.is_empty() {
        return Err("is empty: give a user name or a numeric uid, or leave the key out to run the program as the appliance's user".into());
    }
    if spec.len() > MAX_USER_NAME {
        return Err(format!(
            "is {} bytes long; a user name has at most {MAX_USER_NAME}",
            spec.len()
        ));
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return match spec.parse::<u32>() {
            Ok(u32::MAX) | Err(_) => Err(format!("{spec} is not a uid (0 to 4294967294)")),
            Ok(uid) => Ok(Wanted::Uid(uid)),
        };
    }
    let body = spec.strip_suffix('$').unwrap_or(spec);
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if body.is_empty() || body.starts_with('-') || !body.bytes().all(allowed) {
        return Err(format!(
            "{spec:?} is not a user name (letters, digits, '.', '_' and '-', not first '-') nor a numeric uid"
        ));
    }
    Ok(Wanted::Name(spec.to_string()))
}

/// The uid and primary gid of the first entry of `passwd` (the file's
/// text) that is `wanted`, as `getpwnam` and `getpwuid` take the first.
/// Lines that are not `name:password:uid:gid:...` with numeric ids, and
/// NIS `+`/`-` lines, are skipped.
pub(crate) fn find_user(passwd: &[u8], wanted: &Wanted) -> Option<(u32, u32)> {
    passwd.split(|&b| b == b'\n').find_map(|line| {
        if line.starts_with(b"+") || line.starts_with(b"-") {
            return None;
        }
        let mut fields = line.split(|&b| b == b':');
        let (name, _, uid, gid) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let id = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u32>().ok();
        let (uid, gid) = (id(uid)?, id(gid)?);
        let hit = match wanted {
            Wanted::Name(n) => name == n.as_bytes(),
            Wanted::Uid(u) => uid == *u,
        };
        hit.then_some((uid, gid))
    })
}

/// Why the appliance, running as `me` (effective uid and gid) with the
/// `effective` capabilities, cannot run a check as `user`, if it cannot:
/// switching to another uid and gid needs `CAP_SETUID` and `CAP_SETGID`,
/// and killing that user's program at its timeout (its process group,
/// another user's) needs `CAP_KILL`. Without them the check would fail at
/// every interval, or hang at its timeout: refused when the file is
/// loaded instead.
pub(crate) fn cannot_switch(
    user: &crate::ScriptUser,
    me: (u32, u32),
    effective: rustix::thread::CapabilityFlags,
) -> Option<String> {
    use rustix::thread::CapabilityFlags as Cap;
    if (user.uid, user.gid) == me {
        return None;
    }
    let missing: Vec<&str> = [
        (Cap::SETUID, "CAP_SETUID"),
        (Cap::SETGID, "CAP_SETGID"),
        (Cap::KILL, "CAP_KILL"),
    ]
    .into_iter()
    .filter(|(cap, _)| !effective.contains(*cap))
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "the appliance (uid {}, gid {}) cannot run the check as user {} (uid {}, gid {}): it lacks {} (run it as root, with the systemd unit's capabilities, or leave `user` out)",
        me.0,
        me.1,
        user.name,
        user.uid,
        user.gid,
        missing.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_read_bounded_and_found_in_passwd() {
        assert_eq!(parse_user("nobody"), Ok(Wanted::Name("nobody".into())));
        assert_eq!(parse_user("65534"), Ok(Wanted::Uid(65534)));
        assert_eq!(parse_user("machine$"), Ok(Wanted::Name("machine$".into())));
        for bad in [
            "",
            "-x",
            "a:b",
            "a\nb",
            "$",
            "a b",
            "é",
            "4294967295",
            "99999999999",
        ] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
        assert!(parse_user(&"a".repeat(33))
            .unwrap_err()
            .contains("at most 32"));
        let passwd = b"root:x:0:0:root:/root:/bin/bash\n+nis::1:1\nbroken:x:zz:1\nshort:x:5\nnobody:x:65534:65533:nobody:/:/sbin/nologin\nnobody:x:1:1::/:\nalias:x:65534:7::/:";
        let find = |w: &str| find_user(passwd, &parse_user(w).unwrap());
        assert_eq!(find("nobody"), Some((65534, 65533)), "the first entry");
        assert_eq!(find("65534"), Some((65534, 65533)));
        assert_eq!(find("0"), Some((0, 0)));
        assert_eq!(find("broken"), None);
        assert_eq!(find("short"), None);
        assert_eq!(find("nis"), None);
        assert_eq!(find("5"), None);
        assert_eq!(find_user(b"", &Wanted::Uid(0)), None);
    }

    #[test]
    fn switching_users_needs_setuid_setgid_and_kill() {
        use rustix::thread::CapabilityFlags as Cap;
        let nobody = crate::ScriptUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        let all = Cap::SETUID | Cap::SETGID | Cap::KILL;
        assert_eq!(cannot_switch(&nobody, (0, 0), all), None);
        assert_eq!(cannot_switch(&nobody, (65534, 65534), Cap::empty()), None);
        let e = cannot_switch(&nobody, (0, 0), Cap::SETUID | Cap::SETGID).unwrap();
        assert!(
            e.contains("lacks CAP_KILL") && e.contains("user nobody (uid 65534"),
            "{e}"
        );
        let e = cannot_switch(&nobody, (1000, 1000), Cap::empty()).unwrap();
        assert!(e.contains("lacks CAP_SETUID, CAP_SETGID, CAP_KILL"), "{e}");
        // Its own uid but another group: setgid needs the capability.
        assert!(cannot_switch(&nobody, (65534, 100), Cap::empty()).is_some());
    }

    #[test]
    fn a_shebang_is_read_as_the_kernel_reads_it() {
        let name = |h: &[u8]| shebang(h).map(|p| p.map(|p| p.display().to_string()));
        assert_eq!(name(b"\x7fELF\x02\x01"), Ok(None));
        assert_eq!(name(b""), Ok(None));
        assert_eq!(name(b"# !/bin/sh\n"), Ok(None));
        assert_eq!(name(b"#!/bin/sh\nexit 0\n").unwrap().unwrap(), "/bin/sh");
        assert_eq!(name(b"#! \t/bin/sh -e\n").unwrap().unwrap(), "/bin/sh");
        assert_eq!(
            name(b"#!/usr/bin/env python3\n").unwrap().unwrap(),
            "/usr/bin/env"
        );
        assert_eq!(
            name(b"#!/bin/sh").unwrap().unwrap(),
            "/bin/sh",
            "no newline"
        );
        assert_eq!(name(b"#!/bin/sh\0/x\n").unwrap().unwrap(), "/bin/sh");
        assert!(name(b"#!\n").unwrap_err().contains("names no interpreter"));
        assert!(name(b"#!   \n")
            .unwrap_err()
            .contains("names no interpreter"));
        assert!(name(b"#!sh\n")
            .unwrap_err()
            .contains("not an absolute path"));
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
