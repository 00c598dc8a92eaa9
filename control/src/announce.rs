//! `[announce]`: the VIPs' host routes in a kernel routing table, for a
//! routing daemon to export over BGP (BIRD's `protocol kernel` learning
//! that table, FRR's `redistribute table`). We never speak BGP ourselves.
//!
//! A VIP is announced while at least one real of a service on it may take
//! new flows (up by its health check, weight above 0), through the kernel
//! interface of the port that receives it; it is withdrawn when none may,
//! when a reload removes it, and on a clean stop before the ports stop
//! (then the stop waits `withdraw_delay`, so that routers move traffic
//! first). A crashed appliance announces nothing: the routes go with its
//! kernel interface, which goes with the process.
//!
//! Routes are set with iproute2 (`ip route replace/del ... table N`): a
//! few changes a minute at most, from the control thread, where a child
//! process costs nothing that matters and its errors read like an
//! operator's own.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use lb_core::snapshot::Snapshot;

/// Where host routes are kept: the kernel, or a fake in tests.
pub trait Routes {
    /// Adds or replaces the host route of `vip` via `dev` in `table`.
    fn replace(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String>;
    /// Removes it.
    fn delete(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String>;
}

/// How often routes whose removal failed are tried again.
pub const LEFTOVER_RETRY: Duration = Duration::from_secs(5);

/// How long one `ip route` may take before it is killed.
const IP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The kernel's routing tables, through `ip`.
#[derive(Debug, Default)]
pub struct IpRoute;

impl IpRoute {
    fn run(verb: &str, table: u32, vip: IpAddr, dev: &str) -> Result<(), String> {
        let prefix = match vip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        let family = if vip.is_ipv4() { "-4" } else { "-6" };
        let table = table.to_string();
        let args = [
            family, "route", verb, &prefix, "dev", dev, "table", &table, "proto", "static",
        ];
        // DPDK's descriptors stay ours.
        lb_dataplane::dpdk::close_on_exec_from_3();
        let mut child = Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        // On the control thread: a hung `ip` (a wedged netlink) must not
        // stall health changes, reloads or a stop. It is killed and reaped
        // after IP_TIMEOUT; the next update tries again.
        let deadline = std::time::Instant::now() + IP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "ip {}: no answer within {IP_TIMEOUT:?}, killed",
                        args.join(" ")
                    ));
                }
                Err(e) => return Err(format!("ip {}: {e}", args.join(" "))),
            }
        };
        if status.success() {
            Ok(())
        } else {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            Err(format!("ip {}: {}", args.join(" "), err.trim()))
        }
    }
}

impl Routes for IpRoute {
    fn replace(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String> {
        Self::run("replace", table, vip, dev)
    }

    fn delete(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String> {
        match Self::run("del", table, vip, dev) {
            // Gone already (its interface went, or someone removed it):
            // withdrawn all the same.
            Err(e) if e.contains("No such process") || e.contains("Cannot find device") => {
                log::warn!("announce: withdrawing {vip}: {e}");
                Ok(())
            }
            r => r,
        }
    }
}

/// The VIPs announced now, and where.
#[derive(Debug)]
pub struct Announcer<R: Routes> {
    routes: R,
    /// (table, withdraw delay), None without `[announce]`.
    settings: Option<(u32, Duration)>,
    /// VIP -> the interface its route goes through, and the table it is
    /// in.
    announced: BTreeMap<IpAddr, (String, u32)>,
    /// Routes whose removal failed (VIP, interface, table): tried again at
    /// every update, every [`LEFTOVER_RETRY`] and at the stop (found in
    /// review: they were forgotten, and the routing daemon kept exporting
    /// the VIP).
    leftovers: Vec<(IpAddr, String, u32)>,
    /// When the leftovers were last tried.
    last_retry: Option<std::time::Instant>,
}

impl<R: Routes> Announcer<R> {
    pub fn new(routes: R, announce: Option<&lb_config::AnnounceConfig>) -> Announcer<R> {
        Announcer {
            routes,
            settings: announce.map(|a| (a.table, a.withdraw_delay)),
            announced: BTreeMap::new(),
            leftovers: Vec::new(),
            last_retry: None,
        }
    }

    /// The VIPs that are to be announced by `snap`: every VIP with a
    /// service that has a real that may take new flows, through the
    /// interface `dev_for` names for it (a VIP without one is not
    /// announced).
    pub fn wanted(
        snap: &Snapshot,
        dev_for: impl Fn(IpAddr) -> Option<String>,
    ) -> BTreeMap<IpAddr, String> {
        let mut out = BTreeMap::new();
        for s in &snap.services {
            if s.reals.iter().any(|r| r.eligible()) && !out.contains_key(&s.vip) {
                if let Some(dev) = dev_for(s.vip) {
                    out.insert(s.vip, dev);
                }
            }
        }
        out
    }

    /// Makes the announced routes what `wanted` says, with the settings of
    /// `announce` (a reload may change the table: every route moves; or
    /// remove the section: every route goes). Logs each change; a route
    /// the kernel refused is logged and tried again at the next update.
    pub fn update(
        &mut self,
        announce: Option<&lb_config::AnnounceConfig>,
        wanted: &BTreeMap<IpAddr, String>,
    ) {
        self.settings = announce.map(|a| (a.table, a.withdraw_delay));
        let table = self.settings.map(|s| s.0);
        self.remove_leftovers(false);
        // Routes not wanted, in another table than the one now named, or
        // any left after `[announce]` went (and those whose removal failed
        // before: they are still here).
        let stale: Vec<(IpAddr, String, u32)> = self
            .announced
            .iter()
            .filter(|(vip, (dev, t))| Some(*t) != table || wanted.get(*vip) != Some(dev))
            .map(|(v, (d, t))| (*v, d.clone(), *t))
            .collect();
        for (vip, dev, t) in stale {
            self.withdraw(t, vip, &dev);
        }
        let Some(table) = table else {
            return;
        };
        for (vip, dev) in wanted {
            if self.announced.contains_key(vip) {
                continue;
            }
            match self.routes.replace(table, *vip, dev) {
                Ok(()) => {
                    log::info!("announce: {vip} via {dev} in table {table}");
                    self.announced.insert(*vip, (dev.clone(), table));
                    // A removal of the same route that failed before is
                    // moot: the route is wanted (found in review: retried,
                    // it took the route just put back).
                    self.leftovers.retain(|l| (l.0, l.2) != (*vip, table));
                }
                Err(e) => log::error!("announce: {vip} not announced: {e}"),
            }
        }
    }

    /// Removes the route of `vip` from `table`; a leftover, tried again
    /// later, if that fails.
    fn withdraw(&mut self, table: u32, vip: IpAddr, dev: &str) {
        self.announced.remove(&vip);
        if !self.delete(table, vip, dev) {
            let left = (vip, dev.to_string(), table);
            if !self.leftovers.contains(&left) {
                self.leftovers.push(left);
            }
        }
    }

    fn delete(&mut self, table: u32, vip: IpAddr, dev: &str) -> bool {
        match self.routes.delete(table, vip, dev) {
            Ok(()) => {
                log::info!("announce: {vip} withdrawn from table {table}");
                true
            }
            Err(e) => {
                log::error!("announce: {vip} not withdrawn from table {table} (tried again at the next update): {e}");
                false
            }
        }
    }

    /// Tries the removals that failed again, oldest first: up to the first
    /// that fails again (each may take `ip`'s timeout, on the thread that
    /// feeds the watchdog), or, with `every` (the stop), each once. Whether
    /// any was removed.
    fn remove_leftovers(&mut self, every: bool) -> bool {
        let mut removed = false;
        let mut failed = Vec::new();
        while !self.leftovers.is_empty() {
            let (vip, dev, table) = self.leftovers.remove(0);
            if self.delete(table, vip, &dev) {
                removed = true;
            } else {
                failed.push((vip, dev, table));
                if !every {
                    break;
                }
            }
        }
        // What failed goes behind the rest, so that one route whose
        // removal keeps failing does not keep the others from being tried.
        self.leftovers.append(&mut failed);
        removed
    }

    /// [`Self::remove_leftovers`], at most every [`LEFTOVER_RETRY`] (the
    /// control loop calls it every tick: a VIP whose removal failed must
    /// not wait for the next health change). Whether any was removed.
    pub fn retry_leftovers(&mut self, now: std::time::Instant) -> bool {
        if self.leftovers.is_empty()
            || self
                .last_retry
                .is_some_and(|t| now.saturating_duration_since(t) < LEFTOVER_RETRY)
        {
            return false;
        }
        self.last_retry = Some(now);
        self.remove_leftovers(false)
    }

    /// Withdraws every route (a clean stop, or `[announce]` removed) and
    /// returns how long to wait before the ports stop (zero when nothing
    /// was announced).
    pub fn withdraw_all(&mut self) -> Duration {
        let delay = self.settings.map_or(Duration::ZERO, |s| s.1);
        // Earlier failures first, each once; what fails now is not tried
        // twice. A route removed either way was exported: the delay.
        let had_leftovers = !self.leftovers.is_empty();
        self.remove_leftovers(true);
        let all: Vec<(IpAddr, String, u32)> = self
            .announced
            .iter()
            .map(|(v, (d, t))| (*v, d.clone(), *t))
            .collect();
        let any = had_leftovers || !all.is_empty();
        for (vip, dev, table) in all {
            self.withdraw(table, vip, &dev);
        }
        if any {
            delay
        } else {
            Duration::ZERO
        }
    }

    /// Whether `vip` is announced now (a route whose removal failed is:
    /// it is still in the table).
    pub fn is_announced(&self, vip: IpAddr) -> bool {
        self.announced.contains_key(&vip) || self.leftovers.iter().any(|l| l.0 == vip)
    }

    /// The VIPs announced now (once each).
    pub fn announced(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let left: std::collections::BTreeSet<IpAddr> = self
            .leftovers
            .iter()
            .map(|l| l.0)
            .filter(|v| !self.announced.contains_key(v))
            .collect();
        self.announced.keys().copied().chain(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::{AnnounceConfig, Config, MacAddr};
    use lb_core::snapshot::Ids;

    /// Records what would be done to the kernel; refuses one VIP.
    #[derive(Default)]
    struct Fake {
        log: Vec<String>,
        refuse: Option<IpAddr>,
        /// How many removals fail from now on.
        fail_deletes: usize,
    }

    impl Routes for Fake {
        fn replace(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String> {
            if self.refuse == Some(vip) {
                return Err("refused".into());
            }
            self.log.push(format!("replace {vip} {dev} {table}"));
            Ok(())
        }

        fn delete(&mut self, table: u32, vip: IpAddr, dev: &str) -> Result<(), String> {
            if self.fail_deletes > 0 {
                self.fail_deletes -= 1;
                self.log.push(format!("del {vip} {dev} {table} FAILED"));
                return Err("no answer within 2s, killed".into());
            }
            self.log.push(format!("del {vip} {dev} {table}"));
            Ok(())
        }
    }

    const CONFIG: &str = r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
address6 = "2001:2::2/64"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[services.health_check]
kind = "tcp"
[[services.reals]]
address = "198.18.0.11"
[[services.reals]]
address = "198.18.0.12"
[[services]]
name = "web6"
vip = "2001:2:0:1::100"
port = 80
[[services.reals]]
address = "2001:2::11"
weight = 0
[[services]]
name = "dns"
vip = "198.18.1.100"
port = 53
protocol = "udp"
[[services.reals]]
address = "198.18.0.13"
"#;

    fn snap(up: impl Fn(IpAddr) -> bool) -> Snapshot {
        let config = Config::parse(CONFIG).unwrap();
        Snapshot::compile(
            &config,
            &[MacAddr([2, 0, 0, 0, 0, 2])],
            1,
            &mut Ids::default(),
            |_, a, _| up(a),
        )
        .unwrap()
    }

    fn lbk0(_: IpAddr) -> Option<String> {
        Some("lbk0".to_string())
    }

    const A: AnnounceConfig = AnnounceConfig {
        table: 100,
        withdraw_delay: Duration::from_secs(2),
    };

    #[test]
    fn a_vip_is_announced_while_one_real_of_a_service_on_it_can_take_flows() {
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        let vip6: IpAddr = "2001:2:0:1::100".parse().unwrap();
        let mut a = Announcer::new(Fake::default(), Some(&A));
        let all_up = snap(|_| true);
        a.update(Some(&A), &Announcer::<Fake>::wanted(&all_up, lbk0));
        assert!(a.is_announced(vip));
        assert!(!a.is_announced(vip6), "its one real is drained");
        assert_eq!(a.routes.log, ["replace 198.18.1.100 lbk0 100"]);
        // Both web reals down: dns (unchecked) still holds the VIP up.
        let web_down = snap(|r| r.to_string() != "198.18.0.11" && r.to_string() != "198.18.0.12");
        a.update(Some(&A), &Announcer::<Fake>::wanted(&web_down, lbk0));
        assert!(a.is_announced(vip));
        assert_eq!(a.routes.log.len(), 1, "nothing changed, nothing done");
        // Every real of every service on it down: withdrawn.
        let config = Config::parse(&CONFIG.replace(
            "protocol = \"udp\"",
            "protocol = \"udp\"\n[services.health_check]\nkind = \"tcp\"",
        ))
        .unwrap();
        let none = Snapshot::compile(
            &config,
            &[MacAddr([2, 0, 0, 0, 0, 2])],
            2,
            &mut Ids::default(),
            |_, _, _| false,
        )
        .unwrap();
        a.update(Some(&A), &Announcer::<Fake>::wanted(&none, lbk0));
        assert!(!a.is_announced(vip));
        assert_eq!(a.routes.log[1], "del 198.18.1.100 lbk0 100");
        // Back up, then a clean stop: withdrawn, and the stop waits.
        a.update(Some(&A), &Announcer::<Fake>::wanted(&all_up, lbk0));
        assert_eq!(a.withdraw_all(), Duration::from_secs(2));
        assert_eq!(a.announced().count(), 0);
        assert_eq!(a.withdraw_all(), Duration::ZERO, "nothing left to wait for");
    }

    #[test]
    fn a_reload_that_moves_or_drops_the_table_moves_or_drops_every_route() {
        let mut a = Announcer::new(Fake::default(), Some(&A));
        let s = snap(|_| true);
        a.update(Some(&A), &Announcer::<Fake>::wanted(&s, lbk0));
        let b = AnnounceConfig { table: 101, ..A };
        a.update(Some(&b), &Announcer::<Fake>::wanted(&s, lbk0));
        assert_eq!(
            a.routes.log,
            [
                "replace 198.18.1.100 lbk0 100",
                "del 198.18.1.100 lbk0 100",
                "replace 198.18.1.100 lbk0 101"
            ]
        );
        a.update(None, &Announcer::<Fake>::wanted(&s, lbk0));
        assert_eq!(a.routes.log.last().unwrap(), "del 198.18.1.100 lbk0 101");
        assert_eq!(a.announced().count(), 0);
        // Without the section nothing is ever announced.
        let mut off = Announcer::new(Fake::default(), None);
        off.update(None, &Announcer::<Fake>::wanted(&s, lbk0));
        assert!(off.routes.log.is_empty());
        assert_eq!(off.withdraw_all(), Duration::ZERO);
    }

    #[test]
    fn a_route_the_kernel_refuses_is_tried_again_and_a_vip_without_an_interface_is_not_announced() {
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        let mut a = Announcer::new(
            Fake {
                refuse: Some(vip),
                ..Fake::default()
            },
            Some(&A),
        );
        let s = snap(|_| true);
        a.update(Some(&A), &Announcer::<Fake>::wanted(&s, lbk0));
        assert!(!a.is_announced(vip));
        a.routes.refuse = None;
        a.update(Some(&A), &Announcer::<Fake>::wanted(&s, lbk0));
        assert!(a.is_announced(vip));
        assert!(Announcer::<Fake>::wanted(&s, |_| None).is_empty());
    }

    /// Found in review: a removal that failed (an `ip` killed after its
    /// timeout, say) was forgotten, so the route stayed and the routing
    /// daemon kept exporting the VIP. It stays announced and is removed
    /// at the next update, or at the stop, in the table it was put in.
    #[test]
    fn a_route_whose_removal_failed_is_removed_later() {
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        let mut a = Announcer::new(Fake::default(), Some(&A));
        let up = snap(|_| true);
        let nothing = BTreeMap::new();
        a.update(Some(&A), &Announcer::<Fake>::wanted(&up, lbk0));
        a.routes.fail_deletes = 1;
        a.update(Some(&A), &nothing);
        assert!(a.is_announced(vip), "still in the table");
        a.update(Some(&A), &nothing);
        assert!(!a.is_announced(vip));
        assert_eq!(
            a.routes.log[1..],
            [
                "del 198.18.1.100 lbk0 100 FAILED",
                "del 198.18.1.100 lbk0 100"
            ]
        );
        // At the stop, and after the table moved or the section went.
        a.update(Some(&A), &Announcer::<Fake>::wanted(&up, lbk0));
        a.routes.fail_deletes = 1;
        a.update(None, &Announcer::<Fake>::wanted(&up, lbk0));
        assert!(a.is_announced(vip));
        assert_eq!(a.withdraw_all(), Duration::ZERO, "no [announce]: no wait");
        assert!(!a.is_announced(vip));
        assert_eq!(a.routes.log.last().unwrap(), "del 198.18.1.100 lbk0 100");
        a.update(Some(&A), &Announcer::<Fake>::wanted(&up, lbk0));
        a.routes.fail_deletes = 1;
        let b = AnnounceConfig { table: 101, ..A };
        a.update(Some(&b), &Announcer::<Fake>::wanted(&up, lbk0));
        assert_eq!(
            a.routes.log.last().unwrap(),
            "replace 198.18.1.100 lbk0 101",
            "announced in the new table all the same"
        );
        assert_eq!(a.withdraw_all(), Duration::from_secs(2));
        assert_eq!(a.announced().count(), 0);
        let dels: Vec<&String> = a
            .routes
            .log
            .iter()
            .filter(|l| l.starts_with("del"))
            .collect();
        assert_eq!(
            dels[dels.len() - 2..],
            ["del 198.18.1.100 lbk0 100", "del 198.18.1.100 lbk0 101"],
            "each from its own table: {:?}",
            a.routes.log
        );
    }

    /// Found in review: a removal that had failed, retried after the VIP
    /// was announced again, took the route just put back; and leftovers
    /// waited for the next health change. A route wanted again drops its
    /// leftover, and the control loop retries the rest every few seconds,
    /// one failure per pass at most.
    #[test]
    fn a_leftover_never_takes_a_route_announced_again_and_is_retried_on_a_timer() {
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        let up = snap(|_| true);
        let wanted = Announcer::<Fake>::wanted(&up, lbk0);
        let nothing = BTreeMap::new();
        let mut a = Announcer::new(Fake::default(), Some(&A));
        a.update(Some(&A), &wanted);
        a.routes.fail_deletes = 2;
        a.update(Some(&A), &nothing); // fails: a leftover
        a.update(Some(&A), &wanted); // the retry fails, the route is put back
        let n = a.routes.log.len();
        a.update(Some(&A), &wanted);
        assert_eq!(a.routes.log.len(), n, "nothing deleted: {:?}", a.routes.log);
        assert!(a.is_announced(vip));
        assert!(
            !a.retry_leftovers(std::time::Instant::now()),
            "nothing left"
        );

        // Drained, the removal fails: retried on the timer, not before.
        a.routes.fail_deletes = 1;
        a.update(Some(&A), &nothing);
        assert!(a.is_announced(vip));
        let t0 = std::time::Instant::now();
        assert!(a.retry_leftovers(t0));
        assert!(!a.is_announced(vip));
        // Two leftovers whose removals keep failing: one try per pass.
        a.update(Some(&A), &wanted);
        let mut b = a;
        b.routes.fail_deletes = 100;
        let other: IpAddr = "198.18.1.101".parse().unwrap();
        b.leftovers.push((other, "lbk0".into(), 100));
        b.update(Some(&A), &nothing);
        let tries = |b: &Announcer<Fake>| {
            b.routes
                .log
                .iter()
                .filter(|l| l.ends_with("FAILED"))
                .count()
        };
        let before = tries(&b);
        assert!(!b.retry_leftovers(t0 + LEFTOVER_RETRY));
        assert_eq!(tries(&b), before + 1, "one failure per pass");
        assert!(!b.retry_leftovers(t0 + LEFTOVER_RETRY + Duration::from_secs(1)));
        assert_eq!(tries(&b), before + 1, "not before the interval");
    }

    /// Found in review: the stop tried leftovers only up to the first that
    /// failed again, and gave no delay when leftovers were all it removed
    /// (a route still exported until then).
    #[test]
    fn the_stop_tries_every_leftover_and_waits_for_what_it_removed() {
        let other: IpAddr = "198.18.1.101".parse().unwrap();
        let vip: IpAddr = "198.18.1.100".parse().unwrap();
        let mut a = Announcer::new(Fake::default(), Some(&A));
        a.leftovers.push((vip, "lbk0".into(), 100));
        a.leftovers.push((other, "lbk0".into(), 100));
        a.routes.fail_deletes = 1;
        assert_eq!(a.withdraw_all(), Duration::from_secs(2));
        assert_eq!(
            a.routes.log,
            [
                "del 198.18.1.100 lbk0 100 FAILED",
                "del 198.18.1.101 lbk0 100"
            ]
        );
        assert!(a.is_announced(vip) && !a.is_announced(other));
    }
}
