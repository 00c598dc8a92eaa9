//! The main loop of the control thread: start the dataplane, then wake a
//! few times a second to act on signals, until SIGINT or SIGTERM.
#![deny(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lb_config::Config;
use lb_dataplane::{Dataplane, DropReason, StartError};

/// How often the control loop wakes up.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum RunError {
    /// The dataplane could not start (one line, with the cause).
    Start(StartError),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Signals(e) => write!(f, "installing signal handlers: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs the appliance with `config` (loaded from `config_path`) until
/// SIGINT or SIGTERM, then stops it cleanly and logs the final counters.
pub fn run(config: Config, config_path: PathBuf) -> Result<(), RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    let mut dataplane = Dataplane::start(&config).map_err(RunError::Start)?;
    log::info!(
        "running {} with {} worker(s) from {}",
        env!("CARGO_PKG_VERSION"),
        config.workers.lcores.len(),
        config_path.display()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
    }
    log::info!("stopping: waiting for the workers to finish their burst");
    let ports = dataplane.shutdown();
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
    for (lcore, w) in dataplane.worker_stats() {
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| w.dropped(**r) > 0)
            .map(|r| format!("{}={}", r.as_str(), w.dropped(*r)))
            .collect();
        log::info!(
            "worker on {lcore}: rx {}, tx {}, arp replies {}, echo replies {}, arp requests {}, \
             flows active {} created {} expired {} table-full {}, handoffs out {} in {}, held {}, \
             frag-needed sent {}, icmp errors forwarded {}, dropped {} [{}]",
            w.rx_packets.get(),
            w.tx_packets.get(),
            w.arp_replies.get(),
            w.icmp_echo_replies.get(),
            w.arp_requests.get(),
            w.active_flows.get(),
            w.flows_created.get(),
            w.flows_expired.get(),
            w.flow_table_full.get(),
            w.handoffs_out.get(),
            w.handoffs_in.get(),
            w.held.get(),
            w.icmp_frag_needed.get(),
            w.icmp_errors_forwarded.get(),
            w.dropped_total(),
            drops.join(" ")
        );
    }
    drop(dataplane);
    log::info!("stopped");
    Ok(())
}
