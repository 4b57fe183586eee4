//! `mcrelay-traffic inject`: puts hand-made, mostly malformed IP packets on a wire through
//! AF_PACKET, one of each kind per round, so a relay's drop counters can be checked by reason.
//!
//! Frames come from `mcrelay::testkit::frames` (feature `testkit`): a valid IPv4/IPv6 UDP frame from `--source` to
//! `--to`, broken in the one way each drop reason names. The payload is one of ours (stream
//! `--stream`), so a receiver behind the relay would notice any bad frame that got through. Every
//! frame goes to the link-layer multicast address of the `--to` group, so it reaches the relay's
//! interface like the valid stream does.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;
use mcrelay::stats::DropReason;
use mcrelay::testkit::frames as build;

use crate::{Result, payload, sys};

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Interface to put the frames on
    #[arg(long = "interface", short = 'i')]
    interface: String,
    /// Source address written into the frames
    #[arg(long = "source")]
    source: IpAddr,
    /// Destination GROUP:PORT of the (valid) template frame
    #[arg(long = "to", value_name = "GROUP:PORT")]
    to: SocketAddr,
    /// UDP source port
    #[arg(long = "source-port", default_value_t = 40000)]
    source_port: u16,
    /// Kinds to send, comma separated drop reasons (truncated, bad_version, …) or "valid" for an
    /// intact frame; default: every malformed kind the address family can show
    #[arg(long = "kinds", value_delimiter = ',')]
    kinds: Vec<String>,
    /// Rounds (one frame of each kind per round)
    #[arg(long = "rounds", default_value_t = 10)]
    rounds: u64,
    /// Frames per second (all kinds together)
    #[arg(long = "rate", default_value_t = 1000)]
    rate: u64,
    /// Payload bytes (>= 24)
    #[arg(long = "size", default_value_t = 64)]
    size: usize,
    /// Stream id written into the payloads
    #[arg(long = "stream", default_value_t = 9999)]
    stream: u16,
    /// Print what was sent as JSON on stdout
    #[arg(long = "json")]
    json: bool,
}

pub fn run(a: InjectArgs) -> Result<()> {
    if !(payload::HEADER_LEN..=1400).contains(&a.size) {
        return Err(format!("--size {} must be within 24..=1400", a.size));
    }
    if !a.to.ip().is_multicast() {
        return Err(format!("--to {}: not a multicast group", a.to));
    }
    if a.source.is_ipv4() != a.to.is_ipv4() {
        return Err(format!(
            "--source {} and --to {} differ in family",
            a.source, a.to
        ));
    }
    let kinds: Vec<Option<DropReason>> = if a.kinds.is_empty() {
        DropReason::ALL.iter().map(|&r| Some(r)).collect()
    } else {
        a.kinds
            .iter()
            .map(|k| {
                if k == "valid" {
                    return Ok(None);
                }
                DropReason::ALL
                    .iter()
                    .find(|r| r.as_str() == k)
                    .map(|&r| Some(r))
                    .ok_or_else(|| {
                        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
                        format!("unknown kind {k:?}; one of valid, {}", names.join(", "))
                    })
            })
            .collect::<Result<_>>()?
    };
    let sock = sys::PacketSocket::open(crate::ifindex(&a.interface)?).map_err(|e| {
        format!(
            "AF_PACKET socket on {}: {e} (needs CAP_NET_RAW)",
            a.interface
        )
    })?;
    let (ethertype, mac) = match a.to.ip() {
        IpAddr::V4(g) => {
            let o = g.octets();
            (0x0800, [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(g) => {
            let o = g.octets();
            (0x86dd, [0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
    };
    let interval = Duration::from_nanos(1_000_000_000 / a.rate.max(1));
    let mut sent: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut body = vec![0u8; a.size];
    let mut seq = 0u64;
    let mut next = sys::mono_ns();
    for _ in 0..a.rounds {
        for &kind in &kinds {
            payload::encode(&mut body, a.stream, seq, sys::mono_ns());
            seq += 1;
            let Some(frame) = frame(&a, kind, &body) else {
                continue; // this family cannot show this reason (e.g. IPv4 extension headers)
            };
            let now = sys::mono_ns();
            if now < next {
                std::thread::sleep(Duration::from_nanos(next - now));
            }
            next += interval.as_nanos() as u64;
            sock.send(&frame, ethertype, mac)
                .map_err(|e| format!("send on {}: {e}", a.interface))?;
            *sent
                .entry(kind.map_or("valid", DropReason::as_str))
                .or_default() += 1;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "sent": sent }))
                .map_err(|e| e.to_string())?
        );
    } else {
        for (k, n) in &sent {
            eprintln!("{k:>20} {n}");
        }
    }
    Ok(())
}

fn frame(a: &InjectArgs, kind: Option<DropReason>, body: &[u8]) -> Option<Vec<u8>> {
    match (a.source, a.to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(g)) => {
            let base = build::Ipv4Udp::new(s, g, a.source_port, a.to.port());
            match kind {
                None => Some(base.frame(body)),
                Some(r) => build::malformed_v4(&base, body, r),
            }
        }
        (IpAddr::V6(s), IpAddr::V6(g)) => {
            let base = build::Ipv6Udp::new(s, g, a.source_port, a.to.port());
            match kind {
                None => Some(base.frame(body)),
                Some(r) => build::malformed_v6(&base, body, r),
            }
        }
        _ => None,
    }
}
