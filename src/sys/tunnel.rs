//! A tunnel's UDP socket (docs/TUNNEL.md): bound to the tunnel's `local` address, read in
//! batches with `recvmmsg` into a caller-owned slab of buffers, and shared with the workers
//! that send into the tunnel (each sends through a duplicate of the descriptor, so every
//! datagram leaves from `local`, which the far side checks against its `peers`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::egress::{EgressSocket, SNDBUF, from_sockaddr};

/// A non-blocking UDP socket bound to a tunnel's local address.
#[derive(Debug)]
pub struct TunnelSocket {
    sock: Socket,
    ipv6: bool,
}

impl TunnelSocket {
    /// Binds `local` (`IP_FREEBIND`: the address need not be configured yet) with a receive
    /// buffer of about `rcvbuf` bytes (`SO_RCVBUFFORCE`, else
    /// `SO_RCVBUF` capped by `net.core.rmem_max`). IPv4 tunnels send without Don't Fragment
    /// (`IP_PMTUDISC_DONT`): a datagram larger than the path is fragmented, not dropped.
    pub fn open(local: SocketAddr, rcvbuf: usize) -> io::Result<TunnelSocket> {
        let sock = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_nonblocking(true)?;
        sock.set_cloexec(true)?;
        let ipv6 = local.is_ipv6();
        // The address may be configured after mcrelay starts (boot order, a VPN that comes up
        // later): bind anyway, like the listen sockets.
        if ipv6 {
            sock.set_only_v6(true)?;
            sock.set_freebind_v6(true)?;
        } else {
            sock.set_freebind_v4(true)?;
            super::setsockopt_int(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )?;
        }
        let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
        if super::setsockopt_int(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            size,
        )
        .is_err()
        {
            let _ = sock.set_recv_buffer_size(rcvbuf);
        }
        // Every worker sending into the tunnel shares this socket's send buffer: as large as a
        // destination's own.
        let fd = sock.as_raw_fd();
        if super::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF).is_err() {
            let _ = sock.set_send_buffer_size(SNDBUF as usize);
        }
        sock.bind(&local.into())?;
        Ok(TunnelSocket { sock, ipv6 })
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// An egress socket sending through this socket (a duplicate descriptor).
    pub fn egress(&self, gso: bool) -> io::Result<EgressSocket> {
        let fd: OwnedFd = self.sock.as_fd().try_clone_to_owned()?;
        Ok(EgressSocket::from_owned(fd, self.ipv6, gso))
    }

    /// Sends one datagram (a keepalive) to `to`, without blocking.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, &to.into())
    }

    /// Datagrams the kernel dropped on this socket so far (its receive buffer was full).
    pub fn drops(&self) -> u64 {
        socket_drops(self.sock.as_raw_fd()).unwrap_or(0)
    }

    /// The pending socket error, if any (and clears it).
    pub fn take_error(&self) -> Option<io::Error> {
        self.sock.take_error().ok().flatten()
    }

    /// Reads up to `slab.capacity()` datagrams without blocking into `slab` (which forgets what
    /// it held); returns how many. `Ok(0)` when none was waiting.
    pub fn recv_batch(&self, slab: &mut RecvSlab) -> io::Result<usize> {
        slab.count = 0;
        let n = slab.lens.len();
        slab.msgs.clear();
        for i in 0..n {
            let buf = &mut slab.bufs[i * slab.size..(i + 1) * slab.size];
            slab.iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: slab.size,
            };
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut slab.names[i] as *mut libc::sockaddr_in6).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut slab.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            slab.msgs.push(m);
        }
        // SAFETY: `msgs` holds `n` headers, each pointing at its own live iovec, sockaddr_in6
        // and buffer slice of `size` bytes inside `slab`, all borrowed mutably for the call and
        // sized as their lengths say, so the kernel writes only inside them; it keeps no
        // pointer after the call returns. MSG_DONTWAIT: it never blocks; no timeout pointer.
        let got = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                slab.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = got as usize;
        for i in 0..got {
            let m = &slab.msgs[i];
            slab.lens[i] = m.msg_len as usize;
            slab.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            slab.from[i] = from_sockaddr(&slab.names[i]);
        }
        slab.count = got;
        Ok(got)
    }
}

impl AsRawFd for TunnelSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Buffers for [`TunnelSocket::recv_batch`]: `n` datagrams of at most `size` bytes, allocated
/// once and reused for every batch.
pub struct RecvSlab {
    size: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    from: Vec<SocketAddr>,
    names: Vec<libc::sockaddr_in6>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers inside (`iovs`, `msgs`) point into the slab itself, are rebuilt on
// each receive and never dereferenced outside it.
unsafe impl Send for RecvSlab {}

impl RecvSlab {
    pub fn new(n: usize, size: usize) -> RecvSlab {
        let unspecified: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
        RecvSlab {
            size,
            bufs: vec![0; n * size],
            lens: vec![0; n],
            truncated: vec![false; n],
            from: vec![unspecified; n],
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            names: vec![unsafe { std::mem::zeroed() }; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                n
            ],
            msgs: Vec::with_capacity(n),
            count: 0,
        }
    }

    /// Datagrams the slab can hold.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Datagrams received by the last batch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last batch: its sender, its bytes, and whether it was longer than
    /// a buffer (truncated).
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8], bool) {
        let len = self.lens[i].min(self.size);
        (
            self.from[i],
            &self.bufs[i * self.size..i * self.size + len],
            self.truncated[i],
        )
    }

    /// The whole buffer of datagram `i` (what [`RecvSlab::get`] slices).
    pub fn buffer(&self, i: usize) -> &[u8] {
        &self.bufs[i * self.size..(i + 1) * self.size]
    }
}

/// Datagrams the kernel dropped on a socket since it was opened (receive buffer full, or its
/// filter said no): `SO_MEMINFO`'s `SK_MEMINFO_DROPS`. `None` if the kernel does not say.
pub fn socket_drops(fd: RawFd) -> Option<u64> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live, writable array of `len` bytes, so the kernel writes at most
    // that many (it writes SK_MEMINFO_VARS u32s, at most the length given) and stores the real
    // length in `len`; neither pointer is kept.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let at = libc::SK_MEMINFO_DROPS as usize;
    (r == 0 && (len as usize) > at * 4).then(|| u64::from(info[at]))
}

/// The MTU of the route to `peer` (what a datagram sent there must fit in whole): a UDP socket
/// connected to it, asked `IP_MTU` / `IPV6_MTU`. `None` when there is no route.
pub fn path_mtu(peer: SocketAddr) -> Option<u32> {
    let sock = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP)).ok()?;
    sock.connect(&peer.into()).ok()?;
    let (level, name) = if peer.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` is a live, writable i32 and `len` holds its size, so the kernel writes at most
    // that many bytes and stores the real length in `len`; neither pointer is kept.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (r == 0 && v > 0).then_some(v as u32)
}
