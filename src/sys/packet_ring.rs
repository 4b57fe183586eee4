//! Memory-mapped AF_PACKET receive rings, in two kinds. Either way the kernel copies each
//! frame once, into shared memory, in its receive path; user space reads it in place and hands
//! the memory back: no socket queue, no copy to user space, no system call per frame.
//!
//! * [`RingKind::Blocks`], TPACKET_V3 (`ingress = "ring"`): frames are packed into blocks and a
//!   block is handed over when it is full or after its retire timeout. The cheapest at high
//!   rates (measured in a prototype on a 2-vCPU VM: 1-6 % of a core at about 1 M packets/s, where
//!   a multishot receive cost about 80 %), at the
//!   price of latency: at low rates a frame waits up to the retire timeout
//!   ([`RingSpec::retire_ms`], whole milliseconds) in a block that is not full.
//! * [`RingKind::Frames`], TPACKET_V2 (`ingress = "frames"`): fixed-size slots, each handed over
//!   on its own as soon as the kernel has written it, and the socket is readable at once. At low
//!   rates a frame is read as soon as the worker wakes; under load the
//!   worker finds many frames ready per wake-up (the batching of a ring).
//!
//! Layout (Documentation/networking/packet_mmap.rst). V3: `blocks` blocks of `block_size` bytes;
//! each starts with a `tpacket_block_desc` whose `block_status` says who owns it
//! (`TP_STATUS_USER`: user space); frames inside are `tpacket3_hdr` followed (at `tp_net` for
//! `SOCK_DGRAM`) by the IP packet, chained by `tp_next_offset`. V2: `frame_size` slots, packed
//! into blocks without crossing a block's end, each starting with a `tpacket2_hdr` whose
//! `tp_status` says who owns the slot. The ring is set up after the filter and before `bind`
//! (see [`super::packet_socket`]). In this module's API a "block" is the unit handed over: a V3
//! block, or a single V2 slot.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::setsockopt;

/// `TPACKET_V2` and `TPACKET_V3` in `enum tpacket_versions`.
const TPACKET_V2: i32 = 1;
const TPACKET_V3: i32 = 2;
// Offsets in `struct tpacket2_hdr`.
const V2_STATUS: usize = 0;
const V2_SNAPLEN: usize = 8;
const V2_NET: usize = 14;
/// Bytes of a V2 slot before the packet: `tpacket2_hdr` (32), `sockaddr_ll` (20), aligned (16).
const V2_OVERHEAD: u32 = 64;
// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_NET: usize = 26;

/// Which TPACKET version, hence how frames are handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// TPACKET_V3: whole blocks, on fill or retire timeout.
    Blocks,
    /// TPACKET_V2: one fixed-size slot per frame, each as soon as it is written.
    Frames,
}

/// Geometry of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    pub kind: RingKind,
    /// Bytes per block: a multiple of the page size.
    pub block_size: u32,
    pub blocks: u32,
    /// Nominal frame size (the kernel checks `block_size` is a multiple of it).
    pub frame_size: u32,
    /// A block that is not full is handed over after this many milliseconds.
    pub retire_ms: u32,
}

impl RingSpec {
    /// A ring of about `bytes` (the interface's `rcvbuf`), in 256 KiB blocks (8 to 512 of them),
    /// retiring partly filled blocks after 1 ms.
    pub fn for_bytes(bytes: usize) -> RingSpec {
        const BLOCK: usize = 256 << 10;
        RingSpec {
            kind: RingKind::Blocks,
            block_size: BLOCK as u32,
            blocks: (bytes / BLOCK).clamp(8, 512) as u32,
            frame_size: 2048,
            retire_ms: 1,
        }
    }

    /// A TPACKET_V2 ring of about `bytes`, with slots large enough for a frame of `mtu` bytes
    /// (a power of two from 2 KiB); at least 256 slots. A frame larger than its slot is
    /// truncated by the kernel, and the worker drops it as truncated (its IP length says so).
    pub fn frames_for(bytes: usize, mtu: u32) -> RingSpec {
        let frame_size = (mtu + V2_OVERHEAD).next_power_of_two().max(2048);
        // Blocks of 64 KiB or one slot, whichever is larger: slots never cross a block's end.
        let block_size = frame_size.max(64 << 10);
        let slots = (bytes / frame_size as usize).clamp(256, 1 << 16) as u32;
        let per_block = block_size / frame_size;
        RingSpec {
            kind: RingKind::Frames,
            block_size,
            blocks: slots.div_ceil(per_block),
            frame_size,
            retire_ms: 0,
        }
    }

    /// Units handed over one by one: blocks (V3) or slots (V2).
    fn units(&self) -> usize {
        match self.kind {
            RingKind::Blocks => self.blocks as usize,
            RingKind::Frames => (self.block_size / self.frame_size * self.blocks) as usize,
        }
    }
}

/// A mapped receive ring: TPACKET_V3 blocks or TPACKET_V2 slots (the "units" handed over).
#[derive(Debug)]
pub struct RxRing {
    base: *mut u8,
    len: usize,
    kind: RingKind,
    block_size: usize,
    /// Size of the unit handed over: a block (V3) or a slot (V2).
    unit_size: usize,
    units_per_block: usize,
    /// The unit the kernel hands over next.
    next: usize,
    /// Per unit: taken by the worker (user-owned) and not yet released.
    held: Vec<bool>,
}

// SAFETY: the mapping is owned by this value; moving it moves the ownership.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Switches `fd` (an AF_PACKET socket, not yet bound) to the ring's TPACKET version and
    /// maps its ring.
    pub(super) fn setup(fd: RawFd, spec: &RingSpec) -> io::Result<RxRing> {
        let frame_nr = (spec.block_size / spec.frame_size) * spec.blocks;
        let version = match spec.kind {
            RingKind::Blocks => TPACKET_V3,
            RingKind::Frames => TPACKET_V2,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        match spec.kind {
            RingKind::Blocks => {
                let req = libc::tpacket_req3 {
                    tp_block_size: spec.block_size,
                    tp_block_nr: spec.blocks,
                    tp_frame_size: spec.frame_size,
                    tp_frame_nr: frame_nr,
                    tp_retire_blk_tov: spec.retire_ms,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
            }
            RingKind::Frames => {
                let req = libc::tpacket_req {
                    tp_block_size: spec.block_size,
                    tp_block_nr: spec.blocks,
                    tp_frame_size: spec.frame_size,
                    tp_frame_nr: frame_nr,
                };
                setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
            }
        }
        let len = spec.block_size as usize * spec.blocks as usize;
        // SAFETY: maps the ring the kernel just allocated for `fd`; checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        let base = if base == libc::MAP_FAILED {
            // MAP_LOCKED may exceed RLIMIT_MEMLOCK; the ring works unlocked too.
            // SAFETY: the same mapping of the same ring (length and descriptor unchanged, the
            // kernel allocated it for `fd`), without MAP_LOCKED; checked against MAP_FAILED.
            let b = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            };
            if b == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            b
        } else {
            base
        };
        let unit_size = match spec.kind {
            RingKind::Blocks => spec.block_size,
            RingKind::Frames => spec.frame_size,
        } as usize;
        Ok(RxRing {
            base: base.cast(),
            len,
            kind: spec.kind,
            block_size: spec.block_size as usize,
            unit_size,
            units_per_block: spec.block_size as usize / unit_size,
            next: 0,
            held: vec![false; spec.units()],
        })
    }

    /// Which kind of ring this is.
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// Takes the next block (V3) or slot (V2) if the kernel has handed it over; it stays
    /// user-owned (its frames readable) until [`RxRing::release`].
    pub fn take_next(&mut self) -> Option<u32> {
        let b = self.next;
        if self.held[b] || self.status(b).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        self.held[b] = true;
        self.next = (b + 1) % self.held.len();
        Some(b as u32)
    }

    /// The frames of a taken block or slot: (offset of the frame's IP packet in it, its bytes).
    pub fn frames(&self, block: u32) -> Frames<'_> {
        let b = block as usize;
        assert!(self.held[b], "block {b} read while the kernel owns it");
        let data = self.block(b);
        match self.kind {
            RingKind::Blocks => Frames {
                data,
                off: read_u32(data, BLOCK_FIRST_PKT).unwrap_or(0) as usize,
                left: read_u32(data, BLOCK_NUM_PKTS).unwrap_or(0),
                v2: false,
            },
            RingKind::Frames => Frames {
                data,
                off: 0,
                left: 1,
                v2: true,
            },
        }
    }

    /// `len` bytes at `off` of a taken block.
    pub fn bytes(&self, block: u32, off: u32, len: usize) -> &[u8] {
        let b = block as usize;
        assert!(self.held[b], "block {b} read while the kernel owns it");
        &self.block(b)[off as usize..off as usize + len]
    }

    /// Gives a taken block back to the kernel.
    pub fn release(&mut self, block: u32) {
        let b = block as usize;
        assert!(self.held[b], "block {b} released twice");
        self.held[b] = false;
        self.status(b)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }

    /// Offset of unit `b` (block or slot) in the mapping: slots are packed per block and never
    /// cross a block's end.
    fn unit_offset(&self, b: usize) -> usize {
        (b / self.units_per_block) * self.block_size + (b % self.units_per_block) * self.unit_size
    }

    fn block(&self, b: usize) -> &[u8] {
        debug_assert!(b < self.held.len());
        // SAFETY: b < units (`held.len()`), so the unit lies inside the mapping (`unit_offset` + `unit_size`
        // <= blocks x block_size); callers only read units they hold (user-owned), which the
        // kernel does not write until released, and the slice borrows `self`, so `release`
        // (needing `&mut self`) cannot run while it lives.
        unsafe { std::slice::from_raw_parts(self.base.add(self.unit_offset(b)), self.unit_size) }
    }

    fn status(&self, b: usize) -> &AtomicU32 {
        let at = match self.kind {
            RingKind::Blocks => BLOCK_STATUS,
            RingKind::Frames => V2_STATUS,
        };
        // SAFETY: the status word is 4-byte aligned (blocks are page aligned, slots a power of
        // two >= 2 KiB, offsets 8 and 0) and inside the mapping; the kernel and we hand the unit
        // over through it, so it is accessed atomically.
        unsafe { &*(self.base.add(self.unit_offset(b) + at) as *const AtomicU32) }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `setup` with this length; no slice of it survives
        // (they borrow `self`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Iterator over the frames of a block.
pub struct Frames<'a> {
    data: &'a [u8],
    off: usize,
    left: u32,
    /// A V2 slot (one frame, `tpacket2_hdr`) rather than a V3 block.
    v2: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<(u32, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.v2 {
            let snaplen = read_u32(self.data, V2_SNAPLEN)? as usize;
            let net = read_u16(self.data, V2_NET)? as usize;
            let frame = self.data.get(net..net.checked_add(snaplen)?)?;
            return Some((net as u32, frame));
        }
        let hdr = self.off;
        let next = read_u32(self.data, hdr + PKT_NEXT)? as usize;
        let snaplen = read_u32(self.data, hdr + PKT_SNAPLEN)? as usize;
        let net = read_u16(self.data, hdr + PKT_NET)? as usize;
        let start = hdr.checked_add(net)?;
        let frame = self.data.get(start..start.checked_add(snaplen)?)?;
        if next == 0 {
            self.left = 0;
        } else {
            self.off = hdr + next;
        }
        Some((start as u32, frame))
    }
}

fn read_u32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn read_u16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_slots_fit_the_mtu_and_never_cross_a_block() {
        for (bytes, mtu, frame) in [
            (32 << 20, 1500, 2048),
            (32 << 20, 1984, 2048),
            (32 << 20, 1985, 4096),
            (32 << 20, 9000, 16384),
            (1 << 20, 65535, 131072),
        ] {
            let s = RingSpec::frames_for(bytes, mtu);
            assert_eq!(s.kind, RingKind::Frames);
            assert_eq!(s.frame_size, frame, "mtu {mtu}");
            assert!(s.frame_size >= mtu + V2_OVERHEAD, "mtu {mtu} fits its slot");
            assert_eq!(s.block_size % s.frame_size, 0, "slots never cross a block");
            assert_eq!(s.block_size % 4096, 0, "blocks are whole pages");
            assert!(s.units() >= 256, "at least 256 slots, got {}", s.units());
            assert!(s.units() <= 1 << 16);
        }
        // about `bytes` of slots when that is within the bounds
        let s = RingSpec::frames_for(32 << 20, 1500);
        assert_eq!(s.units(), 16384);
        assert_eq!(s.block_size as usize * s.blocks as usize, 32 << 20);
    }

    #[test]
    fn blocks_are_the_units_of_a_v3_ring() {
        let s = RingSpec::for_bytes(32 << 20);
        assert_eq!(s.kind, RingKind::Blocks);
        assert_eq!(s.units(), s.blocks as usize);
        assert_eq!(s.block_size % s.frame_size, 0);
    }
}
