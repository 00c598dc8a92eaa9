//! `lb-appliance`: the binary. Parses the command line, loads and validates
//! the config, and hands over to the control thread.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        println!("{}: valid", cli.config.display());
        print!("{}", config.summary());
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
