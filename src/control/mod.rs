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
