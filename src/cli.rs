//! The command line: `mcrelay run | check | reload | status | stats | completions`.
//!
//! Every subcommand and option here is documented in `man/mcrelay.8` (a test checks it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use std::io::Write as _;
use std::time::Duration;

use crate::control::protocol::{Request, Response};
use crate::control::{client, render};
use crate::reload::ReloadResult;
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
    /// Print the shell completion script for SHELL (the package installs bash, zsh and fish's)
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `mcrelay completions SHELL`: the completion script for SHELL, generated from the command
/// line definition above, on standard output. The Debian package runs it when it is built
/// (scripts/package) and installs the scripts where bash-completion, zsh and fish look for them,
/// so they always match the binary they ship with.
pub fn cmd_completions(args: CompletionsArgs) -> i32 {
    let mut cli = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "mcrelay", &mut script);
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, &script)
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        Ok(()) => crate::exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => crate::exit::OK,
        Err(e) => {
            eprintln!("mcrelay: cannot write the completion script: {e}");
            crate::exit::FAILURE
        }
    }
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

fn fail(e: client::ClientError) -> i32 {
    eprintln!("mcrelay: {}", e.message);
    e.code
}

pub fn cmd_reload(args: ClientArgs) -> i32 {
    let path = match client::socket_path(args.socket.as_deref(), &args.config) {
        Ok(path) => path,
        Err(e) => return fail(e),
    };
    let resp = match client::request(&path, Request::Reload, Duration::from_secs(120)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Some(outcome) = resp.reload else {
        return fail(client::ClientError {
            code: exit::SOFTWARE,
            message: "the daemon answered without a reload outcome".into(),
        });
    };
    let text = render::reload(&outcome);
    match outcome.result {
        ReloadResult::Applied | ReloadResult::Unchanged => {
            print!("{text}");
            if outcome.acknowledged {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        ReloadResult::Rejected => {
            eprint!("{text}");
            exit::CONFIG
        }
        ReloadResult::Unreadable => {
            eprint!("{text}");
            exit::NOINPUT
        }
    }
}

pub fn cmd_status(args: StatusArgs) -> i32 {
    let path = match client::socket_path(args.client.socket.as_deref(), &args.client.config) {
        Ok(path) => path,
        Err(e) => return fail(e),
    };
    match client::request(&path, Request::Status, Duration::from_secs(10)) {
        Ok(Response {
            status: Some(s), ..
        }) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                print!("{}", render::status(&s));
            }
            exit::OK
        }
        Ok(_) => fail(client::ClientError {
            code: exit::SOFTWARE,
            message: "the daemon answered without a status".into(),
        }),
        Err(e) => fail(e),
    }
}

pub fn cmd_stats(args: StatsArgs) -> i32 {
    let path = match client::socket_path(args.client.socket.as_deref(), &args.client.config) {
        Ok(path) => path,
        Err(e) => return fail(e),
    };
    loop {
        let report = match client::request(&path, Request::Stats, Duration::from_secs(10)) {
            Ok(Response { stats: Some(s), .. }) => s,
            Ok(_) => {
                return fail(client::ClientError {
                    code: exit::SOFTWARE,
                    message: "the daemon answered without statistics".into(),
                });
            }
            Err(e) => return fail(e),
        };
        let mut out = std::io::stdout().lock();
        let written = match (args.json, args.watch.is_some()) {
            (true, true) => writeln!(
                out,
                "{}",
                serde_json::to_string(&report).unwrap_or_default()
            ),
            (true, false) => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            ),
            // Home, clear, then the table: refreshes in place like top(1).
            (false, true) => write!(out, "\x1b[H\x1b[2J{}", render::stats(&report)),
            (false, false) => write!(out, "{}", render::stats(&report)),
        };
        if written.and_then(|_| out.flush()).is_err() {
            return exit::OK; // stdout closed (e.g. piped into head)
        }
        drop(out);
        match args.watch {
            Some(interval) => std::thread::sleep(interval.max(Duration::from_millis(100))),
            None => return exit::OK,
        }
    }
}
