//! The main loop of the control thread, on the main lcore: start the
//! dataplane, then act on health reports, SIGHUP (reload) and the clock,
//! until SIGINT or SIGTERM. It is the only place that changes what the
//! workers see, always by publishing a whole new compiled snapshot.
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lb_config::{Config, HealthCheckKind, InitialHealth};
use lb_dataplane::{Dataplane, DropReason, StartError};

use crate::announce::{Announcer, IpRoute};
use crate::ctl;
use crate::exporter::{Exporter, Shared};
use crate::health::{probe_of, HealthCheckers, Hysteresis, Outcome, Probe, RealKey, Report};
use crate::http;
use crate::notify::{self, Systemd};
use crate::sync::{Keying, SyncStatus, SyncThread};

/// How often the control loop wakes up without a health report.
const TICK: Duration = Duration::from_millis(100);

/// How long one turn of the control loop spends on ctl changes, past the
/// first.
const CHANGES_TURN: Duration = Duration::from_millis(200);

/// How long a clean stop waits for the workers to let the floating
/// gateway go before it says goodbye to the sync peer (they switch
/// snapshots between bursts, well under a millisecond apart).
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// Takes what `rx` holds, one at a time through `f`, until it is empty or
/// `budget` has passed (the first is always taken). How many it took.
fn take_for<T>(
    rx: &crossbeam::channel::Receiver<T>,
    budget: Duration,
    mut f: impl FnMut(T),
) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while n == 0 || start.elapsed() < budget {
        let Ok(item) = rx.try_recv() else { break };
        f(item);
        n += 1;
    }
    n
}

#[derive(Debug)]
pub enum RunError {
    /// The dataplane could not start (one line, with the cause).
    Start(StartError),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
    /// The metrics listener could not be opened.
    Metrics(std::net::SocketAddr, std::io::Error),
    /// The sync socket could not be bound.
    Sync(std::net::SocketAddr, std::io::Error),
    /// The control socket could not be created.
    Control(PathBuf, std::io::Error),
    /// A worker ended on its own (it panicked, say): the appliance was
    /// stopped cleanly, and exits with a failure.
    Worker(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Signals(e) => write!(f, "installing signal handlers: {e}"),
            RunError::Metrics(a, e) => write!(
                f,
                "metrics.listen {a}: {e}; choose a free address in [metrics] listen"
            ),
            RunError::Sync(a, e) => write!(
                f,
                "sync.listen {a}: {e}; choose a local address and a free port in [sync] listen"
            ),
            RunError::Control(p, e) => write!(
                f,
                "control.socket {}: {e}; choose another path in [control] socket",
                p.display()
            ),
            RunError::Worker(e) => write!(f, "{e}; the appliance stopped"),
        }
    }
}

impl std::error::Error for RunError {}

/// Warns when `checked` reals' checker threads (one each) would not fit
/// in the memory maps the kernel allows a process (`vm.max_map_count`;
/// a thread's stack and its guard take two): the checkers past it fail
/// to start, and their reals are counted down (found in audit, with the
/// unit's task limit, which the unit now lifts).
fn warn_of_thread_room(checked: usize) {
    let Some(max) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
    else {
        return;
    };
    if let Some(why) = thread_room(checked, max) {
        log::warn!("{why}");
    }
}

/// [`warn_of_thread_room`]'s reckoning: 2 maps a checker thread, and
/// 4,096 for everything else (DPDK's memory, the binary, the workers').
fn thread_room(checked: usize, max_map_count: usize) -> Option<String> {
    let needed = checked.saturating_mul(2).saturating_add(4096);
    (needed > max_map_count).then(|| {
        format!(
            "health: {checked} checked reals need about {needed} memory maps (a checker thread each), \
             above vm.max_map_count ({max_map_count}): checkers past it will fail to start and their \
             reals count as down; raise it (sysctl -w vm.max_map_count={}, and in /etc/sysctl.d/)",
            needed.next_power_of_two().max(262_144)
        )
    })
}

/// The health state of every checked real, and the check it comes from.
#[derive(Debug, Default, Clone)]
struct Health {
    states: BTreeMap<RealKey, Hysteresis>,
    probes: BTreeMap<RealKey, Probe>,
    /// The reals whose state `sync` made anew (a new real, or a changed
    /// check) since [`Health::take_rechecks`], and whether it ran: what
    /// READY's wait is told.
    anew: BTreeSet<RealKey>,
    resynced: bool,
    /// Each checked service's VIP, by the service's name.
    vips: BTreeMap<String, IpAddr>,
}

impl Health {
    /// After a start or a reload: a real that stays checked the same way
    /// keeps its state and counts (new rise and fall apply); a new real,
    /// or one whose check changed (kind, path, host, status, command),
    /// starts afresh in the service's `initial` state, as keepalived
    /// starts a new checker; the rest are forgotten.
    fn sync(&mut self, config: &Config) {
        let mut next = BTreeMap::new();
        let mut probes = BTreeMap::new();
        self.vips.clear();
        for s in &config.services {
            let Some(h) = &s.health_check else { continue };
            let Some(probe) = probe_of(h) else { continue };
            self.vips.insert(s.name.clone(), s.vip);
            for r in &s.reals {
                let key = RealKey {
                    service: s.name.clone(),
                    address: r.address,
                    port: r.port,
                };
                let same = self.probes.get(&key) == Some(&probe);
                let mut st = match self.states.remove(&key) {
                    Some(st) if same => st,
                    _ => {
                        self.anew.insert(key.clone());
                        Hysteresis::new(h.rise, h.fall, h.initial == InitialHealth::Up)
                    }
                };
                st.retune(h.rise, h.fall);
                next.insert(key.clone(), st);
                probes.insert(key, probe.clone());
            }
        }
        self.states = next;
        self.probes = probes;
        self.resynced = true;
    }

    /// The VIPs of `snap` each of whose eligible reals is under a check
    /// that has not answered yet (up by their `initial` state only): what
    /// [`Announcer::set_unsettled`] is told.
    fn unsettled(&self, snap: &lb_core::snapshot::Snapshot) -> BTreeSet<IpAddr> {
        // Once every check has answered (all but the first seconds), no
        // key is built.
        if self.states.values().all(Hysteresis::answered) {
            return BTreeSet::new();
        }
        let mut settled = BTreeSet::new();
        let mut eligible = BTreeSet::new();
        for s in &snap.services {
            for r in s.reals.iter().filter(|r| r.eligible()) {
                eligible.insert(s.vip);
                let key = RealKey {
                    service: s.name.clone(),
                    address: r.address,
                    port: r.port,
                };
                if self.states.get(&key).is_none_or(|h| h.answered()) {
                    settled.insert(s.vip);
                }
            }
        }
        eligible.difference(&settled).copied().collect()
    }

    /// The reals under a check now.
    fn checked(&self) -> BTreeSet<RealKey> {
        self.probes.keys().cloned().collect()
    }

    /// If `sync` ran since the last call: the reals under a check now and
    /// those of them whose state it made anew (a new real, a changed check,
    /// also a real deleted and added again), for READY's wait
    /// ([`notify::FirstChecks::rechecked`]); None otherwise, or when
    /// `wanted` is false (after READY: nothing is built, and what was
    /// noted is forgotten). Found in review: comparing the checks before
    /// and after each turn cloned 65,536 of them per turn, and missed a
    /// real deleted and added again within one.
    fn take_rechecks(&mut self, wanted: bool) -> Option<(BTreeSet<RealKey>, BTreeSet<RealKey>)> {
        let anew = std::mem::take(&mut self.anew);
        (std::mem::take(&mut self.resynced) && wanted).then(|| (self.checked(), anew))
    }

    /// Whether `r` is about a real as it is checked now: not the last
    /// word of a checker a reload stopped, whose real is gone or is
    /// checked another way (a failure of the old check must not count
    /// against the new one).
    fn is_current(&self, r: &Report) -> bool {
        self.probes.get(&r.real) == Some(&r.probe)
    }

    /// Whether a real of `config` may take flows by its health. A real
    /// with a state is looked up (found in audit: every real's service was
    /// looked for by name first, so a publish of a config at the limits,
    /// 65,536 reals in 4,096 services, took 1.5 s instead of 0.04).
    fn is_up(&self, config: &Config, service: &str, address: IpAddr, port: u16) -> bool {
        let key = RealKey {
            service: service.to_string(),
            address,
            port,
        };
        if let Some(h) = self.states.get(&key) {
            return h.up;
        }
        let checked = config
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.health_check.as_ref())
            .is_some_and(|h| h.kind != HealthCheckKind::None);
        // Checked, but with no state yet: down until checked.
        !checked
    }
}

struct Control {
    config: Config,
    path: PathBuf,
    dataplane: Dataplane,
    health: Health,
    checkers: HealthCheckers,
    shared: Arc<Mutex<Shared>>,
    announcer: Announcer<IpRoute>,
    /// `[sync]`: the election's outcome (None without the section: then
    /// this appliance is always active, with no floating gateway).
    sync: Option<Arc<SyncStatus>>,
    /// `[sync]`: the running sync thread, to hand a reload's key to.
    sync_thread: Option<SyncThread>,
    /// Raised to have the floating gateways announced again.
    announce_epoch: u64,
    /// A worker polls no more ([`crate::notify::StallWatch`]): nothing is
    /// announced while one is stuck.
    stuck: bool,
    /// The running configuration's text (the file's, with the control
    /// socket's changes since), for `ctl` to edit and `ctl save` to print;
    /// None if the file could not be read back as TOML.
    doc: Option<toml_edit::DocumentMut>,
    /// The digests ([`ctl::text_digest`]) of the texts the file may hold
    /// without an edit of it being lost: the file as last loaded, then
    /// each text `ctl save` gave out since (at most
    /// [`ctl::SAVED_TEXTS`] of them): what `ctl save --output` onto the
    /// file may replace without `--force`.
    known_texts: std::collections::VecDeque<u64>,
}

impl Control {
    /// Whether this appliance is the active one of its pair (always
    /// without `[sync]`).
    fn active(&self) -> bool {
        self.sync.as_ref().is_none_or(|s| s.is_active())
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles the current config with the current health and hands it to
    /// the workers.
    fn publish(&mut self) -> Result<u64, String> {
        let health = &self.health;
        let config = &self.config;
        let mut snap = self
            .dataplane
            .compile(config, |s, a, p| health.is_up(config, s, a, p))
            .map_err(|e| e.to_string())?;
        if let (Some(sync), true) = (&config.sync, self.active()) {
            snap.float_gateways(sync.gateway, sync.gateway6);
        }
        snap.announce_epoch = self.announce_epoch;
        let generation = snap.generation;
        self.dataplane.publish(snap);
        let snap = Arc::clone(self.dataplane.snapshot());
        self.shared().snapshot = snap;
        self.announce();
        Ok(generation)
    }

    /// A clean stop with `[sync]`: the workers stop answering for the
    /// floating gateway (a snapshot without it, which every running worker
    /// has taken before this returns, or [`LEAVE_WAIT`] passed), so that
    /// the goodbye after it hands the gateway to the peer with nobody here
    /// still claiming it. Announces nothing: the VIPs are withdrawn.
    fn let_the_gateway_go(&mut self) {
        let floats = self
            .config
            .sync
            .is_some_and(|s| s.gateway.is_some() || s.gateway6.is_some());
        if !floats || !self.active() {
            return;
        }
        let health = &self.health;
        let config = &self.config;
        let snap = match self
            .dataplane
            .compile(config, |s, a, p| health.is_up(config, s, a, p))
        {
            Ok(mut snap) => {
                snap.announce_epoch = self.announce_epoch;
                snap
            }
            Err(e) => {
                log::warn!("stopping: cannot let the floating gateway go before the goodbye: {e}");
                return;
            }
        };
        let generation = snap.generation;
        self.dataplane.publish(snap);
        self.shared().snapshot = Arc::clone(self.dataplane.snapshot());
        if self.dataplane.wait_adopted(generation, LEAVE_WAIT) {
            log::info!("stopping: no longer answering for the floating gateway; saying goodbye to the sync peer");
        } else {
            log::warn!(
                "stopping: a worker did not let the floating gateway go within {LEAVE_WAIT:?} (stuck: it answers nothing); saying goodbye to the sync peer"
            );
        }
    }

    /// Brings the announced VIP routes in line with the running snapshot
    /// (`[announce]`), and the metric with them.
    fn announce(&mut self) {
        let snap = Arc::clone(self.dataplane.snapshot());
        let config = &self.config;
        // A primary on standby announces nothing: the backup holds the
        // flows, and routers must keep sending to it until the primary has
        // them too and took over. A backup announces whenever it could
        // forward (with a longer AS path, in the BGP configuration), so that
        // routers fall back to it as soon as the primary's routes go.
        let standby_primary = !self.active()
            && config
                .sync
                .is_some_and(|s| s.role == lb_config::SyncRole::Primary);
        let wanted = Announcer::<IpRoute>::wanted(&snap, |vip| {
            config.announce_interface(vip).map(str::to_string)
        });
        if standby_primary || self.stuck {
            // Standing by is no flap of the reals: announced again at
            // once when this box may forward (`Announcer::stand_by`).
            self.announcer
                .stand_by(config.announce.as_ref(), Instant::now());
        } else {
            self.announcer.set_unsettled(self.health.unsettled(&snap));
            self.announcer
                .update(config.announce.as_ref(), &wanted, Instant::now());
        }
        self.publish_announced();
    }

    /// `lb_vip_announced`: every VIP of the running snapshot (with
    /// `[announce]`), and every route still in the table, a VIP a reload
    /// removed included while its removal keeps failing (found in audit:
    /// its series went with the VIP, though the route stayed exported).
    /// `lb_vip_route_changes_total`: every VIP of the running snapshot
    /// (0 without `[announce]`) and every route in the table; the counts
    /// of other VIPs are forgotten, so its series stay as many as those.
    fn publish_announced(&mut self) {
        let snap = Arc::clone(self.dataplane.snapshot());
        let mut state: BTreeMap<IpAddr, bool> = match self.config.announce {
            None => BTreeMap::new(),
            Some(_) => snap
                .services
                .iter()
                .map(|s| (s.vip, self.announcer.is_announced(s.vip)))
                .collect(),
        };
        state.extend(self.announcer.announced().map(|vip| (vip, true)));
        let changes: BTreeMap<IpAddr, u64> = snap
            .services
            .iter()
            .map(|s| s.vip)
            .chain(self.announcer.announced())
            .map(|vip| (vip, self.announcer.route_changes(vip)))
            .collect();
        self.announcer
            .retain_route_changes(|vip| changes.contains_key(vip));
        let mut shared = self.shared();
        shared.announced = state;
        shared.route_changes = changes;
    }

    /// Whether report `r` counts: not the last word of a checker a
    /// reload stopped or replaced.
    fn counts(&self, r: &Report) -> bool {
        self.health.is_current(r) && self.checkers.is_live(r)
    }

    fn on_report(&mut self, r: Report) -> bool {
        if !self.counts(&r) {
            return false; // the last word of a checker a reload stopped
        }
        let label = r.real.label();
        let key = (r.real.service.clone(), label.clone());
        {
            let mut sh = self.shared();
            let counts = sh.health_checks.entry(key.clone()).or_default();
            counts[usize::from(!r.outcome.is_success())] += 1;
            match &r.outcome {
                Outcome::Success => {
                    sh.last_errors.remove(&key);
                }
                Outcome::Failure(e) => {
                    sh.last_errors.insert(key.clone(), e.clone());
                }
            }
        }
        let Some(state) = self.health.states.get_mut(&r.real) else {
            return false; // a report from a real that a reload removed
        };
        let first = !state.answered();
        let changed = state.record(r.outcome.is_success());
        if first && state.up {
            // Its VIP is wanted on a checked real now: its next
            // withdrawal is a flap (`Announcer::settle`).
            if let Some(vip) = self.health.vips.get(&r.real.service) {
                self.announcer.settle(*vip);
            }
        }
        match changed {
            Some(up) => {
                let (old, new) = if up { ("down", "up") } else { ("up", "down") };
                let last_error = match &r.outcome {
                    Outcome::Failure(e) => e.as_str(),
                    Outcome::Success => "none",
                };
                log::info!(
                    "health: service {} real {label}: {old} -> {new} (last error: {last_error})",
                    r.real.service
                );
                true
            }
            None => false,
        }
    }

    /// Re-reads the config file; applies it only if it is valid in full
    /// and changes nothing that needs a restart. Changes made through the
    /// control socket since are replaced by the file's text (as keepalived
    /// does on reload). Returns whether it was applied.
    fn reload(&mut self) -> bool {
        let text = match lb_config::read_config_file(&self.path) {
            Ok(t) => t,
            Err(e) => {
                log::error!(
                    "reload of {} refused, the running config is unchanged: {e}",
                    self.path.display()
                );
                self.shared().reloads_failure += 1;
                return false;
            }
        };
        // Syntax errors name the file reloaded, as at start (found in
        // audit: they named `lb.toml` whatever the file).
        let new = match Config::parse_named(&text, &self.path.display().to_string()) {
            Ok(c) => c,
            Err(errors) => {
                log::error!(
                    "reload of {} refused, the running config is unchanged:\n{errors}",
                    self.path.display()
                );
                self.shared().reloads_failure += 1;
                return false;
            }
        };
        match self.apply(new) {
            Ok(generation) => {
                self.doc = text.parse().ok();
                self.known_texts = [ctl::text_digest(&text)].into();
                self.shared().reloads_success += 1;
                log::info!(
                    "reloaded {}: generation {generation}, {} service(s)",
                    self.path.display(),
                    self.config.services.len()
                );
                true
            }
            Err(e) => {
                self.shared().reloads_failure += 1;
                log::error!(
                    "reload of {} refused: {e}; the running config is unchanged",
                    self.path.display()
                );
                false
            }
        }
    }

    /// Makes `new` the running config (flows kept, as on reload): refused,
    /// with nothing changed, if it changes what needs a restart or does
    /// not compile. Returns the new generation.
    fn apply(&mut self, new: Config) -> Result<u64, String> {
        let restart = self.config.restart_required_changes(&new);
        if !restart.is_empty() {
            // The keys of `[dpdk]`, a port, or `[sync]` that changed, after
            // what the message always said (found in audit: only the
            // section was named).
            let mut changed = Vec::new();
            if restart.contains(&"dpdk") {
                changed.extend(self.config.dpdk_changed(&new));
            }
            if restart.contains(&"ports") {
                changed.extend(self.config.ports_changed(&new));
            }
            if restart.contains(&"sync") {
                changed.extend(self.config.sync_changed(&new));
            }
            let keys = if changed.is_empty() {
                String::new()
            } else {
                format!(" ({})", changed.join(", "))
            };
            return Err(format!(
                "{} changed, which needs a restart; nothing of it was applied{keys}",
                restart.join(", ")
            ));
        }
        let old = std::mem::replace(&mut self.config, new);
        let old_health = self.health.clone();
        self.health.sync(&self.config);
        match self.publish() {
            Ok(generation) => {
                self.checkers.sync(&self.config);
                warn_of_thread_room(self.health.states.len());
                // The keys and max_clock_skew are all of [sync] a reload
                // may change (restart_required_changes): to the thread.
                if let (Some(t), Some(was), Some(now)) =
                    (&self.sync_thread, &old.sync, &self.config.sync)
                {
                    if Keying::of(was) != Keying::of(now) {
                        t.rekey(Keying::of(now));
                    }
                }
                // Health series of reals no longer checked go away.
                let checked: std::collections::BTreeSet<(String, String)> = self
                    .health
                    .states
                    .keys()
                    .map(|k| (k.service.clone(), k.label()))
                    .collect();
                let mut sh = self.shared();
                sh.health_checks.retain(|k, _| checked.contains(k));
                sh.last_errors.retain(|k, _| checked.contains(k));
                Ok(generation)
            }
            Err(e) => {
                self.config = old;
                self.health = old_health;
                Err(e)
            }
        }
    }

    /// A request from the control socket that reads or changes the running
    /// configuration: the edited text is validated whole, as a file would
    /// be, then applied; a refusal changes nothing.
    fn handle(&mut self, request: &ctl::Request) -> Result<serde_json::Value, String> {
        let Some(doc) = &self.doc else {
            return Err(format!(
                "the running configuration's text could not be read back from {}; reload it (SIGHUP) first",
                self.path.display()
            ));
        };
        if let ctl::Request::Save = request {
            let text = doc.to_string();
            let digest = ctl::text_digest(&text);
            if !self.known_texts.contains(&digest) {
                if self.known_texts.len() > ctl::SAVED_TEXTS {
                    // The loaded file's stays first.
                    self.known_texts.remove(1);
                }
                self.known_texts.push_back(digest);
            }
            // The file the appliance loads, as `ctl save --output` will
            // name it (its own path may be relative to our folder).
            let config = std::fs::canonicalize(&self.path).ok();
            return Ok(serde_json::json!({
                "text": text,
                "config": config.map(|p| p.to_string_lossy().into_owned()),
                "known": self.known_texts.iter().map(|d| format!("{d:016x}")).collect::<Vec<_>>(),
            }));
        }
        let (doc, text) = ctl::edit::edited(doc, &self.config, request)?;
        let mut new = Config::parse_keeping_keys(&text, &self.config)
            .map_err(|e| format!("refused, nothing changed:\n{e}"))?;
        ctl::edit::changes_only_its_service(&self.config, &new, request)?;
        // Only a reload (SIGHUP) takes a new sync key: the file may hold
        // one already, meant for a reload in its order (README, "Keyed
        // sync"), which an edit of a real's weight must not apply.
        if let (Some(n), Some(running)) = (new.sync.as_mut(), self.config.sync.as_ref()) {
            n.key = running.key;
            n.accept_key = running.accept_key;
            n.max_clock_skew = running.max_clock_skew;
        }
        let generation = self.apply(new)?;
        self.doc = Some(doc);
        log::info!("ctl {}: applied, generation {generation}", request.name());
        Ok(serde_json::json!({ "generation": generation }))
    }
}

/// The soft limit on open files the appliance raises itself to (the hard
/// limit permitting): the systemd unit's `LimitNOFILE`.
const OPEN_FILES: u64 = 65_536;

/// Raises the soft limit on open files towards the hard one, up to
/// [`OPEN_FILES`]. Each checked real
/// holds a descriptor while its check runs (thousands of reals, hanging
/// ones held to their timeout), beside DPDK's and the sockets': at the
/// usual soft limit of 1,024 a healthy real's check failed with "Too many
/// open files" and could take it down (found in review). The systemd unit
/// sets `LimitNOFILE`; a start by hand or in a container gets the same.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // (An unlimited hard limit is not one the kernel takes for files.)
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        // Not past what the systemd unit gives: scripts and `ip` inherit
        // the limit, and programs that close every descriptor up to it
        // one by one (some daemons' start-up does) would crawl under a
        // container's billion (found in review).
        let want = hard.min(OPEN_FILES);
        if soft < want {
            limit.current = Some(want);
            match setrlimit(Resource::Nofile, limit) {
                Ok(()) => log::info!("open files: soft limit raised from {soft} to {want}"),
                Err(e) => log::warn!("open files: could not raise the soft limit: {e}"),
            }
        }
    }
}

/// Runs the appliance with `config` (parsed from `text`, the content of
/// `config_path` read once, which `ctl` edits from then on) until
/// SIGINT or SIGTERM, then stops it cleanly and logs the final counters.
pub fn run(config: Config, text: &str, config_path: PathBuf) -> Result<(), RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(RunError::Signals)?;

    raise_open_files_limit();
    let mut systemd = Systemd::from_env();
    systemd.starting_dataplane();
    let mut health = Health::default();
    health.sync(&config);
    // The start's reals are the first checks awaited, not a change.
    health.take_rechecks(false);
    let mut dataplane = Dataplane::start(&config, |s, a, p| health.is_up(&config, s, a, p))
        .map_err(RunError::Start)?;
    let sync = match (&config.sync, dataplane.take_sync_links()) {
        (Some(s), Some(links)) => {
            let t = SyncThread::start(s, links).map_err(|e| RunError::Sync(s.listen, e))?;
            log::info!(
                "sync: {} on {}, peer {}, every {:?}, {}",
                s.role,
                t.local,
                s.peer,
                s.interval,
                match (s.key, s.accept_key) {
                    (Some(k), Some(a)) => format!(
                        "keyed, key id {}, a second key accepted (accept_key_file), key id {}",
                        k.id(),
                        a.id()
                    ),
                    (Some(k), None) => format!("keyed, key id {}", k.id()),
                    (None, _) => "not keyed".to_string(),
                }
            );
            Some(t)
        }
        _ => None,
    };
    let workers = dataplane.worker_stats();
    let shared = Arc::new(Mutex::new(Shared::new(
        Arc::clone(dataplane.snapshot()),
        workers.len(),
    )));
    let mut exporter = Exporter::new(
        Arc::clone(&shared),
        dataplane.ports(),
        workers.clone(),
        lb_dataplane::dpdk::version(),
    );
    if let Some(t) = &sync {
        exporter = exporter.with_sync(Arc::clone(&t.counters), Arc::clone(&t.status));
    }
    let ctl_counts: ctl::RequestCounts = Arc::default();
    exporter = exporter.with_ctl(Arc::clone(&ctl_counts));
    let listen = config.metrics.listen;
    let server = http::Server::start(listen, exporter).map_err(|e| RunError::Metrics(listen, e))?;
    // The control socket reads status through an exporter of its own.
    let mut ctl_exporter = Exporter::new(
        Arc::clone(&shared),
        dataplane.ports(),
        workers.clone(),
        lb_dataplane::dpdk::version(),
    );
    if let Some(t) = &sync {
        ctl_exporter = ctl_exporter.with_sync(Arc::clone(&t.counters), Arc::clone(&t.status));
    }
    let (changes_tx, changes_rx) = crossbeam::channel::bounded::<ctl::Change>(16);
    let socket_path = config.control.socket.clone();
    let ctl_socket = ctl::ControlSocket::start(
        &socket_path,
        ctl_exporter,
        Arc::clone(&shared),
        dataplane.flow_queries(),
        changes_tx,
        ctl_counts,
    )
    .map_err(|e| RunError::Control(socket_path.clone(), e))?;
    log::info!("control socket {}", socket_path.display());
    let doc = text.parse::<toml_edit::DocumentMut>().ok();
    let mut checkers = HealthCheckers::new();
    checkers.sync(&config);
    warn_of_thread_room(health.states.len());
    systemd.wait_for_first_checks(
        health.states.keys().cloned(),
        notify::first_checks_wait(&config),
    );
    log::info!(
        "running {} with {} worker(s) from {}; metrics on http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        config.workers.lcores.len(),
        config_path.display(),
        server.addr
    );
    let announcer = Announcer::new(IpRoute::default(), config.announce.as_ref());
    let mut control = Control {
        config,
        path: config_path,
        dataplane,
        health,
        checkers,
        shared,
        announcer,
        sync: sync.as_ref().map(|t| Arc::clone(&t.status)),
        sync_thread: sync,
        announce_epoch: 0,
        stuck: false,
        doc,
        known_texts: [ctl::text_digest(text)].into(),
    };
    // The workers run: announce what can take flows already.
    control.announce();

    let mut last_busy = Instant::now();
    let mut polls: Vec<(u64, u64)> = workers
        .iter()
        .map(|(_, w)| (w.polls.get(), w.busy_polls.get()))
        .collect();
    let mut failed = None;
    let mut stalls = crate::notify::StallWatch::new(crate::notify::polls(&workers), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        // A worker that ended on its own (a panic caught at its lcore's
        // entry): `ended_workers` told the others to stop; stop the rest
        // cleanly, and fail.
        let ended = control.dataplane.ended_workers();
        control.dataplane.reap_retired();
        if !ended.is_empty() {
            let what: Vec<String> = ended
                .iter()
                .map(|(lcore, end)| format!("worker on {lcore} {end}"))
                .collect();
            let what = what.join(", ");
            log::error!("{what}: stopping the appliance");
            failed = Some(what);
            break;
        }
        // A worker stuck (not ended): its share of the traffic goes
        // nowhere, so the VIPs are withdrawn until it polls again (the
        // watchdog, under systemd, restarts the appliance meanwhile).
        if let Some(stuck) = stalls.check(&crate::notify::polls(&workers), Instant::now()) {
            if stuck.is_empty() {
                log::warn!("every worker polls again: announcing the VIPs again");
            } else {
                let which: Vec<String> = stuck.iter().map(|&i| workers[i].0.to_string()).collect();
                log::error!(
                    "the worker on {} made no progress in {:?}: withdrawing the VIPs while it is stuck",
                    which.join(", "),
                    crate::notify::STALL_AFTER
                );
            }
            control.stuck = !stuck.is_empty();
            control.announce();
        }
        let mut changed = false;
        if let Some(r) = control.checkers.next_report(TICK) {
            let more: Vec<Report> = control.checkers.reports().collect();
            for r in std::iter::once(r).chain(more) {
                // READY waits for the first word of each real's check as
                // it runs now, not a replaced checker's last (noted in
                // review: one of those counted as the real's first check).
                if control.counts(&r) {
                    systemd.reported(&r.real);
                }
                changed |= control.on_report(r);
            }
        }
        // The election moved the floating gateway (and, for a primary,
        // the announcements).
        if let Some(st) = &control.sync {
            if st.reannounce.swap(false, Ordering::AcqRel) && st.is_active() {
                changed = true;
                control.announce_epoch += 1;
            }
            if st.changed.swap(false, Ordering::AcqRel) {
                changed = true;
                let cfg = control.config.sync;
                let gws: Vec<String> = cfg
                    .iter()
                    .flat_map(|c| {
                        c.gateway
                            .map(|g| g.to_string())
                            .into_iter()
                            .chain(c.gateway6.map(|g| g.to_string()))
                    })
                    .collect();
                if !gws.is_empty() {
                    if st.is_active() {
                        log::info!(
                            "sync: active: answering for the gateway {} and announcing it",
                            gws.join(", ")
                        );
                    } else {
                        log::info!(
                            "sync: standby: no longer answering for the gateway {}",
                            gws.join(", ")
                        );
                    }
                }
            }
        }
        if changed {
            if let Err(e) = control.publish() {
                log::error!("publishing the health change: {e}");
            }
        }
        // Changes from the control socket (ctl), answered at once: for
        // CHANGES_TURN at most (and one at least), the rest next turn, so
        // that the watchdog, a stop, a reload and health changes are seen
        // between them (found in audit: the whole queue was drained first,
        // 16 changes to a 65,536-real config took 16 s, past the
        // watchdog, and clients that kept asking kept the loop here).
        take_for(&changes_rx, CHANGES_TURN, |ch| {
            let r = if ch.too_late() {
                Err("came too late: its client had given up, so nothing was changed".to_string())
            } else {
                control.handle(&ch.request)
            };
            if let Err(e) = &r {
                log::warn!("ctl {} refused: {e}", ch.request.name());
            }
            let _ = ch.reply.send(r);
        });
        // Checks whose thread could not be started are tried again.
        control.checkers.retry();
        let reloaded = reload.swap(false, Ordering::Relaxed).then(|| {
            log::info!("SIGHUP: reloading {}", control.path.display());
            systemd.reloading();
            control.reload()
        });
        // Before READY, which first checks are awaited follows the ctl
        // changes and the reload.
        if let Some((checked, anew)) = control.health.take_rechecks(systemd.is_starting()) {
            systemd.rechecked(&checked, &anew);
        }
        if let Some(ok) = reloaded {
            systemd.reloaded(ok, control.dataplane.snapshot(), workers.len());
        }
        systemd.tick(&workers, control.dataplane.snapshot());
        // Routes whose removal failed, tried again now and then, and VIPs
        // wanted for their hold-down since their last flap, announced.
        let now = Instant::now();
        let retried = control.announcer.retry_leftovers(now);
        if control.announcer.release_held(now) || retried {
            control.publish_announced();
        }
        if last_busy.elapsed() >= Duration::from_secs(1) {
            last_busy = Instant::now();
            let mut sh = control.shared();
            for (i, (_, w)) in workers.iter().enumerate() {
                let (p, b) = (w.polls.get(), w.busy_polls.get());
                let (dp, db) = (p - polls[i].0, b - polls[i].1);
                sh.busy[i] = if dp == 0 { 0.0 } else { db as f64 / dp as f64 };
                polls[i] = (p, b);
            }
        }
    }
    systemd.stopping();
    // Withdraw first, and give routers the time to move traffic away,
    // while the ports still forward what arrives meanwhile.
    let delay = control.announcer.withdraw_all();
    if !delay.is_zero() {
        log::info!("stopping: VIPs withdrawn, waiting {delay:?} before the ports stop");
        std::thread::sleep(delay);
    }
    // The floating gateway goes before the goodbye: the peer takes it
    // over at the goodbye, and a worker still answering for it then would
    // draw the reals back here until the ports stop.
    if control.sync_thread.is_some() {
        control.let_the_gateway_go();
    }
    if let Some(t) = control.sync_thread.as_mut() {
        t.leave();
    }
    log::info!("stopping: waiting for the workers to finish their burst");
    // Neither slow metrics clients nor hanging health checks hold the stop
    // for long: the checkers are told first and end (or are left behind)
    // within health::STOP_WAIT (2 s), while the metrics server shuts its
    // connections (at most about 1 s) meanwhile.
    control.checkers.signal_stop();
    drop(server);
    drop(ctl_socket);
    control.checkers.stop();
    let ports = control.dataplane.shutdown();
    for (name, s) in &ports {
        log::info!(
            "port {name}: rx {} packets {} bytes, tx {} packets {} bytes, rx missed {}, rx errors {}, tx errors {}",
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.rx_missed,
            s.rx_errors,
            s.tx_errors
        );
    }
    let workers_now = control.dataplane.worker_stats();
    for (i, p) in control.config.ports.iter().enumerate() {
        let Some(k) = &p.kernel_interface else {
            continue;
        };
        let sum = |f: fn(&lb_dataplane::WorkerStats) -> &[lb_core::stats::Counter]| -> u64 {
            workers_now
                .iter()
                .map(|(_, w)| f(w).get(i).map_or(0, |c| c.get()))
                .sum()
        };
        log::info!(
            "port {}: kernel interface {k}: to kernel {}, from kernel {}",
            p.name,
            sum(|w| &w.to_kernel),
            sum(|w| &w.from_kernel)
        );
    }
    for (lcore, w) in workers_now {
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| w.dropped(**r) > 0)
            .map(|r| format!("{}={}", r.as_str(), w.dropped(*r)))
            .collect();
        log::info!(
            "worker on {lcore}: rx {}, tx {}, arp replies {}, echo replies {}, arp requests {}, \
             ndp advertisements {} solicitations {}, flows active {} (ipv6 {}) created {} expired {} evicted {} table-full {} stateless {}, nat replies unvouched {}, handoffs out {} in {}, held {}, \
             frag-needed sent {} rate-limited {}, icmp errors forwarded {}, syn cookies sent {} accepted {} deferred {} syn-retransmits {}, dropped {} [{}]",
            w.rx_packets.get(),
            w.tx_packets.get(),
            w.arp_replies.get(),
            w.icmp_echo_replies.get(),
            w.arp_requests.get(),
            w.ndp_advertisements.get(),
            w.ndp_solicitations.get(),
            w.active_flows.get(),
            w.ipv6_flows.active.get(),
            w.flows_created.get(),
            w.flows_expired.get(),
            w.flows_evicted.get(),
            w.flow_table_full.get(),
            w.stateless_forwards.get(),
            w.nat_replies_unvouched.get(),
            w.handoffs_out.get(),
            w.handoffs_in.get(),
            w.held.get(),
            w.icmp_frag_needed.get(),
            w.icmp_rate_limited.get(),
            w.icmp_errors_forwarded.get(),
            w.syn_proxy_cookies_sent.get(),
            w.syn_proxy_cookies_accepted.get(),
            w.syn_proxy_deferred.get(),
            w.syn_proxy_syn_retransmits.get(),
            w.dropped_total(),
            drops.join(" ")
        );
    }
    drop(control);
    if let Some(what) = failed {
        log::error!("stopped after a worker failure");
        return Err(RunError::Worker(what));
    }
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {

    /// Found in audit: the control loop drained every queued ctl change
    /// before it fed the watchdog again.
    #[test]
    fn a_turn_takes_changes_for_its_budget_and_leaves_the_rest() {
        let (tx, rx) = crossbeam::channel::bounded(16);
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        let mut seen = Vec::new();
        let n = take_for(&rx, Duration::from_millis(50), |i| {
            seen.push(i);
            std::thread::sleep(Duration::from_millis(30));
        });
        assert!((1..10).contains(&n), "took {n}");
        assert_eq!(rx.len(), 10 - n, "the rest wait");
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "in order");
        // The first is always taken, however long it takes.
        assert_eq!(take_for(&rx, Duration::ZERO, |_| {}), 1);
        // An empty queue: nothing.
        let (_tx, empty) = crossbeam::channel::bounded::<u8>(1);
        assert_eq!(take_for(&empty, Duration::from_secs(1), |_| {}), 0);
    }
    use super::*;

    /// Found in review: at a soft limit of 1,024 open files, hanging reals'
    /// checks took every descriptor and a healthy real's check failed.
    #[test]
    fn the_open_files_limit_is_raised() {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let Some(hard) = limit.maximum else {
            crate::skip_test(
                "the_open_files_limit_is_raised",
                "the hard open files limit is unlimited, which the kernel does not take for files",
            );
            return;
        };
        let before = limit;
        // Below what it raises to, and not so low that tests running
        // beside this one run out meanwhile.
        let want = hard.min(OPEN_FILES);
        limit.current = Some(want.saturating_sub(1).min(4096));
        setrlimit(Resource::Nofile, limit).unwrap();
        raise_open_files_limit();
        let raised = getrlimit(Resource::Nofile).current;
        setrlimit(Resource::Nofile, before).unwrap();
        assert_eq!(raised, Some(want));
    }

    /// A config with service "web" checked by `check` over `reals`.
    fn config(check: &str, reals: &[u16]) -> Config {
        let mut text = format!(
            "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\n\
             address = \"198.18.0.2/24\"\n[[services]]\nname = \"web\"\nvip = \"198.18.1.100\"\n\
             port = 80\n[services.health_check]\n{check}\n"
        );
        for p in reals {
            text.push_str(&format!(
                "[[services.reals]]\naddress = \"198.18.0.11\"\nport = {p}\n"
            ));
        }
        Config::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn up(h: &Health, c: &Config, port: u16) -> bool {
        h.is_up(c, "web", "198.18.0.11".parse().unwrap(), port)
    }

    fn key(port: u16) -> RealKey {
        RealKey {
            service: "web".into(),
            address: "198.18.0.11".parse().unwrap(),
            port,
        }
    }

    /// What READY's wait is told after a reload or a `ctl` change: the
    /// reals checked now, and which of them anew.
    #[test]
    fn the_reals_checked_anew_are_new_or_checked_another_way() {
        let mut h = Health::default();
        h.sync(&config("kind = \"tcp\"", &[80, 81]));
        h.take_rechecks(false);
        assert_eq!(h.take_rechecks(true), None, "nothing since");
        h.sync(&config("kind = \"tcp\"\nfall = 5", &[80, 82]));
        let (checked, anew) = h.take_rechecks(true).unwrap();
        assert_eq!(checked, BTreeSet::from([key(80), key(82)]));
        assert_eq!(
            anew,
            BTreeSet::from([key(82)]),
            "new rise and fall: the same check"
        );
        h.sync(&config("kind = \"http\"", &[80, 82]));
        assert_eq!(h.take_rechecks(true).unwrap().1, checked, "another check");
        // Deleted and added again before anyone asked (found in review).
        h.sync(&config("kind = \"http\"", &[80]));
        h.sync(&config("kind = \"http\"", &[80, 82]));
        assert_eq!(h.take_rechecks(true).unwrap().1, BTreeSet::from([key(82)]));
        // After READY nothing is built, and nothing piles up.
        h.sync(&config("kind = \"tcp\"", &[80, 82]));
        assert_eq!(h.take_rechecks(false), None);
        assert!(h.anew.is_empty());
    }

    /// A VIP is unsettled while every real that may take its flows is
    /// up only by its `initial` state (no check answered): its withdrawal
    /// then is no flap (`Announcer::set_unsettled`).
    #[test]
    fn a_vip_is_unsettled_until_a_check_answers_for_one_of_its_reals() {
        let mut h = Health::default();
        let c = config("kind = \"tcp\"", &[80, 81]);
        h.sync(&c);
        let snap = |h: &Health| {
            lb_core::snapshot::Snapshot::compile(
                &c,
                &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
                1,
                &mut lb_core::snapshot::Ids::default(),
                |s, a, p| h.is_up(&c, s, a, p),
            )
            .unwrap()
        };
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        assert_eq!(h.unsettled(&snap(&h)), BTreeSet::from([vip]));
        // One real's first check fails: down, and the other still unsettled.
        h.states.get_mut(&key(80)).unwrap().record(false);
        assert_eq!(h.unsettled(&snap(&h)), BTreeSet::from([vip]));
        // The other's answers: settled.
        h.states.get_mut(&key(81)).unwrap().record(true);
        assert!(h.unsettled(&snap(&h)).is_empty());
        // Without a check a real is settled from the start.
        let unchecked = Config::parse(
            "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\n\
             address = \"198.18.0.2/24\"\n[[services]]\nname = \"web\"\n\
             vip = \"198.18.1.100\"\nport = 80\n[[services.reals]]\naddress = \"198.18.0.11\"\n",
        )
        .unwrap();
        let mut h = Health::default();
        h.sync(&unchecked);
        let snap = lb_core::snapshot::Snapshot::compile(
            &unchecked,
            &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
            1,
            &mut lb_core::snapshot::Ids::default(),
            |_, _, _| true,
        )
        .unwrap();
        assert!(h.unsettled(&snap).is_empty());
    }

    #[test]
    fn too_many_checked_reals_for_the_kernels_map_count_are_warned_of() {
        assert_eq!(thread_room(1_000, 65_530), None);
        assert_eq!(thread_room(30_000, 65_530), None);
        let w = thread_room(40_000, 65_530).expect("warned");
        assert!(
            w.contains("40000 checked reals") && w.contains("vm.max_map_count=262144"),
            "{w}"
        );
        assert_eq!(thread_room(65_536, 262_144), None);
    }

    #[test]
    fn reals_start_up_by_default_and_down_when_asked() {
        let mut h = Health::default();
        let c = config("kind = \"tcp\"", &[80]);
        h.sync(&c);
        assert!(up(&h, &c, 80), "initial defaults to up");
        let mut h = Health::default();
        let c = config("kind = \"tcp\"\ninitial = \"down\"", &[80]);
        h.sync(&c);
        assert!(!up(&h, &c, 80), "initial = down");
    }

    #[test]
    fn a_reload_keeps_the_state_of_reals_checked_the_same_way_only() {
        let mut h = Health::default();
        let c = config("kind = \"tcp\"\nfall = 3", &[80, 81]);
        h.sync(&c);
        // 81 fails its first check: down at once (an assumption, not an
        // observation, is given up on the first failure).
        assert_eq!(
            h.states.get_mut(&key(81)).unwrap().record(false),
            Some(false)
        );
        // Same check, a new real 82 and new rise/fall: 81 stays down, 82
        // starts in the initial state.
        let c = config("kind = \"tcp\"\nfall = 2", &[80, 81, 82]);
        h.sync(&c);
        assert!(up(&h, &c, 80) && !up(&h, &c, 81) && up(&h, &c, 82));
        // The check changed (tcp -> http): every real starts afresh.
        let c = config("kind = \"http\"", &[80, 81, 82]);
        h.sync(&c);
        assert!(up(&h, &c, 81), "a new check starts in the initial state");
        // A result of the old check, arriving after the reload, is not
        // about the new one; one of the new check is.
        let report = |probe| Report {
            real: key(81),
            probe,
            outcome: Outcome::Failure("connect: refused".into()),
            checker: 0,
        };
        assert!(!h.is_current(&report(Probe::Tcp)));
        assert!(h.is_current(&report(h.probes[&key(81)].clone())));
        // Only the path changed: afresh again, now with initial = down.
        let c = config(
            "kind = \"http\"\npath = \"/healthz\"\ninitial = \"down\"",
            &[80],
        );
        h.sync(&c);
        assert!(!up(&h, &c, 80));
        assert_eq!(h.states.len(), 1, "removed reals are forgotten");
        // initial changes alone keep the state (it applies to new checks).
        let mut st = h.states.remove(&key(80)).unwrap();
        assert_eq!(st.record(true), None);
        assert_eq!(st.record(true), Some(true), "up after rise = 2");
        h.states.insert(key(80), st);
        let c = config(
            "kind = \"http\"\npath = \"/healthz\"\ninitial = \"up\"",
            &[80],
        );
        h.sync(&c);
        assert!(up(&h, &c, 80));
    }
}
