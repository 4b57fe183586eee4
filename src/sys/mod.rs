//! Kernel-facing code: the only place `unsafe` is allowed.
//!
//! Everything that issues a raw system call lives here, behind [`syscall!`], which turns the C
//! convention (`-1` and `errno`) into an [`io::Error`] in one place. The rest of the crate sees
//! owned file descriptors and safe methods:
//!
//! * [`packet_socket`]: AF_PACKET `SOCK_DGRAM` ingress sockets (filter, receive buffer, fanout,
//!   `PACKET_STATISTICS`);
//! * [`packet_ring`]: the memory-mapped receive rings (TPACKET_V2 slots for `ingress =
//!   "frames"`, TPACKET_V3 blocks for `"ring"`);
//! * [`egress`]: the non-blocking UDP sockets destinations are sent through, with batched
//!   `sendmmsg` and UDP GSO (`UDP_SEGMENT`, kernel 4.18+);
//! * [`listen`]: the drop-all UDP sockets that keep `listen` routes from drawing ICMP
//!   port-unreachable;
//! * [`uring`]: io_uring set-up with a clear error when the kernel or a sandbox forbids it;
//! * small helpers: interface lookup, CPU pinning, eventfd.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns the C convention of a libc call's result (`-1` and `errno`) into
/// `Err(io::Error::last_os_error())`.
///
/// The macro holds no `unsafe` of its own: each call site writes the call as
/// `syscall!(unsafe { libc::name(...) })` with a `// SAFETY:` comment above it that argues that
/// call's pointers, lengths and lifetimes (`clippy::undocumented_unsafe_blocks` enforces the
/// comment per call site).
macro_rules! syscall {
    ($call: expr) => {{
        let res = $call;
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub mod egress;
pub mod listen;
pub mod membership;
pub(crate) mod packet_ring;
pub(crate) mod packet_socket;
pub mod privilege;
pub mod tunnel;
pub(crate) mod uring;

/// Why the data plane could not set something up, with what the operator can do about it.
#[derive(Debug)]
pub enum SetupError {
    /// The kernel refused for lack of a capability (exit 77).
    NoPermission {
        what: String,
        capability: &'static str,
        source: io::Error,
    },
    /// io_uring cannot be used (exit 71).
    IoUringUnavailable { source: io::Error },
    /// A configured interface does not exist (yet).
    NoInterface { name: String },
    /// Any other refusal by the kernel (exit 71).
    Os { what: String, source: io::Error },
}

impl SetupError {
    /// The process exit code (sysexits) for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            SetupError::NoPermission { .. } => crate::exit::NOPERM,
            SetupError::IoUringUnavailable { .. } | SetupError::Os { .. } => crate::exit::OSERR,
            SetupError::NoInterface { .. } => crate::exit::OSERR,
        }
    }

    pub(crate) fn os(what: impl Into<String>, source: io::Error) -> SetupError {
        SetupError::Os {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoPermission {
                what,
                capability,
                source,
            } => write!(
                f,
                "{what}: {source}: mcrelay needs {capability} (run as root, or grant it with \
                 `setcap cap_net_raw,cap_net_admin+ep` or AmbientCapabilities= in the unit)"
            ),
            SetupError::IoUringUnavailable { source } => {
                let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                    .ok()
                    .map(|s| s.trim().to_string());
                write!(f, "io_uring is not available: {source}: ")?;
                match sysctl.as_deref() {
                    Some("1") | Some("2") => write!(
                        f,
                        "kernel.io_uring_disabled is {} (set it to 0, or 1 with mcrelay in \
                         kernel.io_uring_group)",
                        sysctl.as_deref().unwrap_or("?")
                    ),
                    _ => write!(
                        f,
                        "the kernel lacks it (CONFIG_IO_URING, 6.1 or later needed) or a sandbox \
                         forbids it (a container's seccomp profile: Docker 25+ and containerd 2 \
                         block io_uring_setup by default; kernel.io_uring_disabled)"
                    ),
                }
            }
            SetupError::NoInterface { name } => write!(f, "interface {name} does not exist"),
            SetupError::Os { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::NoPermission { source, .. }
            | SetupError::IoUringUnavailable { source }
            | SetupError::Os { source, .. } => Some(source),
            SetupError::NoInterface { .. } => None,
        }
    }
}

/// The kernel's index of interface `name`, `None` when it does not exist.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The MTU of interface `name` (from sysfs), `None` when it cannot be read.
pub fn mtu(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Gives the C allocator's free memory back to the kernel (glibc `malloc_trim`). Compiling and
/// diffing a large table allocates hundreds of MiB that are free again once the old table is
/// dropped; without this the process keeps them (RSS +120 MiB after a reload of 10 000 groups
/// × 100 destinations). A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises the soft limit on open files to the hard limit (the usual 1024 is reached near
/// 19 000 groups on one interface: one membership socket per 20 groups). Returns the limits
/// (before, after); unchanged when the soft limit already equals the hard one.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live, writable rlimit on this stack frame; the kernel writes one
    // rlimit into it and keeps no pointer after the call.
    syscall!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a live, initialised rlimit the kernel only reads during the call.
        // Raising the soft limit up to the hard one needs no privilege.
        syscall!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok((before, lim.rlim_cur))
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t and the length passed is exactly its size, so the
    // kernel reads only inside it; it keeps no pointer. Pid 0 is the calling thread.
    syscall!(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// An eventfd: the wake-up another thread writes and a worker's io_uring reads.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: integer arguments only; no memory is passed to the kernel.
        let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: eventfd returned a fresh descriptor that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adds one to the counter, waking a pending read.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. EAGAIN (counter at its
        // maximum) means a wake-up is pending anyway, so the result is ignored.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter without blocking; true when a wake-up was pending.
    pub fn drain(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; the fd is non-blocking.
        let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        n == 8
    }

    /// Waits until woken or `timeout` passes; true when woken.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n > 0 && self.drain()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt(fd, level, name, &value)
}

/// Sets a socket option from a plain-data value.
pub(crate) fn setsockopt<T: Copy>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` borrowed for the whole call and the length
    // passed is exactly `size_of::<T>()`, so the kernel reads only inside it (it copies the
    // option and keeps no pointer). A `T` of the wrong shape for the option is refused by the
    // kernel with EINVAL, not a memory error. A bad `fd` is EBADF.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Wraps a descriptor a successful syscall returned.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called with a descriptor a syscall just returned and nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Test support: moves the calling thread (and the threads and processes it starts afterwards)
/// into a new, private network namespace, which goes away with them. Needs CAP_SYS_ADMIN.
#[cfg(test)]
pub(crate) fn enter_private_netns() -> io::Result<()> {
    // SAFETY: an integer flag only; the calling thread gets a new network namespace, no memory
    // is touched.
    syscall!(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_cause_and_map_to_sysexits() {
        let e = SetupError::IoUringUnavailable {
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let msg = e.to_string();
        assert!(msg.starts_with("io_uring is not available"), "{msg}");
        assert!(msg.contains("io_uring_disabled"), "{msg}");
        assert_eq!(e.exit_code(), crate::exit::OSERR);
        let e = SetupError::NoPermission {
            what: "cannot open a packet socket on eth0".into(),
            capability: "CAP_NET_RAW",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.to_string().contains("CAP_NET_RAW"));
        assert_eq!(e.exit_code(), crate::exit::NOPERM);
        let e = SetupError::NoInterface {
            name: "eth9".into(),
        };
        assert_eq!(e.to_string(), "interface eth9 does not exist");
    }
}
