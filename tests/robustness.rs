//! A control plane that its inputs cannot stall, on a running appliance
//! (a `net_pcap` port on a named pipe, no root): a scrape answers while
//! 100 idle and 100 trickling connections are held open on the metrics
//! listener, and a SIGTERM stops it, leaving behind the checkers of 40
//! reals whose HTTP checks hang (before, checkers were joined one at a
//! time: 32 s). The time bounds below guard against those stalls, not
//! speed: each is far above the expected time.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::PipeAppliance;
use lb_core::golden;

/// One service whose 40 reals accept connections and never answer: each
/// real is a loopback listener that never calls accept (the kernel
/// completes the handshake), so every HTTP check waits its full timeout.
fn hanging_reals(n: usize) -> (Vec<TcpListener>, String) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut text = String::from(
        r#"
[[services]]
name = "hanging"
vip = "198.18.1.120"
port = 80
forwarding = "nat"
[services.health_check]
kind = "http"
path = "/"
interval = "10s"
timeout = "10s"
"#,
    );
    for l in &listeners {
        let port = l.local_addr().unwrap().port();
        text.push_str(&format!(
            "[[services.reals]]\naddress = \"127.0.0.1\"\nport = {port}\n"
        ));
    }
    (listeners, text)
}

fn scrape(addr: &str) -> (String, Duration) {
    let t = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    (text, t.elapsed())
}

#[test]
fn scrapes_answer_under_idle_and_slow_clients_and_a_stop_beats_hanging_checks() {
    let scenario = golden::scenario("one-arm");
    let (_reals, extra) = hanging_reals(40);
    let lb = PipeAppliance::start("robust", &scenario.config, &extra);
    let addr = lb.addr.clone();

    // 100 idle connections, and 100 that trickle a request a byte every
    // 100 ms.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let trickle = std::thread::spawn(move || {
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ";
        let mut i = 0;
        while !s.load(Ordering::Relaxed) {
            let byte = request.get(i).copied().unwrap_or(b'a');
            for c in &mut slow {
                let _ = c.write_all(&[byte]);
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let (text, took) = scrape(&addr);
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.contains("lb_real_up"),
            "no scrape answer: {:?}",
            text.chars().take(200).collect::<String>()
        );
        eprintln!("scrape with 200 slow clients: {took:?}");
        // Guards against a scrape queued behind the slow clients, which are
        // cut off only after the 5 s request deadline; a scrape takes tens
        // of milliseconds, so this is no speed claim.
        assert!(
            took < Duration::from_millis(4500),
            "a scrape took {took:?} with 200 slow clients"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every check hangs (interval and timeout are equal: a checker is
    // always inside a check): a stop must not wait for them one at a
    // time, nor for the slow clients.
    let mut lb = lb;
    lb.close_input();
    let t = Instant::now();
    let code = lb.app.stop("TERM", Duration::from_secs(30));
    let took = t.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    drop(idle);
    let log = lb.app.log_text();
    assert_eq!(code, Some(0), "{}", common::tail(&log, 30));
    // Guards against joining hung checkers one at a time (32 s before),
    // not a speed claim: the stop waits about STOP_WAIT (2 s) for them.
    assert!(
        took < Duration::from_secs(20),
        "the stop took {took:?}:\n{}",
        common::tail(&log, 30)
    );
    assert!(log.contains("left behind"), "{}", common::tail(&log, 30));
}
