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

/// Why another user than root or `me` could write to the entry at `path`
/// (`meta`, not followed if a symlink; for a folder, remove or rename what
/// is in it), if they could: its owner is not root or `me`, every user may
/// write to it, its group may and it is not root's group, or its POSIX
/// ACL lets a named user or group write (found in review: with `setfacl
/// -m u:deploy:rwx` on a root-owned file, the group bits show the ACL's
/// mask, and group root passed).
pub fn others_may_write(path: &Path, meta: &Metadata, me: u32) -> Option<String> {
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
    } else if meta.file_type().is_symlink() {
        None
    } else {
        acl_lets_others_write(path, me)
    }
}

/// The extended attribute a POSIX access ACL is kept in.
const ACL_ACCESS: &str = "system.posix_acl_access";

/// Why `path`'s access ACL lets a user other than root or `me`, or a
/// group other than root's, write to it, if it does: a named user or
/// group entry with write, within the ACL's mask. An ACL that cannot be
/// read (too large, malformed) is taken to let others write.
fn acl_lets_others_write(path: &Path, me: u32) -> Option<String> {
    // Large enough for some 500 entries; anything larger is refused.
    let mut buf = vec![0u8; 4 + 8 * 512];
    let len = match rustix::fs::lgetxattr(path, ACL_ACCESS, &mut buf[..]) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::OPNOTSUPP => {
            return None;
        }
        Err(e) => return Some(format!("its ACL could not be read ({e})")),
    };
    acl_writers(&buf[..len.min(buf.len())], me)
}

/// [`acl_lets_others_write`] over an ACL as the kernel gives it: a 4-byte
/// version (2), then entries of a 2-byte tag, 2-byte permissions and
/// 4-byte id, little-endian.
fn acl_writers(acl: &[u8], me: u32) -> Option<String> {
    const USER: u16 = 0x02;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const WRITE: u16 = 0x02;
    let malformed = || Some("its ACL is malformed".to_string());
    let Some((version, entries)) = acl.split_first_chunk::<4>() else {
        return malformed();
    };
    if u32::from_le_bytes(*version) != 2 || entries.len() % 8 != 0 {
        return malformed();
    }
    let parse = |e: &[u8]| {
        (
            u16::from_le_bytes([e[0], e[1]]),
            u16::from_le_bytes([e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        )
    };
    let mask = entries
        .chunks_exact(8)
        .map(parse)
        .find(|&(tag, _, _)| tag == MASK)
        .map_or(0xffff, |(_, perm, _)| perm);
    entries
        .chunks_exact(8)
        .map(parse)
        .find_map(|(tag, perm, id)| {
            let writes = perm & mask & WRITE != 0;
            match tag {
                USER if writes && id != 0 && id != me => {
                    Some(format!("its ACL lets user {id} write to it"))
                }
                GROUP if writes && id != 0 => Some(format!("its ACL lets group {id} write to it")),
                _ => None,
            }
        })
}

/// Walks `path` from `/` without following symlinks by the kernel: every
/// folder on the way, and every symlink (followed by hand, at most 40),
/// must be such that no user but root or `me` could swap the next entry:
/// a symlink must be root's or `me`'s, and an entry of a folder others
/// may write to must be root's or `me`'s in a sticky folder of root's or
/// `me`'s (as `/tmp` is). Returns what the path names in the end (not a
/// symlink) and where, symlinks resolved; whether others may write to
/// that is the caller's to ask ([`others_may_write`]), as is what it must
/// be.
pub fn walk(path: &Path, me: u32) -> Result<(PathBuf, Metadata), Unsafe> {
    walk_within(path, me, 0, &mut |_, _| {})
}

/// [`walk`], handing `searched` every folder the walk looks an entry up
/// in (each one the kernel needs search permission on to reach the path,
/// symlinks followed), in order.
pub fn walk_searching(
    path: &Path,
    me: u32,
    searched: &mut dyn FnMut(&Path, &Metadata),
) -> Result<(PathBuf, Metadata), Unsafe> {
    walk_within(path, me, 0, searched)
}

fn walk_within(
    path: &Path,
    me: u32,
    depth: usize,
    searched: &mut dyn FnMut(&Path, &Metadata),
) -> Result<(PathBuf, Metadata), Unsafe> {
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
        searched(&at, &above);
        let next = at.join(part);
        let meta = std::fs::symlink_metadata(&next).map_err(|e| {
            Unsafe::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", next.display()),
            ))
        })?;
        // An entry of a folder others may write to: only sticky keeps
        // them from removing it, and only if it is not theirs.
        if let Some(why) = others_may_write(&at, &above, me) {
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
            return walk_within(&resolved, me, depth + 1, searched);
        }
        at = next;
        above = meta;
    }
    Ok((at, above))
}

/// Read permission, as a mode's and an ACL entry's bits have it.
pub const READ: u16 = 4;
/// Execute permission (search, on a folder).
pub const EXECUTE: u16 = 1;

/// Why a process of `uid` and `gid` alone (no supplementary groups, not
/// root) may not have `want` ([`READ`], [`EXECUTE`] or both) on the entry
/// at `path` (`meta`, not a symlink), if it may not: its mode, or its
/// POSIX access ACL as the kernel evaluates one (acl(5)). What the kernel
/// adds beyond (a read-only or `noexec` mount, an LSM) is not looked at.
pub fn denied_to(path: &Path, meta: &Metadata, uid: u32, gid: u32, want: u16) -> Option<Denied> {
    let mut buf = vec![0u8; 4 + 8 * 512];
    let acl = match rustix::fs::lgetxattr(path, ACL_ACCESS, &mut buf[..]) {
        Ok(n) => Some(&buf[..n.min(buf.len())]),
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::OPNOTSUPP => None,
        Err(e) => return Some(Denied::Unknown(format!("its ACL could not be read ({e})"))),
    };
    let mode = meta.mode();
    let file = Owners {
        mode: mode as u16 & 0o777,
        owner: meta.uid(),
        group: meta.gid(),
    };
    match grants(&file, acl, uid, gid, want) {
        Ok(true) => None,
        Ok(false) => Some(Denied::By(format!(
            "mode {:04o}, owner uid {}, group gid {}{}",
            mode & 0o7777,
            file.owner,
            file.group,
            if acl.is_some() { ", and an ACL" } else { "" }
        ))),
        Err(why) => Some(Denied::Unknown(why)),
    }
}

/// Why [`denied_to`] did not grant an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The mode or the ACL refuses it: what they are.
    By(String),
    /// Whether they do cannot be told (an ACL that cannot be read or is
    /// malformed): why; refused as a denial is.
    Unknown(String),
}

/// An entry's permission bits and owners.
#[derive(Debug, Clone, Copy)]
struct Owners {
    mode: u16,
    owner: u32,
    group: u32,
}

/// Whether `uid`, `gid` (no other groups, not root) get `want` on `file`
/// with the access ACL `acl` (as the kernel gives it, see
/// [`acl_writers`]), acl(5)'s algorithm: the owner gets the owner's bits;
/// a named user its entry within the mask; a member of the owning group
/// or of a named group gets `want` if one of those entries grants it
/// within the mask, and nothing else; anyone else the other bits. Without
/// an ACL the mode's three classes are the same algorithm, and so with an
/// ACL whose mask is empty (the mode's group bits all clear): the kernel
/// then does not look at the ACL, and a named user gets the other bits.
fn grants(
    file: &Owners,
    acl: Option<&[u8]>,
    uid: u32,
    gid: u32,
    want: u16,
) -> Result<bool, String> {
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    let has = |perm: u16| perm & want == want;
    // The owner gets the mode's owner bits, ACL or not; and the kernel
    // looks at the ACL only when the mode's group bits (its mask) are not
    // all clear (`acl_permission_check` in fs/namei.c; found in review:
    // with an empty mask a named user gets the other bits, and was
    // refused).
    if uid == file.owner {
        return Ok(has(file.mode >> 6));
    }
    let acl = match acl {
        Some(acl) if file.mode & 0o070 != 0 => acl,
        _ => {
            return Ok(if gid == file.group {
                has(file.mode >> 3)
            } else {
                has(file.mode)
            })
        }
    };
    let malformed = || Err("its ACL is malformed".to_string());
    let Some((version, entries)) = acl.split_first_chunk::<4>() else {
        return malformed();
    };
    if u32::from_le_bytes(*version) != 2 || entries.len() % 8 != 0 {
        return malformed();
    }
    let entries: Vec<(u16, u16, u32)> = entries
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    let tagged = |tag: u16| entries.iter().find(|e| e.0 == tag).map(|e| e.1);
    let mask = tagged(MASK).unwrap_or(0o7);
    if let Some(&(_, perm, _)) = entries.iter().find(|e| e.0 == USER && e.2 == uid) {
        return Ok(has(perm & mask));
    }
    let mut member = false;
    for &(tag, perm, id) in &entries {
        let matches = (tag == GROUP_OBJ && gid == file.group) || (tag == GROUP && gid == id);
        if matches {
            member = true;
            if has(perm & mask) {
                return Ok(true);
            }
        }
    }
    if member {
        return Ok(false);
    }
    Ok(has(tagged(OTHER).unwrap_or(file.mode)))
}

#[cfg(test)]
mod tests {
    use super::{acl_writers, grants, Owners, EXECUTE, READ};

    /// acl(5)'s access check, on the mode alone and through an ACL.
    #[test]
    fn who_may_execute_by_mode_and_acl() {
        const USER: u32 = 65534;
        const GROUP: u32 = 65533;
        let file = |mode, owner, group| Owners { mode, owner, group };
        let by_mode = |f: &Owners, want| grants(f, None, USER, GROUP, want).unwrap();
        assert!(by_mode(&file(0o755, 0, 0), EXECUTE));
        assert!(by_mode(&file(0o755, 0, 0), READ | EXECUTE));
        assert!(!by_mode(&file(0o750, 0, 0), EXECUTE), "not in root's group");
        assert!(by_mode(&file(0o750, 0, GROUP), EXECUTE), "its group");
        assert!(
            !by_mode(&file(0o710, 0, GROUP), READ | EXECUTE),
            "a script needs read too"
        );
        assert!(
            by_mode(&file(0o710, 0, GROUP), EXECUTE),
            "a binary does not"
        );
        assert!(
            !by_mode(&file(0o007, USER, 0), EXECUTE),
            "the owner gets the owner's bits"
        );
        assert!(
            !by_mode(&file(0o707, 0, GROUP), EXECUTE),
            "the group gets the group's"
        );
        assert!(by_mode(&file(0o100, USER, 0), EXECUTE));

        let with = |f: &Owners, entries: &[(u16, u16, u32)], want| {
            grants(f, Some(&acl(entries)), USER, GROUP, want)
        };
        let base = [
            (0x01, 7, u32::MAX),
            (0x04, 5, u32::MAX),
            (0x20, 0, u32::MAX),
        ];
        let plus = |more: &[(u16, u16, u32)]| {
            let mut e = base.to_vec();
            e.extend_from_slice(more);
            e
        };
        let root = file(0o750, 0, 0);
        assert_eq!(with(&root, &base, EXECUTE), Ok(false));
        // A named user, within the mask.
        assert_eq!(
            with(&root, &plus(&[(0x02, 5, USER), (0x10, 7, 0)]), EXECUTE),
            Ok(true)
        );
        assert_eq!(
            with(&root, &plus(&[(0x02, 5, USER), (0x10, 4, 0)]), EXECUTE),
            Ok(false)
        );
        // A named user's entry decides, even against other's bits.
        let open = [
            (0x01, 7, u32::MAX),
            (0x04, 5, u32::MAX),
            (0x20, 5, u32::MAX),
        ];
        let mut no = open.to_vec();
        no.extend([(0x02, 0, USER), (0x10, 7, 0)]);
        assert_eq!(with(&root, &no, EXECUTE), Ok(false));
        // A named group; a member of a group that grants nothing gets
        // nothing, whatever other's bits say.
        assert_eq!(
            with(&root, &plus(&[(0x08, 1, GROUP), (0x10, 7, 0)]), EXECUTE),
            Ok(true)
        );
        // The mask cuts a group entry too (review: no test caught its
        // loss), and the owning group's.
        assert_eq!(
            with(&root, &plus(&[(0x08, 7, GROUP), (0x10, 4, 0)]), EXECUTE),
            Ok(false)
        );
        assert_eq!(
            with(
                &file(0o750, 0, GROUP),
                &[
                    (0x01, 7, u32::MAX),
                    (0x04, 5, u32::MAX),
                    (0x10, 4, 0),
                    (0x20, 0, u32::MAX)
                ],
                EXECUTE
            ),
            Ok(false)
        );
        let mut member = open.to_vec();
        member.extend([(0x08, 4, GROUP), (0x10, 7, 0)]);
        assert_eq!(with(&root, &member, EXECUTE), Ok(false));
        // The owner's entry for the owner.
        assert_eq!(with(&file(0o750, USER, 0), &base, READ | EXECUTE), Ok(true));
        // Malformed.
        assert!(grants(&root, Some(&[2, 0, 0]), USER, GROUP, EXECUTE).is_err());
    }

    /// Found in review: the kernel looks at a file's ACL only when the
    /// mode's group bits (the ACL's mask) are not all clear
    /// (`acl_permission_check` in fs/namei.c: `IS_POSIXACL(inode) && (mode
    /// & S_IRWXG)`); with an empty mask (`chmod 705` of a file with ACL
    /// entries), a named user or a member of a named group that is not the
    /// owning group gets the other bits, as the mode alone gives them.
    /// Checked against the kernel by running such files as `nobody`.
    #[test]
    fn an_empty_mask_leaves_named_entries_to_the_mode() {
        const USER: u32 = 65534;
        const GROUP: u32 = 65533;
        let root = Owners {
            mode: 0o705,
            owner: 0,
            group: 0,
        };
        let named_user = acl(&[
            (0x01, 7, u32::MAX),
            (0x02, 7, USER),
            (0x04, 0, u32::MAX),
            (0x10, 0, u32::MAX),
            (0x20, 5, u32::MAX),
        ]);
        assert_eq!(
            grants(&root, Some(&named_user), USER, GROUP, READ | EXECUTE),
            Ok(true),
            "a named user, with an empty mask, gets the other bits"
        );
        let named_group = acl(&[
            (0x01, 7, u32::MAX),
            (0x04, 0, u32::MAX),
            (0x08, 0, GROUP),
            (0x10, 0, u32::MAX),
            (0x20, 5, u32::MAX),
        ]);
        assert_eq!(
            grants(&root, Some(&named_group), USER, GROUP, READ | EXECUTE),
            Ok(true),
            "so does a member of a named group"
        );
        // The owning group's members still get its (empty) bits.
        let theirs = Owners {
            group: GROUP,
            ..root
        };
        assert_eq!(
            grants(&theirs, Some(&named_group), USER, GROUP, EXECUTE),
            Ok(false)
        );
    }

    /// An ACL as the kernel gives it, from (tag, permissions, id).
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut a = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            a.extend(tag.to_le_bytes());
            a.extend(perm.to_le_bytes());
            a.extend(id.to_le_bytes());
        }
        a
    }

    #[test]
    fn an_acl_names_who_else_may_write() {
        const ME: u32 = 1000;
        let base = [
            (0x01, 7, u32::MAX),
            (0x04, 5, u32::MAX),
            (0x20, 5, u32::MAX),
        ];
        let with = |more: &[(u16, u16, u32)]| {
            let mut e = base.to_vec();
            e.extend_from_slice(more);
            acl_writers(&acl(&e), ME)
        };
        assert_eq!(with(&[]), None, "the mode's three alone");
        assert_eq!(
            with(&[(0x02, 7, 12345), (0x10, 7, u32::MAX)]).as_deref(),
            Some("its ACL lets user 12345 write to it")
        );
        assert_eq!(
            with(&[(0x08, 6, 50), (0x10, 7, u32::MAX)]).as_deref(),
            Some("its ACL lets group 50 write to it")
        );
        // Within the mask only; root and we may.
        assert_eq!(with(&[(0x02, 7, 12345), (0x10, 5, u32::MAX)]), None);
        assert_eq!(
            with(&[
                (0x02, 7, 0),
                (0x02, 7, ME),
                (0x08, 7, 0),
                (0x10, 7, u32::MAX)
            ]),
            None
        );
        assert_eq!(
            with(&[(0x02, 5, 12345), (0x10, 7, u32::MAX)]),
            None,
            "read only"
        );
        // What cannot be read is taken to let others write.
        assert!(acl_writers(&[2, 0, 0], ME).is_some());
        assert!(acl_writers(&acl(&base)[..9], ME).is_some());
        assert!(acl_writers(&[1, 0, 0, 0], ME).is_some(), "another version");
    }
}
