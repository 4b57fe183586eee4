//! `mcrelay-traffic recv`: join, receive, check every byte, report per stream.
//!
//! One socket per listener (bound to its group and port, so the kernel separates groups that
//! share a port; `IP_MULTICAST_ALL` off), all polled by one thread and drained with `recvmmsg`.
//! Streams are keyed by (listener, stream id from the payload), so one sender stream relayed to
//! two groups shows up as two streams here.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::account::{Arrival, Latency, StreamAccount};
use crate::{Result, payload, sys};

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct RecvArgs {
    /// Multicast GROUP:PORT ([V6]:PORT) to join and receive; repeat for more
    #[arg(long = "group", value_name = "GROUP:PORT")]
    group: Vec<String>,
    /// Expand every --group into N consecutive groups (same port)
    #[arg(long = "groups", default_value_t = 1)]
    groups: u32,
    /// Join source-specific (SSM, RFC 4607) for this source only
    #[arg(long = "source")]
    source: Option<IpAddr>,
    /// Interface to join on (needed with --group)
    #[arg(long = "interface", short = 'i')]
    interface: Option<String>,
    /// Receive unicast on ADDR:PORT (0.0.0.0:PORT or [::]:PORT for any address); repeat for more
    #[arg(long = "unicast", value_name = "ADDR:PORT")]
    unicast: Vec<SocketAddr>,
    /// Stop after this long in any case
    #[arg(long = "duration", value_parser = crate::duration, default_value = "10s")]
    duration: Duration,
    /// Stop when nothing arrived for this long, once something has
    #[arg(long = "idle", value_parser = crate::duration, default_value = "1s")]
    idle: Duration,
    /// Packets each stream was sent (makes loss at the head and tail visible)
    #[arg(long = "expect")]
    expect: Option<u64>,
    /// Print the first N unexpected datagrams (not our payload) on stderr
    #[arg(long = "show-unexpected", default_value_t = 0)]
    show_unexpected: u64,
    /// Socket receive buffer (SO_RCVBUFFORCE, needs CAP_NET_ADMIN; falls back to SO_RCVBUF)
    #[arg(long = "rcvbuf", default_value_t = 16 << 20)]
    rcvbuf: i32,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
}

struct Listener {
    addr: SocketAddr,
    sock: Socket,
    received: u64,
    unexpected: u64,
    truncated: u64,
}

#[derive(Debug, Serialize)]
struct StreamReport {
    listener: String,
    stream: u16,
    received: u64,
    unique: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    corrupt: u64,
    length_mismatch: u64,
    bytes: u64,
    highest_seq: Option<u64>,
    latency: Option<Latency>,
    ttl: BTreeMap<u8, u64>,
    tos: BTreeMap<u8, u64>,
    sources: Vec<IpAddr>,
    /// UDP source ports seen, in order of first arrival (a relay keeps one per destination).
    source_ports: Vec<u16>,
}

#[derive(Debug, Serialize)]
struct ListenerReport {
    address: String,
    received: u64,
    unexpected: u64,
    truncated: u64,
}

#[derive(Debug, Serialize, Default)]
struct Totals {
    received: u64,
    unique: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    corrupt: u64,
    length_mismatch: u64,
    unexpected: u64,
    truncated: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    elapsed_s: f64,
    totals: Totals,
    listeners: Vec<ListenerReport>,
    streams: Vec<StreamReport>,
}

struct StreamState {
    acc: StreamAccount,
    sources: Vec<IpAddr>,
    source_ports: Vec<u16>,
}

pub fn run(a: RecvArgs) -> Result<()> {
    if a.group.is_empty() && a.unicast.is_empty() {
        return Err("give at least one --group or --unicast".into());
    }
    let ifindex = match (&a.interface, a.group.is_empty()) {
        (Some(i), _) => Some(crate::ifindex(i)?),
        (None, false) => return Err("--group needs --interface to join on".into()),
        (None, true) => None,
    };
    let mut listeners = Vec::new();
    for g in &a.group {
        let (base, src) = crate::parse_endpoint(g)?;
        let src = src.or(a.source);
        for n in 0..a.groups {
            let addr = SocketAddr::new(crate::nth_addr(base.ip(), n), base.port());
            if !addr.ip().is_multicast() {
                return Err(format!("--group {addr}: not a multicast address"));
            }
            let sock = open(addr, a.rcvbuf)?;
            sys::join(&sock, addr.ip(), src, ifindex.expect("checked above"))
                .map_err(|e| format!("join {} on {:?}: {e}", addr.ip(), a.interface.as_deref()))?;
            listeners.push(Listener {
                addr,
                sock,
                received: 0,
                unexpected: 0,
                truncated: 0,
            });
        }
    }
    for &addr in &a.unicast {
        listeners.push(Listener {
            addr,
            sock: open(addr, a.rcvbuf)?,
            received: 0,
            unexpected: 0,
            truncated: 0,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    // the test harness waits for this line before it starts sending
    eprintln!("mcrelay-traffic: ready ({} listeners)", listeners.len());

    let fds: Vec<_> = listeners.iter().map(|l| l.sock.as_raw_fd()).collect();
    let mut streams: BTreeMap<(usize, u16), StreamState> = BTreeMap::new();
    let mut batch = sys::RecvBatch::new(64, 65536);
    let mut ready = Vec::new();
    let mut shown = 0u64;
    let start = sys::mono_ns();
    let deadline = start + a.duration.as_nanos() as u64;
    let idle = a.idle.as_nanos() as u64;
    let mut last: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = sys::mono_ns();
        if now >= deadline {
            break;
        }
        // Idle means nothing queued, not "nothing read for a while": a receiver that was not
        // scheduled for longer than the idle time must still drain what waits in its sockets.
        let idle_over = last.is_some_and(|l| now.saturating_sub(l) >= idle);
        let wait_ms = if idle_over { 0 } else { 20 };
        sys::poll_readable(&fds, wait_ms, &mut ready).map_err(|e| format!("poll: {e}"))?;
        if idle_over && ready.is_empty() {
            break;
        }
        for &li in &ready {
            // drain this socket, but bounded so that others get their turn
            for _ in 0..64 {
                let n = batch
                    .recv(&listeners[li].sock)
                    .map_err(|e| format!("recvmmsg on {}: {e}", listeners[li].addr))?;
                if n == 0 {
                    break;
                }
                let now = sys::mono_ns();
                last = Some(now);
                let l = &mut listeners[li];
                for i in 0..n {
                    let r = batch.get(i);
                    l.received += 1;
                    if r.truncated {
                        l.truncated += 1;
                    }
                    match payload::check(r.data) {
                        payload::Verdict::Foreign => {
                            l.unexpected += 1;
                            if shown < a.show_unexpected {
                                shown += 1;
                                show(l.addr, &r);
                            }
                        }
                        payload::Verdict::Ours {
                            header,
                            length_ok,
                            corrupt,
                        } => {
                            let st =
                                streams
                                    .entry((li, header.stream))
                                    .or_insert_with(|| StreamState {
                                        acc: StreamAccount::default(),
                                        sources: Vec::new(),
                                        source_ports: Vec::new(),
                                    });
                            if let Some(f) = r.from {
                                if !st.sources.contains(&f.ip()) {
                                    st.sources.push(f.ip());
                                }
                                if !st.source_ports.contains(&f.port()) {
                                    st.source_ports.push(f.port());
                                }
                            }
                            st.acc.record(Arrival {
                                seq: header.seq,
                                len: r.data.len(),
                                sent_ns: header.sent_ns,
                                recv_ns: now,
                                length_ok: length_ok && !r.truncated,
                                corrupt,
                                ttl: r.ttl,
                                tos: r.tos,
                            });
                        }
                    }
                }
                if n < 64 {
                    break;
                }
            }
        }
    }
    let elapsed = (sys::mono_ns() - start) as f64 / 1e9;
    let report = build_report(&listeners, &streams, a.expect, elapsed);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_table(&report);
    }
    Ok(())
}

fn open(addr: SocketAddr, rcvbuf: i32) -> Result<Socket> {
    let ctx = |what: &str, e: std::io::Error| format!("listener {addr}: {what}: {e}");
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| ctx("socket", e))?;
    sock.set_reuse_address(true)
        .map_err(|e| ctx("SO_REUSEADDR", e))?;
    if sys::set_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        let _ = sock.set_recv_buffer_size(rcvbuf as usize);
    }
    if addr.is_ipv4() {
        sock.set_multicast_all_v4(false)
            .map_err(|e| ctx("IP_MULTICAST_ALL", e))?;
        sys::set_int(&sock, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)
            .map_err(|e| ctx("IP_RECVTTL", e))?;
        sys::set_int(&sock, libc::IPPROTO_IP, libc::IP_RECVTOS, 1)
            .map_err(|e| ctx("IP_RECVTOS", e))?;
    } else {
        sock.set_only_v6(true).map_err(|e| ctx("IPV6_V6ONLY", e))?;
        sock.set_multicast_all_v6(false)
            .map_err(|e| ctx("IPV6_MULTICAST_ALL", e))?;
        sys::set_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)
            .map_err(|e| ctx("IPV6_RECVHOPLIMIT", e))?;
        sys::set_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1)
            .map_err(|e| ctx("IPV6_RECVTCLASS", e))?;
    }
    sock.bind(&addr.into()).map_err(|e| ctx("bind", e))?;
    Ok(sock)
}

fn show(listener: SocketAddr, r: &sys::Received<'_>) {
    let hex: String = r.data.iter().take(32).map(|b| format!("{b:02x}")).collect();
    eprintln!(
        "unexpected datagram on {listener} from {}: {} bytes: {hex}{}",
        r.from.map_or("?".into(), |f| f.to_string()),
        r.data.len(),
        if r.data.len() > 32 { "…" } else { "" }
    );
}

fn build_report(
    listeners: &[Listener],
    streams: &BTreeMap<(usize, u16), StreamState>,
    expect: Option<u64>,
    elapsed_s: f64,
) -> Report {
    let mut totals = Totals::default();
    let streams: Vec<StreamReport> = streams
        .iter()
        .map(|(&(li, id), st)| {
            let a = &st.acc;
            let r = StreamReport {
                listener: listeners[li].addr.to_string(),
                stream: id,
                received: a.received,
                unique: a.unique,
                lost: a.lost(expect),
                duplicates: a.duplicates,
                reordered: a.reordered,
                corrupt: a.corrupt,
                length_mismatch: a.length_mismatch,
                bytes: a.bytes,
                highest_seq: a.highest,
                latency: a.latency.summary(),
                ttl: a.ttl.clone(),
                tos: a.tos.clone(),
                sources: st.sources.clone(),
                source_ports: st.source_ports.clone(),
            };
            totals.received += r.received;
            totals.unique += r.unique;
            totals.lost += r.lost;
            totals.duplicates += r.duplicates;
            totals.reordered += r.reordered;
            totals.corrupt += r.corrupt;
            totals.length_mismatch += r.length_mismatch;
            r
        })
        .collect();
    for l in listeners {
        totals.unexpected += l.unexpected;
        totals.truncated += l.truncated;
    }
    Report {
        elapsed_s,
        totals,
        listeners: listeners
            .iter()
            .map(|l| ListenerReport {
                address: l.addr.to_string(),
                received: l.received,
                unexpected: l.unexpected,
                truncated: l.truncated,
            })
            .collect(),
        streams,
    }
}

fn print_table(r: &Report) {
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    let vals = |m: &BTreeMap<u8, u64>| {
        m.keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "{:<24} {:>6} {:>9} {:>6} {:>5} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>5} {:>5}",
        "listener",
        "stream",
        "received",
        "lost",
        "dup",
        "reorder",
        "corrupt",
        "badlen",
        "p50 µs",
        "p99 µs",
        "max µs",
        "ttl",
        "tos"
    );
    for s in &r.streams {
        let (p50, p99, max) = s.latency.map_or(("-".into(), "-".into(), "-".into()), |l| {
            (us(l.p50_ns), us(l.p99_ns), us(l.max_ns))
        });
        println!(
            "{:<24} {:>6} {:>9} {:>6} {:>5} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>5} {:>5}",
            s.listener,
            s.stream,
            s.received,
            s.lost,
            s.duplicates,
            s.reordered,
            s.corrupt,
            s.length_mismatch,
            p50,
            p99,
            max,
            vals(&s.ttl),
            vals(&s.tos)
        );
    }
    if r.streams.is_empty() {
        println!("(nothing of ours received)");
    }
    let t = &r.totals;
    println!(
        "total: {} received, {} lost, {} duplicates, {} reordered, {} corrupt, {} length mismatches, {} unexpected datagrams, in {:.2} s",
        t.received,
        t.lost,
        t.duplicates,
        t.reordered,
        t.corrupt,
        t.length_mismatch,
        t.unexpected,
        r.elapsed_s
    );
}
