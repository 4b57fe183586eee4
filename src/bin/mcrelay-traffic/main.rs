//! `mcrelay-traffic`: the project's own sequenced traffic generator and receiver, used by the
//! end-to-end tests, `scripts/demo` and `scripts/bench`.
//!
//! * `send` paces datagrams at a precise rate (token bucket on CLOCK_MONOTONIC, `sendmmsg`
//!   batches) to one or more streams; each payload carries a stream id, a sequence number, its
//!   send time and filler bytes derived from them (see `payload`). With `--via packet` it writes
//!   pre-built Ethernet frames through AF_PACKET instead of UDP sockets (see `frame`).
//! * `recv` joins groups (any-source or source-specific) or listens on unicast ports and reports,
//!   per stream, what arrived: loss, duplicates, reordering, corrupt bytes, length mismatches,
//!   latency percentiles, and the TTL / TOS values seen, as a table or `--json`.
//! * `inject` puts hand-made (mostly malformed) IP packets on a wire through AF_PACKET.
//!
//! Nothing here changes kernel settings; the caller sets up the topology.
#![deny(unsafe_code)]

mod account;
mod frame;
mod inject;
mod payload;
mod recv;
mod send;
mod sys;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mcrelay-traffic",
    version,
    about = "Sequenced multicast/unicast traffic generator and receiver for testing mcrelay"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Send sequenced datagrams at a paced rate
    Send(send::SendArgs),
    /// Receive, check every byte, and report per stream
    Recv(recv::RecvArgs),
    /// Send hand-made (malformed) IP packets on an interface through AF_PACKET
    Inject(inject::InjectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Send(a) => send::run(a),
        Cmd::Recv(a) => recv::run(a),
        Cmd::Inject(a) => inject::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcrelay-traffic: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error message for the user.
pub type Result<T> = std::result::Result<T, String>;

/// Kernel index of the interface `name` (read from sysfs, which `ip netns exec` remounts for the
/// namespace).
pub fn ifindex(name: &str) -> Result<u32> {
    let p = format!("/sys/class/net/{name}/ifindex");
    std::fs::read_to_string(&p)
        .map_err(|e| format!("interface {name:?} not found ({p}: {e}); check `ip link`"))?
        .trim()
        .parse()
        .map_err(|e| format!("{p}: {e}"))
}

/// `ADDR:PORT` or `[V6]:PORT`, optionally followed by `@SOURCE`.
pub fn parse_endpoint(s: &str) -> Result<(SocketAddr, Option<IpAddr>)> {
    let (addr, src) = match s.rsplit_once('@') {
        Some((a, src)) => (
            a,
            Some(
                src.parse::<IpAddr>()
                    .map_err(|e| format!("{s:?}: source {src:?}: {e}"))?,
            ),
        ),
        None => (s, None),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("{s:?}: expected ADDR:PORT or [V6]:PORT ({e})"))?;
    Ok((addr, src))
}

/// The `n`-th address after `a` (adds to the address as an integer).
pub fn nth_addr(a: IpAddr, n: u32) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::V4((u32::from(v).wrapping_add(n)).into()),
        IpAddr::V6(v) => IpAddr::V6((u128::from(v).wrapping_add(n as u128)).into()),
    }
}

/// Parses a humantime duration for clap.
pub fn duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses a number, decimal or `0x` hexadecimal, for clap.
pub fn number(s: &str) -> std::result::Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let (a, s) = parse_endpoint("239.1.1.1:5000").unwrap();
        assert_eq!((a.to_string(), s), ("239.1.1.1:5000".into(), None));
        let (a, s) = parse_endpoint("[ff3e::1]:5004@fd00::1").unwrap();
        assert_eq!(a.to_string(), "[ff3e::1]:5004");
        assert_eq!(s, Some("fd00::1".parse().unwrap()));
        assert!(parse_endpoint("239.1.1.1").is_err());
        assert!(parse_endpoint("239.1.1.1:5000@x").is_err());
    }

    #[test]
    fn address_arithmetic_carries() {
        let a: IpAddr = "239.1.1.255".parse().unwrap();
        assert_eq!(nth_addr(a, 1).to_string(), "239.1.2.0");
        let b: IpAddr = "ff3e::ffff".parse().unwrap();
        assert_eq!(nth_addr(b, 2).to_string(), "ff3e::1:1");
    }
}
