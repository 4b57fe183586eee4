//! The command line: `mcrelay run | check | reload | status | stats`.
//!
//! Every subcommand and option here is documented in `man/mcrelay.8` (a test checks it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{config, exit};

#[derive(Debug, Parser)]
#[command(
    name = "mcrelay",
    version,
    about = "Relay IPv4/IPv6 multicast across interfaces, with hot reload",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay in the foreground (systemd runs it as is)
    Run(RunArgs),
    /// Validate a configuration file and exit
    Check(CheckArgs),
    /// Ask the running daemon to reload its configuration and wait until it runs it
    Reload(ClientArgs),
    /// Show the daemon's state: generation, last reload, workers
    Status(StatusArgs),
    /// Show live per-group and per-destination statistics
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = crate::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// After set-up, switch to this user, keeping only the capabilities needed
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = crate::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Also print the compiled routing table
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// How a client finds the daemon: the control socket named in the config, or given directly.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Configuration file naming the control socket
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = crate::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Control socket to use (overrides the one named in the configuration)
    #[arg(long = "socket", value_name = "PATH", conflicts_with = "config")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON instead of a table
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON (monotonic totals plus rates) instead of a table
    #[arg(long = "json")]
    pub json: bool,
    /// Refresh in place every INTERVAL (default 1s) until interrupted
    #[arg(short = 'w', long = "watch", value_name = "INTERVAL", num_args = 0..=1,
          default_missing_value = "1s", value_parser = humantime::parse_duration)]
    pub watch: Option<std::time::Duration>,
}

/// `mcrelay check [-c FILE] [-v]`: exit 0 when valid, 78 when not, 66 when unreadable.
pub fn cmd_check(args: CheckArgs) -> i32 {
    match config::load(&args.config, &config::SystemResolver) {
        Ok(config::Loaded {
            table, warnings, ..
        }) => {
            eprint!("{}", config::render_errors(&warnings));
            if args.verbose {
                print!("{}", config::check::canonical(&table));
            }
            println!("configuration OK: {}", config::check::summary(&table));
            exit::OK
        }
        Err(config::LoadError::Invalid(errors)) => {
            eprint!("{}", config::render_errors(&errors));
            eprintln!(
                "{}: {}, configuration is invalid",
                args.config.display(),
                config::check::plural(errors.len(), "error")
            );
            exit::CONFIG
        }
        Err(e @ config::LoadError::Io { .. }) => {
            eprintln!("mcrelay: {e}");
            e.exit_code()
        }
    }
}
