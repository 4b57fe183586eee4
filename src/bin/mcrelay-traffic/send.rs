//! `mcrelay-traffic send`: paced, sequenced sending.
//!
//! Pacing is a token bucket on CLOCK_MONOTONIC: packet k of the run is due at
//! `start + k / rate`; when late, up to `--batch` due packets go out in one `sendmmsg`; when early,
//! the sender sleeps until about 100 µs before the deadline, then yields/spins. A bucket deeper
//! than one batch is not kept: if the sender falls behind by more than a batch (it is slower than
//! the rate), the missed tokens are dropped and the achieved rate is reported.
//!
//! `--via socket` (the default) sends through UDP sockets; `--via packet` writes pre-built
//! Ethernet frames through an AF_PACKET socket (see `frame`): about twice the rate on one core
//! over veth, for benchmarks where the sender would otherwise be the limit (IPv4 multicast). A
//! frame the link refuses (the peer's backlog full) fails its send and is counted in `errors`;
//! a UDP socket's kernel hides that drop. Either way the receiver sees a gap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{Result, frame, payload, sys};

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct SendArgs {
    /// Destination GROUP:PORT or ADDR:PORT ([V6]:PORT), optionally @SOURCE to bind that stream
    /// to a source address; repeat for more streams
    #[arg(long = "to", value_name = "ADDR:PORT[@SRC]", required = true)]
    to: Vec<String>,
    /// Expand every --to into N streams on consecutive addresses (same port)
    #[arg(long = "streams", default_value_t = 1)]
    streams: u32,
    /// Stream id of the first stream (the others follow)
    #[arg(long = "first-stream", default_value_t = 0)]
    first_stream: u16,
    /// Total packets per second over all streams (round robin); 0 = as fast as possible
    #[arg(long = "rate", default_value_t = 1000)]
    rate: u64,
    /// UDP payload bytes (>= 24)
    #[arg(long = "size", default_value_t = 64)]
    size: usize,
    /// Packets per stream, then stop
    #[arg(long = "count")]
    count: Option<u64>,
    /// Stop after this long (humantime, e.g. 3s)
    #[arg(long = "duration", value_parser = crate::duration)]
    duration: Option<Duration>,
    /// TTL / hop limit (multicast and unicast)
    #[arg(long = "ttl", value_parser = crate::number)]
    ttl: Option<u32>,
    /// TOS / traffic class byte
    #[arg(long = "tos", value_parser = crate::number)]
    tos: Option<u32>,
    /// Send multicast out of this interface (IP_MULTICAST_IF / IPV6_MULTICAST_IF by index)
    #[arg(long = "interface", short = 'i')]
    interface: Option<String>,
    /// Bind every stream without its own @SOURCE to this source address
    #[arg(long = "bind")]
    bind: Option<IpAddr>,
    /// Most datagrams per sendmmsg
    #[arg(long = "batch", default_value_t = 64)]
    batch: usize,
    /// How datagrams leave: UDP sockets, or whole frames built here and written through an
    /// AF_PACKET socket (IPv4 multicast only, needs --interface and CAP_NET_RAW)
    #[arg(long = "via", value_enum, default_value_t = Via::Socket)]
    via: Via,
    /// Print the summary as JSON on stdout
    #[arg(long = "json")]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    Socket,
    Packet,
}

/// Where the datagrams go out.
enum Egress {
    /// UDP sockets, one per (family, source address); `Stream::sock` indexes them.
    Sockets(Vec<Socket>),
    /// Pre-built frames, one header template per stream, through one AF_PACKET socket.
    Frames {
        sock: sys::FrameSocket,
        templates: Vec<frame::Template>,
        ip_id: u16,
    },
}

struct Stream {
    id: u16,
    to: SockAddr,
    to_text: String,
    /// The source address asked for (`@SRC` or --bind), if any.
    src: Option<IpAddr>,
    sock: usize,
    next_seq: u64,
}

#[derive(Serialize)]
struct StreamReport {
    stream: u16,
    to: String,
    sent: u64,
}

#[derive(Serialize)]
struct Report {
    sent: u64,
    errors: u64,
    elapsed_s: f64,
    rate_pps: f64,
    size: usize,
    streams: Vec<StreamReport>,
}

pub fn run(a: SendArgs) -> Result<()> {
    if !(payload::HEADER_LEN..=payload::MAX_LEN).contains(&a.size) {
        return Err(format!(
            "--size {} must be within {}..={}",
            a.size,
            payload::HEADER_LEN,
            payload::MAX_LEN
        ));
    }
    if a.count.is_none() && a.duration.is_none() {
        return Err("give --count or --duration (or both)".into());
    }
    let ifindex = a.interface.as_deref().map(crate::ifindex).transpose()?;
    let batch = a.batch.clamp(1, 1024);

    // sockets: one per (family, source address)
    let mut socks: Vec<Socket> = Vec::new();
    let mut sock_of: HashMap<(bool, Option<IpAddr>), usize> = HashMap::new();
    let mut streams = Vec::new();
    let mut id = a.first_stream as u32;
    for spec in &a.to {
        let (base, src) = crate::parse_endpoint(spec)?;
        let src = src.or(a.bind);
        for n in 0..a.streams {
            let to = SocketAddr::new(crate::nth_addr(base.ip(), n), base.port());
            let key = (to.is_ipv4(), src);
            let sock = match sock_of.get(&key) {
                Some(&i) => i,
                None => {
                    socks.push(open(to, src, ifindex, &a)?);
                    sock_of.insert(key, socks.len() - 1);
                    socks.len() - 1
                }
            };
            if id > u16::MAX as u32 {
                return Err("more than 65536 streams".into());
            }
            streams.push(Stream {
                id: id as u16,
                to: to.into(),
                to_text: to.to_string(),
                src,
                sock,
                next_seq: 0,
            });
            id += 1;
        }
    }

    let mut egress = match a.via {
        Via::Socket => Egress::Sockets(socks),
        Via::Packet => frames_egress(&a, &streams, ifindex)?,
    };
    let head = match egress {
        Egress::Sockets(_) => 0,
        Egress::Frames { .. } => frame::HEADERS,
    };

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }

    let total_limit = a.count.map(|c| c * streams.len() as u64);
    let mut bufs = vec![vec![0u8; head + a.size]; batch];
    let mut owner = vec![0usize; batch];
    let mut errors = 0u64;
    let mut sent = 0u64;
    let mut rr = 0usize;
    let start = sys::mono_ns();
    let end = a.duration.map(|d| start + d.as_nanos() as u64);
    // token bucket: packet k (counted from `base_k`) is due at base_t + (k - base_k) / rate
    let (mut base_t, mut base_k) = (start, 0u64);
    let due = |k: u64, base_t: u64, base_k: u64| -> u64 {
        base_t + ((k - base_k) as u128 * 1_000_000_000 / a.rate as u128) as u64
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = sys::mono_ns();
        if end.is_some_and(|e| now >= e) || total_limit.is_some_and(|l| sent >= l) {
            break;
        }
        let mut n = batch as u64;
        if a.rate > 0 {
            let next = due(sent, base_t, base_k);
            if now < next {
                let wait = next - now;
                if wait > 200_000 {
                    std::thread::sleep(Duration::from_nanos(wait - 100_000));
                } else if wait > 20_000 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let behind = (((now - next) as u128 * a.rate as u128) / 1_000_000_000) as u64 + 1;
            if behind > batch as u64 {
                // drop tokens beyond one batch: restart the schedule from now
                base_t = now.saturating_sub(batch as u64 * 1_000_000_000 / a.rate);
                base_k = sent;
            }
            n = behind.min(batch as u64);
        }
        if let Some(l) = total_limit {
            n = n.min(l - sent);
        }
        // fill the batch round robin, skipping streams that have sent their count
        let mut k = 0;
        let now = sys::mono_ns();
        while k < n as usize {
            let idx = rr;
            rr = (rr + 1) % streams.len();
            let s = &mut streams[idx];
            if a.count.is_some_and(|c| s.next_seq >= c) {
                continue;
            }
            payload::encode(&mut bufs[k][head..], s.id, s.next_seq, now);
            s.next_seq += 1;
            if let Egress::Frames {
                templates, ip_id, ..
            } = &mut egress
            {
                templates[idx].finish(&mut bufs[k], *ip_id);
                *ip_id = ip_id.wrapping_add(1);
            }
            owner[k] = idx;
            k += 1;
        }
        match &mut egress {
            Egress::Sockets(socks) => {
                errors += send_sockets(socks, &streams, &bufs[..k], &owner[..k]);
            }
            Egress::Frames { sock, .. } => {
                let frames: Vec<&[u8]> = bufs[..k].iter().map(|b| &b[..]).collect();
                let mut off = 0;
                while off < frames.len() {
                    match sock.send_batch(&frames[off..]) {
                        Ok(0) => break,
                        Ok(m) => off += m,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            errors += 1;
                            off += 1; // this frame is lost; its sequence number shows as a gap
                        }
                    }
                }
            }
        }
        sent += k as u64;
    }
    let elapsed = (sys::mono_ns() - start) as f64 / 1e9;
    let report = Report {
        sent,
        errors,
        elapsed_s: elapsed,
        rate_pps: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        size: a.size,
        streams: streams
            .iter()
            .map(|s| StreamReport {
                stream: s.id,
                to: s.to_text.clone(),
                sent: s.next_seq,
            })
            .collect(),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        eprintln!(
            "sent {} datagrams of {} bytes to {} streams in {:.3} s ({:.0} pps), {} send errors",
            report.sent,
            report.size,
            report.streams.len(),
            report.elapsed_s,
            report.rate_pps,
            report.errors
        );
    }
    Ok(())
}

/// One `sendmmsg` per run of datagrams sharing a socket; returns the datagrams that failed.
fn send_sockets(socks: &[Socket], streams: &[Stream], bufs: &[Vec<u8>], owner: &[usize]) -> u64 {
    let (k, mut errors) = (bufs.len(), 0);
    let mut i = 0;
    while i < k {
        let sock = streams[owner[i]].sock;
        let mut j = i;
        while j < k && streams[owner[j]].sock == sock {
            j += 1;
        }
        let msgs: Vec<(&[u8], &SockAddr)> = (i..j)
            .map(|m| (&bufs[m][..], &streams[owner[m]].to))
            .collect();
        let mut off = 0;
        while off < msgs.len() {
            match sys::send_batch(&socks[sock], &msgs[off..]) {
                Ok(0) => break,
                Ok(m) => off += m,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    errors += 1;
                    off += 1; // this datagram is lost; its sequence number shows as a gap
                }
            }
        }
        i = j;
    }
    errors
}

/// The AF_PACKET egress of `--via packet`: a header template per stream, from the interface's
/// MAC and (unless a stream or --bind names one) the address the kernel would choose for
/// multicast out of it.
fn frames_egress(a: &SendArgs, streams: &[Stream], ifindex: Option<u32>) -> Result<Egress> {
    let (Some(ifname), Some(ifindex)) = (a.interface.as_deref(), ifindex) else {
        return Err("--via packet needs --interface".into());
    };
    let p = format!("/sys/class/net/{ifname}/address");
    let mac = std::fs::read_to_string(&p)
        .ok()
        .and_then(|t| frame::parse_mac(&t))
        .ok_or_else(|| format!("--via packet: no Ethernet address for {ifname} in {p}"))?;
    let ttl = a.ttl.unwrap_or(1).min(255) as u8; // the kernel's default multicast TTL is 1
    let tos = a.tos.unwrap_or(0).min(255) as u8;
    // one source port for the run, in the ephemeral range like a socket's
    let src_port = 49152 + (std::process::id() % 16384) as u16;
    let mut templates = Vec::with_capacity(streams.len());
    for s in streams {
        let Some(SocketAddr::V4(to)) = s.to.as_socket() else {
            return Err(format!(
                "--via packet sends IPv4 multicast only; {} is not IPv4",
                s.to_text
            ));
        };
        let src = match s.src {
            Some(IpAddr::V4(v)) => v,
            Some(other) => return Err(format!("--via packet: source {other} is not IPv4")),
            None => multicast_source(to, ifindex)
                .map_err(|e| format!("--via packet: no IPv4 source address on {ifname}: {e}"))?,
        };
        templates.push(frame::Template::new(
            mac, src, src_port, to, a.size, ttl, tos,
        )?);
    }
    let sock = sys::FrameSocket::open(ifindex).map_err(|e| {
        format!("--via packet: AF_PACKET socket on {ifname}: {e} (needs CAP_NET_RAW)")
    })?;
    Ok(Egress::Frames {
        sock,
        templates,
        ip_id: 0,
    })
}

/// The source address the kernel picks for multicast to `to` out of `ifindex`: what a connected
/// UDP socket is given (no packet is sent).
fn multicast_source(to: SocketAddrV4, ifindex: u32) -> std::io::Result<Ipv4Addr> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sys::set_multicast_if_v4(&sock, ifindex)?;
    sock.connect(&SocketAddr::V4(to).into())?;
    match sock.local_addr()?.as_socket() {
        Some(SocketAddr::V4(v)) if !v.ip().is_unspecified() => Ok(*v.ip()),
        other => Err(std::io::Error::other(format!("the kernel chose {other:?}"))),
    }
}

fn open(to: SocketAddr, src: Option<IpAddr>, ifindex: Option<u32>, a: &SendArgs) -> Result<Socket> {
    let ctx = |what: &str, e: std::io::Error| format!("socket for {to}: {what}: {e}");
    let sock = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| ctx("socket", e))?;
    let _ = sock.set_send_buffer_size(4 << 20);
    if let Some(src) = src {
        if src.is_ipv4() != to.is_ipv4() {
            return Err(format!(
                "source {src} and destination {to} differ in family"
            ));
        }
        sock.bind(&SocketAddr::new(src, 0).into())
            .map_err(|e| ctx(&format!("bind {src}"), e))?;
    }
    match to {
        SocketAddr::V4(_) => {
            if let Some(i) = ifindex {
                sys::set_multicast_if_v4(&sock, i).map_err(|e| ctx("IP_MULTICAST_IF", e))?;
            }
            if let Some(t) = a.ttl {
                sock.set_multicast_ttl_v4(t)
                    .map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
                sock.set_ttl_v4(t).map_err(|e| ctx("IP_TTL", e))?;
            }
            if let Some(t) = a.tos {
                sock.set_tos_v4(t).map_err(|e| ctx("IP_TOS", e))?;
            }
        }
        SocketAddr::V6(_) => {
            if let Some(i) = ifindex {
                sock.set_multicast_if_v6(i)
                    .map_err(|e| ctx("IPV6_MULTICAST_IF", e))?;
            }
            if let Some(t) = a.ttl {
                sock.set_multicast_hops_v6(t)
                    .map_err(|e| ctx("IPV6_MULTICAST_HOPS", e))?;
                sock.set_unicast_hops_v6(t)
                    .map_err(|e| ctx("IPV6_UNICAST_HOPS", e))?;
            }
            if let Some(t) = a.tos {
                sock.set_tclass_v6(t).map_err(|e| ctx("IPV6_TCLASS", e))?;
            }
        }
    }
    Ok(sock)
}
