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

/// Why a received frame was not relayed. The order is the order of `DropReason::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than the IP header, or the IP total length exceeds what was captured.
    Truncated,
    /// IP version is neither 4 nor 6, or does not match the link-layer protocol.
    BadVersion,
    /// IPv4 IHL < 5 or beyond the frame.
    BadHeaderLength,
    /// IPv4 header checksum is wrong.
    BadChecksum,
    /// IPv4 options present.
    IpOptions,
    /// IPv6 extension headers present.
    ExtensionHeaders,
    /// A fragment (first or later).
    Fragment,
    /// Not UDP.
    NotUdp,
    /// UDP length disagrees with the IP payload length.
    BadUdpLength,
    /// Destination is not a multicast address.
    NotMulticast,
    /// Multicast, but no route in the table (filter fallback or a race with a reload).
    NoRoute,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLength,
        DropReason::BadChecksum,
        DropReason::IpOptions,
        DropReason::ExtensionHeaders,
        DropReason::Fragment,
        DropReason::NotUdp,
        DropReason::BadUdpLength,
        DropReason::NotMulticast,
        DropReason::NoRoute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::IpOptions => "ip_options",
            DropReason::ExtensionHeaders => "extension_headers",
            DropReason::Fragment => "fragment",
            DropReason::NotUdp => "not_udp",
            DropReason::BadUdpLength => "bad_udp_length",
            DropReason::NotMulticast => "not_multicast",
            DropReason::NoRoute => "no_route",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// RTP sequence statistics (RFC 3550 appendix A.1), only for groups with `rtp = true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCounters {
    pub packets: u64,
    /// Sequence gaps seen (each jump forward by more than one).
    pub gaps: u64,
    /// Packets never received (sum of gap sizes, minus late arrivals).
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Payloads too short or not RTP version 2.
    pub invalid: u64,
}

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
    /// Times the provided-buffer ring ran empty and receive had to be re-armed.
    pub ring_stalls: u64,
    /// The routes of this worker's interface, in table order. Entries (and the whole list, when
    /// no group moved) are shared with earlier snapshots: compare with `Arc::ptr_eq` to skip
    /// unchanged ones.
    pub groups: Arc<[Arc<GroupSnapshot>]>,
    /// Last error, for status (e.g. "interface eth3 does not exist").
    pub error: Option<String>,
}
