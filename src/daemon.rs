//! `mcrelay run`: start-up, one worker per ingress interface, signals, clean shutdown.
//!
//! OWNER: data-plane work (issue 3). This stub fixes the interface reload (issue 4) and control
//! (issue 5) use: a [`Daemon`] that publishes tables to its workers and hands out their snapshots.

use std::sync::Arc;
use std::time::Duration;

use crate::stats::WorkerSnapshot;
use crate::table::{Generation, Table};

/// The running relay: the current table (arc-swap) and the workers that run it.
pub struct Daemon {
    _private: (),
}

/// What publishing a table did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    pub generation: Generation,
    /// Interfaces whose workers were started / stopped by this publication.
    pub workers_started: Vec<String>,
    pub workers_stopped: Vec<String>,
    /// True when every worker acknowledged the generation before the timeout.
    pub acknowledged: bool,
}

impl Daemon {
    /// The table the workers run now.
    pub fn current(&self) -> Arc<Table> {
        unimplemented!()
    }

    /// Publishes `table` as the next generation: joins new groups, swaps the table in (one atomic
    /// store), starts/stops workers for interfaces that appear/disappear, waits up to `timeout`
    /// for every worker to acknowledge, then leaves groups no longer routed.
    pub fn publish(&self, _table: Table, _timeout: Duration) -> PublishReport {
        unimplemented!()
    }

    /// The latest snapshot of every worker.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        unimplemented!()
    }
}

/// `mcrelay run`.
pub fn cmd_run(_args: crate::cli::RunArgs) -> i32 {
    eprintln!("mcrelay: run is not implemented yet");
    crate::exit::SOFTWARE
}
