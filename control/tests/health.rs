//! Health checks against real servers on loopback: a TCP listener, and an
//! HTTP server that can be told to answer 200, 500, or hang. Up after
//! `rise`, down after `fall`, and a hung real is timed out while the others
//! keep their interval.

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
    }
}

#[test]
fn a_tcp_check_succeeds_on_a_listener_and_fails_on_a_closed_port() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    assert_eq!(
        check_once(&Probe::Tcp, addr, Duration::from_secs(1)),
        Outcome::Success
    );
    drop(l);
    match check_once(&Probe::Tcp, addr, Duration::from_secs(1)) {
        Outcome::Failure(e) => assert!(e.contains("connect"), "{e}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn an_http_check_wants_the_expected_status_and_times_out_a_hung_server() {
    let s = http_server();
    assert_eq!(
        check_once(&http("/healthz"), s.addr, Duration::from_secs(1)),
        Outcome::Success
    );
    s.mode.store(FAIL, Ordering::SeqCst);
    match check_once(&http("/healthz"), s.addr, Duration::from_secs(1)) {
        Outcome::Failure(e) => assert!(e.contains("500"), "{e}"),
        o => panic!("{o:?}"),
    }
    s.mode.store(HANG, Ordering::SeqCst);
    let t = Instant::now();
    match check_once(&http("/healthz"), s.addr, Duration::from_millis(300)) {
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
    let mut h = Hysteresis::new(2, 3);
    let run = |h: &mut Hysteresis| {
        h.record(check_once(&http("/"), s.addr, Duration::from_secs(1)).is_success())
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

#[test]
fn a_hung_real_is_timed_out_while_the_others_keep_their_interval() {
    let healthy = http_server();
    let hung = http_server();
    hung.mode.store(HANG, Ordering::SeqCst);
    let cfg = config(&[healthy.addr.port(), hung.addr.port()], "200ms", "150ms");
    let mut checkers = HealthCheckers::new();
    checkers.sync(&cfg);
    let key = |p: u16| RealKey {
        service: "web".into(),
        address: Ipv4Addr::LOCALHOST.into(),
        port: p,
    };
    let (mut ok, mut timed_out) = (0, 0);
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some(r) = checkers.next_report(Duration::from_millis(50)) {
            if r.real == key(healthy.addr.port()) && r.outcome.is_success() {
                ok += 1;
            }
            if r.real == key(hung.addr.port()) {
                match r.outcome {
                    Outcome::Failure(e) if e.contains("timed out") => timed_out += 1,
                    o => panic!("the hung real reported {o:?}"),
                }
            }
        }
    }
    checkers.stop();
    // About 10 checks each in 2 s at a 200 ms interval; a checker that
    // waited for the hung real would manage far fewer for the healthy one.
    assert!(ok >= 6, "the healthy real kept its interval: {ok} checks");
    assert!(
        timed_out >= 4,
        "the hung real was timed out each time: {timed_out}"
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
