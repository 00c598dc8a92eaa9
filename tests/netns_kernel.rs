//! The exception path end to end: the appliance in a network namespace on
//! a veth interface (DPDK `net_af_packet`) with `kernel_interface =
//! "lbk0"`. Kernel programs in its namespace use the data port through
//! lbk0: a TCP server on the port address answers a client in the peer
//! namespace, the kernel pings and resolves its own neighbors (ARP and
//! NDP), and a health check reaches a real that only the data port leads
//! to. Ping to the port address is still answered by the dataplane, a
//! flood to the port address is bounded (`kernel_queue_full`), and the
//! exception counters move. Needs root (network namespaces); skipped with
//! the reason otherwise, and a failure where LB_REQUIRE_PRIVILEGED_TESTS=1.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{privileged, veth, DpdkPrefix, Netns, Proc, TempDir, BIN};

const CONFIG: &str = r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            "--file-prefix", "PREFIX"]
mbufs = 8191

[workers]
lcores = [1]

[[ports]]
name = "wan"
device = "net_af_packet0,iface=lb0"
address = "198.18.0.2/24"
address6 = "2001:2::2/64"
kernel_interface = "lbk0"

[metrics]
listen = "127.0.0.1:9101"

# The real is the peer namespace's web server, reached only through the
# data port: its health check runs over lbk0.
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[services.health_check]
kind = "tcp"
interval = "500ms"
timeout = "400ms"
rise = 1
fall = 1
[[services.reals]]
address = "198.18.0.1"
port = 8080
forwarding = "nat"
"#;

/// The value of the series `name{labels}` (labels as Prometheus writes
/// them, in order) in the appliance's `/metrics`, 0 if absent.
fn metric(lb: &Netns, series: &str) -> f64 {
    let out = lb.try_exec(&[
        "curl",
        "-s",
        "--max-time",
        "3",
        "http://127.0.0.1:9101/metrics",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// lb0 is also a kernel interface of lb's namespace, with the port's MAC:
/// keep the kernel off it, or it would answer for lbk0's addresses there
/// too (duplicate replies) and see its own frames. A bridge that stays
/// down takes every frame after af_packet has seen it, and drops it.
fn keep_kernel_off_lb0(lb: &Netns) {
    lb.exec(&["ip", "link", "add", "lbt-off", "type", "bridge"]);
    lb.exec(&["ip", "link", "set", "lb0", "master", "lbt-off"]);
    lb.exec(&["sysctl", "-qw", "net.ipv6.conf.lb0.disable_ipv6=1"]);
}

/// The appliance in `lb` with `config`, polling.
fn start(lb: &Netns, config: &std::path::Path, dir: &TempDir) -> Proc {
    let mut cmd = lb.command(BIN);
    cmd.args(["-c", config.to_str().unwrap()]);
    let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        app.wait_for_log("polling", Duration::from_secs(30)),
        "did not start:\n{}",
        app.log_text()
    );
    app
}

fn wait_until(what: &str, app: &Proc, cond: impl FnMut() -> bool) {
    wait_until_within(what, app, Duration::from_secs(20), cond)
}

fn wait_until_within(what: &str, app: &Proc, within: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}:\n{}",
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A one-connection TCP server on `addr`:`port` in `ns` that greets its
/// client, accepting for up to 20 s.
fn greeter(ns: &Netns, dir: &TempDir, addr: &str, port: u16, tag: &str) -> Proc {
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.{family})\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port}))\n\
         s.listen(1)\n\
         s.settimeout(20)\n\
         c, a = s.accept()\n\
         c.sendall(b'hello from the kernel of lb\\n')\n\
         c.close()\n"
    );
    let mut cmd = ns.command("python3");
    cmd.args(["-c", &script]);
    Proc::spawn(cmd, &dir.path(&format!("{tag}.log")))
}

/// Connects from `ns` to `addr`:`port` and returns what the server sent.
fn fetch(ns: &Netns, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\n\
         c = socket.create_connection(('{addr}', {port}), timeout=5)\n\
         print(c.recv(100).decode().strip())\n"
    );
    // The server may still be starting: a few tries.
    let mut last = String::new();
    for _ in 0..20 {
        let out = ns.try_exec(&["python3", "-c", &script]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("cannot connect to {addr}:{port}: {last}");
}

#[test]
fn the_kernel_interface_carries_tcp_ping_neighbors_and_health_checks() {
    if !privileged("the_kernel_interface_carries_tcp_ping_neighbors_and_health_checks") {
        return;
    }
    let dir = TempDir::new("netns-kernel");
    let client = Netns::new("kcl");
    let lb = Netns::new("klb");
    veth(&client, "cl0", &lb, "lb0");
    client.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", "cl0"]);
    client.exec(&["ip", "addr", "add", "2001:2::1/64", "dev", "cl0", "nodad"]);
    client.exec(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
    keep_kernel_off_lb0(&lb);

    let prefix = DpdkPrefix::new("kni");
    let config = dir.path("lb.toml");
    std::fs::write(
        &config,
        common::with_control_socket(&CONFIG.replace("PREFIX", &prefix.0), &dir.0),
    )
    .unwrap();
    // The real: a web server in the client's namespace.
    let mut web = client.command("python3");
    web.args([
        "-m",
        "http.server",
        "8080",
        "--bind",
        "198.18.0.1",
        "--directory",
        dir.0.to_str().unwrap(),
    ]);
    let _web = Proc::spawn(web, &dir.path("web.log"));

    let mut app = start(&lb, &config, &dir);
    let link = lb.exec(&["ip", "addr", "show", "dev", "lbk0"]);
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains("inet 198.18.0.2/24") && link.contains("inet6 2001:2::2/64"),
        "lbk0 has the port's addresses:\n{link}"
    );
    let mac = |ns: &Netns, dev: &str| {
        let out = ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(mac(&lb, "lbk0"), mac(&lb, "lb0"), "lbk0 has the port's MAC");

    // TCP from the peer to a kernel program on the port address, over
    // IPv4 and IPv6.
    let server = greeter(&lb, &dir, "198.18.0.2", 7000, "greeter4");
    assert_eq!(
        fetch(&client, "198.18.0.2", 7000),
        "hello from the kernel of lb"
    );
    drop(server);
    let server = greeter(&lb, &dir, "2001:2::2", 7001, "greeter6");
    assert_eq!(
        fetch(&client, "2001:2::2", 7001),
        "hello from the kernel of lb"
    );
    drop(server);

    // Ping to the port address: answered by the dataplane, once.
    let out = client.try_exec(&["ping", "-c", "3", "-W", "2", "198.18.0.2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss") && !text.contains("duplicates"),
        "ping 198.18.0.2: {text}\n{}",
        app.log_text()
    );
    // The kernel pings out and resolves its neighbors itself (ARP, NDP).
    lb.exec(&["ip", "neigh", "flush", "dev", "lbk0"]);
    for target in ["198.18.0.1", "2001:2::1"] {
        let out = lb.try_exec(&["ping", "-c", "2", "-W", "2", target]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(" 0% packet loss") && !text.contains("duplicates"),
            "ping {target} from lb's kernel: {text}\n{}",
            app.log_text()
        );
    }

    // The health check of the real, over lbk0, brings it up.
    let up = "lb_real_up{real=\"198.18.0.1:8080\",service=\"web\"}";
    wait_until("the real to come up", &app, || metric(&lb, up) == 1.0);

    let to = "lb_kernel_packets_total{direction=\"to_kernel\",port=\"wan\"}";
    let from = "lb_kernel_packets_total{direction=\"from_kernel\",port=\"wan\"}";
    let (to_before, from_before) = (metric(&lb, to), metric(&lb, from));
    assert!(
        to_before >= 6.0 && from_before >= 6.0,
        "exception counters: to {to_before}, from {from_before}"
    );

    // A flood of UDP to the port address: the kernel gets its budget, the
    // rest is dropped and counted, and the dataplane still answers.
    let flood = "import socket\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 for i in range(100000):\n    s.sendto(b'x' * 16, ('198.18.0.2', 9))\n";
    client.exec(&["python3", "-c", flood]);
    let full = "lb_packets_dropped_total{reason=\"kernel_queue_full\"}";
    wait_until("kernel_queue_full drops", &app, || metric(&lb, full) > 0.0);
    let given = metric(&lb, to) - to_before;
    assert!(
        given < 100_000.0,
        "the flood was bounded: {given} frames went to the kernel"
    );
    let out = client.try_exec(&["ping", "-c", "2", "-W", "2", "198.18.1.100"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss"),
        "the VIP still answers after the flood"
    );

    let code = app.stop("INT", Duration::from_secs(20));
    let log = app.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGINT:\n{log}");
    assert!(log.contains("kernel interface lbk0: to kernel"), "{log}");
    assert!(
        log.contains("echo replies 5"),
        "the dataplane answered the five pings:\n{log}"
    );
    // The interface goes with the process.
    let gone = Command::new("ip")
        .args(["netns", "exec", &lb.name, "ip", "link", "show", "lbk0"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "lbk0 outlived the appliance");
}

/// `[announce]`: the VIP's host route is in table 100 through lbk0 while
/// its real is up, withdrawn when the real goes down, back when it comes
/// back (after the hold-down of one flap), and withdrawn before the ports
/// stop on a clean stop, which then waits `withdraw_delay`.
#[test]
fn the_vip_route_follows_its_reals_and_goes_first_on_a_clean_stop() {
    if !privileged("the_vip_route_follows_its_reals_and_goes_first_on_a_clean_stop") {
        return;
    }
    let dir = TempDir::new("netns-announce");
    let client = Netns::new("acl");
    let lb = Netns::new("alb");
    veth(&client, "cl0", &lb, "lb0");
    client.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", "cl0"]);
    keep_kernel_off_lb0(&lb);
    let prefix = DpdkPrefix::new("ann");
    let config = dir.path("lb.toml");
    // `initial = "down"`: the VIP is announced once a check answered, so
    // the real's going down below is a flap (one before any check
    // answered is the start settling, none: `Announcer::set_unsettled`).
    let text = format!(
        "{}\n[announce]\ntable = 100\nwithdraw_delay = \"1s\"\n",
        CONFIG
            .replace("PREFIX", &prefix.0)
            .replace("kind = \"tcp\"\n", "kind = \"tcp\"\ninitial = \"down\"\n")
    );
    std::fs::write(&config, common::with_control_socket(&text, &dir.0)).unwrap();
    let web = |dir: &TempDir| {
        let mut web = client.command("python3");
        web.args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            "198.18.0.1",
            "--directory",
            dir.0.to_str().unwrap(),
        ]);
        Proc::spawn(web, &dir.path("web.log"))
    };
    let real = web(&dir);
    let mut app = start(&lb, &config, &dir);
    let routes = || {
        let out = lb.exec(&["ip", "-4", "route", "show", "table", "100"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let series = "lb_vip_announced{vip=\"198.18.1.100\"}";
    let changes_series = "lb_vip_route_changes_total{vip=\"198.18.1.100\"}";
    // Up to 30 s: the first health check may fail before the real's
    // neighbor entry is there.
    wait_until_within("the VIP announced", &app, Duration::from_secs(30), || {
        routes().contains("198.18.1.100 dev lbk0") && metric(&lb, series) == 1.0
    });
    let changes = metric(&lb, changes_series);
    // The only real goes down: the VIP is withdrawn.
    drop(real);
    wait_until("the VIP withdrawn", &app, || {
        !routes().contains("198.18.1.100") && metric(&lb, series) == 0.0
    });
    // Back: announced again after the hold-down of one flap (5 s; the
    // start's first check counts none even when it failed), by the
    // control loop's tick (no health change comes to do it).
    let back = Instant::now();
    let _real = web(&dir);
    wait_until_within(
        "the VIP announced again",
        &app,
        Duration::from_secs(40),
        || routes().contains("198.18.1.100 dev lbk0"),
    );
    eprintln!(
        "the VIP announced again {:?} after its real",
        back.elapsed()
    );
    assert!(back.elapsed() >= Duration::from_secs(5), "held down first");
    let held = app.log_text();
    assert!(
        held.contains(
            "announce: 198.18.1.100 wanted again after 1 flap(s) of its reals: held down"
        ) && held.contains("announce: 198.18.1.100 wanted for 5s without a break: hold-down over"),
        "{held}"
    );
    wait_until("two more route changes counted", &app, || {
        metric(&lb, changes_series) == changes + 2.0
    });
    let code = app.stop("TERM", Duration::from_secs(20));
    let log = app.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{log}");
    let withdrawn = log.find("announce: 198.18.1.100 withdrawn from table 100");
    let ports = log.find("waiting for the workers to finish");
    assert!(
        matches!((withdrawn, ports), (Some(w), Some(p)) if w < p),
        "withdrawn before the ports stop:\n{log}"
    );
    assert!(log.contains("VIPs withdrawn, waiting 1s"), "{log}");
}

/// A switch that snoops MLD keeps the port's solicited-node group: the
/// peer is a Linux bridge that queries every second and forgets a group 3
/// s after its last report. The appliance gives the queries to lbk0, whose
/// kernel answers for the addresses it holds; before, they were dropped,
/// and the group (learnt from lbk0's reports when it came up) aged out,
/// so that the switch would no longer have passed on neighbor
/// solicitations for the port's address. A VIP on the port's network,
/// which only the dataplane holds, has its group joined on lbk0 and kept
/// the same way.
#[test]
fn a_snooping_switch_keeps_the_ports_solicited_node_group() {
    if !privileged("a_snooping_switch_keeps_the_ports_solicited_node_group") {
        return;
    }
    let dir = TempDir::new("netns-mld");
    let switch = Netns::new("msw");
    let lb = Netns::new("mlb");
    veth(&switch, "sw0", &lb, "lb0");
    switch.exec(&[
        "ip",
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "1",
        "mcast_query_interval",
        "100",
        "mcast_query_response_interval",
        "50",
        "mcast_membership_interval",
        "300",
        "mcast_startup_query_interval",
        "100",
    ]);
    switch.exec(&["ip", "link", "set", "sw0", "master", "br0"]);
    switch.exec(&["ip", "link", "set", "br0", "up"]);
    switch.exec(&["ip", "addr", "add", "2001:2::1/64", "dev", "br0", "nodad"]);
    keep_kernel_off_lb0(&lb);
    let prefix = DpdkPrefix::new("mld");
    let config = dir.path("lb.toml");
    let text = format!(
        "{}\n[[services]]\nname = \"web6\"\nvip = \"2001:2::100\"\nport = 80\n\
         [[services.reals]]\naddress = \"2001:2::1\"\nport = 8080\nforwarding = \"nat\"\n",
        CONFIG.replace("PREFIX", &prefix.0)
    );
    std::fs::write(&config, common::with_control_socket(&text, &dir.0)).unwrap();
    let mut app = start(&lb, &config, &dir);
    // The solicited-node groups of 2001:2::2 (the port's) and of
    // 2001:2::100 (the VIP's), on the bridge's port to lb.
    let listed = || {
        let out = switch.exec(&["bridge", "mdb", "show", "dev", "br0"]);
        let mdb = String::from_utf8_lossy(&out.stdout).into_owned();
        mdb.contains("port sw0 grp ff02::1:ff00:2 ")
            && mdb.contains("port sw0 grp ff02::1:ff00:100 ")
    };
    wait_until("the group in the bridge", &app, listed);
    // Three membership intervals: each would have forgotten it unless
    // lbk0 answered a query within it.
    let end = Instant::now() + Duration::from_secs(9);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        let mdb = switch.exec(&["bridge", "mdb", "show", "dev", "br0"]);
        assert!(
            listed(),
            "the bridge forgot a group of the port's:\n{}\n{}",
            String::from_utf8_lossy(&mdb.stdout),
            app.log_text()
        );
    }
    let code = app.stop("INT", Duration::from_secs(20));
    assert_eq!(code, Some(0), "clean exit on SIGINT:\n{}", app.log_text());
}
