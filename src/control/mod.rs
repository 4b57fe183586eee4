//! The control side: the control socket and its protocol, the statistics an operator reads, the
//! Prometheus endpoint, and the CLI clients.
//!
//! Why a separate layer: the workers only count (plain integers, published as snapshots on their
//! timer); everything that turns counts into rates, states and text runs here, on threads that
//! never touch a packet.
//!
//! * [`protocol`]: newline-delimited JSON with `"version": 1`, pure decoding.
//! * [`view`]: the statistics math (rates from consecutive snapshots, UP/DOWN after
//!   `daemon.silence_timeout`), pure, `now` as an argument.
//! * [`render`]: the text of `status`, `stats` and `reload`, pure.
//! * [`server`]: the socket (mode 0660, `daemon.control_group`), bounded clients, the sampler.
//! * [`metrics`]: `/metrics` through `prometheus-client`.
//! * [`services`]: starts all of the above for `mcrelay run`.
//! * [`journal`]: log lines with sd-daemon priorities when stderr goes to the journal.
//! * [`client`]: `mcrelay reload | status | stats`.

pub mod client;
pub(crate) mod journal;
pub(crate) mod metrics;
pub mod protocol;
pub(crate) mod render;
pub mod server;
pub(crate) mod services;
pub(crate) mod view;

/// Lowers the calling thread's priority to nice 19 (threads it starts inherit it): when the
/// control side shares a core with a worker, the worker gets the CPU, so reading statistics does
/// not slow relaying (scripts/bench-stats measures it). Needs no privilege.
pub(crate) fn yield_to_workers() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::debug!("cannot lower the control thread's priority: {e}");
    }
}
