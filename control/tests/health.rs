//! Health checks against real servers on loopback: a TCP listener, and an
//! HTTP server that can be told to answer 200, 500, or hang. Up after
//! `rise`, down after `fall`, and a hung real is timed out while the others
//! keep their interval. Script checks run real programs (`/bin/true`,
//! `/bin/false`, `/bin/sh`, `/bin/sleep`), each killed by the check if it
//! outlives its timeout, and reaped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_config::Config;
use lb_control::health::{check_once, HealthCheckers, Hysteresis, Outcome, Probe, RealKey};

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// An HTTP server on 127.0.0.1 whose behaviour can be switched.
struct Server {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

fn http_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(OK));
    let m = Arc::clone(&mode);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.read(&mut buf);
                match m.load(Ordering::SeqCst) {
                    OK => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                    FAIL => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                        );
                    }
                    _ => std::thread::sleep(Duration::from_secs(10)),
                }
            });
        }
    });
    Server { addr, mode }
}

fn http(path: &str) -> Probe {
    Probe::Http {
        path: path.into(),
        status: 200,
        host: None,
    }
}

/// The real at `addr` of service "web".
fn real(addr: SocketAddr) -> RealKey {
    RealKey {
        service: "web".into(),
        address: addr.ip(),
        port: addr.port(),
    }
}

#[test]
fn a_tcp_check_succeeds_on_a_listener_and_fails_on_a_closed_port() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    assert_eq!(
        check_once(&Probe::Tcp, &real(addr), Duration::from_secs(1)),
        Outcome::Success
    );
    drop(l);
    match check_once(&Probe::Tcp, &real(addr), Duration::from_secs(1)) {
        Outcome::Failure(e) => assert!(e.contains("connect"), "{e}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn an_http_check_wants_the_expected_status_and_times_out_a_hung_server() {
    let s = http_server();
    assert_eq!(
        check_once(&http("/healthz"), &real(s.addr), Duration::from_secs(1)),
        Outcome::Success
    );
    s.mode.store(FAIL, Ordering::SeqCst);
    match check_once(&http("/healthz"), &real(s.addr), Duration::from_secs(1)) {
        Outcome::Failure(e) => assert!(e.contains("500"), "{e}"),
        o => panic!("{o:?}"),
    }
    s.mode.store(HANG, Ordering::SeqCst);
    let t = Instant::now();
    match check_once(&http("/healthz"), &real(s.addr), Duration::from_millis(300)) {
        Outcome::Failure(e) => assert!(e.contains("timed out"), "{e}"),
        o => panic!("{o:?}"),
    }
    // Bounded by the timeout (generous margin: this is a bound, not a speed).
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a hung check must end near its timeout"
    );
}

#[test]
fn rise_and_fall_with_a_live_server() {
    let s = http_server();
    let mut h = Hysteresis::new(2, 3, false);
    let run = |h: &mut Hysteresis| {
        h.record(check_once(&http("/"), &real(s.addr), Duration::from_secs(1)).is_success())
    };
    assert_eq!(run(&mut h), None);
    assert_eq!(run(&mut h), Some(true), "up after rise = 2");
    s.mode.store(FAIL, Ordering::SeqCst);
    assert_eq!(run(&mut h), None);
    assert_eq!(run(&mut h), None);
    assert_eq!(run(&mut h), Some(false), "down after fall = 3");
}

/// A config with one http-checked service over the given loopback reals.
fn config(ports: &[u16], interval: &str, timeout: &str) -> Config {
    let mut text = String::from(
        "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
         [[services]]\nname = \"web\"\nvip = \"198.18.1.100\"\nport = 80\n",
    );
    text.push_str(&format!(
        "[services.health_check]\nkind = \"http\"\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\nrise = 1\nfall = 1\npath = \"/\"\n"
    ));
    for p in ports {
        text.push_str(&format!(
            "[[services.reals]]\naddress = \"127.0.0.1\"\nport = {p}\nforwarding = \"nat\"\n"
        ));
    }
    Config::parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// Two http-checked services on loopback: "fast" over `healthy` every
/// 100 ms, and "slow" over `hung` with the given interval and timeout.
fn two_services(healthy: u16, hung: u16, slow: &str) -> Config {
    let mut text = String::from(
        "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\naddress = \"198.18.0.2/24\"\n",
    );
    for (name, vip, port, every) in [
        ("fast", "198.18.1.100", healthy, "100ms"),
        ("slow", "198.18.1.101", hung, slow),
    ] {
        text.push_str(&format!(
            "[[services]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\n\
             [services.health_check]\nkind = \"http\"\ninterval = \"{every}\"\ntimeout = \"{every}\"\nrise = 1\nfall = 1\npath = \"/\"\n\
             [[services.reals]]\naddress = \"127.0.0.1\"\nport = {port}\nforwarding = \"nat\"\n"
        ));
    }
    Config::parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// While the hung real's check waits out its 3 s timeout, the healthy real
/// keeps being checked every 100 ms. Told apart by order, not by a speed:
/// a checker that waited for the hung real would report the healthy one at
/// most once before the hung one's timeout; independent checkers report it
/// about 30 times, and at least 3 are wanted (a tenth of that).
#[test]
fn a_hung_real_is_timed_out_while_the_others_keep_their_interval() {
    let healthy = http_server();
    let hung = http_server();
    hung.mode.store(HANG, Ordering::SeqCst);
    let cfg = two_services(healthy.addr.port(), hung.addr.port(), "3s");
    let mut checkers = HealthCheckers::new();
    let started = Instant::now();
    checkers.sync(&cfg);
    let key = |service: &str, p: u16| RealKey {
        service: service.into(),
        address: Ipv4Addr::LOCALHOST.into(),
        port: p,
    };
    let (mut ok_before, mut timed_out) = (0, 0);
    // A generous deadline against a hang only.
    let end = Instant::now() + Duration::from_secs(60);
    while timed_out == 0 && Instant::now() < end {
        if let Some(r) = checkers.next_report(Duration::from_millis(50)) {
            if r.real == key("fast", healthy.addr.port()) && r.outcome.is_success() {
                ok_before += 1;
            }
            if r.real == key("slow", hung.addr.port()) {
                match r.outcome {
                    Outcome::Failure(e) if e.contains("timed out") => timed_out += 1,
                    o => panic!("the hung real reported {o:?}"),
                }
            }
        }
    }
    let took = started.elapsed();
    checkers.stop();
    eprintln!("{ok_before} checks of the healthy real before the hung one timed out ({took:?})");
    assert_eq!(timed_out, 1, "the hung real was never timed out");
    assert!(
        ok_before >= 3,
        "the healthy real waited for the hung one: {ok_before} checks before its timeout"
    );
}

#[test]
fn sync_keeps_unchanged_checks_and_stops_removed_ones() {
    let a = http_server();
    let b = http_server();
    let mut checkers = HealthCheckers::new();
    checkers.sync(&config(&[a.addr.port(), b.addr.port()], "100ms", "100ms"));
    assert_eq!(checkers.checked().count(), 2);
    checkers.sync(&config(&[a.addr.port()], "100ms", "100ms"));
    assert_eq!(checkers.checked().count(), 1);
    // Drain, then only `a` reports.
    std::thread::sleep(Duration::from_millis(250));
    let _: Vec<_> = checkers.reports().collect();
    std::thread::sleep(Duration::from_millis(350));
    let reals: std::collections::BTreeSet<u16> = checkers.reports().map(|r| r.real.port).collect();
    assert_eq!(reals.into_iter().collect::<Vec<_>>(), vec![a.addr.port()]);
    checkers.stop();
}

/// An HTTP server that answers 200 only to `Host: <want>` and 421
/// (misdirected) otherwise, and hands back each Host header it saw.
fn vhost_server(want: &'static str) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let hosts: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("Host: "))
                .collect();
            let _ = tx.send(hosts.join("|"));
            let answer: &[u8] = if hosts == [want] {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 421 Misdirected Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = conn.write_all(answer);
        }
    });
    (addr, rx)
}

#[test]
fn an_http_check_sends_the_configured_host_header() {
    let (addr, seen) = vhost_server("www.example.com");
    let probe = |host: Option<&str>| Probe::Http {
        path: "/".into(),
        status: 200,
        host: host.map(str::to_string),
    };
    let t = Duration::from_secs(2);
    assert_eq!(
        check_once(&probe(Some("www.example.com")), &real(addr), t),
        Outcome::Success
    );
    assert_eq!(seen.recv_timeout(t).unwrap(), "www.example.com");
    // Without `host`: today's header, the real's address and port.
    match check_once(&probe(None), &real(addr), t) {
        Outcome::Failure(e) => assert!(e.contains("421"), "{e}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(seen.recv_timeout(t).unwrap(), addr.to_string());
}

fn script(words: &[&str]) -> Probe {
    Probe::Script {
        command: words.iter().map(|w| w.to_string()).collect(),
        user: None,
    }
}

fn real_8080() -> RealKey {
    RealKey {
        service: "web".into(),
        address: "198.18.0.11".parse().unwrap(),
        port: 8080,
    }
}

#[test]
fn a_script_check_succeeds_on_exit_status_0_only() {
    let t = Duration::from_secs(5);
    assert_eq!(
        check_once(&script(&["/bin/true"]), &real_8080(), t),
        Outcome::Success
    );
    match check_once(&script(&["/bin/false"]), &real_8080(), t) {
        Outcome::Failure(e) => assert_eq!(e, "/bin/false: exit status 1"),
        o => panic!("{o:?}"),
    }
    // The first line of stderr is the error an operator reads.
    match check_once(
        &script(&[
            "/bin/sh",
            "-c",
            "echo 'db is read-only' >&2; echo more >&2; exit 3",
        ]),
        &real_8080(),
        t,
    ) {
        Outcome::Failure(e) => assert_eq!(e, "/bin/sh: exit status 3: db is read-only"),
        o => panic!("{o:?}"),
    }
    // Printed in status and logs: no control character, nor one that
    // reorders or hides text there (found in audit: a right-to-left
    // override and a zero-width space passed).
    match check_once(
        &script(&[
            "/bin/sh",
            "-c",
            "printf 'lag \\342\\200\\256 40s\\342\\200\\213\\033[31m\\n' >&2; exit 2",
        ]),
        &real_8080(),
        t,
    ) {
        Outcome::Failure(e) => assert_eq!(e, "/bin/sh: exit status 2: lag  40s[31m"),
        o => panic!("{o:?}"),
    }
    match check_once(&script(&["/nonexistent/check"]), &real_8080(), t) {
        Outcome::Failure(e) => assert!(e.starts_with("running /nonexistent/check: "), "{e}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn a_script_gets_the_real_in_its_environment_and_no_shell() {
    let t = Duration::from_secs(5);
    // Arguments go to the program as they are: no shell splits or expands
    // them (`$LB_SERVICE` in an argument stays literal).
    let check = r#"test "$LB_REAL_ADDRESS" = 198.18.0.11 && test "$LB_REAL_PORT" = 8080 && test "$LB_SERVICE" = web && test "$1" = '$LB_SERVICE two'"#;
    assert_eq!(
        check_once(
            &script(&["/bin/sh", "-c", check, "sh", "$LB_SERVICE two"]),
            &real_8080(),
            t
        ),
        Outcome::Success
    );
    let v6 = RealKey {
        service: "web6".into(),
        address: "2001:2::11".parse().unwrap(),
        port: 80,
    };
    assert_eq!(
        check_once(
            &script(&[
                "/bin/sh",
                "-c",
                r#"test "$LB_REAL_ADDRESS" = 2001:2::11 && test "$LB_REAL_PORT" = 80"#
            ]),
            &v6,
            t
        ),
        Outcome::Success
    );
}

#[test]
fn a_script_that_writes_a_lot_does_not_block_on_a_full_pipe() {
    // 1 MB on stderr and on stdout, far beyond a pipe's 64 KiB.
    let noisy = "head -c 1000000 /dev/zero >&2; head -c 1000000 /dev/zero; exit 0";
    let t = Instant::now();
    assert_eq!(
        check_once(
            &script(&["/bin/sh", "-c", noisy]),
            &real_8080(),
            Duration::from_secs(5)
        ),
        Outcome::Success
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// The state letter of process `pid` (`/proc/PID/stat`), None if it is
/// gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether process `pid` is gone, or a zombie (killed, and reaped by
/// whoever inherited it, or about to be), within 2 s.
fn killed(pid: u32) -> bool {
    let end = Instant::now() + Duration::from_secs(2);
    while !matches!(proc_state(pid), None | Some('Z')) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    matches!(proc_state(pid), None | Some('Z'))
}

#[test]
fn a_script_past_its_timeout_is_killed_with_its_children_and_reaped() {
    let dir = std::env::temp_dir().join(format!("lb-health-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pids = dir.join("pids");
    // The shell writes its own PID and its background sleep's, then waits:
    // both must die at the timeout.
    let body = format!("/bin/sleep 30 & echo $$ $! > {}; wait", pids.display());
    let started = Instant::now();
    let outcome = check_once(
        &script(&["/bin/sh", "-c", &body]),
        &real_8080(),
        Duration::from_millis(300),
    );
    let took = started.elapsed();
    let written = std::fs::read_to_string(&pids).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Outcome::Failure(e) => assert!(
            e.starts_with("/bin/sh: timed out after 300ms, killed"),
            "{e}"
        ),
        o => panic!("{o:?}"),
    }
    // A bound, not a speed: the check ends near its timeout.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let ids: Vec<u32> = written
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "the script wrote its PIDs: {written:?}");
    // The script itself was reaped by the check (no zombie left); its
    // child was killed (then reaped by whoever inherited it: gone, or a
    // zombie for a moment if that is slow).
    assert_eq!(proc_state(ids[0]), None, "the script {} is gone", ids[0]);
    assert!(
        killed(ids[1]),
        "the script's sleep {} was killed: state {:?}",
        ids[1],
        proc_state(ids[1])
    );

    // /bin/sleep alone, the program itself past the timeout.
    let started = Instant::now();
    match check_once(
        &script(&["/bin/sleep", "30"]),
        &real_8080(),
        Duration::from_millis(200),
    ) {
        Outcome::Failure(e) => assert!(e.contains("timed out after 200ms, killed"), "{e}"),
        o => panic!("{o:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Found in review: a script that exited leaving a child in the
/// background (`sleep 60 &`) left it running, and the child's hold on
/// stderr kept a reader thread and a pipe per check, and made a failing
/// check last until its timeout. Now the group is killed when the script
/// ends, the outcome comes at once, and its stderr line is still kept.
#[test]
fn a_script_that_exits_leaves_nothing_running_behind_it() {
    let dir = std::env::temp_dir().join(format!("lb-health-left-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (status, said) in [(0, ""), (3, "gone to lunch")] {
        let pid_file = dir.join(format!("pid{status}"));
        let body = format!(
            "/bin/sleep 60 & echo $! > {}; echo '{said}' >&2; exit {status}",
            pid_file.display()
        );
        let started = Instant::now();
        let outcome = check_once(
            &script(&["/bin/sh", "-c", &body]),
            &real_8080(),
            Duration::from_secs(10),
        );
        let took = started.elapsed();
        match (status, outcome) {
            (0, Outcome::Success) => {}
            (3, Outcome::Failure(e)) => {
                assert_eq!(e, "/bin/sh: exit status 3: gone to lunch")
            }
            (_, o) => panic!("exit {status}: {o:?}"),
        }
        // A bound, not a speed: far below the 10 s timeout it waited for.
        assert!(
            took < Duration::from_secs(5),
            "exit {status}: took {took:?}"
        );
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            killed(child),
            "exit {status}: the background sleep {child} was killed: state {:?}",
            proc_state(child)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found in review: DPDK opens its descriptors without close-on-exec, and
/// scripts inherited them (all of DPDK's memory among them). A descriptor
/// opened the way DPDK does (`dup` sets no close-on-exec) is not open in
/// the script.
#[test]
fn a_script_inherits_no_descriptor_of_the_appliance() {
    let leaky = rustix::io::dup(std::io::stderr()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&leaky);
    let check =
        format!("test ! -e /proc/self/fd/{fd} || {{ echo 'fd {fd} is open' >&2; exit 1; }}");
    assert_eq!(
        check_once(
            &script(&["/bin/sh", "-c", &check]),
            &real_8080(),
            Duration::from_secs(5)
        ),
        Outcome::Success
    );
    drop(leaky);
}

/// A stop does not wait for a script to time out, nor leave it behind: the
/// checker kills the script's group and reaps it as soon as it is told.
#[test]
fn a_stop_kills_a_running_script_at_once() {
    let dir = std::env::temp_dir().join(format!("lb-health-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    let text = format!(
        "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
         [[services]]\nname = \"slow\"\nvip = \"198.18.1.100\"\nport = 80\n\
         [services.health_check]\nkind = \"script\"\ncommand = [\"/bin/sh\", \"-c\", \"echo $$ > {}; exec /bin/sleep 30\"]\n\
         interval = \"10s\"\ntimeout = \"10s\"\n\
         [[services.reals]]\naddress = \"198.18.0.11\"\nport = 80\n",
        pid_file.display()
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut checkers = HealthCheckers::new();
    checkers.sync(&cfg);
    let end = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Ok(pid) = written.trim().parse::<u32>() {
            break pid;
        }
        assert!(Instant::now() < end, "the script never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let left = checkers.stop();
    let took = t.elapsed();
    assert_eq!(left, 0, "no checker left behind");
    // A bound, not a speed: far below the script's 10 s timeout.
    assert!(took < Duration::from_secs(2), "the stop took {took:?}");
    assert_eq!(
        proc_state(pid),
        None,
        "the script {pid} was killed and reaped"
    );
    assert_eq!(
        checkers.reports().count(),
        0,
        "a killed script reports nothing"
    );
}
