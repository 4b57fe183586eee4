//! mcrelay: a Linux multicast relay.
//!
//! The layers, pure core first, then the I/O shell:
//!
//! * [`config`]: TOML text → `Raw*` serde structs → [`config::compile`] → [`table::Table`], or
//!   every error found, each with `path:line:col`.
//! * [`table`]: the immutable routing table; answers "which destinations for this packet".
//! * [`packet`]: checked views of Ethernet-less IPv4/IPv6 + UDP frames as AF_PACKET delivers them.
//! * [`filter`]: the classic BPF program generated from a table for the ingress socket.
//! * [`forward`]: the per-packet decision (parse → lookup → what to send where), no I/O.
//! * [`tunnel`]: the relay-to-relay tunnel format (docs/TUNNEL.md), its MAC, replay window and
//!   key, no I/O.
//! * [`redundancy`]: routes with several inputs (legs): hitless merge by sequence number,
//!   failover, per-leg health; `now` passed in.
//! * [`rtp`], [`mpegts`]: stream health per packet (RTP sequence and jitter, MPEG-TS
//!   continuity counters).
//! * [`stats`]: counters and their snapshots, windows and rates; takes `now` as an argument.
//!
//! The shell, which talks to the kernel:
//!
//! * [`sys`]: AF_PACKET sockets, the provided-buffer ring, egress UDP sockets, IGMP/MLD joins.
//! * [`worker`]: one thread and one io_uring per ingress interface (the unified loop).
//! * [`daemon`]: `mcrelay run`: start-up, workers, signals, shutdown.
//! * [`reload`]: file watch / SIGHUP / control request → compile → atomic swap → acknowledgement.
//! * [`control`]: the control socket, its protocol and the CLI clients of it.
//!
//! `unsafe` is denied here and allowed only in the kernel-facing modules under `sys`.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod filter;
pub mod forward;
pub mod mpegts;
pub mod packet;
pub mod redundancy;
pub mod reload;
pub mod rtp;
pub mod run;
pub mod stats;
pub mod sys;
pub mod table;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tunnel;
mod worker;

/// The configuration file used when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/mcrelay/mcrelay.toml";
/// The control socket used when the configuration does not name one.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/mcrelay/control.sock";

/// Process exit codes (sysexits.h), documented in mcrelay(8).
pub mod exit {
    pub const OK: i32 = 0;
    /// Generic failure not covered below.
    pub const FAILURE: i32 = 1;
    /// EX_USAGE: bad command line.
    pub const USAGE: i32 = 64;
    /// EX_NOINPUT: the configuration file cannot be read.
    pub const NOINPUT: i32 = 66;
    /// EX_UNAVAILABLE: the daemon is not running / the control socket does not answer.
    pub const UNAVAILABLE: i32 = 69;
    /// EX_SOFTWARE: internal error.
    pub const SOFTWARE: i32 = 70;
    /// EX_OSERR: the kernel refused something needed (io_uring, sockets).
    pub const OSERR: i32 = 71;
    /// EX_NOPERM: missing privilege (a capability, the control socket's group).
    pub const NOPERM: i32 = 77;
    /// EX_CONFIG: the configuration is invalid.
    pub const CONFIG: i32 = 78;
}
