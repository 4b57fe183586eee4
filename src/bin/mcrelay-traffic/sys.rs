//! The few system calls std and socket2 do not offer: the monotonic clock in nanoseconds,
//! interface-index based multicast options, batched `sendmmsg`/`recvmmsg` with TTL/TOS control
//! messages, `poll`, and AF_PACKET sends for the injector. Every `unsafe` of this tool is here.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{SockAddr, Socket};

/// Turns a libc `-1` return into the thread's `errno`.
macro_rules! syscall {
    ($e:expr) => {{
        let r = $e;
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }};
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every network namespace of the host.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the given size for the duration of the call.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets an `int` socket option.
pub fn set_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt(sock.as_raw_fd(), level, name, &value)
}

/// `IP_MULTICAST_IF` by interface index (`ip_mreqn`), which socket2 does not offer.
pub fn set_multicast_if_v4(sock: &Socket, ifindex: u32) -> io::Result<()> {
    // SAFETY: ip_mreqn is plain old data; all-zero is a valid value.
    let mut m: libc::ip_mreqn = unsafe { zeroed() };
    m.imr_ifindex = ifindex as i32;
    setsockopt(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &m,
    )
}

fn storage(addr: IpAddr) -> libc::sockaddr_storage {
    let sa = SockAddr::from(SocketAddr::new(addr, 0));
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { zeroed() };
    // SAFETY: `sa` holds `sa.len()` initialised bytes, which fit in a sockaddr_storage; the
    // regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (&mut st as *mut libc::sockaddr_storage).cast::<u8>(),
            sa.len() as usize,
        )
    };
    st
}

/// Joins `group` on the interface `ifindex`, any-source or source-specific (RFC 3678
/// protocol-independent requests: the same call for IPv4/IGMP and IPv6/MLD).
pub fn join(sock: &Socket, group: IpAddr, source: Option<IpAddr>, ifindex: u32) -> io::Result<()> {
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    match source {
        None => {
            let req = libc::group_req {
                gr_interface: ifindex,
                gr_group: storage(group),
            };
            setsockopt(sock.as_raw_fd(), level, libc::MCAST_JOIN_GROUP, &req)
        }
        Some(src) => {
            let req = libc::group_source_req {
                gsr_interface: ifindex,
                gsr_group: storage(group),
                gsr_source: storage(src),
            };
            setsockopt(sock.as_raw_fd(), level, libc::MCAST_JOIN_SOURCE_GROUP, &req)
        }
    }
}

/// `poll(2)` on a set of descriptors for readability; returns which are readable.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32, ready: &mut Vec<usize>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    ready.clear();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    match syscall!(r) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(e),
    }
    ready.extend(
        pfds.iter()
            .enumerate()
            .filter(|(_, p)| p.revents & (libc::POLLIN | libc::POLLERR) != 0)
            .map(|(i, _)| i),
    );
    Ok(())
}

/// Sends up to `msgs.len()` datagrams with one `sendmmsg`; returns how many went out.
pub fn send_batch(sock: &Socket, msgs: &[(&[u8], &SockAddr)]) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = msgs
        .iter()
        .map(|(b, _)| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = msgs
        .iter()
        .zip(iov.iter_mut())
        .map(|((_, a), v)| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = a.len();
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at an address and one iovec that live (borrowed from `msgs`
    // and `iov`) until the call returns; the kernel only reads them.
    let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    syscall!(r).map(|n| n as usize)
}

/// One received datagram of a [`RecvBatch`].
pub struct Received<'a> {
    pub data: &'a [u8],
    pub from: Option<SocketAddr>,
    /// TTL / hop limit, when `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` is on.
    pub ttl: Option<u8>,
    /// TOS / traffic class, when `IP_RECVTOS` / `IPV6_RECVTCLASS` is on.
    pub tos: Option<u8>,
    /// The kernel cut the datagram to the buffer size.
    pub truncated: bool,
}

const CMSG_SPACE: usize = 128;

/// Buffers for `recvmmsg` with control messages, reused across calls.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(count: usize, size: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![vec![0; size]; count],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            names: vec![unsafe { zeroed() }; count],
            cmsgs: vec![[0; CMSG_SPACE / 8]; count],
            iov: Vec::with_capacity(count),
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            hdrs: vec![unsafe { zeroed() }; count],
        }
    }

    /// Receives what is queued (up to the batch size) without blocking; 0 when nothing is.
    pub fn recv(&mut self, sock: &Socket) -> io::Result<usize> {
        let n = self.bufs.len();
        self.iov.clear();
        for b in self.bufs.iter_mut() {
            self.iov.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            });
        }
        for i in 0..n {
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_SPACE;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at a buffer, an address and a control area owned by `self`
        // that stay alive and unaliased for the call; lengths are their real sizes.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match syscall!(r) {
            Ok(k) => Ok(k as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The `i`-th datagram of the last [`RecvBatch::recv`].
    pub fn get(&self, i: usize) -> Received<'_> {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.bufs[i].len());
        let mut ttl = None;
        let mut tos = None;
        // SAFETY: the kernel filled msg_control/msg_controllen of this header; CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within it, and each data pointer is read for its own cmsg_len.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                let level = (*c).cmsg_level;
                let ty = (*c).cmsg_type;
                let data = libc::CMSG_DATA(c);
                let payload = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let int = || -> Option<u8> {
                    if payload >= 4 {
                        Some(std::ptr::read_unaligned(data.cast::<i32>()) as u8)
                    } else if payload >= 1 {
                        Some(*data)
                    } else {
                        None
                    }
                };
                match (level, ty) {
                    (libc::IPPROTO_IP, libc::IP_TTL) => ttl = int(),
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = int(),
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => ttl = int(),
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => tos = int(),
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        // SAFETY: `names[i]` was written by the kernel with `msg_namelen` bytes.
        let from = unsafe {
            SockAddr::try_init(|st, l| {
                std::ptr::copy_nonoverlapping(
                    (&self.names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                    st.cast::<u8>(),
                    h.msg_hdr.msg_namelen as usize,
                );
                *l = h.msg_hdr.msg_namelen;
                Ok(())
            })
        }
        .ok()
        .and_then(|(_, a)| a.as_socket());
        Received {
            data: &self.bufs[i][..len],
            from,
            ttl,
            tos,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}
/// An AF_PACKET datagram socket (`SOCK_DGRAM`: the kernel adds the link-layer header) used to
/// put hand-made IP packets on a wire, bypassing every IP-layer check of the sending host.
pub struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2) call; the result is checked and owned below.
        let fd = syscall!(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0, // send only: receive nothing
            )
        })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(PacketSocket {
            fd,
            ifindex: ifindex as i32,
        })
    }

    /// Sends one IP packet (no link-layer header) to the link-layer address `mac` with the
    /// EtherType `ethertype` (0x0800 or 0x86DD, host order).
    pub fn send(&self, packet: &[u8], ethertype: u16, mac: [u8; 6]) -> io::Result<usize> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut ll: libc::sockaddr_ll = unsafe { zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ethertype.to_be();
        ll.sll_ifindex = self.ifindex;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&mac);
        // SAFETY: `packet` and `ll` are valid for the call; the kernel only reads them.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&ll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        syscall!(r).map(|n| n as usize)
    }
}

/// An AF_PACKET raw socket (`SOCK_RAW`: the caller writes the whole frame, link-layer header
/// included) bound to one interface for sending only, with `PACKET_QDISC_BYPASS` where the
/// kernel has it: frames go straight to the driver.
pub struct FrameSocket {
    fd: std::os::fd::OwnedFd,
    to: libc::sockaddr_ll,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl FrameSocket {
    pub fn open(ifindex: u32) -> io::Result<FrameSocket> {
        // SAFETY: plain socket(2) call; the result is checked and owned below.
        let fd = syscall!(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                0, // send only: receive nothing
            )
        })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // an optimisation only: without it frames take the device's queueing discipline
        let _ = setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &1i32,
        );
        let _ = setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &(4i32 << 20),
        );
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = ifindex as i32;
        Ok(FrameSocket {
            fd,
            to,
            iov: Vec::new(),
            hdrs: Vec::new(),
        })
    }

    /// Sends whole frames with one `sendmmsg`; returns how many went out.
    pub fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.iov.clear();
        self.iov.extend(frames.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        }));
        self.hdrs.clear();
        for v in self.iov.iter_mut() {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut self.to as *mut libc::sockaddr_ll).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        // SAFETY: every header points at `self.to` and one iovec of `self.iov`, which point at
        // frames borrowed from `frames`; all live and are not moved until the call returns, and
        // the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as u32,
                0,
            )
        };
        syscall!(r).map(|n| n as usize)
    }
}
