//! The AF_PACKET implementation of the ingress seam: one socket per (interface, IP version)
//! with a memory-mapped receive ring (`ingress = "frames"`, TPACKET_V2 slots, or `"ring"`,
//! TPACKET_V3 blocks; see [`crate::sys::packet_ring`]), filtered by the classic BPF program
//! generated from the table ([`crate::filter`]).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::filter;
use crate::packet::Family;
use crate::sys::packet_ring::{RingKind, RingSpec};
use crate::sys::packet_socket::{PacketSocket, RcvbufOutcome};
use crate::sys::{self, SetupError};
use crate::table::{IfaceId, IngressMode, Table};

use super::source::{Opener, Source, SourceKey, Wakeup};

/// TPACKET_V2 slots read before their datagrams are sent (one GSO run's worth).
const FRAMES_PER_FLUSH: usize = 64;

/// Opens AF_PACKET sources with one worker's settings.
pub struct PacketOpener {
    pub ingress: IngressMode,
    pub rcvbuf: usize,
    /// Fanout group ids (IPv4, IPv6) shared by an interface's workers when it has several.
    pub fanout: Option<(u16, u16)>,
}

impl Opener for PacketOpener {
    fn exists(&self, interface: &str) -> bool {
        sys::ifindex(interface).is_some()
    }

    fn open(
        &mut self,
        key: &SourceKey,
        table: &Table,
        iface: IfaceId,
    ) -> Result<Box<dyn Source>, SetupError> {
        let name = &key.interface;
        let ifindex =
            sys::ifindex(name).ok_or_else(|| SetupError::NoInterface { name: name.clone() })?;
        let program = exact_program(table, iface, key);
        let ring = match self.ingress {
            IngressMode::Ring => RingSpec::for_bytes(self.rcvbuf),
            IngressMode::Frames => {
                RingSpec::frames_for(self.rcvbuf, sys::mtu(name).unwrap_or(1500))
            }
        };
        let fanout = self.fanout.map(|(v4, v6)| match key.family {
            Family::V4 => v4,
            Family::V6 => v6,
        });
        let (sock, rcv) = PacketSocket::open(
            name,
            ifindex,
            key.family.ethertype(),
            program.insns(),
            self.rcvbuf,
            ring,
            fanout,
        )?;
        if rcv == RcvbufOutcome::Capped {
            tracing::warn!(
                "{name}: no CAP_NET_ADMIN, so the receive buffer is capped by \
                 net.core.rmem_max instead of {} bytes; bursts may be dropped",
                self.rcvbuf
            );
        }
        tracing::info!(
            interface = %name,
            "{name}: receiving {:?} (ifindex {ifindex}, {} ring)",
            key.family,
            match self.ingress {
                IngressMode::Frames => "frames",
                IngressMode::Ring => "block",
            }
        );
        Ok(Box::new(PacketSource {
            sock,
            name: name.clone(),
            family: key.family,
            ifindex,
        }))
    }
}

/// The filter for a source, logging once when the table has too many routes for an exact one.
fn exact_program(table: &Table, iface: IfaceId, key: &SourceKey) -> filter::Program {
    let program = filter::program(table, iface, key.family);
    if !program.is_exact() {
        tracing::info!(
            "{}: too many {:?} routes for an exact socket filter; accepting all multicast and \
             matching in user space",
            key.interface,
            key.family
        );
    }
    program
}

/// An AF_PACKET socket with its mapped ring.
pub struct PacketSource {
    sock: PacketSocket,
    name: String,
    family: Family,
    ifindex: u32,
}

impl PacketSource {
    fn ring(&self) -> &crate::sys::packet_ring::RxRing {
        self.sock.ring()
    }
}

impl Source for PacketSource {
    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn wakeup(&self) -> Wakeup {
        match self.ring().kind() {
            // A block ring wakes the socket once per block: a standing poll is cheap.
            RingKind::Blocks => Wakeup::Standing,
            // A slot ring wakes it per frame: poll once, drain, poll again.
            RingKind::Frames => Wakeup::Once,
        }
    }

    fn units_per_flush(&self) -> usize {
        match self.ring().kind() {
            RingKind::Blocks => 1,
            RingKind::Frames => FRAMES_PER_FLUSH,
        }
    }

    #[inline]
    fn take(&mut self) -> Option<u32> {
        self.sock.ring_mut().take_next()
    }

    #[inline]
    fn frames(&self, unit: u32, each: &mut dyn FnMut(u32, &[u8])) {
        for (off, frame) in self.ring().frames(unit) {
            each(off, frame);
        }
    }

    #[inline]
    fn bytes(&self, unit: u32, off: u32, len: usize) -> &[u8] {
        self.ring().bytes(unit, off, len)
    }

    #[inline]
    fn release(&mut self, unit: u32) {
        self.sock.ring_mut().release(unit);
    }

    fn poll_error(&mut self, _revents: i32) -> Option<io::Error> {
        self.sock.take_error()
    }

    fn statistics(&mut self) -> (u64, u64) {
        self.sock.statistics().unwrap_or((0, 0))
    }

    fn apply(&mut self, table: &Table, iface: IfaceId) -> io::Result<()> {
        let key = SourceKey {
            interface: self.name.clone(),
            family: self.family,
        };
        self.sock
            .attach_filter(exact_program(table, iface, &key).insns())
    }

    fn alive(&self) -> bool {
        sys::ifindex(&self.name) == Some(self.ifindex)
    }
}
