//! Counters, kept by each worker in plain integers (no locks, no shared atomics per packet), and
//! the snapshots a worker publishes on its timer for the control side to read.
//!
//! OWNER: data-plane work (issue 3) keeps the counters and publishes [`WorkerSnapshot`];
//! control work (issue 5) reads snapshots, computes rates and renders them. Counters are keyed by
//! route key / destination name so that a reload keeps the counters of unchanged groups.
//!
//! A snapshot is cheap to publish and to keep: each group's part is behind an `Arc` and is
//! shared with the previous snapshot while that group's counters have not moved, and names are
//! `Arc<str>` shared with the worker's counters, so publishing and cloning cost what changed,
//! not the size of the table (10 000 groups × 100 destinations is a million counters).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use crate::mpegts::TsCounters;
pub use crate::packet::DropReason;
pub use crate::redundancy::{LegCounters, OutputCounters};
pub use crate::rtp::RtpCounters;

/// Counters of one route (group) in one worker. Immutable once published: a later snapshot
/// either shares it (nothing moved) or carries a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSnapshot {
    pub label: Arc<str>,
    pub interface: Arc<str>,
    pub group: IpAddr,
    pub port: Option<u16>,
    pub source: Option<IpAddr>,
    pub packets: u64,
    pub bytes: u64,
    /// Wall-clock time of the last packet, if any since the counters began.
    pub last_seen: Option<SystemTime>,
    pub rtp: Option<RtpCounters>,
    /// RFC 3550 interarrival jitter of what went out (routes with `rtp = true`).
    pub jitter: Option<std::time::Duration>,
    /// MPEG-TS continuity counters (routes whose payload is MPEG-TS).
    pub ts: Option<TsCounters>,
    pub destinations: Vec<DestinationSnapshot>,
}

/// Counters of one destination of one route in one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSnapshot {
    pub name: Arc<str>,
    pub packets: u64,
    pub bytes: u64,
    /// Sends that failed with an error other than "would block".
    pub errors: u64,
    /// Datagrams dropped because the socket was full (EAGAIN) or the batch overflowed.
    pub drops: u64,
}

/// State of a worker as it reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Starting,
    Running,
    /// The interface is missing or down; the worker waits for it to return.
    Waiting,
    Stopping,
    Stopped,
    Failed,
}

/// Everything one worker publishes, replaced whole on each publication (cloning one is cheap:
/// the groups are shared).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSnapshot {
    pub interface: String,
    /// Index of this worker among the interface's workers (PACKET_FANOUT).
    pub index: u16,
    pub state: WorkerState,
    /// Generation of the table this worker runs.
    pub generation: u64,
    /// When this snapshot was taken.
    pub at: SystemTime,
    pub frames: u64,
    pub frame_bytes: u64,
    /// Indexed like [`DropReason::ALL`].
    pub drops: Vec<u64>,
    /// From PACKET_STATISTICS, accumulated (the kernel resets them on read).
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    /// The routes of this worker's interface, in table order. Entries (and the whole list, when
    /// no group moved) are shared with earlier snapshots: compare with `Arc::ptr_eq` to skip
    /// unchanged ones.
    pub groups: Arc<[Arc<GroupSnapshot>]>,
    /// Last error, for status (e.g. "interface eth3 does not exist").
    pub error: Option<String>,
    /// The tunnels this worker receives from (a tunnel's worker; empty for other workers).
    pub tunnels: Vec<TunnelSnapshot>,
    /// `(route label, datagrams)` for the `listen` routes of this worker's interface: what their
    /// drop-all sockets swallowed, i.e. the ICMP port-unreachable messages the host did not
    /// send. Filled by the daemon on the interface's first worker only.
    pub listen_suppressed: Vec<(String, u64)>,
    /// The routes with legs this worker receives, in table order: per-leg health and the
    /// output stream. Shared with earlier snapshots while the worker has none.
    pub redundant: Arc<[RedundantSnapshot]>,
}

/// A tunnel as its worker sees it: each peer's traffic both ways (sent by every worker that
/// sends into it), authentication failures by reason, and when each peer was last heard from.
/// Never holds the key.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TunnelSnapshot {
    pub interface: String,
    pub local: String,
    /// Whether the tunnel carries anything (false: its key file could not be read).
    pub ready: bool,
    pub peers: Vec<PeerSnapshot>,
    /// Datagrams refused before a peer was known (`not_a_peer`, `truncated`), by reason.
    pub refused: Vec<(String, u64)>,
    /// Datagrams that could not be sent into the tunnel (`too_large`, `no_key`), by reason.
    pub send_refused: Vec<(String, u64)>,
    /// Datagrams sent whose outer packet exceeded the path MTU: fragmented by the kernel (each
    /// is lost whole if one fragment is), counted over every peer.
    #[serde(default)]
    pub fragmented: u64,
}

/// One peer of a tunnel.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerSnapshot {
    pub address: String,
    /// Heard from within the tunnel's `silence_timeout`.
    pub up: bool,
    /// Milliseconds since the last authentic datagram (keepalives included); `None`: never.
    pub last_heard_ms: Option<u64>,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub keepalives_rx: u64,
    /// Datagrams from this peer refused, by reason (`bad_mac`, `replayed`, ...).
    pub refused: Vec<(String, u64)>,
}

/// A route with legs (`redundancy = "merge"` or `"failover"`) as one worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RedundantSnapshot {
    pub label: Arc<str>,
    /// `"merge"` or `"failover"`.
    pub mode: &'static str,
    /// Failover: the leg being forwarded.
    pub active: Option<u8>,
    /// In the configured order.
    pub legs: Vec<LegSnapshot>,
    /// The merged (or selected) stream.
    pub output: OutputCounters,
}

/// One leg of a route with legs.
#[derive(Debug, Clone, PartialEq)]
pub struct LegSnapshot {
    pub interface: Arc<str>,
    pub group: IpAddr,
    pub port: Option<u16>,
    pub source: Option<IpAddr>,
    /// UP as last reported (one log line per change).
    pub up: bool,
    pub counters: LegCounters,
}
