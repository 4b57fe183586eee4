//! The io_uring provided-buffer ring (`IORING_REGISTER_PBUF_RING`, kernel 5.19+) that multishot
//! receive fills.
//!
//! One anonymous mapping holds the ring (`entries` × 16-byte [`BufRingEntry`], page aligned as
//! the kernel requires) followed by the buffer slab (`entries` × `buf_size`). The kernel takes
//! buffers from the head; user space gives them back by writing entries at the tail and
//! publishing the tail (entry 0's reserved field) with a release store, so the kernel never sees
//! the new tail before the entries it covers.
//!
//! Ownership is tracked per buffer: [`BufRing::take`] marks a buffer the kernel handed over (its
//! id came in a completion) as user-owned, [`BufRing::data`] only reads user-owned buffers, and
//! [`BufRing::give_back`] returns it. A buffer the kernel may write is never read.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// A registered provided-buffer ring and its buffers.
pub struct BufRing {
    base: *mut u8,
    map_len: usize,
    ring: *mut BufRingEntry,
    slab: *mut u8,
    entries: u16,
    buf_size: u32,
    bgid: u16,
    /// Local tail: entries written but maybe not yet published.
    tail: u16,
    user_owned: Vec<bool>,
    registered: bool,
}

// SAFETY: the mapping is owned by this value; moving it to another thread moves the ownership.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Maps a ring of `entries` (a power of two, at most 32768) buffers of `buf_size` bytes each.
    /// All buffers start in the ring (kernel-owned) once [`BufRing::register`] is called.
    pub fn new(entries: u16, buf_size: u32, bgid: u16) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 || buf_size == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let page = page_size();
        let ring_len =
            (usize::from(entries) * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
        let map_len = ring_len + usize::from(entries) * buf_size as usize;
        // SAFETY: anonymous private mapping, no fd; the result is checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base.cast::<u8>();
        let mut ring = BufRing {
            base,
            map_len,
            ring: base.cast::<BufRingEntry>(),
            // SAFETY: ring_len < map_len, so the slab starts inside the mapping.
            slab: unsafe { base.add(ring_len) },
            entries,
            buf_size,
            bgid,
            tail: 0,
            user_owned: vec![false; usize::from(entries)],
            registered: false,
        };
        for bid in 0..entries {
            ring.write_entry(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `submitter` under this ring's group id.
    pub fn register(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory is page aligned, `entries` long, and stays mapped until
        // `unregister` or drop; drop unmaps only after a successful unregister (or leaks the
        // mapping), so the kernel never writes into unmapped memory.
        unsafe {
            submitter.register_buf_ring_with_flags(self.base as u64, self.entries, self.bgid, 0)?
        };
        self.registered = true;
        Ok(())
    }

    /// Unregisters the ring; afterwards the kernel no longer picks buffers from it.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        if self.registered {
            submitter.unregister_buf_ring(self.bgid)?;
            self.registered = false;
        }
        Ok(())
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Marks buffer `bid`, named by a completion, as handed to user space. `None` for an id
    /// outside the ring or one already taken (a kernel or bookkeeping error).
    pub fn take(&mut self, bid: u16) -> Option<u16> {
        let slot = self.user_owned.get_mut(usize::from(bid))?;
        if *slot {
            return None;
        }
        *slot = true;
        Some(bid)
    }

    /// The first `len` bytes of user-owned buffer `bid`.
    ///
    /// # Panics
    /// When `bid` is not user-owned (it would race with the kernel) or `len` exceeds the buffer.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            self.user_owned[usize::from(bid)],
            "buffer {bid} read while the kernel owns it"
        );
        assert!(len <= self.buf_size as usize);
        // SAFETY: the buffer lies inside the mapping (bid < entries, len <= buf_size), it is
        // user-owned (the kernel will not write it until given back), and the returned slice
        // borrows `self`, so `give_back` (which needs `&mut self`) cannot run while it lives.
        unsafe {
            std::slice::from_raw_parts(
                self.slab.add(usize::from(bid) * self.buf_size as usize),
                len,
            )
        }
    }

    /// Gives buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub fn give_back(&mut self, bid: u16) {
        let slot = &mut self.user_owned[usize::from(bid)];
        assert!(*slot, "buffer {bid} given back twice");
        *slot = false;
        self.write_entry(bid);
    }

    /// Makes every buffer given back so far visible to the kernel.
    pub fn publish(&mut self) {
        // SAFETY: `ring` points to entry 0 of the page-aligned ring; the tail is its `resv`
        // field, which the kernel reads and user space writes. The release store orders the
        // entry writes before the tail update.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn write_entry(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the ring; the kernel does not read entries at or past
        // the published tail, so writing here does not race. `resv` of entry 0 (the tail) is
        // not touched by the setters.
        unsafe {
            let e = &mut *self.ring.add(idx);
            e.set_addr(self.slab.add(usize::from(bid) * self.buf_size as usize) as u64);
            e.set_len(self.buf_size);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // Still registered: the kernel may write into it; leaking is the safe choice.
            return;
        }
        // SAFETY: the mapping was created in `new` with this length and nothing references it.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as usize } else { 4096 }
}
