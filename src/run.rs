//! `mcrelay run`: the one place the daemon is wired together.
//!
//! The order matters and is this file: load the configuration (one read: the table and the
//! digest of the bytes it came from), raise the open-file limit, drop privileges before any
//! thread exists ([`sys::privilege::least_privilege`]), install the signal handlers, start the
//! data plane ([`Daemon`]: workers and memberships), then the control side ([`Services`]:
//! reloader, file watch, control socket, metrics) on top of it, tell systemd `READY=1`, and
//! wait for signals: SIGHUP reloads through the same reloader as the file watch and `mcrelay
//! reload`; SIGTERM and SIGINT stop the control side first, then the data plane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{self, services::Services};
use crate::daemon::Daemon;
use crate::reload;
use crate::{config, exit, sys};

/// `mcrelay run`.
pub fn cmd_run(args: crate::cli::RunArgs) -> i32 {
    init_tracing(args.log_level.as_deref());
    let config::Loaded {
        table,
        digest,
        warnings,
    } = match config::load(&args.config, &config::SystemResolver) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcrelay: {e}");
            return e.exit_code();
        }
    };
    control::services::log_warnings(&warnings);
    // Descriptors: one membership socket per 20 groups adds up; the unit sets LimitNOFILE, a
    // shell usually leaves 1024.
    match sys::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::debug!("open file limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    // Privileges: before any thread exists (capabilities are per thread; see sys::privilege).
    let user = args.user.clone().or_else(|| table.daemon.user.clone());
    match sys::privilege::least_privilege(user.as_deref(), &table) {
        Ok(warning) => {
            if let Some(user) = &user {
                tracing::info!("running as user {user}");
            }
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
        }
        Err(refusal) => {
            eprintln!("mcrelay: {refusal}");
            return exit::NOPERM;
        }
    }
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcrelay: cannot install signal handlers: {e}");
            return exit::OSERR;
        }
    };
    let started_at = std::time::SystemTime::now();
    let daemon = match Daemon::start(table, &args.config) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("mcrelay: {e}");
            return e.exit_code();
        }
    };
    // Control side (issues 4, 5): reloader, file watch, control socket, metrics. SIGHUP goes
    // through the same reloader, without blocking the signal thread.
    let services = match Services::start(daemon.clone(), args.config.clone(), digest, started_at) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcrelay: {e}");
            return e.code;
        }
    };
    // The compile's scratch memory is free now: return it.
    sys::release_free_memory();
    let workers = daemon.snapshots();
    tracing::info!(
        "mcrelay ready: {} (generation {}), {} worker(s): {}",
        args.config.display(),
        daemon.current().generation,
        workers.len(),
        workers
            .iter()
            .map(|w| format!("{}/{}", w.interface, w.index))
            .collect::<Vec<_>>()
            .join(", ")
    );
    services.ready();
    run_signals(services.reloads(), signals);
    services.stopping();
    tracing::info!("stopping");
    drop(services);
    // The control side held references to the daemon; they are gone once its threads ended
    // (a client thread may still finish its request).
    let mut daemon = daemon;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Arc::try_unwrap(daemon) {
            Ok(d) => {
                d.shutdown();
                break;
            }
            Err(d) if Instant::now() < deadline => {
                daemon = d;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                tracing::warn!("the control side still holds the daemon; exiting without draining");
                break;
            }
        }
    }
    tracing::info!("stopped");
    exit::OK
}

fn run_signals(reloads: &reload::ReloadThread, mut signals: signal_hook::iterator::Signals) {
    for sig in signals.forever() {
        match sig {
            signal_hook::consts::SIGHUP => {
                if reloads.request(reload::Trigger::Signal) {
                    tracing::info!("SIGHUP: reloading");
                } else {
                    tracing::debug!("SIGHUP: a reload is already pending");
                }
            }
            _ => return,
        }
    }
}

/// Logs to stderr: `--log-level` (a level or a filter) over `RUST_LOG` over `info`; no colours
/// when stderr is not a terminal (journald, files); `<priority>` prefixes under the journal.
pub fn init_tracing(level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("mcrelay: bad --log-level {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Under systemd: one line per event with a priority the journal understands.
    let _ = if control::journal::under_journal() {
        builder
            .with_ansi(false)
            .event_format(control::journal::JournalFormat)
            .try_init()
    } else {
        builder.try_init()
    };
}
