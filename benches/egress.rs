//! Egress micro-benchmark: CPU per datagram of the ways a worker can send a batch to one
//! destination. `sudo cargo bench --bench egress` (needs root: it makes a private network
//! namespace with a veth pair, which disappears with the process).
//!
//! Methods, each sending batches of 64 datagrams to one multicast group out of a veth whose
//! `tx-udp-segmentation` is off (so GSO is paid for in real datagrams on the wire):
//! `sendto` one by one, `sendmmsg`, io_uring `SendMsg` SQEs (64 per submit), and UDP GSO
//! (`UDP_SEGMENT`, one message of 64 segments), the last two through mcrelay's own code where it
//! has it (`EgressSocket::send_batch`). Figures: thread CPU time (user + system, which includes
//! the veth transmit) per datagram, median of 7 runs.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use io_uring::{IoUring, opcode, types};
use mcrelay::sys::egress::{EgressConfig, EgressSocket, SendScratch};

const BATCH: usize = 64;
const BATCHES: usize = 2000;
const RUNS: usize = 7;

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "`{cmd}` failed");
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn socket(ifindex: u32, gso: bool) -> EgressSocket {
    EgressSocket::open(&EgressConfig {
        ipv6: false,
        multicast_if: Some(("eb0", ifindex)),
        ttl: 1,
        dscp: 0,
        gso,
        source_port: 0,
    })
    .expect("egress socket")
}

fn sockaddr(to: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = to else {
        unreachable!()
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// ns of CPU per datagram for `f` sending BATCHES × BATCH datagrams.
fn measure(mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t0 = thread_cpu();
            for _ in 0..BATCHES {
                f();
            }
            (thread_cpu() - t0).as_nanos() as f64 / (BATCHES * BATCH) as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[RUNS / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: getuid has no preconditions.
    assert!(
        unsafe { libc::getuid() } == 0,
        "the egress bench needs root (network namespace)"
    );
    // SAFETY: unshare with CLONE_NEWNET affects only this (single-threaded) process.
    assert!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0,
        "unshare(CLONE_NEWNET) failed"
    );
    sh(
        "ip link set lo up && ip link add eb0 type veth peer name eb1 \
        && ip addr add 10.77.0.1/24 dev eb0 && ip link set eb0 up && ip link set eb1 up \
        && (ethtool -K eb0 tx-udp-segmentation off >/dev/null 2>&1 || true)",
    );
    std::thread::sleep(Duration::from_millis(300));
    let ifindex = mcrelay::sys::ifindex("eb0").expect("eb0");
    let to: SocketAddr = "239.7.7.7:7000".parse().unwrap();
    let sa = sockaddr(to);
    println!("egress CPU per datagram (ns), batches of {BATCH}, median of {RUNS} runs:");
    println!("| payload | sendto | sendmmsg | io_uring SendMsg | UDP GSO |");
    println!("|--------:|-------:|---------:|-----------------:|--------:|");
    for size in [64usize, 1316] {
        let payload = vec![0xa5u8; size];

        let s = socket(ifindex, false);
        let sendto = measure(|| {
            for _ in 0..BATCH {
                // SAFETY: valid buffer and address for the call.
                unsafe {
                    libc::sendto(
                        s.as_raw_fd(),
                        payload.as_ptr().cast(),
                        payload.len(),
                        libc::MSG_DONTWAIT,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    )
                };
            }
        });

        let mut s = socket(ifindex, false);
        let mut scratch = SendScratch::default();
        let mut out = Vec::new();
        let mmsg = measure(|| {
            s.send_batch(
                &mut scratch,
                (0..BATCH).map(|_| (&payload[..], to)),
                &mut out,
            );
        });

        let mut g = socket(ifindex, true);
        let gso = measure(|| {
            g.send_batch(
                &mut scratch,
                (0..BATCH).map(|_| (&payload[..], to)),
                &mut out,
            );
        });
        assert!(g.gso(), "GSO was refused by eb0");

        let s = socket(ifindex, false);
        let mut ring = IoUring::new(256).expect("io_uring");
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        };
        // SAFETY: msghdr is plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&sa as *const libc::sockaddr_in) as *mut _;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let uring = measure(|| {
            for _ in 0..BATCH {
                let e = opcode::SendMsg::new(types::Fd(s.as_raw_fd()), &msg)
                    .build()
                    .user_data(1);
                // SAFETY: `msg`, `iov`, `sa` and `payload` outlive the completions waited for
                // below.
                unsafe { ring.submission().push(&e).expect("sq") };
            }
            ring.submit_and_wait(BATCH).expect("submit");
            ring.completion().for_each(drop);
        });
        println!("| {size} B | {sendto:.0} | {mmsg:.0} | {uring:.0} | {gso:.0} |");
    }
}
