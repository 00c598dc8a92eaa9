//! Whether a path is one only root (or the appliance's own user) could
//! change: what the control socket's folder must be (another user could
//! otherwise replace the socket) and what a script health check's program
//! must be (it runs as root: another user who could change it would run
//! their code as root). Looked at without following symlinks, from `/`,
//! as keepalived's `enable_script_security` does for its scripts.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why the walk refused a path.
#[derive(Debug)]
pub enum Unsafe {
    /// Another user could change it: the reason.
    Others(String),
    /// It could not be looked at.
    Io(std::io::Error),
}

/// Why another user than root or `me` could write to an entry (and, for a
/// folder, remove or rename what is in it), if they could: its owner is
/// not root or `me`, every user may write to it, or its group may and it
/// is not root's group.
pub fn others_may_write(meta: &Metadata, me: u32) -> Option<String> {
    let (mode, owner, group) = (meta.mode(), meta.uid(), meta.gid());
    if owner != me && owner != 0 {
        Some(format!("it belongs to user {owner}"))
    } else if mode & 0o002 != 0 {
        Some(format!(
            "every user may write to it (mode {:04o})",
            mode & 0o7777
        ))
    } else if mode & 0o020 != 0 && group != 0 {
        Some(format!(
            "its group (gid {group}) may write to it (mode {:04o})",
            mode & 0o7777
        ))
    } else {
        None
    }
}

/// Walks `path` from `/` without following symlinks by the kernel: every
/// folder on the way, and every symlink (followed by hand, at most 40),
/// must be such that no user but root or `me` could swap the next entry:
/// a symlink must be root's or `me`'s, and an entry of a folder others
/// may write to must be root's or `me`'s in a sticky folder of root's or
/// `me`'s (as `/tmp` is). Returns what the path names in the end (not a
/// symlink); whether others may write to that is the caller's to ask
/// ([`others_may_write`]), as is what it must be.
pub fn walk(path: &Path, me: u32) -> Result<Metadata, Unsafe> {
    walk_within(path, me, 0)
}

fn walk_within(path: &Path, me: u32, depth: usize) -> Result<Metadata, Unsafe> {
    if depth > 40 {
        return Err(Unsafe::Others("too many levels of symbolic links".into()));
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(Unsafe::Io)?.join(path)
    };
    let mut at = PathBuf::from("/");
    let mut above = std::fs::symlink_metadata(&at).map_err(Unsafe::Io)?;
    let mut parts = absolute.components().skip(1).peekable();
    while let Some(part) = parts.next() {
        let next = at.join(part);
        let meta = std::fs::symlink_metadata(&next).map_err(|e| {
            Unsafe::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", next.display()),
            ))
        })?;
        // An entry of a folder others may write to: only sticky keeps
        // them from removing it, and only if it is not theirs.
        if let Some(why) = others_may_write(&above, me) {
            let (owner, sticky) = (above.uid(), above.mode() & 0o1000 != 0);
            if owner != me && owner != 0 {
                return Err(Unsafe::Others(format!(
                    "{} is in {}: {why}",
                    next.display(),
                    at.display()
                )));
            }
            if !sticky {
                return Err(Unsafe::Others(format!(
                    "{} is in {}, which is not sticky: {why}",
                    next.display(),
                    at.display()
                )));
            }
            let entry_owner = meta.uid();
            if entry_owner != me && entry_owner != 0 {
                return Err(Unsafe::Others(format!(
                    "{} belongs to user {entry_owner} and is in {}: {why}",
                    next.display(),
                    at.display()
                )));
            }
        }
        if meta.file_type().is_symlink() {
            let owner = meta.uid();
            if owner != me && owner != 0 {
                return Err(Unsafe::Others(format!(
                    "{} is a symbolic link of user {owner}, who may point it elsewhere at any time",
                    next.display()
                )));
            }
            // What it names, from `/`, then the rest of the path there.
            let to = std::fs::read_link(&next).map_err(Unsafe::Io)?;
            let mut resolved = at.join(to);
            resolved.extend(parts);
            return walk_within(&resolved, me, depth + 1);
        }
        at = next;
        above = meta;
    }
    Ok(above)
}
