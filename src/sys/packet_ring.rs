//! TPACKET_V3 receive ring (`ingress = "ring"`): the kernel writes frames into memory-mapped
//! blocks and hands a block over when it is full or after its retire timeout; user space walks
//! the frames in place and gives the block back. No copy and no system call per frame, hence
//! the cheapest receive at high rates (FACTS.md: 1-6 % of a core at ~1 Mpps where multishot
//! receive cost ~80 %), at the price of latency: at low rates a frame waits up to the retire
//! timeout ([`RingSpec::retire_ms`], whole milliseconds) in a block that is not full.
//!
//! Layout (Documentation/networking/packet_mmap.rst): `blocks` blocks of `block_size` bytes; each
//! starts with a `tpacket_block_desc` whose `block_status` says who owns it (`TP_STATUS_USER`:
//! user space); frames inside are `tpacket3_hdr` followed (at `tp_net` for `SOCK_DGRAM`) by the
//! IP packet, chained by `tp_next_offset`. The ring is set up after the filter and before `bind`
//! (see [`super::packet_socket`]).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::setsockopt;

/// `TPACKET_V3` in `enum tpacket_versions`.
const TPACKET_V3: i32 = 2;
// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT: usize = 0;
const PKT_SNAPLEN: usize = 12;
const PKT_NET: usize = 26;

/// Geometry of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
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
            block_size: BLOCK as u32,
            blocks: (bytes / BLOCK).clamp(8, 512) as u32,
            frame_size: 2048,
            retire_ms: 1,
        }
    }
}

/// A mapped TPACKET_V3 receive ring.
#[derive(Debug)]
pub struct RxRing {
    base: *mut u8,
    len: usize,
    block_size: usize,
    blocks: usize,
    /// The block the kernel hands over next.
    next: usize,
    held: Vec<bool>,
}

// SAFETY: the mapping is owned by this value; moving it moves the ownership.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Switches `fd` (an AF_PACKET socket, not yet bound) to TPACKET_V3 and maps its ring.
    pub(super) fn setup(fd: RawFd, spec: &RingSpec) -> io::Result<RxRing> {
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)?;
        let req = libc::tpacket_req3 {
            tp_block_size: spec.block_size,
            tp_block_nr: spec.blocks,
            tp_frame_size: spec.frame_size,
            tp_frame_nr: (spec.block_size / spec.frame_size) * spec.blocks,
            tp_retire_blk_tov: spec.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
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
            // SAFETY: as above, without MAP_LOCKED.
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
        Ok(RxRing {
            base: base.cast(),
            len,
            block_size: spec.block_size as usize,
            blocks: spec.blocks as usize,
            next: 0,
            held: vec![false; spec.blocks as usize],
        })
    }

    /// Takes the next block if the kernel has handed it over; it stays user-owned (its frames
    /// readable) until [`RxRing::release`].
    pub fn take_next(&mut self) -> Option<u32> {
        let b = self.next;
        if self.held[b] || self.status(b).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        self.held[b] = true;
        self.next = (b + 1) % self.blocks;
        Some(b as u32)
    }

    /// The frames of a taken block: (offset of the frame's IP packet in the block, its bytes).
    pub fn frames(&self, block: u32) -> Frames<'_> {
        let b = block as usize;
        assert!(self.held[b], "block {b} read while the kernel owns it");
        let data = self.block(b);
        let n = read_u32(data, BLOCK_NUM_PKTS).unwrap_or(0);
        let first = read_u32(data, BLOCK_FIRST_PKT).unwrap_or(0) as usize;
        Frames {
            data,
            off: first,
            left: n,
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

    fn block(&self, b: usize) -> &[u8] {
        // SAFETY: b < blocks, so the block lies inside the mapping; callers only read blocks
        // they hold (user-owned), which the kernel does not write until released, and the slice
        // borrows `self`, so `release` (needing `&mut self`) cannot run while it lives.
        unsafe { std::slice::from_raw_parts(self.base.add(b * self.block_size), self.block_size) }
    }

    fn status(&self, b: usize) -> &AtomicU32 {
        // SAFETY: the status word is 4-byte aligned (blocks are page aligned, offset 8) and
        // inside the mapping; the kernel and we hand the block over through it, so it is
        // accessed atomically.
        unsafe { &*(self.base.add(b * self.block_size + BLOCK_STATUS) as *const AtomicU32) }
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
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<(u32, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
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
