//! A worker's open sources: their poll state (armed, paused), the epoch that tells a stale
//! completion from a live one, and the units held until the next flush.

use std::io;

use crate::sys::SetupError;
use crate::sys::uring::Ring;
use crate::table::{IfaceId, Table};

use super::source::{Opener, Region, Source, SourceKey, Wakeup, wanted};
use super::token::Token;

/// Poll results that mean the descriptor has an error rather than data.
const POLL_ERRORS: i32 = (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as i32;
/// What a source's poll waits for.
const POLL_IN: u32 = (libc::POLLIN | libc::POLLRDNORM) as u32;

/// An open source and its poll state.
pub struct Entry {
    pub key: SourceKey,
    pub source: Box<dyn Source>,
    /// The id of the source's interface in the current table.
    pub iface: IfaceId,
    /// Distinguishes this source from an earlier one at the same index: a completion whose
    /// token carries another epoch belongs to a closed source and is ignored.
    pub epoch: u32,
    pub armed: bool,
    /// Set after an error: not polled until the retry timer.
    pub paused: bool,
}

/// What [`SourceSet::reconcile`] could not do.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// An interface the worker receives on does not exist (the worker waits for it).
    pub waiting: Option<String>,
    /// Sources that could not be opened for another reason.
    pub errors: Vec<SetupError>,
}

/// The sources of one worker, indexed by the `source` of their [`Token::Poll`] and
/// [`Region`]s.
#[derive(Default)]
pub struct SourceSet {
    entries: Vec<Option<Entry>>,
    next_epoch: u32,
    /// Units taken since the last flush, given back after it.
    held: Vec<Region>,
}

impl SourceSet {
    /// Opens the sources `table` wants on `interfaces`, re-filters those it keeps, closes the
    /// others (cancelling their polls). Must not run while units are held.
    pub fn reconcile(
        &mut self,
        ring: &mut Ring,
        opener: &mut dyn Opener,
        table: &Table,
        interfaces: &[String],
    ) -> Reconciled {
        debug_assert!(self.held.is_empty());
        let mut out = Reconciled::default();
        for name in interfaces {
            if !opener.exists(name) && out.waiting.is_none() {
                out.waiting = Some(format!("interface {name} does not exist"));
            }
        }
        let want = wanted(table, interfaces);
        for i in 0..self.entries.len() {
            let keep = self.entries[i]
                .as_ref()
                .is_some_and(|e| want.iter().any(|(k, _)| *k == e.key));
            if !keep && let Some(e) = self.entries[i].as_ref() {
                tracing::info!(
                    "{}: no {:?} routes left, socket closed",
                    e.key.interface,
                    e.key.family
                );
                self.close(ring, i);
            }
        }
        for (key, iface) in want {
            if let Some(e) = self.entries.iter_mut().flatten().find(|e| e.key == key) {
                e.iface = iface;
                if let Err(err) = e.source.apply(table, iface) {
                    tracing::error!(
                        "{}: cannot re-attach the {:?} filter (the previous one stays): {err}",
                        key.interface,
                        key.family
                    );
                }
                continue;
            }
            if !opener.exists(&key.interface) {
                continue;
            }
            match opener.open(&key, table, iface) {
                Ok(source) => {
                    let epoch = self.next_epoch;
                    self.next_epoch = self.next_epoch.wrapping_add(1);
                    let entry = Entry {
                        key,
                        source,
                        iface,
                        epoch,
                        armed: false,
                        paused: false,
                    };
                    match self.entries.iter().position(Option::is_none) {
                        Some(free) => self.entries[free] = Some(entry),
                        None => self.entries.push(Some(entry)),
                    }
                }
                Err(SetupError::NoInterface { name }) => {
                    out.waiting
                        .get_or_insert_with(|| format!("interface {name} does not exist"));
                }
                Err(e) => out.errors.push(e),
            }
        }
        self.arm(ring);
        out
    }

    /// Arms the poll of every source that is neither armed nor paused.
    pub fn arm(&mut self, ring: &mut Ring) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            if e.armed || e.paused {
                continue;
            }
            let token = Token::Poll {
                source: i as u16,
                epoch: e.epoch,
            }
            .encode();
            let fd = e.source.fd();
            let armed = match e.source.wakeup() {
                Wakeup::Standing => ring.poll_multi_mask(fd, POLL_IN, token),
                Wakeup::Once => ring.poll_once(fd, POLL_IN, token),
            };
            e.armed = armed.is_ok();
        }
    }

    /// A completion of source `source`'s poll, armed in `epoch`.
    pub fn on_poll(&mut self, source: u16, epoch: u32, result: i32, more: bool) {
        let Some(e) = self.live_mut(source, epoch) else {
            return;
        };
        if !more {
            e.armed = false;
        }
        let error = if result < 0 {
            match -result {
                libc::ECANCELED => None,
                errno => Some(io::Error::from_raw_os_error(errno)),
            }
        } else if result & POLL_ERRORS != 0 {
            // A ring's poll reports the socket's error (interface down or deleted) where a
            // receive would have failed with it.
            Some(
                e.source
                    .poll_error(result)
                    .unwrap_or_else(|| io::Error::other("socket error")),
            )
        } else {
            None
        };
        if let Some(err) = error
            && !e.paused
        {
            tracing::warn!(
                "{}: receive ({:?}) failed: {err}; retrying",
                e.key.interface,
                e.key.family
            );
            e.paused = true;
        }
    }

    /// The retry timer: a paused source whose interface is still the same is armed again;
    /// one whose interface went away is closed (a later reconcile opens a new one). Returns
    /// the interfaces that went away.
    pub fn retry(&mut self, ring: &mut Ring) -> Vec<String> {
        let mut gone = Vec::new();
        for i in 0..self.entries.len() {
            let Some(e) = self.entries[i].as_mut() else {
                continue;
            };
            if !e.paused {
                continue;
            }
            if e.source.alive() {
                e.paused = false;
            } else {
                if !gone.contains(&e.key.interface) {
                    gone.push(e.key.interface.clone());
                }
                self.close(ring, i);
            }
        }
        self.arm(ring);
        gone
    }

    /// Whether any source's poll is still armed (in the kernel's hands).
    pub fn any_armed(&self) -> bool {
        self.entries.iter().flatten().any(|e| e.armed)
    }

    /// Number of open sources.
    pub fn open_count(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Cancels every armed poll (stop): their completions still arrive and are passed to
    /// [`SourceSet::on_poll`].
    pub fn cancel_all(&mut self, ring: &mut Ring) {
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(e) = e.as_ref().filter(|e| e.armed) {
                cancel(ring, i, e.epoch);
            }
        }
    }

    /// Frames the kernel delivered and dropped, summed over the sources, since the last call.
    pub fn statistics(&mut self) -> (u64, u64) {
        self.entries
            .iter_mut()
            .flatten()
            .map(|e| e.source.statistics())
            .fold((0, 0), |(p, d), (a, b)| (p + a, d + b))
    }

    /// The worker's timer: each source's periodic work.
    pub fn tick(&mut self, now: std::time::Instant) {
        for e in self.entries.iter_mut().flatten() {
            e.source.tick(now);
        }
    }

    /// Number of index slots (open or free), for walking the sources by index.
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// Takes the next ready unit of source `i`, recording it as held.
    pub fn take(&mut self, i: usize) -> Option<(Region, &Entry)> {
        let e = self.entries.get_mut(i)?.as_mut()?;
        let unit = e.source.take()?;
        let region = Region {
            source: i as u16,
            unit,
        };
        self.held.push(region);
        Some((region, self.entries[i].as_ref().expect("just taken from")))
    }

    /// Gives back every unit held since the last call.
    pub fn release_held(&mut self) {
        for r in self.held.drain(..) {
            if let Some(e) = self.entries[usize::from(r.source)].as_mut() {
                e.source.release(r.unit);
            }
        }
    }

    /// Units per flush of source `i`.
    pub fn units_per_flush(&self, i: usize) -> usize {
        self.entries[i]
            .as_ref()
            .map_or(1, |e| e.source.units_per_flush())
    }

    /// The bytes of a queued payload.
    #[inline]
    pub fn bytes(&self, region: Region, off: u32, len: u16) -> &[u8] {
        self.entries[usize::from(region.source)]
            .as_ref()
            .expect("a held unit belongs to an open source")
            .source
            .bytes(region.unit, off, usize::from(len))
    }

    fn live_mut(&mut self, source: u16, epoch: u32) -> Option<&mut Entry> {
        self.entries
            .get_mut(usize::from(source))?
            .as_mut()
            .filter(|e| e.epoch == epoch)
    }

    fn close(&mut self, ring: &mut Ring, i: usize) {
        if let Some(e) = self.entries[i].take()
            && e.armed
        {
            // The poll holds a reference to the file, not to the source's memory: the source
            // can go now; the cancelled poll's completion carries a dead epoch.
            cancel(ring, i, e.epoch);
        }
    }
}

fn cancel(ring: &mut Ring, source: usize, epoch: u32) {
    let target = Token::Poll {
        source: source as u16,
        epoch,
    };
    let _ = ring.cancel(target.encode(), Token::Cancel.encode());
}
