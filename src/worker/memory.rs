//! An in-memory implementation of the ingress seam for the worker's unit tests (no root, no
//! interfaces): a test pushes IP packets into a [`Feed`]; the source hands each over as a unit.
//! Readiness is a pipe the worker polls like any descriptor: one byte per queued packet.
//! Dropping the pipe's write end makes the poll report `POLLHUP`, which is how a test makes a
//! source fail (an interface going down); [`Lab::remove`] makes it "go away" for good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::packet::Family;
use crate::sys::SetupError;
use crate::table::{IfaceId, Table};

use super::source::{Opener, Source, SourceKey, Wakeup};

/// The interfaces that exist and the feed of each open source, shared by a test and the
/// worker's opener.
#[derive(Default)]
pub struct Lab {
    exists: Mutex<HashSet<String>>,
    feeds: Mutex<HashMap<(String, Family), Arc<Feed>>>,
    /// Sources opened so far.
    pub opened: AtomicUsize,
}

impl Lab {
    pub fn new(interfaces: &[&str]) -> Arc<Lab> {
        let lab = Lab::default();
        lab.exists
            .lock()
            .unwrap()
            .extend(interfaces.iter().map(|s| s.to_string()));
        Arc::new(lab)
    }

    /// The feed of the open source for (interface, family), once the worker opened it.
    pub fn feed(&self, interface: &str, family: Family) -> Option<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap()
            .get(&(interface.to_string(), family))
            .cloned()
    }

    /// The interface disappears: its sources fail and are not alive any more.
    pub fn remove(&self, interface: &str) {
        self.exists.lock().unwrap().remove(interface);
        for ((name, _), feed) in self.feeds.lock().unwrap().iter() {
            if name == interface {
                feed.alive.store(false, Ordering::Release);
                feed.interrupt(libc::ENODEV);
            }
        }
    }

    /// The interface (re)appears.
    pub fn create(&self, interface: &str) {
        self.exists.lock().unwrap().insert(interface.to_string());
    }

    pub fn opener(self: &Arc<Self>) -> Box<dyn Opener> {
        Box::new(LabOpener(self.clone()))
    }
}

/// Packets waiting for one source, and its readiness pipe.
pub struct Feed {
    queue: Mutex<FeedState>,
    alive: AtomicBool,
    /// Set when the source reading this feed is dropped (closed by the worker).
    pub closed: AtomicBool,
    /// Units taken and not released.
    pub outstanding: AtomicUsize,
}

struct FeedState {
    packets: VecDeque<Vec<u8>>,
    reader: io::PipeReader,
    /// `None` while the source is "down" (the reader then polls `POLLHUP`).
    writer: Option<io::PipeWriter>,
    error: Option<i32>,
}

impl Feed {
    fn new() -> Arc<Feed> {
        let (reader, writer) = io::pipe().expect("a pipe");
        Arc::new(Feed {
            queue: Mutex::new(FeedState {
                packets: VecDeque::new(),
                reader,
                writer: Some(writer),
                error: None,
            }),
            alive: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
        })
    }

    /// Queues an IP packet for the source.
    pub fn push(&self, packet: Vec<u8>) {
        let mut q = self.queue.lock().unwrap();
        q.packets.push_back(packet);
        if let Some(w) = q.writer.as_mut() {
            w.write_all(&[1]).expect("pipe write");
        }
    }

    /// The source fails with `errno` (as a socket whose interface went down).
    pub fn interrupt(&self, errno: i32) {
        let mut q = self.queue.lock().unwrap();
        q.error = Some(errno);
        q.writer = None;
    }

    /// The source works again: a fresh pipe, signalled for what is queued.
    pub fn resume(&self) {
        let mut q = self.queue.lock().unwrap();
        let (reader, mut writer) = io::pipe().expect("a pipe");
        for _ in 0..q.packets.len() {
            writer.write_all(&[1]).expect("pipe write");
        }
        q.reader = reader;
        q.writer = Some(writer);
        q.error = None;
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap().packets.len()
    }
}

struct LabOpener(Arc<Lab>);

impl Opener for LabOpener {
    fn exists(&self, interface: &str) -> bool {
        self.0.exists.lock().unwrap().contains(interface)
    }

    fn open(
        &mut self,
        key: &SourceKey,
        _table: &Table,
        _iface: IfaceId,
    ) -> Result<Box<dyn Source>, SetupError> {
        if !self.exists(&key.interface) {
            return Err(SetupError::NoInterface {
                name: key.interface.clone(),
            });
        }
        let feed = Feed::new();
        self.0
            .feeds
            .lock()
            .unwrap()
            .insert((key.interface.clone(), key.family), feed.clone());
        self.0.opened.fetch_add(1, Ordering::AcqRel);
        Ok(Box::new(MemorySource {
            feed,
            units: Vec::new(),
            delivered: 0,
        }))
    }
}

/// A source whose units are packets pushed into its [`Feed`].
pub struct MemorySource {
    feed: Arc<Feed>,
    /// Taken units (`None`: free).
    units: Vec<Option<Vec<u8>>>,
    delivered: u64,
}

impl Drop for MemorySource {
    fn drop(&mut self) {
        self.feed.closed.store(true, Ordering::Release);
    }
}

impl Source for MemorySource {
    fn fd(&self) -> RawFd {
        self.feed.queue.lock().unwrap().reader.as_raw_fd()
    }

    fn wakeup(&self) -> Wakeup {
        Wakeup::Once
    }

    fn units_per_flush(&self) -> usize {
        64
    }

    fn take(&mut self) -> Option<u32> {
        let packet = {
            let mut q = self.feed.queue.lock().unwrap();
            // "Down" (no writer): nothing is handed over until it works again.
            q.writer.as_ref()?;
            let p = q.packets.pop_front()?;
            let mut byte = [0u8];
            q.reader.read_exact(&mut byte).expect("one byte per packet");
            p
        };
        self.feed.outstanding.fetch_add(1, Ordering::AcqRel);
        self.delivered += 1;
        let unit = match self.units.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.units.push(None);
                self.units.len() - 1
            }
        };
        self.units[unit] = Some(packet);
        Some(unit as u32)
    }

    fn frames(&self, unit: u32, each: &mut dyn FnMut(u32, &[u8])) {
        each(0, self.units[unit as usize].as_ref().expect("a taken unit"));
    }

    fn bytes(&self, unit: u32, off: u32, len: usize) -> &[u8] {
        let p = self.units[unit as usize].as_ref().expect("a taken unit");
        &p[off as usize..off as usize + len]
    }

    fn release(&mut self, unit: u32) {
        assert!(
            self.units[unit as usize].take().is_some(),
            "unit {unit} released twice"
        );
        self.feed.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    fn poll_error(&mut self, _revents: i32) -> Option<io::Error> {
        let q = self.feed.queue.lock().unwrap();
        q.error.map(io::Error::from_raw_os_error)
    }

    fn statistics(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.delivered), 0)
    }

    fn apply(&mut self, _table: &Table, _iface: IfaceId) -> io::Result<()> {
        Ok(())
    }

    fn alive(&self) -> bool {
        self.feed.alive.load(Ordering::Acquire)
    }
}
