//! Found in audit: what a local unprivileged user could do to the operator's
//! `lb-appliance ctl save --output` (run by root). Each test failed on
//! the audited code; they need root (to act as another user) and are
//! skipped without it (a failure under LB_REQUIRE_PRIVILEGED_TESTS=1). They start no appliance:
//! the control socket is served by the test itself (as root) or by a
//! helper it runs as uid 65534, which it kills by its PID.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use common::{TempDir, BIN};

/// Serves `answers` requests on a socket at `path`, as this (root)
/// process, each answered with `{"ok": true, "text": text}`.
fn serve_as_root(path: &Path, answers: usize, text: &str) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    let line = format!("{}\n", serde_json::json!({"ok": true, "text": text}));
    std::thread::spawn(move || {
        for _ in 0..answers {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = String::new();
            BufReader::new(&c).read_line(&mut req).unwrap();
            let _ = c.write_all(line.as_bytes());
        }
    })
}

/// Runs `/usr/bin/python3` as uid and gid 65534: binds a Unix socket at
/// `path` (mode 0666) and answers one request with `{"ok": true, "text":
/// text}`. The child, to kill by its PID.
fn serve_as_nobody(path: &Path, text: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let script = r#"
import os, socket, sys
path, reply = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(4)
print("ready", flush=True)
c, _ = s.accept()
c.makefile("rb").readline()
c.sendall(reply.encode() + b"\n")
c.close()
"#;
    let reply = serde_json::json!({"ok": true, "text": text}).to_string();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .arg(reply)
        .current_dir("/")
        .gid(65534)
        .uid(65534)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 as nobody");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the helper did not start");
    child
}

fn save(socket: &Path, output: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .arg("save")
        .arg("--output")
        .arg(output)
        .output()
        .expect("run lb-appliance ctl save")
}

/// Found in audit: `ctl save --output FILE` gives the new file "the
/// old file's mode and owner". In a folder anyone may write to (`/tmp`),
/// a local user who creates FILE first (mode 0666) gets root's saved
/// configuration as their own file, writable by all: they can then edit
/// it (add a script health check) before the operator installs it as
/// `/etc/lb-appliance/lb.toml`. The kernel's `fs.protected_regular`
/// exists to stop root writing into such planted files; the save's
/// rename goes around it, and the symlink check mirrors only
/// `fs.protected_symlinks`. Fix: refuse, as `protected_regular` does, to
/// replace another user's file in a sticky world-writable folder (or
/// never give away ownership to a user other than root/us).
#[test]
fn ctl_save_in_a_shared_folder_never_gives_the_file_away() {
    if !common::privileged("ctl_save_in_a_shared_folder_never_gives_the_file_away") {
        return;
    }
    let private = TempDir::new("audit-save-private");
    let shared = TempDir::new("audit-save-shared");
    std::fs::set_permissions(&shared.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = private.path("control.sock");
    let server = serve_as_root(&socket, 1, "# the running configuration\n");
    let planted = shared.path("lb.toml");
    std::fs::write(&planted, "planted\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = save(&socket, &planted);
    server.join().unwrap();
    let meta = std::fs::metadata(&planted).unwrap();
    let content = std::fs::read_to_string(&planted).unwrap();
    let took = out.status.success() && content.contains("the running configuration");
    assert!(
        !(took && (meta.uid() == 65534 || meta.mode() & 0o002 != 0)),
        "root's saved configuration is owned by uid {} with mode {:04o}: {}",
        meta.uid(),
        meta.mode() & 0o7777,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Found in audit: end to end, the control socket in a sticky folder
/// anyone may write to (which the appliance accepts as its socket's
/// folder): uid 65534 binds the socket's name while the appliance is not
/// running, and root's `ctl save --output` writes that user's
/// configuration, with a script health check that runs as root at the
/// next reload, over a file only root may write. Fix: the client checks
/// its peer (`SO_PEERCRED`: root or its own uid) and the socket file's
/// owner; the appliance refuses a folder others may write to, sticky or
/// not (or the socket lives only in a root-only folder such as
/// `/run/lb-appliance`).
#[test]
fn ctl_save_refuses_a_socket_another_user_serves() {
    if !common::privileged("ctl_save_refuses_a_socket_another_user_serves") {
        return;
    }
    let private = TempDir::new("audit-squat-private");
    let shared = TempDir::new("audit-squat-shared");
    std::fs::set_permissions(&shared.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = shared.path("control.sock");
    let evil = "[[services]]\nname = \"web\"\nvip = \"198.18.1.100\"\nport = 80\n\
                [services.health_check]\nkind = \"script\"\n\
                command = [\"/bin/sh\", \"-c\", \"id > /tmp/owned\"]\n";
    let mut helper = serve_as_nobody(&socket, evil);
    let config = private.path("lb.toml");
    std::fs::write(&config, "# the operator's configuration\n").unwrap();
    let out = save(&socket, &config);
    let _ = helper.kill();
    let _ = helper.wait();
    let content = std::fs::read_to_string(&config).unwrap();
    assert!(
        !content.contains("kind = \"script\""),
        "root's ctl save wrote uid 65534's configuration (exit {:?}): {content}",
        out.status.code()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("served by user 65534"),
        "{stderr}"
    );
}
