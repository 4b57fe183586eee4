//! The ingress seam: how datagrams enter a worker.
//!
//! A worker drives any number of [`Source`]s (an AF_PACKET ring per interface and IP version
//! today; a tunnel's UDP socket, an AF_XDP socket or the legs of a redundant route are further
//! implementations) through one small interface, the way smoltcp's interface talks to any
//! `phy::Device`:
//!
//! 1. **arm**: the worker polls the source's file descriptor from its io_uring, either with a
//!    standing multishot poll ([`Wakeup::Standing`], one completion per batch the kernel hands
//!    over) or a one-shot poll re-armed after each drain ([`Wakeup::Once`], no wake-up at all
//!    while the worker is busy);
//! 2. **read in place**: [`Source::take`] hands over the next ready *unit* (the piece of memory
//!    the source gives and takes back: a TPACKET_V3 block, a TPACKET_V2 slot, a buffer),
//!    [`Source::frames`] walks the IP packets in it, and [`Source::bytes`] lets the egress send
//!    a payload straight from it: the bytes are never copied;
//! 3. **give back**: [`Source::release`] after the unit's datagrams were sent;
//! 4. **errors**: [`Source::poll_error`] turns a poll's error bits into the socket's error; the
//!    worker then *pauses* the source (not polled) until its retry timer, when
//!    [`Source::alive`] says whether to re-arm it or to close it and open a new one (an
//!    interface deleted and created again).
//!
//! A [`Region`] names a unit of a source, so a queued payload is found again at flush time.
//! Which sources a worker wants follows from the table ([`wanted`]); opening one is the job of
//! an [`Opener`], so the loop runs unchanged against in-memory sources in unit tests.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::packet::Family;
use crate::sys::SetupError;
use crate::table::{IfaceId, Table};

/// How the worker learns that a source has data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A multishot poll that stays armed: suits sources that wake rarely (per block).
    Standing,
    /// A one-shot poll, armed again only after the source was drained: while the worker is
    /// busy, arriving frames cost no wake-up (the NAPI pattern).
    Once,
}

/// A unit of a source: where a queued payload lies until its flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The source's index in the worker's [`SourceSet`](super::sources::SourceSet).
    pub source: u16,
    /// The unit within the source (a block, slot or buffer number).
    pub unit: u32,
}

/// What a source receives: the interface and IP version its frames arrive with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub interface: String,
    pub family: Family,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.interface, self.family)
    }
}

/// One way datagrams enter a worker. See the module documentation for the contract.
pub trait Source: Send {
    /// The descriptor the worker polls for readability.
    fn fd(&self) -> RawFd;

    /// How the poll is armed.
    fn wakeup(&self) -> Wakeup;

    /// Units to read before the worker sends what they carried: a whole V3 block is already a
    /// batch (1); single-frame units are sent every 64.
    fn units_per_flush(&self) -> usize;

    /// The next unit the source handed over, if any. It stays the worker's (its bytes
    /// readable, unchanged) until [`Source::release`].
    fn take(&mut self) -> Option<u32>;

    /// Calls `each(offset, packet)` for every IP packet of a taken unit, where `offset` is the
    /// packet's offset in the unit (so that [`Source::bytes`] finds a payload again).
    fn frames(&self, unit: u32, each: &mut dyn FnMut(u32, &[u8]));

    /// `len` bytes at `off` of a taken unit.
    fn bytes(&self, unit: u32, off: u32, len: usize) -> &[u8];

    /// Gives a taken unit back.
    fn release(&mut self, unit: u32);

    /// The poll completed with `revents`: the error it reports, if any (and cleared).
    fn poll_error(&mut self, revents: i32) -> Option<io::Error>;

    /// Frames the kernel delivered and dropped (ring full) since the last call.
    fn statistics(&mut self) -> (u64, u64);

    /// A new table: adjust what the source lets in (its socket filter) for routes on `iface`.
    fn apply(&mut self, table: &Table, iface: IfaceId) -> io::Result<()>;

    /// Whether the source can be re-armed after a pause (false: its interface is gone or was
    /// re-created, so the worker closes it and opens a new one).
    fn alive(&self) -> bool;

    /// The IP version of a taken unit's frames when the source mixes them (a tunnel carries
    /// IPv4 and IPv6 inner packets on one socket); `None`: its key's family.
    fn unit_family(&self, _unit: u32) -> Option<Family> {
        None
    }

    /// The worker's timer (every 100 ms): periodic work of the source (a tunnel's keepalives
    /// and counters).
    fn tick(&mut self, _now: Instant) {}
}

/// Opens sources for a worker.
pub trait Opener: Send {
    /// Whether `interface` exists now (a worker waits for a missing one).
    fn exists(&self, interface: &str) -> bool;

    /// Opens the source for `key`, letting in what `table` routes on `iface`.
    fn open(
        &mut self,
        key: &SourceKey,
        table: &Table,
        iface: IfaceId,
    ) -> Result<Box<dyn Source>, SetupError>;
}

/// The sources a worker on `interfaces` wants for `table`: one per (interface, IP version)
/// that the table routes, with the interface's id in this table.
pub fn wanted(table: &Table, interfaces: &[String]) -> Vec<(SourceKey, IfaceId)> {
    let mut keys = Vec::new();
    for name in interfaces {
        let Some(id) = table.interface_id(name) else {
            continue;
        };
        // A tunnel: its one socket carries both IP versions, routed or not (it answers
        // keepalives and shows its peers either way).
        if table.tunnel(id).is_some() {
            keys.push((
                SourceKey {
                    interface: name.clone(),
                    family: Family::V4,
                },
                id,
            ));
            continue;
        }
        for family in [Family::V4, Family::V6] {
            if table
                .ingress_keys()
                .any(|k| k.interface == id && Family::of(&k.group) == family)
            {
                keys.push((
                    SourceKey {
                        interface: name.clone(),
                        family,
                    },
                    id,
                ));
            }
        }
    }
    keys
}
