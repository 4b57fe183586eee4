//! The data plane's hot path allocates nothing per packet in steady state (issue 7): a counting
//! global allocator watches the whole process while a running daemon relays 20 000 datagrams.
//! Needs root (a private network namespace with a multicast-capable loopback).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcrelay::config;
use mcrelay::daemon::Daemon;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 200;
const PER_ROUND: usize = 100;

/// Every receive mode, one after the other (the allocation counter is process-wide, so the
/// modes must not run concurrently); then through a tunnel.
#[test]
fn relaying_allocates_nothing_per_packet() {
    for mode in ["frames", "ring", "tunnel"] {
        relay_and_count(mode, false);
    }
    // A group with two legs (each datagram sent to both groups, one copy goes out): the merge
    // state allocates nothing per packet either.
    relay_and_count("frames", true);
}

/// The configuration for `mode`: the group on lo straight to `port`, or (`tunnel`) into a
/// tunnel to a second tunnel of the same daemon on loopback, whose worker sends it to `port`;
/// `merged`: a group with two legs on lo (both carrying the same stream) instead.
fn config_text(mode: &str, port: u16, merged: bool) -> String {
    if merged {
        return format!(
            "[daemon]\nstats_interval = \"1h\"\n[interfaces.lo]\ningress = \"{mode}\"\n\
             [destinations.d]\naddress = \"127.0.0.1:{port}\"\n\
             [[groups]]\nlegs = [{{ interface = \"lo\", group = \"239.78.0.1\", port = 5000 }}, \
             {{ interface = \"lo\", group = \"239.78.0.2\", port = 5000 }}]\n\
             redundancy = \"merge\"\nsequence = {{ offset = 0, size = 8, byte_order = \"big\" }}\n\
             to = [\"d\"]\n"
        );
    }
    if mode != "tunnel" {
        return format!(
            "[daemon]\nstats_interval = \"1h\"\n[interfaces.lo]\ningress = \"{mode}\"\n\
             [destinations.d]\naddress = \"127.0.0.1:{port}\"\n\
             [[groups]]\ninterface = \"lo\"\ngroup = \"239.78.0.1\"\nport = 5000\nto = [\"d\"]\n"
        );
    }
    let free = || {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (pa, pb) = (free(), free());
    format!(
        "[daemon]\nstats_interval = \"1h\"\n[interfaces.lo]\n\
         [interfaces.ta]\ntunnel = {{ local = \"127.0.0.1:{pa}\", peers = [\"127.0.0.1:{pb}\"] }}\n\
         [interfaces.tb]\ntunnel = {{ local = \"127.0.0.1:{pb}\", peers = [\"127.0.0.1:{pa}\"] }}\n\
         [destinations.into-ta]\ninterface = \"ta\"\n\
         [destinations.d]\naddress = \"127.0.0.1:{port}\"\n\
         [[groups]]\ninterface = \"lo\"\ngroup = \"239.78.0.1\"\nport = 5000\nto = [\"into-ta\"]\n\
         [[groups]]\ninterface = \"tb\"\ngroup = \"239.78.0.1\"\nport = 5000\nto = [\"d\"]\n"
    )
}

fn relay_and_count(mode: &str, merged: bool) {
    // SAFETY: unshare has no memory-safety preconditions; it moves this thread (and the
    // threads and processes it starts) into a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!(
            "this test needs root (CAP_SYS_ADMIN) for a network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    for cmd in [
        "ip link set lo up",
        "ip link set lo multicast on",
        "ip route add 224.0.0.0/4 dev lo",
    ] {
        let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
        assert!(st.success(), "`{cmd}` failed");
    }
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!(
        "mcrelay-hot-path-{}-{mode}-{merged}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mcrelay.toml");
    std::fs::write(&path, config_text(mode, port, merged)).unwrap();
    let table = config::load(&path, &config::SystemResolver)
        .expect("valid config")
        .table;
    let daemon = Daemon::start(table, &path).expect("daemon starts");
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let group: std::net::SocketAddr = "239.78.0.1:5000".parse().unwrap();
    let second: std::net::SocketAddr = "239.78.0.2:5000".parse().unwrap();
    let mut payload = [0u8; 200];
    let mut buf = [0u8; 2048];
    let daemon_ref = &daemon;
    // Rounds are numbered across calls: a merge drops numbers it already sent.
    let mut next_round = 0usize;
    let mut relay = |rounds: usize| {
        for _ in 0..rounds {
            let r = next_round;
            next_round += 1;
            for i in 0..PER_ROUND {
                payload[..8].copy_from_slice(&((r * PER_ROUND + i) as u64).to_be_bytes());
                tx.send_to(&payload, group).unwrap();
                if merged {
                    tx.send_to(&payload, second).unwrap();
                }
            }
            let mut expected = 0;
            for _ in 0..PER_ROUND {
                let n = match rx.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) => panic!(
                        "{mode}: round {r}: a datagram was not relayed ({e}); relay: {:?}",
                        daemon_ref.snapshots()
                    ),
                };
                assert_eq!(n, payload.len());
                if merged {
                    // One copy of each number, in order (both legs arrive in order on lo).
                    let k = u64::from_be_bytes(buf[..8].try_into().unwrap());
                    assert_eq!(k, (r * PER_ROUND + expected) as u64, "{mode}: round {r}");
                    expected += 1;
                }
            }
        }
    };
    // Warm up: vectors reach their working sizes.
    relay(20);
    std::thread::sleep(Duration::from_millis(300));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    relay(ROUNDS);
    let took = t0.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let packets = (ROUNDS * PER_ROUND) as u64;
    // What remains is the 100 ms stats publication (a snapshot per tick) and housekeeping,
    // proportional to time, not to packets.
    let ticks = took.as_millis() as u64 / 100 + 2;
    eprintln!(
        "ingress = {mode:?}, merged {merged}: {allocations} allocations while relaying {packets} datagrams in \
         {took:?} ({ticks} ticks)"
    );
    assert!(
        allocations <= ticks * 30,
        "ingress = {mode:?}: {allocations} allocations for {packets} datagrams over {ticks} stats \
         ticks: the hot path allocates"
    );
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
