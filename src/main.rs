//! `lb-appliance`: the binary. Parses the command line, loads and validates
//! the config, and hands over to the control thread.
#![deny(unsafe_code)]

mod journal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lb_config::Config;

/// A Layer-4 load balancer on DPDK: VS/NAT, VS/TUN (IPIP) and VS/DR.
#[derive(Debug, Parser)]
#[command(name = "lb-appliance", version, about, long_about = None)]
struct Cli {
    /// Path of the configuration file (lb.toml). Global: accepted before
    /// or after a subcommand (`lb-appliance status -c FILE`).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "/etc/lb-appliance/lb.toml",
        global = true
    )]
    config: PathBuf,

    /// Validate the configuration, print a summary and exit without
    /// starting DPDK or touching any device (exit status 2 if invalid).
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the services, reals, health, weights and traffic of a running
    /// appliance, in the manner of `ipvsadm -L -n --stats`.
    Status {
        /// Address of the appliance's metrics listener (default: [metrics]
        /// listen of the config file, else 127.0.0.1:9101).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Print the JSON of /status instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runtime control through the control socket, in the manner of
    /// ipvsadm: list, connections, zero, add/edit/drain/delete reals and
    /// services, save the running configuration.
    Ctl {
        /// The control socket (default: [control] socket of the -c file,
        /// else /run/lb-appliance/control.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        command: CtlCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Services and reals with their counters (ipvsadm -L -n --stats).
    List {
        /// Per-second rates of connections, packets and bytes, measured
        /// over one second (ipvsadm -L --rate).
        #[arg(long)]
        rate: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The flows (ipvsadm -L -n -c), paged from every worker.
    Connections {
        /// Only the flows of this service (by name).
        #[arg(long)]
        service: Option<String>,
        /// Only the flows on this real (ADDR:PORT).
        #[arg(long)]
        real: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Zero the counters that list and status show (ipvsadm -Z); /metrics
    /// counters keep growing.
    Zero,
    /// Add a real to a service (ipvsadm -a).
    AddReal {
        service: String,
        /// ADDR:PORT ([IPV6]:PORT).
        real: String,
        #[arg(long)]
        weight: Option<u32>,
        /// nat, tun or dr (default: the service's).
        #[arg(long)]
        forwarding: Option<String>,
    },
    /// Change a real's weight (ipvsadm -e).
    EditReal {
        service: String,
        real: String,
        #[arg(long)]
        weight: u32,
    },
    /// Weight 0: no new flows, established ones stay.
    Drain { service: String, real: String },
    /// Remove a real (ipvsadm -d).
    DelReal { service: String, real: String },
    /// Add a service (ipvsadm -A), with the keys of [[services]].
    AddService {
        name: String,
        #[arg(long)]
        vip: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long)]
        scheduler: Option<String>,
        #[arg(long)]
        forwarding: Option<String>,
        #[arg(long)]
        persistence: Option<String>,
        #[arg(long)]
        syn_proxy: Option<String>,
        /// Any other key of [[services]], KEY=VALUE: a dotted key
        /// (health_check.kind, health_check.path) and a TOML value (a bare
        /// word is a string). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Remove a service (ipvsadm -D).
    DelService { name: String },
    /// Print the running configuration as lb.toml (ipvsadm -S).
    Save {
        /// Write it to FILE instead, atomically: a temporary file in the
        /// same folder, synced, given the old file's mode and owner, then
        /// renamed over it (through a symlink, onto its target), so a
        /// failure leaves FILE as it was. Unlike `ctl save > FILE`, which
        /// empties FILE before anything is known.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// With --output onto the file the appliance loads: replace it
        /// even when it holds an edit the appliance has not loaded (which
        /// is otherwise refused, as saving would lose that edit).
        #[arg(long, requires = "output")]
        force: bool,
    },
}

/// Writes an error line to stderr, with its journal priority (`<3>`) when
/// stderr is the journal (see `journal`).
fn error(text: &str) {
    if journal::stderr_is_journal() {
        eprintln!("{}", journal::prefixed(3, text));
    } else {
        eprintln!("{text}");
    }
}

/// Sets up `env_logger` (`RUST_LOG`, `info` by default): for the journal,
/// each line with its priority and without our timestamp; otherwise
/// env_logger's format with milliseconds.
fn init_logging() {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if journal::stderr_is_journal() {
        logger.format(|buf, record| {
            use std::io::Write;
            let text = format!(
                "[{:<5} {}] {}",
                record.level(),
                record.target(),
                record.args()
            );
            writeln!(
                buf,
                "{}",
                journal::prefixed(journal::priority(record.level()), &text)
            )
        });
    } else {
        logger.format_timestamp_millis();
    }
    logger.init();
}

/// Before `ctl save --output FILE` replaces the file the appliance loads
/// (`config` in its answer, as a canonical path): an error unless FILE
/// holds one of the texts the answer's `known` names (the file as the
/// appliance loaded it, or one `ctl save` gave out since). Found in
/// audit: an operator's edit of the file, made but not reloaded yet,
/// was lost without a word when another ran `ctl save --output` onto
/// it. An appliance that names no file (an older one) is not asked.
fn unloaded_edit(file: &std::path::Path, answer: &serde_json::Value) -> Result<(), String> {
    let Some(config) = answer["config"].as_str() else {
        return Ok(());
    };
    let Ok(target) = std::fs::canonicalize(file) else {
        // No such file yet (or a dangling link): nothing to lose.
        return Ok(());
    };
    if target != std::path::Path::new(config) {
        return Ok(());
    }
    let known = |d: u64| {
        answer["known"]
            .as_array()
            .is_some_and(|k| k.iter().any(|x| x.as_str() == Some(&format!("{d:016x}"))))
    };
    match std::fs::read_to_string(&target) {
        Ok(now) if known(lb_control::ctl::text_digest(&now)) => Ok(()),
        Ok(_) => Err(
            "the file the appliance loads holds an edit it has not loaded (reload it first, and its edit replaces the runtime changes; or save elsewhere; or add --force to replace the edit)"
                .into(),
        ),
        Err(e) => Err(format!("could not be read to see whether it holds an edit not loaded ({e}); add --force to replace it anyway")),
    }
}

/// The kernel's `fs.protected_symlinks` rule, which following a symlink
/// by hand does not get: a symlink in a sticky, world-writable folder
/// (`/tmp`) is followed only when it is ours or the folder owner's (found
/// in audit: another user's `/tmp/lb.toml -> /etc/passwd` had root's
/// `ctl save --output /tmp/lb.toml` rename the config over the target).
fn refuse_planted_symlink(link: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = match link.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let (l, d) = (std::fs::symlink_metadata(link)?, std::fs::metadata(dir)?);
    let shared = d.mode() & 0o1002 == 0o1002;
    let me = rustix::process::geteuid().as_raw();
    if shared && l.uid() != me && l.uid() != d.uid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: a symbolic link of user {} in a folder anyone may write to; not followed (as the kernel's fs.protected_symlinks)",
                link.display(),
                l.uid()
            ),
        ));
    }
    Ok(())
}

/// The kernel's `fs.protected_regular` rule, which a rename over a file
/// does not get: in a sticky folder others may write to (`/tmp`), a file
/// of another user than us or the folder's owner is not replaced (found
/// in audit: another user's planted `/tmp/lb.toml`, mode 0666, got root's
/// saved configuration as their own file, to edit before the operator
/// installed it).
fn refuse_planted_file(
    file: &std::path::Path,
    old: &std::fs::Metadata,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let d = std::fs::metadata(dir)?;
    let shared = d.mode() & 0o1000 != 0 && d.mode() & 0o022 != 0;
    let me = rustix::process::geteuid().as_raw();
    if shared && old.uid() != me && old.uid() != d.uid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: a file of user {} in a folder others may write to; not replaced (as the kernel's fs.protected_regular): remove it, or save elsewhere",
                file.display(),
                old.uid()
            ),
        ));
    }
    Ok(())
}

/// Replaces `file` with `text` so that no moment and no failure leaves it
/// empty or half-written: a temporary file beside it (through symlinks,
/// beside their target, even one not there yet) gets the text, is synced
/// and given the old file's mode and owner (0640 for a new one), and is
/// renamed over it; the folder is synced after (a failure there is only
/// warned of: the file is in place). Found in audit: the old file's owner
/// is kept only if it is root or us (never is root's configuration given
/// to another user), its mode without write bits for group and others
/// (and without set-id and sticky bits), and another user's file in a
/// sticky shared folder is not replaced at all ([`refuse_planted_file`]).
fn save_atomically(file: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    // Follow symlinks by hand, so that a dangling one is written through
    // too (canonicalize fails on it).
    let mut target = file.to_path_buf();
    let mut hops = 0;
    while std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        // As the kernel's limit: a loop is an error, not a rename over
        // the last link looked at (found in audit).
        hops += 1;
        if hops > 40 {
            return Err(std::io::Error::other(format!(
                "{}: too many levels of symbolic links",
                file.display()
            )));
        }
        refuse_planted_symlink(&target)?;
        let to = std::fs::read_link(&target)?;
        target = match target.parent() {
            Some(dir) if to.is_relative() => dir.join(to),
            _ => to,
        };
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let old = std::fs::symlink_metadata(&target).ok();
    if let Some(m) = &old {
        refuse_planted_file(&target, m, &dir)?;
    }
    let me = rustix::process::geteuid().as_raw();
    // Ours from here on (a file of that name that was there is not).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = (|| {
        f.write_all(text.as_bytes())?;
        match &old {
            Some(m) => {
                let mine = f.metadata()?;
                let trusted = m.uid() == 0 || m.uid() == me;
                if trusted && (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                    std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot give the new file the old one's owner and group ({}:{}): {e}", m.uid(), m.gid()),
                        )
                    })?;
                }
                // Another user's mode is not ours to keep (found in
                // review: a planted 0666 file made root's saved
                // configuration readable by all): as a new file.
                let mode = if trusted { m.mode() & 0o755 } else { 0o640 };
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            None => f.set_permissions(std::fs::Permissions::from_mode(0o640))?,
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        error(&format!(
            "lb-appliance ctl save: {} is saved, but its folder could not be synced: {e}",
            target.display()
        ));
    }
    Ok(())
}

/// Writes to stdout. A reader that went away (`| head`) is not an error
/// worth a panic: what it did not read, it did not want.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Where a client command (`status`, `ctl`) finds the appliance: the
/// `[control] socket` and `[metrics] listen` of `-c`'s file, or the
/// defaults when there is no file there. A file whose two keys do not
/// check out (or that is no TOML) is an error, naming why and the flag
/// that does without it: the defaults could be another appliance's (found
/// in review: they were taken silently). Nothing else of the file is read.
fn client_endpoints(
    cli: &Cli,
    command: &str,
    flag: &str,
) -> Result<(lb_config::ControlConfig, lb_config::MetricsConfig), ExitCode> {
    Config::client_endpoints(&cli.config).map_err(|e| {
        error(&format!(
            "lb-appliance {command}: {} does not say where its appliance listens (name it with {flag}):\n{e}",
            cli.config.display()
        ));
        ExitCode::from(2)
    })
}

fn status(cli: &Cli, metrics: Option<&str>, json: bool) -> ExitCode {
    let addr = match metrics {
        Some(a) => a.to_string(),
        None => match client_endpoints(cli, "status", "--metrics") {
            Ok((_, metrics)) => metrics.listen.to_string(),
            Err(code) => return code,
        },
    };
    let body = match lb_control::http::get(&addr, "/status", std::time::Duration::from_secs(5)) {
        Ok(b) => b,
        Err(e) => {
            error(&format!("lb-appliance status: cannot read http://{addr}/status: {e}; is the appliance running, and is --metrics its [metrics] listen?"));
            return ExitCode::from(1);
        }
    };
    if json {
        // Written again, not echoed, with what a hostile server put in
        // its strings escaped (found in review; C1 and bidirectional
        // characters too: found in audit).
        return match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                out(&format!("{}\n", lb_control::status::json_text(&v, false)));
                ExitCode::SUCCESS
            }
            Err(e) => {
                error(&format!(
                    "lb-appliance status: http://{addr}/status is not JSON: {e}"
                ));
                ExitCode::from(1)
            }
        };
    }
    match serde_json::from_str::<lb_control::status::Status>(&body) {
        Ok(s) => {
            out(&s.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            error(&format!(
                "lb-appliance status: http://{addr}/status is not a status document: {e}"
            ));
            ExitCode::from(1)
        }
    }
}

/// `lb-appliance ctl ...`.
fn ctl(cli: &Cli, socket: Option<&std::path::Path>, command: &CtlCommand) -> ExitCode {
    use lb_control::ctl::{call, Request};
    let path = match socket {
        Some(p) => p.to_path_buf(),
        None => match client_endpoints(cli, "ctl", "--socket") {
            Ok((control, _)) => control.socket,
            Err(code) => return code,
        },
    };
    let fail = |e: String| {
        error(&format!("lb-appliance ctl: {e}"));
        ExitCode::from(1)
    };
    let request = match command {
        CtlCommand::List { rate, json } => {
            let get = || {
                call(&path, &Request::List, |_| {}).and_then(|v| {
                    serde_json::from_value::<lb_control::status::Status>(v["status"].clone())
                        .map_err(|e| format!("not a status: {e}"))
                })
            };
            let first = match get() {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if !rate {
                if *json {
                    out(&format!(
                        "{}\n",
                        lb_control::status::json_text(&first, true)
                    ));
                } else {
                    out(&first.table());
                }
                return ExitCode::SUCCESS;
            }
            let t0 = std::time::Instant::now();
            std::thread::sleep(std::time::Duration::from_secs(1));
            let second = match get() {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let rates = lb_control::status::rates(&first, &second, t0.elapsed());
            if *json {
                out(&format!(
                    "{}\n",
                    lb_control::status::json_text(&rates, true)
                ));
            } else {
                out(&lb_control::status::rate_table(&rates));
            }
            return ExitCode::SUCCESS;
        }
        CtlCommand::Connections {
            service,
            real,
            json,
        } => {
            let req = Request::Connections {
                service: service.clone(),
                real: real.clone(),
            };
            if !json {
                out(&format!(
                    "{:<4} {:>9} {:<12} {:<24} {:<24} {:<24} {:>6}\n",
                    "Pro", "Expire", "State", "Source", "Virtual", "Destination", "Worker"
                ));
            }
            let r = call(&path, &req, |v| {
                let f = &v["flow"];
                if *json {
                    out(&format!("{}\n", lb_control::status::json_text(f, false)));
                    return;
                }
                let s =
                    |k: &str| lb_control::status::shown(f[k].as_str().unwrap_or("-")).into_owned();
                let ms = f["expires_in_ms"].as_u64().unwrap_or(0);
                out(&format!(
                    "{:<4} {:>6}.{:02} {:<12} {:<24} {:<24} {:<24} {:>6}\n",
                    s("protocol"),
                    ms / 1000,
                    (ms % 1000) / 10,
                    s("state"),
                    s("client"),
                    s("vip"),
                    s("real"),
                    f["worker"].as_u64().unwrap_or(0)
                ));
            });
            return match r {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            };
        }
        CtlCommand::Zero => Request::Zero,
        CtlCommand::AddReal {
            service,
            real,
            weight,
            forwarding,
        } => Request::AddReal {
            service: service.clone(),
            real: real.clone(),
            weight: *weight,
            forwarding: forwarding.clone(),
        },
        CtlCommand::EditReal {
            service,
            real,
            weight,
        } => Request::EditReal {
            service: service.clone(),
            real: real.clone(),
            weight: *weight,
        },
        CtlCommand::Drain { service, real } => Request::Drain {
            service: service.clone(),
            real: real.clone(),
        },
        CtlCommand::DelReal { service, real } => Request::DelReal {
            service: service.clone(),
            real: real.clone(),
        },
        CtlCommand::AddService {
            name,
            vip,
            port,
            protocol,
            scheduler,
            forwarding,
            persistence,
            syn_proxy,
            set,
        } => Request::AddService {
            name: name.clone(),
            vip: vip.clone(),
            port: *port,
            protocol: protocol.clone(),
            scheduler: scheduler.clone(),
            forwarding: forwarding.clone(),
            persistence: persistence.clone(),
            syn_proxy: syn_proxy.clone(),
            set: match set
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .ok_or_else(|| format!("--set {kv:?}: KEY=VALUE expected"))
                })
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(s) => s,
                Err(e) => return fail(e),
            },
        },
        CtlCommand::DelService { name } => Request::DelService { name: name.clone() },
        CtlCommand::Save { .. } => Request::Save,
    };
    match call(&path, &request, |_| {}) {
        Ok(v) => {
            match (&request, command) {
                (Request::Save, CtlCommand::Save { output, force }) => {
                    let Some(text) = v["text"].as_str() else {
                        return fail("the appliance's answer has no configuration text".into());
                    };
                    match output {
                        None => out(text),
                        Some(file) => {
                            if !force {
                                if let Err(e) = unloaded_edit(file, &v) {
                                    return fail(format!(
                                        "{}: {e}; it is as it was",
                                        file.display()
                                    ));
                                }
                            }
                            if let Err(e) = save_atomically(file, text) {
                                return fail(format!("{}: {e}; it is as it was", file.display()));
                            }
                        }
                    }
                }
                (Request::Save | Request::Zero, _) => {}
                _ => out(&format!(
                    "applied: generation {}\n",
                    v["generation"].as_u64().unwrap_or(0)
                )),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Ctl { socket, command }) = &cli.command {
        return ctl(&cli, socket.as_deref(), command);
    }
    if let Some(Command::Status { metrics, json }) = &cli.command {
        return status(&cli, metrics.as_deref(), *json);
    }
    init_logging();

    // Read once: the running config and the text `ctl` edits are the same
    // bytes (found in review: the text was read again after the EAL
    // started, and a file changed in between made ctl edits land on
    // another service's lines).
    let (config, text) = match Config::load_text(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            error(&format!(
                "lb-appliance: {} is invalid:",
                cli.config.display()
            ));
            for e in &errors.0 {
                error(&format!("  {e}"));
            }
            return ExitCode::from(2);
        }
    };
    if cli.check {
        out(&format!(
            "{}: valid\n{}",
            cli.config.display(),
            config.summary()
        ));
        return ExitCode::SUCCESS;
    }
    match lb_control::run(config, &text, cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(&format!("lb-appliance: {e}"));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Found in audit: another user's symlink in a folder anyone may write
    /// to (`/tmp`) was followed by `ctl save --output`, so root replaced
    /// the file it named. Ours, or the folder owner's, is still followed,
    /// as is any symlink in a folder that is not shared.
    #[test]
    fn another_users_symlink_in_a_shared_folder_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("lb-save-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("victim");
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.join("lb.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(refuse_planted_symlink(&link).is_ok(), "our own link");
        let me = rustix::process::geteuid().as_raw();
        if me == 0 {
            // Planted by "nobody".
            std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
            let e = save_atomically(&link, "config\n").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
            // The same link in a folder that is not shared: followed.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            save_atomically(&link, "config\n").unwrap();
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "config\n");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found in audit: `ctl save --output` gave the new file the old one's
    /// owner and mode, whoever's they were. Now another user's file in a
    /// sticky shared folder is not replaced (as `fs.protected_regular`);
    /// elsewhere it is, but the new file is ours and no longer writable by
    /// group or others.
    #[test]
    fn another_users_file_is_not_given_roots_configuration() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("lb-save-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lb.toml");
        std::fs::write(&file, "old\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4666)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        save_atomically(&file, "config\n").unwrap();
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!(
            m.mode() & 0o7777,
            0o644,
            "write bits for group and others dropped"
        );
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
            // Not shared: replaced, but root's now.
            save_atomically(&file, "config 2\n").unwrap();
            let m = std::fs::metadata(&file).unwrap();
            assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o640));
            // Shared and sticky: left alone.
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
            let e = save_atomically(&file, "config 3\n").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("fs.protected_regular"), "{e}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "config 2\n");
            // Ours in the same folder: replaced.
            std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
            save_atomically(&file, "config 4\n").unwrap();
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "config 4\n");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
