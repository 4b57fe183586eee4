//! io_uring set-up for a worker, with a clear error when io_uring is unavailable.
//!
//! Flags: `SINGLE_ISSUER` + `DEFER_TASKRUN` (kernel 6.1+): only the worker thread submits, and
//! completions are produced when it waits, in batches, without interrupting it. The completion
//! queue is larger than the submission queue: a multishot receive stops (and is re-armed) when
//! the CQ is full, so a large CQ means fewer re-arms under bursts.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, opcode, types};

use super::SetupError;

/// Submission queue entries: a worker has few SQEs in flight (receives, timer, wake-up).
pub const SQ_ENTRIES: u32 = 64;
/// Completion queue entries.
pub const CQ_ENTRIES: u32 = 4096;

/// Creates a worker's ring.
pub fn new_ring() -> Result<IoUring, SetupError> {
    let build = |defer: bool| {
        let mut b = IoUring::builder();
        b.setup_cqsize(CQ_ENTRIES).setup_submit_all();
        if defer {
            b.setup_single_issuer().setup_defer_taskrun();
        } else {
            b.setup_coop_taskrun();
        }
        b.build(SQ_ENTRIES)
    };
    match build(true) {
        Ok(r) => Ok(r),
        Err(e) => match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EACCES) => {
                Err(SetupError::IoUringUnavailable { source: e })
            }
            // An older kernel without DEFER_TASKRUN: fall back to cooperative task running.
            Some(libc::EINVAL) => build(false).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EACCES) => {
                    SetupError::IoUringUnavailable { source: e }
                }
                _ => SetupError::os("cannot set up io_uring", e),
            }),
            _ => Err(SetupError::os("cannot set up io_uring", e)),
        },
    }
}

/// One completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// True when a multishot request stays armed after this completion.
    pub fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }
}

/// A worker's io_uring: the only way the worker talks to the ring, so that every submission's
/// memory contract is argued here once.
pub struct Ring {
    uring: IoUring,
    timespec: Box<io_uring::types::Timespec>,
}

impl Ring {
    pub fn new() -> Result<Ring, SetupError> {
        Ok(Ring {
            uring: new_ring()?,
            timespec: Box::new(io_uring::types::Timespec::new()),
        })
    }

    /// Arms a multishot timer firing every `interval` (kernel 6.4+).
    pub fn timeout_multi(&mut self, interval: Duration, user_data: u64) -> io::Result<()> {
        *self.timespec = io_uring::types::Timespec::from(interval);
        let e = opcode::Timeout::new(&*self.timespec)
            .count(0)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(user_data);
        self.push(e)
    }

    /// Arms a multishot readability poll on `fd` (kernel 5.13+).
    pub fn poll_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        self.poll_multi_mask(fd, libc::POLLIN as u32, user_data)
    }

    /// Arms a multishot poll on `fd` for the events in `mask`.
    pub fn poll_multi_mask(&mut self, fd: RawFd, mask: u32, user_data: u64) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), mask)
            .multi(true)
            .build()
            .user_data(user_data);
        self.push(e)
    }

    /// A one-shot poll: one completion when `fd` is ready for `mask` (at once if it already
    /// is), then nothing until armed again. Armed only while the worker waits, it costs the
    /// kernel nothing per packet while the worker is busy.
    pub fn poll_once(&mut self, fd: RawFd, mask: u32, user_data: u64) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), mask)
            .build()
            .user_data(user_data);
        self.push(e)
    }

    /// Cancels the request(s) submitted with `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        self.push(e)
    }

    /// Submits what is queued and waits for at least `want` completions, or `timeout`.
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<usize> {
        let r = match timeout {
            None => self.uring.submit_and_wait(want),
            Some(t) => {
                let ts = io_uring::types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(want, &args)
            }
        };
        transient_is_zero(r)
    }

    /// Submits and waits for `want` completions, but returns as soon as `min_wait` has passed
    /// with at least one (kernel 6.12+, `IORING_FEAT_MIN_TIMEOUT`; without it, returns at the
    /// first completion): a batching knob that trades a little latency for bigger batches.
    pub fn submit_and_wait_batch(&mut self, want: usize, min_wait: Duration) -> io::Result<usize> {
        if min_wait.is_zero() || !self.uring.params().is_feature_min_timeout() {
            return self.submit_and_wait(1, None);
        }
        let args = types::SubmitArgs::new().min_wait_usec(min_wait.as_micros() as u32);
        transient_is_zero(self.uring.submitter().submit_with_args(want, &args))
    }

    /// Moves every available completion into `out` (appended).
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.uring.completion();
        cq.sync();
        for c in &mut cq {
            out.push(Completion {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            });
        }
    }

    fn push(&mut self, e: io_uring::squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: the entries built by this type's methods reference only file descriptors
            // (the kernel takes its own file reference at submission, so closing one early is
            // harmless) and `self.timespec`, boxed and owned by `self` (so its address is stable
            // while `self` lives), which the kernel copies when the timeout is prepared. No
            // entry points into any other user memory.
            if unsafe { self.uring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            // Queue full: submit what is there and retry once.
            self.uring.submit()?;
        }
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }
}

/// An `io_uring_enter` that was interrupted, timed out, or found completions pending (the CQ
/// must be drained first) returns normally, with nothing submitted or waited for.
fn transient_is_zero(r: io::Result<usize>) -> io::Result<usize> {
    match r {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR) | Some(libc::ETIME) | Some(libc::EBUSY) | Some(libc::EAGAIN)
            ) =>
        {
            Ok(0)
        }
        r => r,
    }
}
