//! The monitoring kit in `monitoring/` against a running appliance: the
//! Grafana dashboard and the alert rules may only use metric names that the
//! appliance exports, and a real Prometheus server (Debian's `prometheus`
//! package) scrapes the appliance with the shipped scrape config, loads the
//! shipped rules and evaluates them, and answers every dashboard query.
//!
//! The appliance runs as in `tests/metrics.rs`: in the host namespace,
//! without root, its one port a DPDK `net_pcap` reading a named pipe that
//! the test feeds, its `/metrics` on an ephemeral loopback port. This stands
//! in for "a running appliance in the lab" (`scripts/lab.sh`, which needs
//! root): the exporter, the HTTP server and the metric names are the same
//! whatever the port's driver, and this way the test runs everywhere.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{tail, PipeAppliance, Proc, TempDir};
use lb_core::golden;
use serde_json::Value;

/// The alerts the monitoring kit must define.
const ALERTS: &[&str] = &[
    "LBRealDown",
    "LBServiceAllRealsDown",
    "LBFlowTableNearlyFull",
    "LBRxMissedRising",
    "LBConfigReloadFailed",
    "LBPacketsDroppedSustained",
    "LBWorkerSaturated",
];

/// Grafana's own variables, which a dashboard may use without defining.
const GRAFANA_BUILTINS: &[&str] = &["__rate_interval", "__interval", "__range"];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_repo_file(rel: &str) -> String {
    let p = repo_file(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// The appliance under test.

/// A service with a TCP health check against a loopback port nobody listens
/// on, so that `lb_real_up` (0) and `lb_health_checks_total` exist.
const CHECKED: &str = r#"
[[services]]
name = "checked"
vip = "198.18.1.110"
port = 80
forwarding = "nat"
[services.health_check]
kind = "tcp"
interval = "200ms"
timeout = "200ms"
rise = 2
fall = 1
# Down until checked (not the default), so that the first scrape shows 0.
initial = "down"
[[services.reals]]
address = "127.0.0.1"
port = CHECKPORT
weight = 5
"#;

/// A running appliance on a `net_pcap` port fed through a FIFO
/// (`common::PipeAppliance`), with the checked service.
struct Appliance {
    lb: PipeAppliance,
    /// `[metrics] listen` as bound: `127.0.0.1:PORT`.
    addr: String,
    check_port: u16,
}

impl Appliance {
    fn start(tag: &str) -> Appliance {
        // A free port that stays closed: the checked real is down.
        let check_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let lb = PipeAppliance::start(
            tag,
            &golden::scenario("one-arm").config,
            &CHECKED.replace("CHECKPORT", &check_port.to_string()),
        );
        let addr = lb.addr.clone();
        Appliance {
            lb,
            addr,
            check_port,
        }
    }

    /// Feeds the golden one-arm frames; returns how many.
    fn feed_traffic(&mut self) -> usize {
        let scenario = golden::scenario("one-arm");
        let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
        self.lb.feed(&frames);
        frames.len()
    }

    /// Writes an invalid file and sends SIGHUP: a failed reload.
    fn fail_a_reload(&self) {
        self.lb
            .reload_with(&self.lb.text.replace("weight = 5", "weight = -3"));
    }

    /// Stops the appliance with SIGTERM; it must exit cleanly.
    fn stop(self) {
        let log = self.lb.app.log_text();
        assert_eq!(self.lb.stop(), Some(0), "{}", tail(&log, 30));
    }
}

/// A plain HTTP/1.0 GET (no chunked replies); returns status and body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The names of every sample in exposition text, parsed by the Prometheus
/// client library's parser (which rejects invalid text).
fn exported_names(text: &str) -> BTreeSet<String> {
    common::parse_prometheus_strictly(text)
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Reading the dashboard and the rules.

/// The metric names (identifiers starting with `lb_`) in a PromQL
/// expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut start = None;
    for (i, c) in expr.char_indices().chain([(expr.len(), ' ')]) {
        match (start, is_ident(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = &expr[s..i];
                let variable = expr[..s].ends_with('$') || expr[..s].ends_with("${");
                if word.starts_with("lb_") && !variable {
                    names.insert(word.to_string());
                }
                start = None;
            }
            _ => {}
        }
    }
    names
}

/// The dashboard variables (`$name`, `${name}`) an expression uses.
fn variables(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let r = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = r
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Every panel, also those inside collapsed rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// (panel title, expr) of every query target.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target without expr in {}", p["title"]));
            out.push((p["title"].as_str().unwrap_or("").to_string(), expr.into()));
        }
    }
    out
}

/// The query of every templating variable of type `query`.
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .expect("a query variable has a query");
            out.push((v["name"].as_str().unwrap().to_string(), q.to_string()));
        }
    }
    out
}

/// Checks what makes the dashboard import anywhere: a Prometheus data
/// source input and variable that every query goes through, `job` and
/// `instance` variables, unique panel ids, a non-overlapping grid.
fn check_dashboard_structure(dash: &Value) {
    const DS: &str = "${DS_PROMETHEUS}";
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dash["schemaVersion"]
    );
    assert!(
        dash["__inputs"]
            .as_array()
            .expect("__inputs")
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS"
                && i["type"] == "datasource"
                && i["pluginId"] == "prometheus"),
        "an __inputs entry DS_PROMETHEUS for a prometheus data source"
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["job", "instance"] {
        let v = var(name);
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], DS, "variable {name}");
    }
    let (_, q) = variable_queries(dash)
        .into_iter()
        .find(|(n, _)| n == "instance")
        .unwrap();
    assert!(
        q.starts_with("label_values(lb_build_info") && q.ends_with(", instance)"),
        "instance from label_values(lb_build_info, instance): {q}"
    );
    let defined: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .chain(GRAFANA_BUILTINS.iter().map(|s| s.to_string()))
        .collect();

    let panels = all_panels(dash);
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(&str, [u64; 4])> = Vec::new();
    let mut queries = 0;
    for p in &panels {
        let title = p["title"].as_str().expect("every panel has a title");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "panel id {id} ({title}) is not unique");
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k} missing"))
        });
        assert!(h > 0 && w > 0 && x + w <= 24, "{title}: gridPos {g}");
        for (other, [oh, ow, ox, oy]) in &boxes {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {title} and {other} overlap");
        }
        boxes.push((title, [h, w, x, y]));
        if p["type"] == "row" {
            continue;
        }
        assert!(
            ["timeseries", "stat"].contains(&p["type"].as_str().unwrap_or("")),
            "{title}: panel type {}",
            p["type"]
        );
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], DS, "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DS, "{title}");
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId repeated"
            );
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
                "{title}: every selector follows the job and instance variables: {expr}"
            );
            for v in variables(expr) {
                assert!(defined.contains(&v), "{title}: undefined variable ${v}");
            }
            queries += 1;
        }
    }
    assert!(queries >= 15, "only {queries} queries");
}

/// (alert name, expr) of every alerting rule in a rule file. Plain text
/// reading (no YAML crate): `- alert: NAME` and `expr: ...` on one line,
/// or a block scalar (`expr: |`) on the lines indented below.
fn alert_rules(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            current = Some(name.trim().to_string());
        } else if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            let expr = if e.starts_with('|') || e.starts_with('>') {
                let base = indent(lines[i]);
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > base)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                block.join(" ")
            } else {
                e.trim_matches(|c| c == '"' || c == '\'').to_string()
            };
            let name = current.take().expect("expr after - alert:");
            out.push((name, expr));
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Test 1.

#[test]
fn every_dashboard_query_uses_exported_metrics() {
    let dash: Value = serde_json::from_str(&read_repo_file("monitoring/grafana/lb-appliance.json"))
        .expect("the dashboard is valid JSON");
    check_dashboard_structure(&dash);
    let queries: Vec<(String, String)> = dashboard_exprs(&dash)
        .into_iter()
        .chain(
            variable_queries(&dash)
                .into_iter()
                .map(|(n, q)| (format!("variable {n}"), q)),
        )
        .collect();

    let rules = alert_rules(&read_repo_file("monitoring/prometheus/alerts.yml"));
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    for a in ALERTS {
        assert!(names.contains(a), "alerts.yml lacks {a}: has {names:?}");
    }
    let scrape = read_repo_file("monitoring/prometheus/prometheus.yml");
    for want in [
        "job_name: lb-appliance",
        "scrape_interval: 15s",
        "- alerts.yml",
        "- 127.0.0.1:9101",
    ] {
        assert!(scrape.contains(want), "prometheus.yml lacks `{want}`");
    }

    // A live scrape: what the appliance really exports.
    let app = Appliance::start("mon-dash");
    let (status, text) = http_get(&app.addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    let exported = exported_names(&text);
    for needed in ["lb_real_up", "lb_health_checks_total", "lb_build_info"] {
        assert!(exported.contains(needed), "{needed} not exported:\n{text}");
    }

    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no lb_ metric in {expr}");
        for n in names {
            assert!(
                exported.contains(&n),
                "{title}: {n} is not exported by the appliance (query {expr}); exported: {exported:?}"
            );
            used.insert(n);
        }
    }
    // And the other way round: the dashboard shows every exported metric.
    let lb: BTreeSet<String> = exported
        .iter()
        .filter(|n| n.starts_with("lb_"))
        .cloned()
        .collect();
    let unused: Vec<&String> = lb.difference(&used).collect();
    assert!(unused.is_empty(), "not on the dashboard: {unused:?}");

    // The lb_sync_* series exist only with [sync]: an appliance with a
    // [sync] section (its peer silent) exports them.
    let with_sync = {
        let port = |ip: &str| {
            std::net::UdpSocket::bind(format!("{ip}:0"))
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let lb = PipeAppliance::start(
            "mon-sync",
            &golden::scenario("one-arm").config,
            &format!(
                "[sync]\nrole = \"backup\"\nlisten = \"127.0.0.1:{}\"\npeer = \"127.0.0.2:{}\"\n",
                port("127.0.0.1"),
                port("127.0.0.2")
            ),
        );
        let (status, text) = http_get(&lb.addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        let log = lb.app.log_text();
        assert_eq!(lb.stop(), Some(0), "{}", tail(&log, 30));
        exported_names(&text)
    };
    for (name, expr) in &rules {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || expr.starts_with("up{"),
            "{name}: no lb_ metric in {expr}"
        );
        for n in names {
            let from = if n.starts_with("lb_sync_") {
                &with_sync
            } else {
                &exported
            };
            assert!(
                from.contains(&n),
                "alert {name}: {n} is not exported (expr {expr})"
            );
        }
    }
    eprintln!(
        "dashboard: {} queries over {} metrics; alerts: {} rules; all names exported",
        queries.len(),
        used.len(),
        rules.len()
    );
    app.stop();
}

#[test]
fn metric_names_are_read_from_expressions() {
    let got = metric_names(
        r#"sum by (x) (rate(lb_a_total{job=~"$job"}[$__rate_interval])) / lb_b or vector(0) + xlb_c"#,
    );
    assert_eq!(
        got,
        BTreeSet::from(["lb_a_total".to_string(), "lb_b".to_string()])
    );
    assert_eq!(
        variables(r#"x{a=~"$job",b="${DS_PROMETHEUS}"}[$__range]"#),
        BTreeSet::from(["job", "DS_PROMETHEUS", "__range"].map(String::from))
    );
    let rules = alert_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: lb_x == 0\n      - alert: B\n        expr: |\n          max(lb_y)\n            > 1\n        for: 1m\n",
    );
    assert_eq!(
        rules,
        vec![
            ("A".to_string(), "lb_x == 0".to_string()),
            ("B".to_string(), "max(lb_y) > 1".to_string())
        ]
    );
}

// ---------------------------------------------------------------------------
// Test 2: the rules, checked and unit-tested by promtool.

/// `promtool check rules` (syntax, PromQL, templates) and `promtool test
/// rules` on `alerts_test.yml`, where each alert is seen to fire on what it
/// is for and to stay quiet on what it must not fire on (a single missed
/// packet, a short burst, drops of frames for other hosts, a busy but not
/// saturated worker, a table full of evictable entries). Needs only
/// promtool; skipped with the reason without it, failed under
/// LB_REQUIRE_PRIVILEGED_TESTS=1.
#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let test = "promtool_checks_and_unit_tests_the_alert_rules";
    if !Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let why = "promtool is not installed (Debian package prometheus, scripts/install-deps.sh)";
        if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
            panic!("{test}: cannot run ({why}) but LB_REQUIRE_PRIVILEGED_TESTS=1");
        }
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let rules = repo_file("monitoring/prometheus/alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "SUCCESS: {} rules found",
            alert_rules(&read_repo_file("monitoring/prometheus/alerts.yml")).len()
        )),
        "{out}"
    );
    let tests = repo_file("monitoring/prometheus/alerts_test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test that sees it fire.
    let text = read_repo_file("monitoring/prometheus/alerts_test.yml");
    for (a, _) in alert_rules(&read_repo_file("monitoring/prometheus/alerts.yml")) {
        let fires = text
            .split(&format!("alertname: {a}\n"))
            .skip(1)
            .any(|rest| rest.trim_start().starts_with("exp_alerts:\n"));
        assert!(fires, "alerts_test.yml never sees {a} fire");
    }
}

// ---------------------------------------------------------------------------
// Test 3: a real Prometheus.

/// Whether `prometheus` and `promtool` can run; if not, the test is skipped
/// with the reason, or fails under LB_REQUIRE_PRIVILEGED_TESTS=1 (as in CI),
/// the rule of `common::privileged`.
fn prometheus_available(test: &str) -> bool {
    let missing: Vec<&str> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|p| {
            !Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (Debian package prometheus)",
        missing.join(" and ")
    );
    if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("{test}: cannot run ({why}) but LB_REQUIRE_PRIVILEGED_TESTS=1");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus server of our own, killed by its PID when dropped.
struct Prometheus {
    proc: Proc,
    addr: String,
}

impl Prometheus {
    fn api(&mut self, path: &str) -> Value {
        if let Some(Ok(Some(st))) = self.proc.child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "prometheus exited ({st}):\n{}",
                tail(&self.proc.log_text(), 30)
            );
        }
        match http_get(&self.addr, path) {
            Ok((200, body)) => {
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
            }
            Ok((status, body)) => panic!("{path}: HTTP {status}: {body}"),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// The result vector of an instant query.
    fn query(&mut self, q: &str) -> Vec<Value> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(q)));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `f` until it gives a value (bounded), saying what it waits for.
    fn wait<T>(&mut self, what: &str, f: impl FnMut(&mut Prometheus) -> Option<T>) -> T {
        self.wait_with(|| what.to_string(), f)
    }

    /// Like [`Prometheus::wait`], with a message computed on timeout.
    fn wait_with<T>(
        &mut self,
        what: impl Fn() -> String,
        mut f: impl FnMut(&mut Prometheus) -> Option<T>,
    ) -> T {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {}; prometheus log:\n{}",
                what(),
                tail(&self.proc.log_text(), 20)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The series of `result` that belong to the test appliance's target.
fn ours(result: Vec<Value>, instance: &str) -> Vec<Value> {
    result
        .into_iter()
        .filter(|s| s["metric"]["instance"] == instance && s["metric"]["job"] == "lb-appliance")
        .collect()
}

fn sample_value(s: &Value) -> f64 {
    s["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn prometheus_scrapes_the_appliance_and_loads_the_rules() {
    let test = "prometheus_scrapes_the_appliance_and_loads_the_rules";
    if !prometheus_available(test) {
        return;
    }
    let alerts_path = repo_file("monitoring/prometheus/alerts.yml");
    let alerts = alerts_path.to_str().unwrap();
    let out = promtool(&["check", "rules", alerts]);
    assert!(out.contains("SUCCESS"), "{out}");
    let shipped = repo_file("monitoring/prometheus/prometheus.yml");
    promtool(&["check", "config", shipped.to_str().unwrap()]);

    let mut app = Appliance::start("mon-prom");
    let instance = app.addr.clone();

    // The shipped config, pointed at the test appliance, with the shipped
    // rules, scraping and evaluating every second.
    let dir = TempDir::new("mon-prometheus");
    let mut config = read_repo_file("monitoring/prometheus/prometheus.yml");
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_string()),
        ("- 127.0.0.1:9101", format!("- {instance}")),
        ("- alerts.yml", format!("- {alerts}")),
    ] {
        assert!(config.contains(from), "prometheus.yml lacks `{from}`");
        config = config.replace(from, &to);
    }
    let config_path = dir.path("prometheus.yml");
    std::fs::write(&config_path, &config).unwrap();
    promtool(&["check", "config", config_path.to_str().unwrap()]);

    // Our own server on a free loopback port with its own storage (the
    // port is free when chosen; another process could take it before
    // Prometheus binds it, which would show as a failed start).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn");
    let mut prom = Prometheus {
        proc: Proc::spawn(cmd, &dir.path("prometheus.log")),
        addr,
    };
    prom.wait("prometheus to be ready", |p| {
        if let Some(Ok(Some(st))) = p.proc.child.as_mut().map(|c| c.try_wait()) {
            panic!("prometheus exited ({st}):\n{}", p.proc.log_text());
        }
        matches!(http_get(&p.addr, "/-/ready"), Ok((200, _))).then_some(())
    });

    let frames = app.feed_traffic() as f64;

    // The series arrive, labelled with the job and the target.
    let build = prom.wait("lb_build_info from the appliance", |p| {
        ours(p.query("lb_build_info"), &instance).pop()
    });
    assert_eq!(sample_value(&build), 1.0);
    assert!(
        build["metric"]["dpdk"]
            .as_str()
            .is_some_and(|d| d.starts_with("DPDK ")),
        "{build}"
    );
    prom.wait("every frame counted in lb_port_rx_packets_total", |p| {
        ours(p.query("lb_port_rx_packets_total"), &instance)
            .iter()
            .any(|s| s["metric"]["port"] == "wan" && sample_value(s) == frames)
            .then_some(())
    });
    let real = format!("127.0.0.1:{}", app.check_port);
    let up = prom.wait("lb_real_up of the checked real", |p| {
        ours(p.query("lb_real_up"), &instance)
            .into_iter()
            .find(|s| s["metric"]["service"] == "checked" && s["metric"]["real"] == real.as_str())
    });
    assert_eq!(sample_value(&up), 0.0, "nothing listens: the real is down");
    let forwarded = ours(prom.query("lb_packets_forwarded_total"), &instance);
    assert!(
        forwarded.iter().any(|s| sample_value(s) > 0.0),
        "forwarded traffic is seen: {forwarded:?}"
    );
    // The dashboard's instance variable lists the target.
    let v = prom.api(&format!(
        "/api/v1/label/instance/values?{}",
        encode_pair("match[]", "lb_build_info")
    ));
    assert!(
        v["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i == instance.as_str())),
        "{v}"
    );

    // A failed reload, to see LBConfigReloadFailed fire.
    app.fail_a_reload();

    // The rules are loaded, evaluate without error, and see the state of
    // the appliance: the checked real and its service are down, a reload
    // failed, the flow table is nearly empty, nothing is missed.
    let seen = std::cell::RefCell::new(String::new());
    let what = || {
        format!(
            "LBRealDown, LBServiceAllRealsDown and LBConfigReloadFailed to be active; rules seen:\n{}",
            seen.borrow()
        )
    };
    let rules = prom.wait_with(what, |p| {
        let v = p.api("/api/v1/rules?type=alert");
        let mut by_name = BTreeMap::new();
        let mut summary = String::new();
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                summary.push_str(&format!(
                    "{} health {} state {} alerts {} {}\n",
                    r["name"],
                    r["health"],
                    r["state"],
                    r["alerts"].as_array().map_or(0, Vec::len),
                    r["lastError"].as_str().unwrap_or("")
                ));
                by_name.insert(r["name"].as_str().unwrap_or("").to_string(), r.clone());
            }
        }
        *seen.borrow_mut() = summary;
        let active = |name: &str| {
            by_name.get(name).is_some_and(|r| {
                r["alerts"].as_array().into_iter().flatten().any(|a| {
                    a["labels"]["instance"] == instance.as_str()
                        && (a["state"] == "pending" || a["state"] == "firing")
                })
            })
        };
        (active("LBRealDown") && active("LBServiceAllRealsDown") && active("LBConfigReloadFailed"))
            .then_some(by_name)
    });
    for a in ALERTS {
        let r = rules
            .get(*a)
            .unwrap_or_else(|| panic!("{a} not loaded: {:?}", rules.keys()));
        assert_eq!(r["type"], "alerting", "{a}");
        assert_eq!(r["health"], "ok", "{a} evaluates: {r}");
        assert!(r["labels"]["severity"].is_string(), "{a}: severity");
        assert!(r["annotations"]["summary"].is_string(), "{a}: summary");
        assert!(
            r["annotations"]["description"].is_string(),
            "{a}: description"
        );
    }
    let down = &rules["LBRealDown"]["alerts"];
    assert!(
        down.as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["real"] == real.as_str() && a["labels"]["service"] == "checked"),
        "{down}"
    );
    let fired = &rules["LBConfigReloadFailed"]["alerts"];
    assert!(
        fired
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "firing"),
        "LBConfigReloadFailed has no `for`: it fires at once: {fired}"
    );
    for quiet in [
        "LBFlowTableNearlyFull",
        "LBRxMissedRising",
        "LBPacketsDroppedSustained",
    ] {
        assert_eq!(rules[quiet]["state"], "inactive", "{}", rules[quiet]);
    }

    // Every dashboard query is valid PromQL and finds data here, with the
    // dashboard's variables set as Grafana would.
    let dash: Value =
        serde_json::from_str(&read_repo_file("monitoring/grafana/lb-appliance.json")).unwrap();
    let exprs = dashboard_exprs(&dash);
    for (title, expr) in &exprs {
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "1h")
            .replace("$job", "lb-appliance")
            .replace("$instance", &instance.replace('.', "\\\\."));
        prom.wait(&format!("data for panel {title}: {q}"), |p| {
            (!p.query(&q).is_empty()).then_some(())
        });
    }
    eprintln!(
        "prometheus: series arrive, {} alert rules load and evaluate, {} dashboard queries answer",
        rules.len(),
        exprs.len()
    );

    assert!(
        prom.proc.stop("TERM", Duration::from_secs(20)).is_some(),
        "prometheus stops on SIGTERM"
    );
    app.stop();
}

fn encode_pair(k: &str, v: &str) -> String {
    format!("{}={}", encode(k), encode(v))
}
