//! The JSON served at `/status` and read back by `lb-appliance status`:
//! services, reals, health, weights, flows and traffic.
#![deny(unsafe_code)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub dpdk: String,
    pub generation: u64,
    pub services: Vec<ServiceStatus>,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub protocol: String,
    pub vip: String,
    pub port: u16,
    pub scheduler: String,
    pub persistence_ms: u32,
    pub reals: Vec<RealStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealStatus {
    pub address: String,
    pub port: u16,
    pub forwarding: String,
    pub weight: u32,
    pub up: bool,
    /// The last health-check error, if the last check failed.
    pub last_error: Option<String>,
    /// Flows of the real in the workers' tables, established or not.
    pub active_flows: u64,
    /// Of `active_flows`, those not established (a SYN without its
    /// handshake, FIN wait, closed): ipvsadm's InActConn. Absent from the
    /// JSON of older versions, hence the default.
    #[serde(default)]
    pub inactive_flows: u64,
    pub flows_created: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub lcore: u32,
    /// The IPv4 flow table's.
    pub active_flows: u64,
    pub flow_capacity: u64,
    pub busy_ratio: f64,
    /// The IPv6 flow table's (0 without an IPv6 port; found in audit: an
    /// IPv6-only appliance showed no flows). Absent in the JSON of older
    /// versions, hence the default.
    #[serde(default)]
    pub active_flows6: u64,
    #[serde(default)]
    pub flow_capacity6: u64,
}

/// `address:port`, with an IPv6 address in brackets (`[2001:2::11]:80`).
pub fn endpoint(address: &str, port: u16) -> String {
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(a) => format!("[{a}]:{port}"),
        Err(_) => format!("{}:{port}", shown(address)),
    }
}

/// What a status document says is printed to an operator's terminal,
/// and a server at `--metrics` (or a health check's error text) must not
/// write escape sequences or lines of its own there, nor reorder or hide
/// text (found in audits): its strings go through this.
pub use lb_config::shown;

/// `v` as JSON (`pretty`: indented, one value a line) for an operator's
/// terminal: serde_json escapes only U+0000 to U+001F in strings, so DEL,
/// the C1 controls (U+009B is CSI to some terminals) and bidirectional
/// and zero-width characters a hostile server put in its strings would
/// reach the terminal as written (found in audit): they are written as
/// `\uXXXX`, which reads back as the same string. Outside strings JSON
/// has only printable ASCII and, pretty, line feeds.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .unwrap_or_default();
    if !text
        .chars()
        .any(|c| c != '\n' && lb_config::unsafe_to_print(c))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && lb_config::unsafe_to_print(c) {
            // As UTF-16 code units: a character past the Basic
            // Multilingual Plane is two escapes (a surrogate pair).
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Status {
    /// A table in the manner of `ipvsadm -L -n --stats`, with
    /// ActiveConn (established) and InActConn (not established) as
    /// ipvsadm counts them, the service's name at the end of its line,
    /// and a down real's last health error at the end of its.
    pub fn table(&self) -> String {
        let mut out = format!(
            "lb-appliance {} ({}), config generation {}\n",
            shown(&self.version),
            shown(&self.dpdk),
            self.generation
        );
        out.push_str(&format!(
            "{:<5}{:<28}{:<10}{:>7}{:>11}{:>10}{:>10}{:>12}{:>14}  {}\n",
            "Prot",
            "LocalAddress:Port",
            "Scheduler",
            "Weight",
            "ActiveConn",
            "InActConn",
            "Conns",
            "Pkts",
            "Bytes",
            "Service"
        ));
        out.push_str(&format!("  {:<31}Forward\n", "-> RemoteAddress:Port"));
        for s in &self.services {
            // Saturating: the document is a server's, and two counters
            // at u64::MAX overflowed the sum (found in audit).
            let sum = |f: fn(&RealStatus) -> u64| -> u64 {
                s.reals.iter().map(f).fold(0, u64::saturating_add)
            };
            let sched = if s.persistence_ms > 0 {
                // As the config writes it ("1500ms" is not "1s").
                format!(
                    "{} persistent {}",
                    s.scheduler,
                    lb_config::format_duration(std::time::Duration::from_millis(u64::from(
                        s.persistence_ms
                    )))
                )
            } else {
                s.scheduler.clone()
            };
            let sched = shown(&sched);
            out.push_str(&format!(
                "{:<5}{:<28}{:<10}{:>7}{:>11}{:>10}{:>10}{:>12}{:>14}  {}\n",
                shown(&s.protocol.to_uppercase()),
                endpoint(&s.vip, s.port),
                sched,
                "",
                sum(RealStatus::established),
                sum(|r| r.inactive_flows),
                sum(|r| r.flows_created),
                sum(|r| r.packets),
                sum(|r| r.bytes),
                shown(&s.name)
            ));
            for r in &s.reals {
                let state = match (r.up, &r.last_error) {
                    (true, _) => String::new(),
                    (false, Some(e)) => format!("  (down) last error: {}", shown(e)),
                    (false, None) => "  (down)".to_string(),
                };
                out.push_str(&format!(
                    "  -> {:<28}{:<10}{:>7}{:>11}{:>10}{:>10}{:>12}{:>14}{}\n",
                    endpoint(&r.address, r.port),
                    match r.forwarding.as_str() {
                        "nat" => "Masq",
                        "tun" => "Tunnel",
                        _ => "Route",
                    },
                    r.weight,
                    r.established(),
                    r.inactive_flows,
                    r.flows_created,
                    r.packets,
                    r.bytes,
                    state
                ));
            }
        }
        out
    }
}

impl RealStatus {
    /// Flows of the real that are established (or datagram flows):
    /// ipvsadm's ActiveConn. The two gauges are read one after the other,
    /// hence the saturation.
    pub fn established(&self) -> u64 {
        self.active_flows.saturating_sub(self.inactive_flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_pair_each_real_with_itself_in_its_service() {
        let real = |address: &str, port: u16, packets: u64| RealStatus {
            address: address.into(),
            port,
            forwarding: "nat".into(),
            weight: 1,
            up: true,
            last_error: None,
            active_flows: 0,
            inactive_flows: 0,
            flows_created: packets / 10,
            packets,
            bytes: packets * 100,
        };
        let service = |name: &str, reals: Vec<RealStatus>| ServiceStatus {
            name: name.into(),
            protocol: "tcp".into(),
            vip: "198.18.1.100".into(),
            port: 80,
            scheduler: "wrr".into(),
            persistence_ms: 0,
            reals,
        };
        let status = |services| Status {
            version: String::new(),
            dpdk: String::new(),
            generation: 1,
            services,
            workers: Vec::new(),
        };
        let a = status(vec![
            service(
                "web",
                vec![real("198.18.0.11", 80, 100), real("198.18.0.12", 80, 0)],
            ),
            service("api", vec![real("198.18.0.11", 80, 1000)]),
        ]);
        let b = status(vec![
            service("api", vec![real("198.18.0.11", 80, 1500)]),
            service(
                "web",
                vec![
                    real("198.18.0.12", 80, 20),
                    real("198.18.0.11", 80, 300),
                    real("198.18.0.13", 80, 50),
                ],
            ),
        ]);
        let r = rates(&a, &b, std::time::Duration::from_secs(2));
        let got: Vec<(&str, &str, f64)> = r
            .iter()
            .map(|r| (r.service.as_str(), r.real.as_str(), r.packets_per_second))
            .collect();
        assert_eq!(
            got,
            [
                ("api", "198.18.0.11:80", 250.0),
                ("web", "198.18.0.12:80", 10.0),
                ("web", "198.18.0.11:80", 100.0),
            ],
            "a new real has no rate yet"
        );
    }

    /// Found in audit (output): `shown` escapes control characters only,
    /// so a hostile `/status` document (any server `status --metrics`
    /// is pointed at, or one on the path of a remote scrape, which is
    /// plain HTTP) still reorders or hides text in the table with
    /// bidirectional overrides and zero-width characters, which names in
    /// the config and a script's stderr refuse for that reason.
    #[test]
    fn the_table_shows_no_bidi_or_zero_width_characters() {
        let status = Status {
            version: "1.0".into(),
            dpdk: "22.11".into(),
            generation: 1,
            services: vec![ServiceStatus {
                name: "web\u{202e}ipa".into(),
                protocol: "tcp".into(),
                vip: "198.18.1.100".into(),
                port: 80,
                scheduler: "wrr\u{200b}".into(),
                persistence_ms: 0,
                reals: vec![RealStatus {
                    address: "198.18.0.11".into(),
                    port: 80,
                    forwarding: "nat".into(),
                    weight: 1,
                    up: false,
                    last_error: Some("refused\u{2066}".into()),
                    active_flows: 0,
                    inactive_flows: 0,
                    flows_created: 0,
                    packets: 0,
                    bytes: 0,
                }],
            }],
            workers: Vec::new(),
        };
        let table = status.table();
        assert!(!table.chars().any(lb_config::invisible_format), "{table:?}");
    }

    /// Found in audit (output): `status --json` writes the document again
    /// through serde_json "so that it escapes what a hostile server put
    /// in its strings" (src/main.rs), but serde_json escapes only U+0000
    /// to U+001F: C1 controls (U+009B, CSI) and bidirectional overrides
    /// reach the terminal as the server wrote them.
    #[test]
    fn json_written_again_escapes_c1_and_bidi() {
        let body = r#"{"services":[{"name":"web\u009b2J\u202e\u007f\n"}]}"#;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        for pretty in [false, true] {
            let shown = json_text(&v, pretty);
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() && c != '\n' || lb_config::invisible_format(c)),
                "{shown:?}"
            );
            let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
            assert_eq!(back, v, "{shown}");
        }
    }

    /// Found in audit: the table summed counters that overflow (a debug
    /// build panicked, a release one printed a wrapped total) and printed
    /// the document's strings as they came, escape sequences and line
    /// breaks of a hostile server included.
    #[test]
    fn a_hostile_document_neither_overflows_nor_writes_to_the_terminal() {
        let real = |bytes: u64, last_error: Option<&str>| RealStatus {
            address: "198.18.0.11\x1b]0;owned\x07".into(),
            port: 80,
            forwarding: "nat".into(),
            weight: 1,
            up: last_error.is_none(),
            last_error: last_error.map(Into::into),
            active_flows: 0,
            inactive_flows: 0,
            flows_created: 0,
            packets: 0,
            bytes,
        };
        let status = Status {
            version: "1.0\x1b[2J".into(),
            dpdk: "22.11\r".into(),
            generation: 1,
            services: vec![ServiceStatus {
                name: "web\nfake line".into(),
                protocol: "tcp\x1b[1m".into(),
                vip: "198.18.1.100".into(),
                port: 80,
                scheduler: "wrr\x08".into(),
                persistence_ms: 0,
                reals: vec![real(u64::MAX, None), real(1, Some("refused\n-> 6.6.6.6:1"))],
            }],
            workers: Vec::new(),
        };
        let table = status.table();
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        // Header, column heads (two lines), the service, its two reals.
        assert_eq!(table.lines().count(), 6, "{table}");
        assert!(table.contains(&u64::MAX.to_string()), "{table}");
        let rates = rate_table(&[RealRate {
            service: "web\x1b[2J".into(),
            real: "x\ny".into(),
            connections_per_second: 0.0,
            packets_per_second: 0.0,
            bytes_per_second: 0.0,
        }]);
        assert_eq!(rates.lines().count(), 2, "{rates}");
        assert!(!rates.contains('\x1b'), "{rates:?}");
    }

    #[test]
    fn endpoints_bracket_ipv6_addresses() {
        assert_eq!(endpoint("198.18.1.100", 80), "198.18.1.100:80");
        assert_eq!(endpoint("2001:2::11", 80), "[2001:2::11]:80");
        let status = Status {
            version: "0".into(),
            dpdk: "x".into(),
            generation: 1,
            services: vec![ServiceStatus {
                name: "web6".into(),
                protocol: "tcp".into(),
                vip: "2001:2:0:1::100".into(),
                port: 80,
                scheduler: "wrr".into(),
                persistence_ms: 0,
                reals: vec![RealStatus {
                    address: "2001:2::11".into(),
                    port: 8080,
                    forwarding: "nat".into(),
                    weight: 1,
                    up: true,
                    last_error: None,
                    active_flows: 0,
                    inactive_flows: 0,
                    flows_created: 0,
                    packets: 0,
                    bytes: 0,
                }],
            }],
            workers: vec![],
        };
        let t = status.table();
        assert!(t.contains("TCP  [2001:2:0:1::100]:80"), "{t}");
        assert!(t.contains("  -> [2001:2::11]:8080"), "{t}");
    }

    #[test]
    fn the_table_names_services_splits_active_and_inactive_and_says_why_a_real_is_down() {
        let real = |address: &str, up, last_error: Option<&str>, active, inactive| RealStatus {
            address: address.into(),
            port: 8080,
            forwarding: "nat".into(),
            weight: 1,
            up,
            last_error: last_error.map(str::to_string),
            active_flows: active,
            inactive_flows: inactive,
            flows_created: 9,
            packets: 90,
            bytes: 900,
        };
        let status = Status {
            version: "0".into(),
            dpdk: "x".into(),
            generation: 1,
            services: vec![ServiceStatus {
                name: "web-frontend".into(),
                protocol: "tcp".into(),
                vip: "198.18.1.100".into(),
                port: 80,
                scheduler: "wrr".into(),
                persistence_ms: 0,
                reals: vec![
                    real("198.18.0.11", true, None, 5, 2),
                    real(
                        "198.18.0.12",
                        false,
                        Some("connect: Connection refused (os error 111)"),
                        1,
                        1,
                    ),
                ],
            }],
            workers: vec![],
        };
        let t = status.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("ActiveConn InActConn"), "{t}");
        assert!(lines[1].ends_with("Service"), "{t}");
        // The service line: 3 established (5 - 2 + 1 - 1), 3 inactive,
        // and its name.
        let service: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            service,
            [
                "TCP",
                "198.18.1.100:80",
                "wrr",
                "3",
                "3",
                "18",
                "180",
                "1800",
                "web-frontend"
            ],
            "{t}"
        );
        let up: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            up,
            [
                "->",
                "198.18.0.11:8080",
                "Masq",
                "1",
                "3",
                "2",
                "9",
                "90",
                "900"
            ]
        );
        assert!(
            lines[5].ends_with("(down) last error: connect: Connection refused (os error 111)"),
            "{t}"
        );
        // Persistence as the config writes it, not cut to whole seconds.
        let mut persistent = status.clone();
        for (ms, shown) in [
            (1_500, "wrr persistent 1s500ms"),
            (360_000, "wrr persistent 6m"),
        ] {
            persistent.services[0].persistence_ms = ms;
            let t = persistent.table();
            assert!(t.lines().nth(3).unwrap().contains(shown), "{t}");
        }
        // JSON from before the inactive count still reads.
        let mut v = serde_json::to_value(&status).unwrap();
        v["services"][0]["reals"][0]
            .as_object_mut()
            .unwrap()
            .remove("inactive_flows");
        let old: Status = serde_json::from_value(v).unwrap();
        assert_eq!(old.services[0].reals[0].inactive_flows, 0);
    }
}

/// Per-second rates of a real between two statuses (`ctl list --rate`,
/// as `ipvsadm -L --rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealRate {
    pub service: String,
    pub real: String,
    pub connections_per_second: f64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
}

/// The rates of every real present in both statuses, over `elapsed`.
pub fn rates(a: &Status, b: &Status, elapsed: std::time::Duration) -> Vec<RealRate> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    // Looked up by key, not searched: a service may have 65,536 reals
    // (found in audit: billions of comparisons at the limits).
    let earlier: std::collections::HashMap<(&str, &str, u16), &RealStatus> = a
        .services
        .iter()
        .flat_map(|x| {
            x.reals
                .iter()
                .map(move |y| ((x.name.as_str(), y.address.as_str(), y.port), y))
        })
        .collect();
    let mut out = Vec::new();
    for s in &b.services {
        for r in &s.reals {
            let Some(r0) = earlier.get(&(s.name.as_str(), r.address.as_str(), r.port)) else {
                continue;
            };
            out.push(RealRate {
                service: s.name.clone(),
                real: endpoint(&r.address, r.port),
                connections_per_second: per(r0.flows_created, r.flows_created),
                packets_per_second: per(r0.packets, r.packets),
                bytes_per_second: per(r0.bytes, r.bytes),
            });
        }
    }
    out
}

/// The rates as a table.
pub fn rate_table(rates: &[RealRate]) -> String {
    let mut out = format!(
        "{:<16}{:<28}{:>12}{:>12}{:>14}\n",
        "Service", "RemoteAddress:Port", "CPS", "PPS", "BPS"
    );
    for r in rates {
        out.push_str(&format!(
            "{:<16}{:<28}{:>12.0}{:>12.0}{:>14.0}\n",
            shown(&r.service),
            shown(&r.real),
            r.connections_per_second,
            r.packets_per_second,
            r.bytes_per_second
        ));
    }
    out
}
