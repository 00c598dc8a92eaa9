//! `lb-appliance`: the binary. Parses the command line, loads and validates
//! the config, and hands over to the control thread.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lb_config::Config;

/// A Layer-4 load balancer on DPDK: VS/NAT, VS/TUN (IPIP) and VS/DR.
#[derive(Debug, Parser)]
#[command(name = "lb-appliance", version, about, long_about = None)]
struct Cli {
    /// Path of the configuration file (lb.toml).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "/etc/lb-appliance/lb.toml"
    )]
    config: PathBuf,

    /// Validate the configuration, print a summary and exit without
    /// starting DPDK or touching any device (exit status 2 if invalid).
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the services, reals, health, weights and traffic of a running
    /// appliance, in the manner of `ipvsadm -L -n --stats`.
    Status {
        /// Address of the appliance's metrics listener (default: [metrics]
        /// listen of the config file, else 127.0.0.1:9101).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Print the JSON of /status instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Writes to stdout. A reader that went away (`| head`) is not an error
/// worth a panic: what it did not read, it did not want.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn status(cli: &Cli, metrics: Option<&str>, json: bool) -> ExitCode {
    let addr = match metrics {
        Some(a) => a.to_string(),
        None => Config::load(&cli.config)
            .map(|c| c.metrics.listen.to_string())
            .unwrap_or_else(|_| "127.0.0.1:9101".to_string()),
    };
    let body = match lb_control::http::get(&addr, "/status", std::time::Duration::from_secs(5)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("lb-appliance status: cannot read http://{addr}/status: {e}; is the appliance running, and is --metrics its [metrics] listen?");
            return ExitCode::from(1);
        }
    };
    if json {
        out(&format!("{body}\n"));
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<lb_control::status::Status>(&body) {
        Ok(s) => {
            out(&s.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lb-appliance status: http://{addr}/status is not a status document: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Status { metrics, json }) = &cli.command {
        return status(&cli, metrics.as_deref(), *json);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("lb-appliance: {} is invalid:", cli.config.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    if cli.check {
        out(&format!(
            "{}: valid\n{}",
            cli.config.display(),
            config.summary()
        ));
        return ExitCode::SUCCESS;
    }
    match lb_control::run(config, cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-appliance: {e}");
            ExitCode::from(1)
        }
    }
}
