//! Tests of the tunnel core: the format round trip, authentication, the receiver's checks, and
//! the MTU rule of docs/TUNNEL.md.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::wire::{self, HEADER_LEN, MAX_DATAGRAM, OVERHEAD_KEYED};
use super::*;
use crate::packet::{self, Family};
use crate::stats::DropReason;

const SITE: &str = "192.0.2.1:7000";
const OTHER: &str = "192.0.2.2:7000";

fn key(byte: u8) -> TunnelKey {
    TunnelKey::from_bytes(&[byte; 32]).unwrap()
}

fn inner_v4(payload: &[u8]) -> Inner<'_> {
    Inner {
        source: IpAddr::V4(Ipv4Addr::new(10, 1, 1, 100)),
        destination: "239.1.1.1:5000".parse().unwrap(),
        source_port: 4000,
        ttl: 9,
        tos: 34 << 2,
        payload,
    }
}

fn inner_v6(payload: &[u8]) -> Inner<'_> {
    Inner {
        source: IpAddr::V6("2001:db8::100".parse().unwrap()),
        destination: "[ff3e::1:5]:5000".parse().unwrap(),
        source_port: 4001,
        ttl: 3,
        tos: 10 << 2,
        payload,
    }
}

fn encode(sender: &mut Sender, inner: &Inner) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = sender.encode(&mut buf, inner).unwrap();
    buf.truncate(n);
    buf
}

/// The one's-complement sum over the UDP pseudo-header, header and payload of an inner packet:
/// 0xffff when its UDP checksum is right. Written independently of `wire`.
fn udp_checksum_ok(ip: &[u8]) -> bool {
    let (src, dst, udp) = match ip[0] >> 4 {
        4 => (&ip[12..16], &ip[16..20], &ip[20..]),
        _ => (&ip[8..24], &ip[24..40], &ip[40..]),
    };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(src);
    bytes.extend_from_slice(dst);
    bytes.extend_from_slice(&[0, 17]);
    bytes.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    bytes.extend_from_slice(udp);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let mut s = Sender::new(3, 0x0102_0304_0506_0708, Some(&key(1)));
    let d = encode(&mut s, &inner_v4(b"ts"));
    assert_eq!(d[0], 1, "version");
    assert_eq!(d[1], 0x01, "flags: authenticated");
    assert_eq!(d[2], 0, "key id");
    assert_eq!(d[3], 3, "lane");
    assert_eq!(d[4..12], [1, 2, 3, 4, 5, 6, 7, 8], "session, big-endian");
    assert_eq!(d[12..20], [0; 8], "counter 0 first");
    assert_eq!(d[20] >> 4, 4, "the inner IPv4 packet follows");
    assert_eq!(d.len(), HEADER_LEN + 20 + 8 + 2 + 16);
    let d2 = encode(&mut s, &inner_v4(b"ts"));
    assert_eq!(d2[12..20], 1u64.to_be_bytes(), "the counter advances");
    let mut keyless = Sender::new(0, 1, None);
    let d3 = encode(&mut keyless, &inner_v6(b"x"));
    assert_eq!(d3[1], 0);
    assert_eq!(d3.len(), HEADER_LEN + 40 + 8 + 1);
}

#[test]
fn the_inner_packet_is_a_valid_ip_packet_the_packet_parser_reads() {
    for (inner, family) in [
        (inner_v4(b"odd length payload!"), Family::V4),
        (inner_v6(b"odd length payload!"), Family::V6),
        (inner_v4(b""), Family::V4),
    ] {
        let d = encode(&mut Sender::new(0, 1, Some(&key(1))), &inner);
        let ip = &d[HEADER_LEN..d.len() - 16];
        let p = packet::parse(ip, family).unwrap();
        assert_eq!(p.source, inner.source);
        assert_eq!(p.group, inner.destination.ip());
        assert_eq!((p.src_port, p.dst_port), (inner.source_port, 5000));
        assert_eq!(p.ttl, inner.ttl);
        assert_eq!(p.payload, inner.payload);
        assert!(udp_checksum_ok(ip), "UDP checksum of {family:?}");
        let tos = match family {
            Family::V4 => ip[1],
            Family::V6 => ip[0] << 4 | ip[1] >> 4,
        };
        assert_eq!(tos, inner.tos);
    }
}

/// docs/TUNNEL.md: a 1316-byte MPEG-TS payload (7 x 188) crosses a 1500-byte path whole, for
/// each inner and outer family, keyed.
#[test]
fn a_1316_byte_ts_payload_fits_a_1500_byte_path() {
    let ts = [0x47u8; 1316];
    for inner in [inner_v4(&ts), inner_v6(&ts)] {
        let len = encode(&mut Sender::new(0, 1, Some(&key(1))), &inner).len();
        assert_eq!(len, OVERHEAD_KEYED + inner.len());
        let outer_v4 = 20 + 8 + len;
        let outer_v6 = 40 + 8 + len;
        assert!(
            outer_v4 <= 1500 && outer_v6 <= 1500,
            "{outer_v4} {outer_v6}"
        );
    }
    assert_eq!(20 + 8 + OVERHEAD_KEYED + 20 + 8 + 1316, 1408);
}

#[test]
fn encoding_refuses_what_cannot_be_sent() {
    let mut s = Sender::new(0, 1, Some(&key(1)));
    let mut small = [0u8; 40];
    assert_eq!(
        s.encode(&mut small, &inner_v4(b"0123456789")),
        Err(EncodeError::BufferTooSmall {
            needed: OVERHEAD_KEYED + 28 + 10
        })
    );
    let big = vec![0u8; MAX_DATAGRAM];
    let mut buf = vec![0u8; 70_000];
    assert!(matches!(
        s.encode(&mut buf, &inner_v4(&big)),
        Err(EncodeError::TooLarge { .. })
    ));
    let mut mixed = inner_v4(b"x");
    mixed.destination = "[ff3e::1]:5".parse().unwrap();
    assert_eq!(s.encode(&mut buf, &mixed), Err(EncodeError::FamilyMismatch));
    assert_eq!(
        s.next_header().counter,
        0,
        "failures do not use up counters"
    );
    // The largest payload that fits is accepted.
    let fits = vec![0u8; MAX_DATAGRAM - OVERHEAD_KEYED - 28];
    assert_eq!(s.encode(&mut buf, &inner_v4(&fits)), Ok(MAX_DATAGRAM));
}

#[test]
fn decode_refuses_each_malformation_with_its_reason() {
    let k = MacKey::new(&key(1));
    let good = encode(&mut Sender::new(0, 1, Some(&key(1))), &inner_v4(b"abc"));
    assert!(wire::decode(&good, Some(&k)).is_ok());
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::TooShort),
        (good[..19].to_vec(), DecodeError::TooShort),
        (
            {
                let mut d = good.clone();
                d[0] = 2;
                d
            },
            DecodeError::UnknownVersion(2),
        ),
        (
            {
                let mut d = good.clone();
                d[0] = 0x45;
                d
            },
            DecodeError::UnknownVersion(0x45),
        ),
        (
            {
                let mut d = good.clone();
                d[1] |= 0x80;
                d
            },
            DecodeError::UnknownFlags(0x80),
        ),
        (
            {
                let mut d = good.clone();
                d[2] = 1;
                d
            },
            DecodeError::UnknownKeyId(1),
        ),
        (
            {
                let mut d = good.clone();
                d[25] ^= 1;
                d
            },
            DecodeError::BadMac,
        ),
        (good[..HEADER_LEN + 16 + 5].to_vec(), DecodeError::BadMac),
        (good[..HEADER_LEN + 10].to_vec(), DecodeError::TooShort),
        (
            {
                let mut d = good[..HEADER_LEN].to_vec();
                d[1] = 1;
                d
            },
            DecodeError::TooShort,
        ),
    ];
    for (d, expected) in cases {
        assert_eq!(wire::decode(&d, Some(&k)), Err(expected), "{expected:?}");
    }
    assert_eq!(wire::decode(&good, None), Err(DecodeError::NoKey));
    let keyless = encode(&mut Sender::new(0, 1, None), &inner_v4(b"abc"));
    assert_eq!(
        wire::decode(&keyless, Some(&k)),
        Err(DecodeError::Unauthenticated)
    );
    assert!(wire::decode(&keyless, None).is_ok());
    // Without a MAC the inner packet's own checks are what is left.
    let mut d = keyless.clone();
    d[HEADER_LEN] = 0x75;
    assert_eq!(
        wire::decode(&d, None),
        Err(DecodeError::Inner(DropReason::BadVersion))
    );
    let mut d = keyless.clone();
    d[HEADER_LEN + 9] = 6;
    // The protocol changed, so the header checksum no longer holds: it is checked first.
    assert_eq!(
        wire::decode(&d, None),
        Err(DecodeError::Inner(DropReason::BadChecksum))
    );
    let mut d = keyless.clone();
    d.push(0);
    assert_eq!(wire::decode(&d, None), Err(DecodeError::InnerLength));
    assert_eq!(
        wire::decode(&keyless[..keyless.len() - 1], None),
        Err(DecodeError::Inner(DropReason::Truncated))
    );
}

#[test]
fn a_keepalive_carries_no_inner_packet() {
    let mut s = Sender::new(0, 1, Some(&key(1)));
    let mut buf = [0u8; 64];
    let n = s.keepalive(&mut buf).unwrap();
    assert_eq!(n, OVERHEAD_KEYED);
    let d = wire::decode(&buf[..n], Some(&MacKey::new(&key(1)))).unwrap();
    assert_eq!(d.inner, None);
    assert!(d.inner_packet.is_empty());
    assert!(d.authenticated);
}

#[test]
fn the_receiver_accepts_peers_once_and_counts_the_rest() {
    let t0 = Instant::now();
    let site: SocketAddr = SITE.parse().unwrap();
    let mut rx = Receiver::new(&[site], Some(&key(1)));
    let mut tx = Sender::new(0, 100, Some(&key(1)));
    let a = encode(&mut tx, &inner_v4(b"first"));
    let b = encode(&mut tx, &inner_v4(b"second"));

    let got = rx.receive(site, &b, t0).unwrap();
    assert_eq!(got.event, SessionEvent::First);
    assert_eq!(got.decoded.inner.unwrap().payload, b"second");
    // Reordered within the window: accepted.
    let got = rx.receive(site, &a, t0).unwrap();
    assert_eq!(got.event, SessionEvent::Same);
    assert_eq!(got.decoded.inner.unwrap().payload, b"first");
    // Replayed: refused, counted against the peer.
    let r = rx.receive(site, &a, t0).unwrap_err();
    assert_eq!(
        r,
        Refused {
            peer: Some(0),
            reason: Refusal::Replay(ReplayError::Replayed)
        }
    );
    assert_eq!(r.reason.as_str(), "replayed");
    // From elsewhere: refused before anything is parsed.
    let stranger = encode(&mut tx, &inner_v4(b"x"));
    let r = rx.receive(OTHER.parse().unwrap(), &stranger, t0);
    assert_eq!(
        r.unwrap_err(),
        Refused {
            peer: None,
            reason: Refusal::NotAPeer
        }
    );
    // Forged with another key: refused, and it does not move the window.
    let mut forger = Sender::new(0, 100, Some(&key(2)));
    forger.next.counter = 50;
    let f = encode(&mut forger, &inner_v4(b"evil"));
    assert_eq!(
        rx.receive(site, &f, t0).unwrap_err().reason,
        Refusal::Decode(DecodeError::BadMac)
    );
    assert!(rx.peers()[0].is_up(t0 + Duration::from_secs(1), Duration::from_secs(2)));
    assert!(!rx.peers()[0].is_up(t0 + Duration::from_secs(3), Duration::from_secs(2)));
}

#[test]
fn a_peer_restart_is_followed_and_an_old_session_is_stale() {
    let t0 = Instant::now();
    let site: SocketAddr = SITE.parse().unwrap();
    let mut rx = Receiver::new(&[site], Some(&key(1)));
    let mut before = Sender::new(0, session_at(Duration::from_secs(1_000)), Some(&key(1)));
    let old = encode(&mut before, &inner_v4(b"old"));
    rx.receive(site, &old, t0).unwrap();
    let mut after = Sender::new(0, session_at(Duration::from_secs(2_000)), Some(&key(1)));
    let new = encode(&mut after, &inner_v4(b"new"));
    assert_eq!(
        rx.receive(site, &new, t0).unwrap().event,
        SessionEvent::Restarted
    );
    let late = encode(&mut before, &inner_v4(b"old again"));
    assert_eq!(
        rx.receive(site, &late, t0).unwrap_err().reason,
        Refusal::Replay(ReplayError::StaleSession)
    );
    // Lanes are independent: a second worker of the same peer starts its own window at 0.
    let mut lane1 = Sender::new(1, session_at(Duration::from_secs(2_000)), Some(&key(1)));
    assert_eq!(
        rx.receive(site, &encode(&mut lane1, &inner_v4(b"l1")), t0)
            .unwrap()
            .event,
        SessionEvent::First
    );
}

#[test]
fn a_reload_keeps_the_windows_of_peers_still_listed() {
    let t0 = Instant::now();
    let site: SocketAddr = SITE.parse().unwrap();
    let other: SocketAddr = OTHER.parse().unwrap();
    let mut rx = Receiver::new(&[site], Some(&key(1)));
    let mut tx = Sender::new(0, 5, Some(&key(1)));
    let d = encode(&mut tx, &inner_v4(b"x"));
    rx.receive(site, &d, t0).unwrap();
    rx.reconfigure(&[other, site], Some(&key(1)));
    assert_eq!(rx.peers()[1].address, site);
    assert_eq!(rx.peers()[1].last_heard, Some(t0));
    assert_eq!(
        rx.receive(site, &d, t0).unwrap_err().reason,
        Refusal::Replay(ReplayError::Replayed)
    );
    rx.reconfigure(&[other], Some(&key(1)));
    assert_eq!(
        rx.receive(site, &d, t0).unwrap_err().reason,
        Refusal::NotAPeer
    );
}

#[test]
fn an_ipv4_peer_seen_through_a_dual_stack_socket_is_recognised() {
    let site: SocketAddr = SITE.parse().unwrap();
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
        7000,
    );
    let mut rx = Receiver::new(&[site], None);
    let d = encode(&mut Sender::new(0, 1, None), &inner_v6(b"x"));
    assert!(rx.receive(mapped, &d, Instant::now()).is_ok());
}

/// An inner packet's parts: IPv6?, source and destination bytes, ports, TTL, TOS, payload.
type InnerSpec = (bool, [u8; 16], [u8; 16], u16, u16, u8, u8, Vec<u8>);

fn arb_inner() -> impl Strategy<Value = InnerSpec> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        1u16..,
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..1500),
    )
}

fn make_inner<'a>((v6, s, d, sp, dp, ttl, tos, payload): &'a InnerSpec) -> Inner<'a> {
    let (source, dest) = if *v6 {
        (
            IpAddr::V6(Ipv6Addr::from(*s)),
            IpAddr::V6(Ipv6Addr::from(*d)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])),
            IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
        )
    };
    Inner {
        source,
        destination: SocketAddr::new(dest, *dp),
        source_port: *sp,
        ttl: *ttl,
        tos: *tos,
        payload,
    }
}

proptest! {
    /// What is encoded decodes to the same header and inner datagram, keyed or not.
    #[test]
    fn round_trip(spec in arb_inner(), lane: u8, session: u64, counter: u64, keyed: bool) {
        let k = key(9);
        let inner = make_inner(&spec);
        let mut buf = vec![0u8; 2000];
        let header = Header { lane, session, counter };
        let mac = keyed.then(|| MacKey::new(&k));
        let n = wire::encode(&mut buf, &header, Some(&inner), mac.as_ref()).unwrap();
        prop_assert_eq!(n, wire::encoded_len(Some(&inner), keyed));
        let d = wire::decode(&buf[..n], mac.as_ref()).unwrap();
        prop_assert_eq!(d.header, header);
        prop_assert_eq!(d.authenticated, keyed);
        let i = d.inner.unwrap();
        prop_assert_eq!(i.source, inner.source);
        prop_assert_eq!(i.group, inner.destination.ip());
        prop_assert_eq!((i.src_port, i.dst_port, i.ttl), (inner.source_port, inner.destination.port(), inner.ttl));
        prop_assert_eq!(i.payload, inner.payload);
        prop_assert!(udp_checksum_ok(d.inner_packet));
    }

    /// Flipping any single bit of an authenticated datagram makes it refused.
    #[test]
    fn any_bit_flip_is_refused(spec in arb_inner(), bit: prop::sample::Index) {
        let k = MacKey::new(&key(9));
        let inner = make_inner(&spec);
        let mut buf = vec![0u8; 2000];
        let header = Header { lane: 0, session: 1, counter: 2 };
        let n = wire::encode(&mut buf, &header, Some(&inner), Some(&k)).unwrap();
        let d = &mut buf[..n];
        let b = bit.index(n * 8);
        d[b / 8] ^= 1 << (b % 8);
        prop_assert!(wire::decode(d, Some(&k)).is_err(), "bit {} accepted", b);
    }

    /// The decoder never panics, and whatever it accepts without a key is consistent with the
    /// bytes: the inner packet fills the datagram after the header.
    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let k = MacKey::new(&key(9));
        let _ = wire::decode(&bytes, Some(&k));
        if let Ok(d) = wire::decode(&bytes, None) {
            prop_assert_eq!(d.inner_packet.len() + HEADER_LEN, bytes.len());
        }
    }
}
