//! The runtime control socket (`[control] socket`) and what `lb-appliance
//! ctl` sends over it, with the habits of ipvsadm: list services and reals
//! (`-L`), their connections (`-Lnc`), zero the counters (`-Z`), add, edit,
//! drain and delete reals and services (`-a`, `-e`, `-d`, `-A`, `-D`), and
//! print the running configuration (`-S`).
//!
//! The protocol: the client writes one request, a JSON object on one line
//! (`{"command": "add-real", "service": "web", "real": "198.18.0.14:80",
//! "weight": 2}`), and reads JSON lines back: zero or more items
//! (`{"flow": {...}}` for `connections`), then one final line,
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. A request longer
//! than [`MAX_REQUEST`] bytes, slower than [`REQUEST_DEADLINE`], not JSON,
//! or not a known command is refused with an error and counted
//! (`lb_control_requests_total{result="refused"}`).
//!
//! Who may talk to it: the socket file is created mode 0660, owned by
//! root (the appliance's user) and its group; its folder is created 0750 if
//! missing and refused if another user could replace the socket in it
//! (`folder_is_ours`); the client talks only to a socket root or its
//! own user serves (`SO_PEERCRED`). Reading requests and answering them
//! happens on threads of this module (at most [`MAX_CLIENTS`] at once),
//! never on the control thread: a slow or silent client stalls nothing. A change is handed to the
//! control thread, which validates the edited configuration exactly as it
//! would a file (`Config::parse` of the whole text) and applies it as a new
//! snapshot, flows kept as on reload; a refused change changes nothing.
//! `connections` asks each worker for pages of its table
//! (`lb_dataplane::worker::FlowQuery`), answered between bursts, so a
//! million flows can be listed without holding a worker for more than a
//! page.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Sender};
use lb_core::flow::listing::{FlowInfo, PAGE_ENTRIES};
use lb_dataplane::worker::FlowQuery;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::exporter::{Exporter, Shared};

/// The longest request line.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Clients served at once; more are told to come back.
pub const MAX_CLIENTS: usize = 16;
/// How long a change may wait for the control thread.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// The most dotted parts and bytes of an `add-service --set` key, and the
/// most keys: far above any key of `[[services]]` (the deepest,
/// `health_check.expect_status`, has two parts).
const MAX_SET_KEY_PARTS: usize = 4;
const MAX_SET_KEY_LEN: usize = 128;
const MAX_SET_KEYS: usize = 64;
/// The longest line of an answer the `ctl` client reads: one record of a
/// listing, or the final answer, which for `list` holds every real's
/// counters (about 170 bytes a real: 11 MB at 65,536) and for `save` the
/// whole configuration (at most 16 MiB, escaped as JSON). Found in
/// audit: at 1 MiB, `list` failed from about 6,000 reals and `save`
/// from about 17,000.
const MAX_ANSWER_LINE: usize = 64 << 20;

/// How deeply a `--set` value may nest arrays and inline tables (a dotted
/// key inside an inline table is a table per part): no key of a service
/// takes more than two.
const MAX_SET_VALUE_DEPTH: usize = 4;

/// How deeply `v` nests arrays and inline tables (a plain value: 0),
/// walked without recursion (the walk must not be what overflows).
fn value_depth(v: &toml_edit::Value) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(v, 0usize)];
    while let Some((v, depth)) = todo.pop() {
        deepest = deepest.max(depth);
        match v {
            toml_edit::Value::Array(a) => todo.extend(a.iter().map(|x| (x, depth + 1))),
            toml_edit::Value::InlineTable(t) => todo.extend(t.iter().map(|(_, x)| (x, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// `v` written afresh: no comment, whitespace or spelling of its client's
/// kept. A `--set` value keeps what its text held around and inside it
/// (comments in an array may hold any character but C0 controls: C1
/// controls, bidirectional overrides, lines posing as the operator's own
/// comments), and `ctl save` prints that text to root and writes it into
/// the file the appliance loads (found in audit). Only after
/// [`value_depth`] has bounded the recursion.
fn written_afresh(v: &mut toml_edit::Value) {
    use toml_edit::Value as V;
    match v {
        V::Array(a) => {
            a.iter_mut().for_each(written_afresh);
            a.fmt();
        }
        V::InlineTable(t) => {
            t.iter_mut().for_each(|(_, x)| written_afresh(x));
            t.fmt();
            t.set_preamble("");
        }
        V::String(f) => f.fmt(),
        V::Integer(f) => f.fmt(),
        V::Float(f) => f.fmt(),
        V::Boolean(f) => f.fmt(),
        V::Datetime(f) => f.fmt(),
    }
    v.decor_mut().clear();
}

/// One request (the `command` field names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Services and reals, as `lb-appliance status` shows them.
    List,
    /// The flows, optionally of one service (by name) or one real
    /// (`ADDR:PORT`).
    Connections {
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        real: Option<String>,
    },
    /// Zero the counters `list` and `status` show.
    Zero,
    AddReal {
        service: String,
        real: String,
        #[serde(default)]
        weight: Option<u32>,
        #[serde(default)]
        forwarding: Option<String>,
    },
    EditReal {
        service: String,
        real: String,
        weight: u32,
    },
    /// Weight 0: no new flows, established ones stay.
    Drain {
        service: String,
        real: String,
    },
    DelReal {
        service: String,
        real: String,
    },
    AddService {
        name: String,
        vip: String,
        port: u16,
        #[serde(default)]
        protocol: Option<String>,
        #[serde(default)]
        scheduler: Option<String>,
        #[serde(default)]
        forwarding: Option<String>,
        #[serde(default)]
        persistence: Option<String>,
        #[serde(default)]
        syn_proxy: Option<String>,
        /// Any other key of the service, as `(KEY, VALUE)`: a dotted path
        /// under the service's table (`health_check.kind`) and a TOML value
        /// (`"http"`, `500`, `["/bin/check"]`; a bare word is a string).
        #[serde(default)]
        set: Vec<(String, String)>,
    },
    DelService {
        name: String,
    },
    /// The running configuration as `lb.toml` text.
    Save,
}

impl Request {
    /// The `command` label of `lb_control_requests_total`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::List => "list",
            Request::Connections { .. } => "connections",
            Request::Zero => "zero",
            Request::AddReal { .. } => "add-real",
            Request::EditReal { .. } => "edit-real",
            Request::Drain { .. } => "drain",
            Request::DelReal { .. } => "del-real",
            Request::AddService { .. } => "add-service",
            Request::DelService { .. } => "del-service",
            Request::Save => "save",
        }
    }

    /// The service a change names (None for what is not a change to one).
    pub fn service(&self) -> Option<&str> {
        match self {
            Request::AddReal { service, .. }
            | Request::EditReal { service, .. }
            | Request::Drain { service, .. }
            | Request::DelReal { service, .. } => Some(service),
            Request::AddService { name, .. } | Request::DelService { name } => Some(name),
            _ => None,
        }
    }

    /// Whether the control thread must do it (it changes or reads the
    /// running configuration).
    fn is_change(&self) -> bool {
        matches!(
            self,
            Request::AddReal { .. }
                | Request::EditReal { .. }
                | Request::Drain { .. }
                | Request::DelReal { .. }
                | Request::AddService { .. }
                | Request::DelService { .. }
                | Request::Save
        )
    }
}

/// A request for the control thread, and where its answer goes.
pub struct Change {
    pub request: Request,
    pub reply: Sender<Result<Value, String>>,
    /// After this the client may have given up (it waits up to
    /// [`CHANGE_DEADLINE`] for the queue and as long again for the answer;
    /// this is a second short of the first): the control thread then
    /// refuses the change rather than apply one its client may have been
    /// told failed. It errs towards refusing.
    pub apply_by: std::time::Instant,
}

impl Change {
    /// Whether its client has given up waiting.
    pub fn too_late(&self) -> bool {
        std::time::Instant::now() > self.apply_by
    }
}

/// Requests by (command, result): what `lb_control_requests_total`
/// exports.
pub type RequestCounts = Arc<Mutex<BTreeMap<(String, &'static str), u64>>>;

/// The running control socket; removed when dropped.
pub struct ControlSocket {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    pub counts: RequestCounts,
}

/// What the socket's threads share.
struct Ctx {
    exporter: Exporter,
    shared: Arc<Mutex<Shared>>,
    queries: Vec<Sender<FlowQuery>>,
    changes: Sender<Change>,
    counts: RequestCounts,
    clients: AtomicUsize,
}

impl ControlSocket {
    /// Creates the socket at `path` (its folder too, if missing) and serves
    /// it. Refuses to take over a socket another process still answers on.
    pub fn start(
        path: &Path,
        exporter: Exporter,
        shared: Arc<Mutex<Shared>>,
        queries: Vec<Sender<FlowQuery>>,
        changes: Sender<Change>,
        counts: RequestCounts,
    ) -> std::io::Result<ControlSocket> {
        if let Some(dir) = path.parent() {
            make_folder(dir)?;
            folder_is_ours(dir)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; it is left alone",
                        path.display()
                    ),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is answered by another process: is an appliance already running with this [control] socket?", path.display()),
                ));
            }
            // A socket left by a process that died.
            std::fs::remove_file(path)?;
        }
        // Created 0660 (umask 0117 around the bind), not made so after:
        // with a lax umask another user could connect in between and keep
        // the connection (found in review). The umask is the process's:
        // it is changed only for the bind, at start; a file another thread
        // (DPDK's, say) created in that instant would come out 0660 at
        // most, never more open than asked.
        let was = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
        let bound = UnixListener::bind(path);
        rustix::process::umask(was);
        // No chmod after: the umask made it 0660, and a chmod by path
        // follows a symlink that replaced the socket meanwhile (found in
        // review: in a folder others may write to, root would chmod a file
        // of the attacker's choice).
        let listener = bound?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            exporter,
            shared,
            queries,
            changes,
            counts: Arc::clone(&counts),
            clients: AtomicUsize::new(0),
        });
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lb-ctl".into())
            .spawn(move || accept_loop(&listener, &ctx, &s))?;
        Ok(ControlSocket {
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
            counts,
        })
    }
}

/// Makes the socket's folder if it is missing: its parents as
/// `create_dir_all` would, the folder itself created 0750 at once (never
/// made so after by a chmod of its path, which follows a symlink put there
/// meanwhile: found in audit). One that is there already, or that
/// another process made first, is left as it is: [`folder_is_ours`]
/// then decides, without following symlinks.
fn make_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && std::fs::symlink_metadata(parent).is_err() {
            std::fs::create_dir_all(parent)?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o750).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!(
                "cannot make the control socket's folder {}: {e}",
                dir.display()
            ),
        )),
    }
}

/// Refuses a socket folder in which another user could replace the socket
/// (remove it and bind their own, which root's `ctl` would then talk to:
/// found in audit, `ctl save --output` then wrote that user's
/// configuration). The folder itself must be root's or ours, and neither
/// every user nor a group other than root's may write to it, sticky or
/// not (a sticky `/tmp` does not keep another user from binding the name
/// while the appliance is down). It is looked at without following
/// symlinks: every folder on the way to it, from `/`, and every symlink
/// on the way, must be such that no other user could swap it: a symlink
/// must be root's or ours, and an entry of a folder others may write to
/// must be root's or ours in a sticky folder of root's or ours (as `/tmp`
/// is; found in audit: another user's `/tmp/lb -> /root-dir` passed as
/// root's folder, and the link could be pointed elsewhere at any time).
fn folder_is_ours(dir: &Path) -> std::io::Result<()> {
    use lb_config::owner::{others_may_write, walk, Unsafe};
    let me = rustix::process::geteuid().as_raw();
    let unsafe_because = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the control socket's folder {} is unsafe: {why}; another user could \
                 replace the socket",
                dir.display()
            ),
        )
    };
    let (at, above) = match walk(dir, me) {
        Ok(m) => m,
        Err(Unsafe::Others(why)) => return Err(unsafe_because(why)),
        Err(Unsafe::Io(e)) => return Err(e),
    };
    // The folder itself, looked at without following a symlink.
    if !above.is_dir() {
        return Err(unsafe_because("it is not a folder".into()));
    }
    match others_may_write(&at, &above, me) {
        Some(why) => Err(unsafe_because(format!(
            "{why} (chmod 750, owned by root or the appliance's user)"
        ))),
        None => Ok(()),
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, ctx: &Arc<Ctx>, stop: &AtomicBool) {
    let mut last_warning: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                if ctx.clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    ctx.clients.fetch_sub(1, Ordering::AcqRel);
                    count(ctx, "unknown", "refused");
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = reply_line(
                        &conn,
                        &json!({"ok": false, "error": format!("busy: {MAX_CLIENTS} clients are being served; try again")}),
                    );
                    continue;
                }
                let c = Arc::clone(ctx);
                let spawned = std::thread::Builder::new()
                    .name("lb-ctl-client".into())
                    .spawn(move || {
                        serve(conn, &c);
                        c.clients.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    ctx.clients.fetch_sub(1, Ordering::AcqRel);
                    count(ctx, "unknown", "refused");
                    log::warn!("ctl: cannot start a thread for a client: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                // Out of descriptors, say: once a minute in the log.
                let now = Instant::now();
                if last_warning.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                    last_warning = Some(now);
                    log::warn!("ctl: accept: {e}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn count(ctx: &Ctx, command: &str, result: &'static str) {
    let mut c = ctx.counts.lock().unwrap_or_else(|e| e.into_inner());
    *c.entry((command.to_string(), result)).or_default() += 1;
}

fn reply_line(mut conn: &UnixStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    conn.write_all(line.as_bytes())
}

/// How long a client has to read an answer: this, and a second more for
/// every [`ANSWER_RATE`] bytes of it.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
pub const ANSWER_RATE: usize = 256 << 10;

/// An answer being written to a client, against one deadline for all of
/// it (found in audit: a write timeout per write call let a client that
/// read 64 KiB every few seconds hold its slot for as long as it liked,
/// and 16 of them turned every other client away).
struct Answer<'a> {
    conn: &'a UnixStream,
    /// How long writes have waited for the client so far: only that is
    /// its time (found in review: the server's own time between lines, a
    /// filtered `connections` walking pages that match nothing, counted
    /// too, and cut off a client that read at once).
    waited: Duration,
    written: usize,
    base: Duration,
    rate: usize,
}

impl<'a> Answer<'a> {
    fn new(conn: &'a UnixStream) -> Answer<'a> {
        Answer::within(conn, ANSWER_DEADLINE, ANSWER_RATE)
    }

    /// With `base` and `rate` for [`ANSWER_DEADLINE`] and [`ANSWER_RATE`]
    /// (tests).
    fn within(conn: &'a UnixStream, base: Duration, rate: usize) -> Answer<'a> {
        Answer {
            conn,
            waited: Duration::ZERO,
            written: 0,
            base,
            rate,
        }
    }

    /// Writes `v` and a newline, within what is left of the client's time
    /// for what was written.
    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        let mut line = v.to_string();
        line.push('\n');
        let mut rest = line.as_bytes();
        while !rest.is_empty() {
            let more = Duration::from_secs_f64(self.written as f64 / self.rate as f64);
            let left = (self.base + more).saturating_sub(self.waited);
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client reads its answer too slowly",
                ));
            }
            self.conn.set_write_timeout(Some(left))?;
            let t = Instant::now();
            let wrote = (&*self.conn).write(rest);
            self.waited += t.elapsed();
            match wrote {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    rest = &rest[n..];
                    self.written += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads one request line: at most `MAX_REQUEST` bytes within
/// `REQUEST_DEADLINE`.
fn read_request(conn: &UnixStream) -> Result<String, String> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    let mut r = conn;
    // Only what came since the last look is searched (linear, not
    // quadratic, in a request sent a byte at a time).
    let mut searched = 0;
    loop {
        if let Some(end) = buf[searched..].iter().position(|&b| b == b'\n') {
            buf.truncate(searched + end);
            break;
        }
        searched = buf.len();
        if buf.len() > MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no whole request line within {REQUEST_DEADLINE:?}"));
        }
        conn.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match r.read(&mut chunk) {
            Ok(0) => break, // the client closed its side: what came is all
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    if buf.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "the request is not UTF-8".to_string())
}

fn serve(conn: UnixStream, ctx: &Ctx) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let text = match read_request(&conn) {
        Ok(t) => t,
        Err(e) => {
            count(ctx, "unknown", "refused");
            let _ = reply_line(&conn, &json!({"ok": false, "error": e}));
            return;
        }
    };
    let request: Request = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            count(ctx, "unknown", "refused");
            let _ = reply_line(
                &conn,
                &json!({"ok": false, "error": format!("not a request: {e}")}),
            );
            return;
        }
    };
    let name = request.name();
    let mut answer = Answer::new(&conn);
    let result = if request.is_change() {
        change(ctx, request)
    } else {
        match request {
            Request::List => Ok(json!({"status": ctx.exporter.status()})),
            Request::Zero => {
                zero(ctx);
                Ok(json!({}))
            }
            Request::Connections { service, real } => connections(ctx, &mut answer, service, real),
            _ => Err("unreachable".to_string()),
        }
    };
    let (line, label) = match result {
        Ok(mut v) => {
            v["ok"] = json!(true);
            (v, "ok")
        }
        Err(e) => (json!({"ok": false, "error": e}), "refused"),
    };
    count(ctx, name, label);
    let _ = answer.line(&line);
}

/// Hands a change to the control thread and waits for its answer.
fn change(ctx: &Ctx, request: Request) -> Result<Value, String> {
    let (tx, rx) = bounded(1);
    let apply_by = std::time::Instant::now() + CHANGE_DEADLINE - Duration::from_secs(1);
    ctx.changes
        .send_timeout(
            Change {
                request,
                reply: tx,
                apply_by,
            },
            CHANGE_DEADLINE,
        )
        .map_err(|_| "the control thread is not taking changes (stopping?)".to_string())?;
    rx.recv_timeout(CHANGE_DEADLINE).map_err(|_| {
        "the control thread did not answer in time; a change it had begun to apply may still take effect (ctl list shows)".to_string()
    })?
}

/// Makes what `list` and `status` show count from now.
fn zero(ctx: &Ctx) {
    let base = ctx.exporter.real_counters();
    let mut sh = ctx.shared.lock().unwrap_or_else(|e| e.into_inner());
    sh.zeroed = base;
}

/// Streams the flows, a worker and a page at a time.
fn connections(
    ctx: &Ctx,
    answer: &mut Answer<'_>,
    service: Option<String>,
    real: Option<String>,
) -> Result<Value, String> {
    let snap = {
        let sh = ctx.shared.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&sh.snapshot)
    };
    let service = match service {
        None => None,
        Some(name) => {
            let s = snap
                .services
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("no service {name:?}"))?;
            Some((s.protocol, s.vip, s.port))
        }
    };
    let real: Option<SocketAddr> = match real {
        None => None,
        Some(text) => Some(parse_endpoint(&text)?),
    };
    let mut n = 0u64;
    for (w, q) in ctx.queries.iter().enumerate() {
        for family in [4u8, 6] {
            let mut from = Some(0usize);
            while let Some(start) = from {
                let (tx, rx) = bounded(1);
                let ask = FlowQuery {
                    family,
                    from: start,
                    flows: Vec::with_capacity(PAGE_ENTRIES),
                    reply: tx,
                };
                q.send_timeout(ask, Duration::from_secs(5))
                    .map_err(|_| format!("worker {w} does not take listing requests"))?;
                let (flows, next) = rx
                    .recv_timeout(Duration::from_secs(5))
                    .map_err(|_| format!("worker {w} did not answer in 5 s"))?;
                for f in &flows {
                    if service.is_some_and(|(p, vip, port)| {
                        f.proto != lb_core::snapshot::ip_protocol(p)
                            || f.vip != vip
                            || f.vip_port != port
                    }) {
                        continue;
                    }
                    if real.is_some_and(|r| f.real != Some(r.ip()) || f.real_port != r.port()) {
                        continue;
                    }
                    answer
                        .line(&json!({"flow": flow_json(f, w)}))
                        .map_err(|e| format!("writing to the client: {e}"))?;
                    n += 1;
                }
                from = next;
            }
        }
    }
    Ok(json!({"count": n}))
}

fn flow_json(f: &FlowInfo, worker: usize) -> Value {
    let proto = match f.proto {
        6 => "TCP",
        17 => "UDP",
        _ => "?",
    };
    json!({
        "protocol": proto,
        "state": format!("{:?}", f.state),
        "trust": format!("{:?}", f.trust),
        "expires_in_ms": f.expires_in_ms,
        "client": SocketAddr::new(f.client, f.client_port).to_string(),
        "vip": SocketAddr::new(f.vip, f.vip_port).to_string(),
        "real": f.real.map(|r| SocketAddr::new(r, f.real_port).to_string()),
        "forwarding": f.method.to_string(),
        "worker": worker,
        "synced": f.synced,
    })
}

/// `ADDR:PORT`, with an IPv6 address in brackets.
/// The digest `ctl save` compares configuration texts by (FNV-1a, 64
/// bits): the appliance names the texts its file may hold without an edit
/// being lost (the file as loaded, what `ctl save` gave out since), and
/// `ctl save --output` onto that file refuses to replace any other text
/// unless forced. A guard against overwriting an operator's edit not yet
/// reloaded, not against anyone who means harm (who may write the file
/// may do as they like with it).
pub fn text_digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How many texts `ctl save` gave out are remembered (the oldest go
/// first): a file saved that many saves ago is taken for an edit.
pub const SAVED_TEXTS: usize = 32;

pub fn parse_endpoint(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not ADDR:PORT (e.g. 198.18.0.11:80 or [2001:2::11]:80)"))
}

/// Refuses a server that is neither root nor our own user (its
/// `SO_PEERCRED`, which the kernel records when it listened). Found in
/// audit: `ctl` talked to whatever answered on the path, so another user
/// who bound it while the appliance was down fed root's `ctl list` what
/// they liked and root's `ctl save --output` their configuration.
fn server_is_trusted(conn: &UnixStream, path: &Path) -> Result<(), String> {
    let peer = rustix::net::sockopt::get_socket_peercred(conn).map_err(|e| {
        format!(
            "cannot tell who serves {} (SO_PEERCRED): {e}; not talking to it",
            path.display()
        )
    })?;
    let me = rustix::process::geteuid();
    if peer.uid.is_root() || peer.uid == me {
        return Ok(());
    }
    Err(format!(
        "{} is served by user {} (process {}), neither root nor this user ({}): not talking to it; \
         another user may have bound the socket's name while the appliance was down \
         (keep [control] socket in a folder only root may write to, such as /run/lb-appliance)",
        path.display(),
        peer.uid.as_raw(),
        peer.pid.as_raw_nonzero(),
        me.as_raw()
    ))
}

/// The client side: sends `request` to the socket at `path`; calls
/// `item` with every line before the final one; returns the final one
/// (with `ok` true) or its error.
pub fn call(path: &Path, request: &Request, mut item: impl FnMut(&Value)) -> Result<Value, String> {
    let mut conn = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is the appliance running, and is this its [control] socket (ctl --socket PATH, or -c its config)?",
            path.display()
        )
    })?;
    server_is_trusted(&conn, path)?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| format!("writing to {}: {e}", path.display()))?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(conn);
    let mut buf = Vec::new();
    loop {
        // One line at a time, each bounded: whatever answers on the path
        // cannot make the (root) client hold without limit (found in
        // audit: `lines()` read a line of any length).
        buf.clear();
        let n = (&mut reader)
            .take(MAX_ANSWER_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading from {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_ANSWER_LINE {
            return Err(format!(
                "a reply line longer than {MAX_ANSWER_LINE} bytes from {}",
                path.display()
            ));
        }
        let l = String::from_utf8_lossy(&buf);
        let v: Value = serde_json::from_str(l.trim_end())
            .map_err(|e| format!("a reply that is not JSON ({e}): {l}"))?;
        match v.get("ok").and_then(Value::as_bool) {
            Some(true) => return Ok(v),
            Some(false) => {
                return Err(v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("refused")
                    .to_string())
            }
            None => item(&v),
        }
    }
    Err(format!("{} closed without an answer", path.display()))
}

/// Edits of the running configuration's TOML document for the change
/// requests: the text is then validated whole (`Config::parse`) by the
/// control thread before anything applies.
pub mod edit {
    use super::*;
    use lb_config::Config;
    use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

    /// Index of the service named `name` in `config`.
    fn service_index(config: &Config, name: &str) -> Result<usize, String> {
        config
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no service {name:?}"))
    }

    /// Index of the real `real` (ADDR:PORT) of service `i`.
    fn real_index(config: &Config, i: usize, real: &str) -> Result<Option<usize>, String> {
        let ep = parse_endpoint(real)?;
        Ok(config.services[i]
            .reals
            .iter()
            .position(|r| r.address == ep.ip() && r.port == ep.port()))
    }

    fn services(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables, String> {
        doc.get_mut("services")
            .and_then(Item::as_array_of_tables_mut)
            .ok_or_else(|| "the configuration has no [[services]] tables to edit (an inline services array cannot be edited here)".to_string())
    }

    fn reals(t: &mut Table) -> Result<&mut ArrayOfTables, String> {
        if !t.contains_key("reals") {
            t.insert("reals", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        t.get_mut("reals")
            .and_then(Item::as_array_of_tables_mut)
            .ok_or_else(|| "this service's reals are an inline array, which cannot be edited here: write them as [[services.reals]] tables".to_string())
    }

    fn address_text(ip: IpAddr) -> String {
        ip.to_string()
    }

    /// Applies `request` to `doc` (the running text), given the running
    /// `config` parsed from it. Only change requests.
    pub fn apply(doc: &mut DocumentMut, config: &Config, request: &Request) -> Result<(), String> {
        match request {
            Request::AddReal {
                service,
                real,
                weight,
                forwarding,
            } => {
                let i = service_index(config, service)?;
                if real_index(config, i, real)?.is_some() {
                    return Err(format!("service {service:?} already has the real {real}"));
                }
                let ep = parse_endpoint(real)?;
                let mut t = Table::new();
                t["address"] = value(address_text(ep.ip()));
                t["port"] = value(i64::from(ep.port()));
                if let Some(w) = weight {
                    t["weight"] = value(i64::from(*w));
                }
                if let Some(f) = forwarding {
                    t["forwarding"] = value(f.as_str());
                }
                let s = services(doc)?
                    .get_mut(i)
                    .ok_or("the document's services do not match the running configuration")?;
                reals(s)?.push(t);
            }
            Request::EditReal {
                service,
                real,
                weight,
            } => set_weight(doc, config, service, real, *weight)?,
            Request::Drain { service, real } => set_weight(doc, config, service, real, 0)?,
            Request::DelReal { service, real } => {
                let i = service_index(config, service)?;
                let j = real_index(config, i, real)?
                    .ok_or_else(|| format!("service {service:?} has no real {real}"))?;
                let s = services(doc)?
                    .get_mut(i)
                    .ok_or("the document's services do not match the running configuration")?;
                let r = reals(s)?;
                if j >= r.len() {
                    return Err(
                        "the document's reals do not match the running configuration".into(),
                    );
                }
                r.remove(j);
            }
            Request::AddService {
                name,
                vip,
                port,
                protocol,
                scheduler,
                forwarding,
                persistence,
                syn_proxy,
                set,
            } => {
                if service_index(config, name).is_ok() {
                    return Err(format!("there is a service {name:?} already"));
                }
                let mut t = Table::new();
                t["name"] = value(name.as_str());
                t["vip"] = value(vip.as_str());
                t["port"] = value(i64::from(*port));
                for (k, v) in [
                    ("protocol", protocol),
                    ("scheduler", scheduler),
                    ("forwarding", forwarding),
                    ("persistence", persistence),
                    ("syn_proxy", syn_proxy),
                ] {
                    if let Some(v) = v {
                        t[k] = value(v.as_str());
                    }
                }
                if set.len() > MAX_SET_KEYS {
                    return Err(format!("at most {MAX_SET_KEYS} --set keys"));
                }
                for (key, text) in set {
                    set_key(&mut t, key, text)?;
                }
                // A health check that runs a program runs it as root: only
                // the file (and a reload) may name one, not whoever may use
                // the socket. Read from the table built, so no spelling
                // (an inline table, an escaped string) gets past.
                let check = t.get("health_check");
                let field = |k: &str| check.and_then(|c| c.get(k));
                // `user` too: it is only for script checks, and whom a
                // program runs as is the file's to say.
                if field("command").is_some()
                    || field("user").is_some()
                    || field("kind").and_then(Item::as_str) == Some("script")
                {
                    return Err("a script health check (health_check.kind = \"script\", health_check.command, health_check.user) runs a program as root: set it in the config file and reload; a ctl client may not".into());
                }
                // After every table of the text: one without a position is
                // written after the last table visited before it, which may
                // be the last service's `[services.health_check]` with a
                // `[[services.reals]]` of that service after it, and that
                // real then read as the new service's (found in audit).
                t.set_position(last_position(doc) + 1);
                if doc.get("services").is_none() {
                    doc.insert("services", Item::ArrayOfTables(ArrayOfTables::new()));
                }
                services(doc)?.push(t);
            }
            Request::DelService { name } => {
                let i = service_index(config, name)?;
                let s = services(doc)?;
                if i >= s.len() {
                    return Err(
                        "the document's services do not match the running configuration".into(),
                    );
                }
                s.remove(i);
            }
            _ => return Err("not a change".into()),
        }
        Ok(())
    }

    /// `request` applied to a copy of the running text `doc`: the edited
    /// document as read back from its text (so that what the next edit
    /// sees is what runs: found in audit, a document kept as edited placed
    /// a table otherwise than its text, and later edits went to the wrong
    /// service), and that text.
    pub fn edited(
        doc: &DocumentMut,
        config: &Config,
        request: &Request,
    ) -> Result<(DocumentMut, String), String> {
        let mut d = doc.clone();
        apply(&mut d, config, request)?;
        let text = d.to_string();
        let d = text.parse().map_err(|e| {
            format!("refused, nothing changed: the edited text reads back wrong: {e}")
        })?;
        Ok((d, text))
    }

    /// The highest position of a table in `doc` (0 for none): where the
    /// text places it.
    fn last_position(doc: &DocumentMut) -> usize {
        fn walk(t: &Table, max: &mut usize) {
            *max = (*max).max(t.position().unwrap_or(0));
            for (_, item) in t.iter() {
                match item {
                    Item::Table(t) => walk(t, max),
                    Item::ArrayOfTables(a) => a.iter().for_each(|t| walk(t, max)),
                    _ => {}
                }
            }
        }
        let mut max = 0;
        walk(doc.as_table(), &mut max);
        max
    }

    /// Whether `new`, the running `old` with `request` applied through
    /// the text, leaves every service but the one the request names as it
    /// was: a change that moved anything of another (a table the text
    /// placed where it belongs to another service) is refused, whatever
    /// the cause. (An edit writes only into `[[services]]`.)
    pub fn changes_only_its_service(
        old: &Config,
        new: &Config,
        request: &Request,
    ) -> Result<(), String> {
        let named = request.service().unwrap_or_default();
        let others = |c: &Config| -> Vec<lb_config::ServiceConfig> {
            c.services
                .iter()
                .filter(|s| s.name != named)
                .cloned()
                .collect()
        };
        if others(old) != others(new) {
            return Err(format!(
                "refused, nothing changed: the edit of {named:?} would also change another service (as the text places its tables); edit the file and reload"
            ));
        }
        Ok(())
    }

    /// Sets `key` (a dotted path of bare keys: `health_check.interval`)
    /// in `t` to `text` read as a TOML value, or as a string when it is not
    /// one (`--set scheduler=mh`). What the key and value mean is left to
    /// the validation of the whole text, which names the path if wrong.
    fn set_key(t: &mut Table, key: &str, text: &str) -> Result<(), String> {
        // No key of a service is deeper than a few tables; a deeper path
        // only costs the control thread (found in review: 8,000 parts in
        // a 16 KB request held it for 42 s and 5 GB while the document
        // was written out).
        if key.len() > MAX_SET_KEY_LEN || key.split('.').count() > MAX_SET_KEY_PARTS {
            return Err(format!(
                "--set: a key is at most {MAX_SET_KEY_PARTS} dotted parts and {MAX_SET_KEY_LEN} bytes"
            ));
        }
        let parts: Vec<&str> = key.split('.').collect();
        let bare = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !parts.iter().all(bare) {
            return Err(format!(
                "--set {key:?}: a key is a dotted path of bare keys (e.g. health_check.kind)"
            ));
        }
        let mut v: toml_edit::Value = text
            .parse()
            .unwrap_or_else(|_| toml_edit::Value::from(text));
        // Nor is any value of a service deeper than a few arrays or inline
        // tables; a deeper one (inline tables of dotted keys nest about
        // 6,300 tables in 13 KB) overflowed the control thread's stack when
        // the edited text was validated, aborting the appliance (found in
        // audit).
        if value_depth(&v) > MAX_SET_VALUE_DEPTH {
            return Err(format!(
                "--set {key:?}: a value nests at most {MAX_SET_VALUE_DEPTH} arrays or inline tables"
            ));
        }
        written_afresh(&mut v);
        let (last, tables) = parts.split_last().ok_or("--set: an empty key")?;
        let mut cur = t;
        for p in tables {
            if !cur.contains_key(p) {
                let mut sub = Table::new();
                sub.set_implicit(false);
                cur.insert(p, Item::Table(sub));
            }
            cur = cur
                .get_mut(p)
                .and_then(Item::as_table_mut)
                .ok_or_else(|| format!("--set {key:?}: {p} is not a table"))?;
        }
        cur[last] = Item::Value(v);
        Ok(())
    }

    fn set_weight(
        doc: &mut DocumentMut,
        config: &Config,
        service: &str,
        real: &str,
        weight: u32,
    ) -> Result<(), String> {
        let i = service_index(config, service)?;
        let j = real_index(config, i, real)?
            .ok_or_else(|| format!("service {service:?} has no real {real}"))?;
        let s = services(doc)?
            .get_mut(i)
            .ok_or("the document's services do not match the running configuration")?;
        let r = reals(s)?
            .get_mut(j)
            .ok_or("the document's reals do not match the running configuration")?;
        r["weight"] = value(i64::from(weight));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::Config;

    const TEXT: &str = r#"
# the operator's comment stays
[workers]
lcores = [1]

[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"

[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
scheduler = "wrr"

[[services.reals]]
address = "198.18.0.11"
weight = 3

[[services.reals]]
address = "198.18.0.12"
"#;

    fn run(text: &str, r: Request) -> Result<String, String> {
        let config = Config::parse(text).unwrap();
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        edit::apply(&mut doc, &config, &r)?;
        let out = doc.to_string();
        Config::parse(&out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Found in audit: a client reading its answer a little at a time
    /// kept its slot (one of 16) for as long as it liked: each write had
    /// its own timeout, and each found room.
    #[test]
    fn an_answer_the_client_reads_too_slowly_is_cut_off() {
        let line = json!({"flow": "x".repeat(1000)});
        let answer_to = |reader_pause: Duration| {
            let (server, client) = UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let mut got = 0;
                while let Ok(n @ 1..) = (&client).read(&mut buf) {
                    got += n;
                    std::thread::sleep(reader_pause);
                }
                got
            });
            // 200 KiB/s past 300 ms; 1 MB to write.
            let mut answer = Answer::within(&server, Duration::from_millis(300), 200 << 10);
            let sent = (0..1_000)
                .take_while(|_| answer.line(&line).is_ok())
                .count();
            drop(server);
            (sent, reader.join().unwrap())
        };
        // At most 100 KB/s: cut off.
        let (sent, _) = answer_to(Duration::from_millis(10));
        assert!(sent < 1_000, "a slow reader got all of it");
        // As fast as it can: all of it.
        let (sent, got) = answer_to(Duration::ZERO);
        assert_eq!(sent, 1_000);
        assert_eq!(got, 1_000 * (line.to_string().len() + 1));
    }

    /// Found in review: the server's own time between lines (a filtered
    /// `connections` walking pages that match nothing) counted against a
    /// client that read at once.
    #[test]
    fn the_servers_time_between_lines_is_not_the_clients() {
        let (server, client) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = (&client).read_to_string(&mut all);
            all.lines().count()
        });
        let mut answer = Answer::within(&server, Duration::from_millis(300), 256 << 10);
        answer.line(&json!({"flow": 1})).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        answer.line(&json!({"flow": 2})).unwrap();
        drop(server);
        assert_eq!(reader.join().unwrap(), 2);
    }

    #[test]
    fn a_socket_folder_another_user_could_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-ctl-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode =
            |m: u32| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        mode(0o750);
        assert!(folder_is_ours(&dir).is_ok());
        mode(0o777);
        let e = folder_is_ours(&dir).unwrap_err().to_string();
        assert!(
            e.contains("every user may write to it") && e.contains("lb-ctl-folder"),
            "{e}"
        );
        // Found in audit: sticky, as /tmp, does not keep another user from
        // binding the name while the appliance is down.
        mode(0o1777);
        let e = folder_is_ours(&dir).unwrap_err().to_string();
        assert!(e.contains("every user may write to it (mode 1777)"), "{e}");
        // Its group may write to it: only root's group.
        mode(0o770);
        let e = folder_is_ours(&dir);
        let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&dir).unwrap());
        assert_eq!(e.is_ok(), group == 0, "{e:?}");
        if rustix::process::geteuid().is_root() {
            mode(0o755);
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let e = folder_is_ours(&dir).unwrap_err().to_string();
            assert!(e.contains("belongs to user 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found in audit: the answers of `list` and `save` are one line each,
    /// which the client refused past 1 MiB: `list` failed from about 6,000
    /// reals. At 8,192 reals both fit, with room to 65,536.
    #[test]
    fn list_and_save_answers_fit_the_clients_line_limit() {
        let mut text = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                        device = \"net_null0\"\naddress = \"198.18.0.2/16\"\n"
            .to_string();
        for s in 0..64u32 {
            text += &format!(
                "[[services]]\nname = \"service-{s}\"\nvip = \"198.19.1.{}\"\nport = 80\n",
                s + 1
            );
            for r in 0..128u32 {
                text += &format!(
                    "[[services.reals]]\naddress = \"198.18.{}.{}\"\nport = 8080\n",
                    r / 100 + 1,
                    r % 100 + 1
                );
            }
        }
        let config = Config::parse(&text).unwrap();
        let snap = lb_core::snapshot::Snapshot::compile(
            &config,
            &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
            1,
            &mut lb_core::snapshot::Ids::default(),
            |_, _, _| true,
        )
        .unwrap();
        let shared = Arc::new(Mutex::new(Shared::new(Arc::new(snap), 0)));
        let exporter = Exporter::new(shared, Vec::new(), Vec::new(), String::new());
        let list = json!({"status": exporter.status(), "ok": true})
            .to_string()
            .len()
            + 1;
        let save = json!({"text": text, "ok": true}).to_string().len() + 1;
        let reals = 64 * 128;
        for (what, len) in [("list", list), ("save", save)] {
            let at_most = len / reals * lb_core::snapshot::MAX_REALS;
            assert!(
                at_most <= MAX_ANSWER_LINE,
                "{what}: {len} bytes at {reals} reals, {at_most} at the most reals"
            );
        }
    }

    #[test]
    fn a_file_in_the_way_is_never_removed() {
        let dir = std::env::temp_dir().join(format!("lb-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("not-a-socket");
        std::fs::write(&path, "precious").unwrap();
        let shared = Arc::new(Mutex::new(Shared::new(
            Arc::new(
                lb_core::snapshot::Snapshot::compile(
                    &Config::parse(TEXT).unwrap(),
                    &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
                    1,
                    &mut lb_core::snapshot::Ids::default(),
                    |_, _, _| true,
                )
                .unwrap(),
            ),
            0,
        )));
        let exporter = Exporter::new(Arc::clone(&shared), Vec::new(), Vec::new(), String::new());
        let (tx, _rx) = bounded(1);
        let e = ControlSocket::start(&path, exporter, shared, Vec::new(), tx, Arc::default())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found in audit: the client read a reply line of any length. A line
    /// over the cap is refused; items and the answer below it still read.
    #[test]
    fn the_client_refuses_an_endless_reply_line() {
        let dir = std::env::temp_dir().join(format!("lb-ctl-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                "{\"item\":1}\n{\"ok\":true,\"n\":2}\n".to_string(),
                format!("{{\"item\":\"{}\"}}\n", "x".repeat(MAX_ANSWER_LINE + 10)),
            ] {
                let (mut c, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&c).read_line(&mut line).unwrap();
                let _ = c.write_all(answer.as_bytes());
            }
        });
        let mut items = 0;
        let v = call(&path, &Request::List, |_| items += 1).unwrap();
        assert_eq!((items, v["n"].as_u64()), (1, Some(2)));
        let e = call(&path, &Request::List, |_| ()).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r = Request::AddReal {
            service: "web".into(),
            real: "198.18.0.13:80".into(),
            weight: Some(2),
            forwarding: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains(r#""command":"add-real""#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"command":"rm-rf"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"command":"drain","service":"web","real":"198.18.0.11:80","x":1}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"command":"edit-real","service":"web"}"#).is_err()
        );
    }

    #[test]
    fn edits_keep_the_text_and_validate_as_a_file() {
        let added = run(
            TEXT,
            Request::AddReal {
                service: "web".into(),
                real: "198.18.0.13:80".into(),
                weight: Some(2),
                forwarding: None,
            },
        )
        .unwrap();
        assert!(added.contains("# the operator's comment stays"));
        let c = Config::parse(&added).unwrap();
        assert_eq!(c.services[0].reals.len(), 3);
        assert_eq!(c.services[0].reals[2].weight, 2);
        let drained = run(
            TEXT,
            Request::Drain {
                service: "web".into(),
                real: "198.18.0.11:80".into(),
            },
        )
        .unwrap();
        assert_eq!(
            Config::parse(&drained).unwrap().services[0].reals[0].weight,
            0
        );
        let deleted = run(
            TEXT,
            Request::DelReal {
                service: "web".into(),
                real: "198.18.0.12:80".into(),
            },
        )
        .unwrap();
        assert_eq!(Config::parse(&deleted).unwrap().services[0].reals.len(), 1);
        let svc = run(
            TEXT,
            Request::AddService {
                name: "dns".into(),
                vip: "198.18.1.53".into(),
                port: 53,
                protocol: Some("udp".into()),
                scheduler: None,
                forwarding: None,
                persistence: None,
                syn_proxy: None,
                set: vec![
                    ("health_check.kind".into(), "tcp".into()),
                    ("health_check.interval".into(), "\"2s\"".into()),
                ],
            },
        )
        .unwrap();
        let c = Config::parse(&svc).unwrap();
        assert_eq!(c.services.len(), 2);
        let hc = c.services[1].health_check.as_ref().expect("a health check");
        assert_eq!(hc.interval, std::time::Duration::from_secs(2));
        let gone = run(&svc, Request::DelService { name: "dns".into() }).unwrap();
        assert_eq!(Config::parse(&gone).unwrap().services.len(), 1);
    }

    #[test]
    fn refused_edits_say_why() {
        let add = |service: &str, real: &str, forwarding: Option<&str>| Request::AddReal {
            service: service.into(),
            real: real.into(),
            weight: None,
            forwarding: forwarding.map(Into::into),
        };
        let e = run(TEXT, add("nope", "198.18.0.13:80", None)).unwrap_err();
        assert!(e.contains("no service \"nope\""), "{e}");
        let e = run(TEXT, add("web", "198.18.0.11:80", None)).unwrap_err();
        assert!(e.contains("already has"), "{e}");
        // Validated as a file would be: the path names the key.
        let e = run(TEXT, add("web", "198.18.0.13:80", Some("teleport"))).unwrap_err();
        assert!(e.contains("services[0].reals[2].forwarding"), "{e}");
        let e = run(
            TEXT,
            Request::EditReal {
                service: "web".into(),
                real: "198.18.0.99:80".into(),
                weight: 1,
            },
        )
        .unwrap_err();
        assert!(e.contains("has no real"), "{e}");
        let e = run(TEXT, add("web", "198.18.0.13", None)).unwrap_err();
        assert!(e.contains("is not ADDR:PORT"), "{e}");
    }

    /// A valid file whose last service has a real written after its
    /// health check (still that service's real).
    const REAL_AFTER_CHECK: &str = r#"
[workers]
lcores = [1]

[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"

[[services]]
name = "web"
vip = "198.18.1.100"
port = 80

[[services.reals]]
address = "198.18.0.11"

[services.health_check]
kind = "tcp"

[[services.reals]]
address = "198.18.0.12"
"#;

    /// Found in audit: toml_edit writes a table without a position after
    /// the last table it visited before it, here the last service's
    /// health check, so `add-service` put the new `[[services]]` before
    /// that service's second real, which the new service then took.
    #[test]
    fn add_service_does_not_take_the_last_services_reals() {
        let before = Config::parse(REAL_AFTER_CHECK).unwrap();
        assert_eq!(before.services[0].reals.len(), 2);
        let out = run(REAL_AFTER_CHECK, add_service(&[])).unwrap();
        let after = Config::parse(&out).unwrap();
        assert_eq!(after.services[0], before.services[0], "{out}");
        assert!(after.services[1].reals.is_empty(), "{out}");
    }

    /// Found in audit: the control thread kept the document as edited
    /// while the running config was read from its text; after the
    /// add-service above the two disagreed, and `add-real web` went to
    /// the new service. Each step as `Control::handle` takes it.
    #[test]
    fn add_real_after_add_service_goes_to_the_named_service() {
        let step = |doc: &mut toml_edit::DocumentMut, config: &mut Config, r: Request| {
            let (d, text) = edit::edited(doc, config, &r)?;
            let new = Config::parse(&text).map_err(|e| e.to_string())?;
            edit::changes_only_its_service(config, &new, &r)?;
            *config = new;
            *doc = d;
            Ok::<(), String>(())
        };
        let mut doc: toml_edit::DocumentMut = REAL_AFTER_CHECK.parse().unwrap();
        let mut config = Config::parse(REAL_AFTER_CHECK).unwrap();
        step(&mut doc, &mut config, add_service(&[])).unwrap();
        step(
            &mut doc,
            &mut config,
            Request::AddReal {
                service: "web".into(),
                real: "198.18.0.13:80".into(),
                weight: None,
                forwarding: None,
            },
        )
        .unwrap();
        let reals = |i: usize| -> Vec<String> {
            config.services[i]
                .reals
                .iter()
                .map(|r| r.address.to_string())
                .collect()
        };
        assert_eq!(
            reals(0),
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"],
            "{doc}"
        );
        assert!(reals(1).is_empty(), "{doc}");
    }

    /// Whatever the text does with an edit's tables, one that changes a
    /// service the request does not name is refused.
    #[test]
    fn an_edit_that_changes_another_service_is_refused() {
        let old = Config::parse(REAL_AFTER_CHECK).unwrap();
        let mut new = old.clone();
        new.services[0].reals.pop();
        let r = add_service(&[]);
        let e = edit::changes_only_its_service(&old, &new, &r).unwrap_err();
        assert!(e.contains("nothing changed"), "{e}");
        let named = Request::DelReal {
            service: "web".into(),
            real: "198.18.0.12:80".into(),
        };
        edit::changes_only_its_service(&old, &new, &named).unwrap();
    }

    fn add_service(set: &[(&str, &str)]) -> Request {
        Request::AddService {
            name: "extra".into(),
            vip: "198.18.1.54".into(),
            port: 80,
            protocol: None,
            scheduler: None,
            forwarding: None,
            persistence: None,
            syn_proxy: None,
            set: set
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Found in audit (output): a `--set` value is put into the running
    /// text as its client wrote it, comments inside an array included
    /// (TOML lets a comment hold any character but C0 controls and DEL):
    /// a ctl client (group access to the socket, not root) writes lines
    /// of its choosing into the text that `ctl save` prints raw to root's
    /// terminal and `ctl save --output` writes into /etc/.../lb.toml: C1
    /// controls (U+009B is CSI, which some terminals take as ESC [),
    /// bidirectional overrides and zero-width characters, which names
    /// refuse for that very reason, and text posing as the operator's
    /// own comments ("# approved by ..."), up to the 64 KiB request.
    #[test]
    fn a_set_value_plants_no_comment_in_the_running_text() {
        let planted =
            "[{address = \"198.18.0.15\"}, # \u{9b}2J\u{202e}\n# reviewed and approved by root\n]";
        let out = run(TEXT, add_service(&[("reals", planted)])).unwrap();
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' || lb_config::invisible_format(c)),
            "{out:?}"
        );
        assert!(!out.contains("approved"), "{out}");
    }

    /// Found in review: a key of 8,000 dotted parts (16 KB) held the
    /// control thread for 42 s and 5 GB while the document was written.
    #[test]
    fn a_deep_or_long_set_key_or_too_many_are_refused_at_once() {
        let deep = vec!["a"; 8000].join(".");
        let started = std::time::Instant::now();
        let e = run(TEXT, add_service(&[(&deep, "1")])).unwrap_err();
        assert!(e.contains("at most 4 dotted parts"), "{e}");
        // Guards against the hang found in review (42 s), not a speed
        // claim: refusing takes milliseconds, the bound is far above that.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let e = run(TEXT, add_service(&[("a.b.c.d.e", "1")])).unwrap_err();
        assert!(e.contains("at most 4 dotted parts"), "{e}");
        let long = "k".repeat(129);
        let e = run(TEXT, add_service(&[(&long, "1")])).unwrap_err();
        assert!(e.contains("128 bytes"), "{e}");
        let many: Vec<(String, &str)> = (0..65).map(|i| (format!("k{i}"), "1")).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let e = run(TEXT, add_service(&many)).unwrap_err();
        assert!(e.contains("at most 64 --set keys"), "{e}");
        // Four parts are let through to validation, which names the key.
        let e = run(TEXT, add_service(&[("health_check.a.b.c", "1")])).unwrap_err();
        assert!(!e.contains("dotted parts"), "{e}");
    }

    /// Found in audit: a `--set` value of inline tables of dotted keys
    /// (79 levels of 79-part keys: about 6,300 tables in 13 KB) overflowed
    /// the control thread's stack when the edited text was validated,
    /// aborting the whole appliance. Refused before anything is edited
    /// now (the test's thread has a 4 MiB stack, which the old path, in a
    /// debug build, overflowed).
    #[test]
    fn a_deeply_nested_set_value_is_refused_before_validation() {
        let key = vec!["a"; 79].join(".");
        let deep = format!("{}1{}", format!("{{{key}=").repeat(79), "}".repeat(79));
        assert!(deep.len() < 13_000);
        std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(move || {
                let e = run(TEXT, add_service(&[("health_check.x", &deep)])).unwrap_err();
                assert!(e.contains("nests at most 4"), "{e}");
                // A value as deep as any real one goes on to validation.
                let e = run(TEXT, add_service(&[("health_check.x", "[{a = [1]}]")])).unwrap_err();
                assert!(!e.contains("nests at most"), "{e}");
                let e =
                    run(TEXT, add_service(&[("health_check.x", "{a.b.c.d.e = 1}")])).unwrap_err();
                assert!(e.contains("nests at most 4"), "{e}");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A script health check runs its program as root: not from the
    /// socket, however it is spelled.
    #[test]
    fn a_script_health_check_is_refused_from_the_socket() {
        let cmd = r#"["/bin/sh", "-c", "id > /tmp/owned"]"#;
        for set in [
            vec![
                ("health_check.kind", "script"),
                ("health_check.command", cmd),
            ],
            vec![("health_check.kind", "\"script\"")],
            vec![("health_check.kind", r#""\u0073cript""#)],
            vec![("health_check.command", cmd)],
            vec![("health_check.user", "nobody")],
            vec![
                ("health_check.kind", "tcp"),
                ("health_check.user", "\"root\""),
            ],
            vec![(
                "health_check",
                r#"{ kind = "script", command = ["/bin/true"] }"#,
            )],
        ] {
            let e = run(TEXT, add_service(&set)).unwrap_err();
            assert!(e.contains("runs a program as root"), "{set:?}: {e}");
        }
        // Other checks still go.
        run(TEXT, add_service(&[("health_check.kind", "http")])).unwrap();
    }

    /// Runs `/usr/bin/python3` as uid and gid 65534 ("nobody"): it binds a
    /// Unix socket at `path`, says "ready", and answers `answers` requests
    /// with `reply` (one line each). The child, to kill and reap.
    fn serve_as_nobody(path: &Path, answers: usize, reply: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let script = r#"
import os, socket, sys
path, n, reply = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(4)
print("ready", flush=True)
for _ in range(n):
    c, _ = s.accept()
    c.makefile("rb").readline()
    c.sendall(reply.encode() + b"\n")
    c.close()
"#;
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(path)
            .arg(answers.to_string())
            .arg(reply)
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

    /// Found in audit: the `ctl` client talks to whatever answers on the
    /// socket path, and the appliance accepts a socket folder that every
    /// user may write to when it is sticky (`/tmp`). In such a folder any
    /// local user can bind the socket's name while the appliance is not
    /// running (before its first start, during a restart), and then:
    /// the appliance refuses to start ("answered by another process"),
    /// and root's `ctl list` shows the user's invented state while `ctl
    /// save --output /etc/lb-appliance/lb.toml` writes the user's
    /// configuration, script health checks (run as root) included. The
    /// client should refuse a server that is neither root nor its own user
    /// (`SO_PEERCRED`), and the appliance a folder others may write to.
    #[test]
    fn ctl_refuses_a_socket_served_by_another_user() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            crate::skip_test(
                "ctl_refuses_a_socket_served_by_another_user",
                "needs root (to run a helper as another user)",
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("lb-audit-squat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // As /tmp: anyone may write, sticky. The appliance refuses it now;
        // the client must refuse the other user's server all the same.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(folder_is_ours(&dir).is_err());
        let path = dir.join("control.sock");
        let evil = "[[services]]\nname = \"web\"\n[services.health_check]\nkind = \"script\"\ncommand = [\"/bin/sh\", \"-c\", \"id > /tmp/owned\"]\n";
        let reply = json!({"ok": true, "text": evil}).to_string();
        let mut helper = serve_as_nobody(&path, 1, &reply);
        let got = call(&path, &Request::Save, |_| {});
        let _ = helper.kill();
        let _ = helper.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            got.is_err(),
            "root's ctl took the answer of a socket served by uid 65534: {got:?}"
        );
        let e = got.unwrap_err();
        assert!(
            e.contains("served by user 65534") && e.contains("control.sock"),
            "{e}"
        );
    }

    /// Found in audit: a missing folder was made by `create_dir_all`, then
    /// chmodded 0750 by its path, which follows a symlink put there in
    /// between, and a folder another user made in between was taken. Now
    /// the folder is made 0750 at once, and one already there (made by
    /// whoever, or a symlink) is only looked at, never chmodded.
    #[test]
    fn the_socket_folder_is_made_0750_and_one_in_the_way_is_only_looked_at() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let base = std::env::temp_dir().join(format!("lb-ctl-make-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Missing, parents too: made, the folder itself 0750 at most.
        let made = base.join("a/b/run");
        make_folder(&made).unwrap();
        let mode = std::fs::symlink_metadata(&made).unwrap().mode() & 0o7777;
        assert_eq!(mode & !0o750, 0, "{mode:04o}");
        assert!(folder_is_ours(&made).is_ok());
        // A symlink in the way: not followed by a chmod.
        let victim = base.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        make_folder(&link).unwrap();
        let mode = std::fs::metadata(&victim).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o777, "the symlink's target was chmodded");
        assert!(folder_is_ours(&link).is_err(), "every user may write to it");
        if rustix::process::geteuid().is_root() {
            // Another user's folder, made in between: refused.
            let theirs = base.join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            make_folder(&theirs).unwrap();
            let e = folder_is_ours(&theirs).unwrap_err().to_string();
            assert!(
                e.contains("belongs to user 65534") && e.contains("theirs"),
                "{e}"
            );
            // Another user's symlink to a folder of ours: refused.
            std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o750)).unwrap();
            assert!(folder_is_ours(&link).is_ok(), "our own symlink");
            std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
            let e = folder_is_ours(&link).unwrap_err().to_string();
            assert!(e.contains("symbolic link of user 65534"), "{e}");
            // A folder of ours in a folder another user may replace it in.
            std::os::unix::fs::chown(&base, Some(65534), None).unwrap();
            let e = folder_is_ours(&made).unwrap_err().to_string();
            assert!(e.contains("belongs to user 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Found in audit: `folder_is_ours` looks at the world-write bit and the
    /// owner only. A folder its group may write to (`/run/lb-appliance`
    /// made 0770 or 2770 root:ops so that a team can use `ctl`) lets any
    /// member of that group remove the appliance's socket and bind their
    /// own, then feed root's `ctl save --output` (above): a user allowed
    /// to change what is forwarded, "but not run programs", gets root.
    #[test]
    fn a_socket_folder_its_group_may_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            crate::skip_test(
                "a_socket_folder_its_group_may_write_to_is_refused",
                "needs root (to give the folder another group)",
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("lb-audit-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(0), Some(65534)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
        let verdict = folder_is_ours(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            verdict.is_err(),
            "a folder group 65534 may write to was taken for the control socket"
        );
    }

    /// Found in audit: the socket's folder is looked at through
    /// symlinks (`metadata`, not `symlink_metadata`). In a sticky folder
    /// anyone may write to, another user's symlink `/tmp/lb -> /root-dir`
    /// passes as a folder of root's, the appliance binds its socket
    /// through it, and the user may point the link elsewhere at any time
    /// while the appliance runs: root's `ctl` then connects to the user's
    /// socket (see `ctl_refuses_a_socket_served_by_another_user`),
    /// and the appliance's stop removes `control.sock` in the folder the
    /// link names by then. Fix: refuse a folder reached through a symlink
    /// that is neither root's nor ours (or `O_NOFOLLOW`/`openat` the
    /// folder and bind relative to it).
    #[test]
    fn a_socket_folder_behind_another_users_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            crate::skip_test(
                "a_socket_folder_behind_another_users_symlink_is_refused",
                "needs root (to plant a symlink as another user)",
            );
            return;
        }
        let base = std::env::temp_dir().join(format!("lb-audit-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let shared = base.join("shared");
        let roots = base.join("roots");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&roots).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o750)).unwrap();
        let link = shared.join("lb");
        std::os::unix::fs::symlink(&roots, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let path = link.join("control.sock");
        let shared_state = Arc::new(Mutex::new(Shared::new(
            Arc::new(
                lb_core::snapshot::Snapshot::compile(
                    &Config::parse(TEXT).unwrap(),
                    &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
                    1,
                    &mut lb_core::snapshot::Ids::default(),
                    |_, _, _| true,
                )
                .unwrap(),
            ),
            0,
        )));
        let exporter = Exporter::new(
            Arc::clone(&shared_state),
            Vec::new(),
            Vec::new(),
            String::new(),
        );
        let (tx, _rx) = bounded(1);
        let started = ControlSocket::start(
            &path,
            exporter,
            shared_state,
            Vec::new(),
            tx,
            Arc::default(),
        );
        let took = started.is_ok();
        drop(started);
        let _ = std::fs::remove_dir_all(&base);
        assert!(
            !took,
            "the control socket was bound through uid 65534's symlink in a shared folder"
        );
    }

    /// Found in audit: a `ctl` change validates the whole running text
    /// again, the programs of every script check included, so when one
    /// service's check program is missing for a moment (a package upgrade
    /// that removes and installs it, an operator fixing it), a drain of
    /// another service, in the middle of an incident, was refused. Only a
    /// reload looks at the running config's programs again now, as only
    /// a reload reads the sync key files (`Config::parse_keeping_keys`).
    #[test]
    fn a_drain_is_not_refused_for_another_services_missing_check_program() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-audit-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("check-db");
        std::fs::write(&program, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            r#"{TEXT}
[[services]]
name = "db"
vip = "198.18.1.101"
port = 5432
scheduler = "wrr"

[services.health_check]
kind = "script"
command = ["{}"]

[[services.reals]]
address = "198.18.0.21"
"#,
            program.display()
        );
        let running = Config::parse(&text).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        // The db check's program goes away for a moment (being replaced).
        std::fs::remove_file(&program).unwrap();
        let drain = Request::Drain {
            service: "web".into(),
            real: "198.18.0.11:80".into(),
        };
        let (_, edited) = edit::edited(&doc, &running, &drain).unwrap();
        let parsed = Config::parse_keeping_keys(&edited, &running);
        let _ = std::fs::remove_dir_all(&dir);
        let new = parsed.expect("a drain of web was refused because of db's check program");
        assert_eq!(new.services[0].reals[0].weight, 0);
    }

    /// Found in audit: a file is at most `MAX_CONFIG_BYTES` (16 MiB), but
    /// the running text a `ctl` change edits has no bound, and a `--set`
    /// string keeps the escapes it was written with (`"\u0061"`, six
    /// bytes for one): a ctl client grows the text about 13 KB per
    /// `add-service` (a 2,048-byte `health_check.path` and a `host`, each
    /// character escaped), so some 1,250 of them (far below the 4,096
    /// services allowed) take it past 16 MiB. `ctl save --output` then
    /// writes a file that the next start, `--check` and a reload refuse
    /// (`longer than 16 MiB: not a config file`), and every later change
    /// parses the whole text again on the control thread. Here the text
    /// starts just below the limit (a file the appliance reads) and one
    /// change would take it past: refused now (`Config::parse_keeping_keys`).
    /// (Values are written afresh now, escapes decoded: the change adds
    /// about 2.4 KB, so the text starts 2 KiB below the limit.)
    #[test]
    fn a_ctl_change_never_takes_the_running_text_past_the_file_limit() {
        let limit = lb_config::MAX_CONFIG_BYTES as usize;
        let mut text = TEXT.to_string();
        let line = format!("# {}\n", "x".repeat(1000));
        while text.len() + line.len() < limit - 2 * 1024 {
            text.push_str(&line);
        }
        text.push_str(&format!(
            "#{}\n",
            "x".repeat(limit - 2 * 1024 - text.len() - 2)
        ));
        assert_eq!(text.len(), limit - 2 * 1024);
        let running = Config::parse(&text).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        let escaped = |first: &str, n: usize| format!("\"{first}{}\"", "\\u0061".repeat(n));
        let path = escaped("\\u002f", 2047);
        let host = escaped("", 200);
        let request = add_service(&[
            ("health_check.kind", "http"),
            ("health_check.path", &path),
            ("health_check.host", &host),
        ]);
        // As Control::handle takes it.
        let taken = edit::edited(&doc, &running, &request).and_then(|(_, edited)| {
            Config::parse_keeping_keys(&edited, &running)
                .map(|_| edited)
                .map_err(|e| e.to_string())
        });
        if let Ok(edited) = taken {
            let saved =
                std::env::temp_dir().join(format!("lb-audit-size-{}.toml", std::process::id()));
            std::fs::write(&saved, &edited).unwrap();
            let read = lb_config::read_config_file(&saved);
            let _ = std::fs::remove_file(&saved);
            panic!(
                "the change was taken: the running text is {} bytes (limit {limit}), and saved it reads back as {:?}",
                edited.len(),
                read.map(|t| t.len())
            );
        }
    }
}
