//! The safe DPDK layer against a real EAL, on virtual devices only
//! (`--no-huge`, `net_ring`, `net_null`): no hugepages, no NIC, no root.
//! The EAL starts once per process, so every test shares it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lb_dataplane::dpdk::{self, Eal, LcoreId, MbufBurst, Mempool, Port, PortSetup};
use lb_dataplane::PacketBuf;

struct Lab {
    eal: Eal,
    pool: Mempool,
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        // A fixed prefix: its runtime folder is reused, not left behind
        // once per run.
        let prefix = "--file-prefix=lbt-dataplane-tests";
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--no-shconf",
            "--log-level=lib.eal:warning",
            prefix,
            // Two lcores on CPU 0, so the test also runs on a one-CPU box.
            "--lcores",
            "0@0,1@0",
            "--vdev",
            "net_ring0",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
        ])
        .expect("EAL starts on virtual devices with --no-huge");
        let pool = Mempool::create(&eal, "test_pool", 2047, 2176).expect("mempool");
        Lab { eal, pool }
    })
}

/// Ports are started by several tests; DPDK port set-up is not meant to run
/// concurrently with itself.
fn port_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn eal_reports_its_lcores_and_refuses_a_second_init() {
    let lab = lab();
    let info = lab.eal.info();
    assert_eq!(info.main_lcore, LcoreId(0));
    assert_eq!(info.lcore_count, 2);
    assert!(lab.eal.lcore_enabled(LcoreId(1)));
    assert!(!lab.eal.lcore_enabled(LcoreId(2)));
    assert!(lab.eal.tsc_hz() > 0);
    let err = Eal::init(&["--no-huge"]).expect_err("second init must fail");
    assert!(err.to_string().contains("once per process"), "{err}");
    assert!(dpdk::version().starts_with("DPDK "), "{}", dpdk::version());
}

#[test]
fn mbufs_come_from_the_pool_and_go_back() {
    let pool = lab().pool;
    let before = pool.in_use();
    let mut m = pool.alloc().expect("an mbuf");
    assert_eq!(pool.in_use(), before + 1);
    assert!(m.is_empty());
    assert_eq!(m.headroom(), 128);
    assert!(m.append(60));
    m.data_mut().copy_from_slice(&[0xa5; 60]);
    assert!(m.prepend(20));
    assert_eq!(m.len(), 80);
    assert!(!m.prepend(200), "more than the headroom");
    assert!(m.adj(20));
    assert!(m.trim(10));
    assert_eq!(m.data(), &[0xa5; 50][..]);
    assert!(!m.trim(51));
    assert_eq!(m.segments(), 1);
    drop(m);
    assert_eq!(pool.in_use(), before);
}

#[test]
fn a_burst_frees_what_it_still_holds() {
    let pool = lab().pool;
    let before = pool.in_use();
    let mut burst = MbufBurst::new();
    for _ in 0..10 {
        burst.push(pool.alloc().unwrap()).unwrap();
    }
    assert_eq!(pool.in_use(), before + 10);
    // Take three, drop the iterator: the other seven are freed with it.
    let taken: Vec<_> = burst.drain().take(3).collect();
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), before + 3);
    drop(taken);
    for _ in 0..5 {
        burst.push(pool.alloc().unwrap()).unwrap();
    }
    drop(burst);
    assert_eq!(pool.in_use(), before);
}

#[test]
fn net_ring_loops_transmitted_frames_back_byte_for_byte() {
    let lab = lab();
    let _g = port_lock();
    let setup = PortSetup {
        device_name: "net_ring0",
        queues: 1,
        mtu: 1500,
        mempool: lab.pool,
        rx_descriptors: 256,
        tx_descriptors: 256,
        mac: None,
    };
    let (port, mut rx, mut tx) = Port::start(&lab.eal, &setup).expect("net_ring0 starts");
    assert_eq!(port.driver(), "net_ring");
    assert_eq!(port.mtu(), 1500, "the MTU it was set up with");
    let mut out = MbufBurst::new();
    for i in 0..8u8 {
        let mut m = lab.pool.alloc().unwrap();
        assert!(m.append(64));
        m.data_mut().fill(i);
        out.push(m).unwrap();
    }
    assert_eq!(tx[0].tx_burst(&mut out), 8);
    assert!(out.is_empty());
    let mut back = MbufBurst::new();
    let n = rx[0].rx_burst(&mut back, 32, |r| panic!("{r:?}"));
    assert_eq!(n, 8);
    for (i, m) in back.drain().enumerate() {
        assert_eq!(m.data(), &[i as u8; 64][..]);
    }
    let s = port.stats().unwrap();
    assert_eq!((s.tx_packets, s.rx_packets), (8, 8));
    // net_ring counts packets, not bytes.
}

#[test]
fn net_null_receives_and_transmits() {
    let lab = lab();
    let _g = port_lock();
    let setup = PortSetup {
        device_name: "net_null0",
        queues: 1,
        mtu: 1500,
        mempool: lab.pool,
        rx_descriptors: 256,
        tx_descriptors: 256,
        mac: None,
    };
    let (port, mut rx, mut tx) = Port::start(&lab.eal, &setup).expect("net_null0 starts");
    let mut burst = MbufBurst::new();
    let n = rx[0].rx_burst(&mut burst, 16, |r| panic!("{r:?}"));
    assert_eq!(n, 16, "net_null fills every burst");
    assert_eq!(tx[0].tx_burst(&mut burst), 16);
    assert!(port.stats().unwrap().rx_packets >= 16);
    // Found in review: a second start of a started port handed its queue
    // tokens out again (two pollers of one queue). Refused, and the port
    // keeps working.
    match Port::start(&lab.eal, &setup) {
        Ok(_) => panic!("net_null0 started twice"),
        Err(err) => assert!(err.to_string().contains("already started"), "{err}"),
    }
    assert_eq!(rx[0].rx_burst(&mut burst, 16, |r| panic!("{r:?}")), 16);
    assert_eq!(tx[0].tx_burst(&mut burst), 16);
    // More queues than the driver offers (net_null: 1024).
    let more = PortSetup {
        device_name: "net_null1",
        queues: 2000,
        ..setup.clone()
    };
    match Port::start(&lab.eal, &more) {
        Ok(_) => panic!("2000 queues must exceed what net_null offers"),
        Err(err) => assert!(err.to_string().contains("queues"), "{err}"),
    }
}

#[test]
fn an_unknown_device_is_a_clear_error() {
    let lab = lab();
    let _g = port_lock();
    let setup = PortSetup {
        device_name: "net_nosuch0",
        queues: 1,
        mtu: 1500,
        mempool: lab.pool,
        rx_descriptors: 256,
        tx_descriptors: 256,
        mac: None,
    };
    let err = Port::start(&lab.eal, &setup).expect_err("no such device");
    let text = err.to_string();
    assert!(text.contains("finding device net_nosuch0"), "{text}");
    assert!(text.contains("device string"), "{text}");
}

/// The worker lcore runs one job at a time: tests that launch take turns.
fn lcore_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn jobs_run_on_the_worker_lcore_only() {
    let lab = lab();
    let _turn = lcore_lock();
    let seen = Arc::new(AtomicU32::new(u32::MAX));
    let s = Arc::clone(&seen);
    let launched = lab
        .eal
        .launch(LcoreId(1), move || {
            s.store(LcoreId::current().map_or(999, |l| l.0), Ordering::SeqCst);
            42
        })
        .expect("launch on lcore 1");
    assert_eq!(launched.wait(), 42);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(
        lab.eal.launch(LcoreId(0), || 0).is_err(),
        "main lcore refused"
    );
    assert!(
        lab.eal.launch(LcoreId(5), || 0).is_err(),
        "disabled lcore refused"
    );
}

/// A panic on a worker lcore is caught at the FFI boundary (unwinding into
/// DPDK's C frames would be undefined behaviour) and reported, and the
/// lcore takes a job again afterwards. (Tests and the release profile
/// unwind; a `panic = "abort"` build would abort at once, see
/// `trampoline`.)
#[test]
fn a_panicking_job_is_caught_and_reported() {
    let lab = lab();
    let _turn = lcore_lock();
    let launched = lab
        .eal
        .launch(LcoreId(1), || panic!("a worker bug"))
        .expect("launch on lcore 1");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !launched.is_finished() {
        assert!(std::time::Instant::now() < end, "the job never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(launched.wait(), dpdk::JOB_PANICKED);
    let again = lab.eal.launch(LcoreId(1), || 7).expect("the lcore is free");
    assert_eq!(again.wait(), 7);
}

/// Found in review: a second launch on an lcore whose job had not started
/// yet (or launched from another thread at the same moment) also
/// succeeded, one job was lost and the lcore stuck. An lcore launched and
/// not waited for is refused, from any thread.
#[test]
fn a_busy_lcore_refuses_a_second_launch_from_any_thread() {
    let lab = lab();
    let _turn = lcore_lock();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let first = lab
        .eal
        .launch(LcoreId(1), move || {
            let _ = wait_go.recv();
            1
        })
        .expect("launch on lcore 1");
    assert!(lab.eal.launch(LcoreId(1), || 2).is_err(), "busy: refused");
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                lab.eal.launch(LcoreId(1), || 3).is_err()
            })
        })
        .collect();
    for t in tries {
        assert!(t.join().unwrap(), "refused from another thread too");
    }
    go.send(()).unwrap();
    assert_eq!(first.wait(), 1, "the first job ran");
    // Idle again: launches race from several threads, exactly one runs.
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let tries: Vec<_> = (0..4)
        .map(|i| {
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                lab.eal.launch(LcoreId(1), move || 10 + i).ok()
            })
        })
        .collect();
    let won: Vec<_> = tries
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(won.len(), 1, "exactly one launch taken");
    let rc = won.into_iter().next().unwrap().wait();
    assert!((10..14).contains(&rc), "its job ran: {rc}");
}
