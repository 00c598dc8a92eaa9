//! Mbuf accounting (audit): the exception path (a `net_tap` kernel interface) in the mbuf
//! accounting of `accounting`: frames for the port's own address go to
//! the kernel (TCP and UDP to it, within the budgets, the rest dropped as
//! `kernel_queue_full`), the kernel's own frames (its ARP requests for
//! the clients, its answers) come back through the tap and out of the
//! data port; after the stop every mbuf is back in the pool. In a network
//! namespace of its own (the test thread's, before the EAL starts, so
//! every EAL thread and `ip` run there): needs root; skipped with the
//! reason otherwise, a failure where LB_REQUIRE_PRIVILEGED_TESTS=1.

mod accounting;

use lb_core::golden;

fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        acc += u32::from(w);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An Ethernet + IPv4 frame from `src` (the gateway's MAC) to the port
/// (198.18.0.2, 02:00:00:00:00:02) carrying `l4` of protocol `proto`, its
/// checksums right.
fn frame(src: [u8; 4], proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
    let dst = [198, 18, 0, 2];
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = 20 + l4.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, proto, (l4.len() >> 8) as u8, l4.len() as u8]);
    let at = if proto == 6 { 16 } else { 6 };
    let c = fold(sum16(&l4, sum16(&pseudo, 0)));
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let len = 8 + payload;
    let mut u = vec![0u8; len];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    u
}

#[test]
fn the_exception_path_leaks_no_mbuf() {
    let root = rustix::process::geteuid().is_root();
    let tun = std::path::Path::new("/dev/net/tun").exists();
    let netns =
        root && tun && rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).is_ok();
    if !netns {
        let why =
            format!("needs root, /dev/net/tun and a network namespace (root {root}, tun {tun})");
        if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
            panic!("cannot run ({why}) but LB_REQUIRE_PRIVILEGED_TESTS=1");
        }
        eprintln!("SKIPPED the_exception_path_leaks_no_mbuf: {why}");
        return;
    }
    let golden: Vec<Vec<u8>> = golden::scenario("one-arm")
        .steps
        .iter()
        .map(|s| s.input.clone())
        .collect();
    let mut frames = Vec::new();
    for i in 0..400u16 {
        let client = [198, 18, 0, 100 + (i % 50) as u8];
        frames.push(frame(client, 6, tcp_syn(40000 + i, 22)));
        frames.push(frame(client, 17, udp(40000 + i, 5000, (i % 200) as usize)));
        frames.push(golden[usize::from(i) % golden.len()].clone());
    }
    let c = accounting::run_frames(
        "one-arm",
        "kernel",
        &frames,
        "kernel_interface = \"lbaud0\"\n",
    );
    assert!(c.to_kernel > 0, "frames went to the kernel: {c:?}");
    assert!(c.from_kernel > 0, "the kernel sent frames: {c:?}");
}
