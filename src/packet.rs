//! Checked views of the frames an AF_PACKET `SOCK_DGRAM` socket delivers: no link-layer header,
//! the frame starts at the IP header, and the link-layer protocol (`ETH_P_IP` or `ETH_P_IPV6`) is
//! known from the socket or its `sockaddr_ll`, given here as a [`Family`].
//!
//! Why a parser of our own: AF_PACKET hands us frames the kernel has not validated (that is the
//! point: it also hands us packets from sources the kernel would drop by reverse-path filtering),
//! so every length, version and checksum must be checked before a byte of payload is trusted.
//! [`parse`] checks everything once and returns a [`Datagram`] whose fields are plain values and
//! whose payload is a sub-slice of the frame, or the first [`DropReason`] found. It never
//! allocates and never panics (property-tested on arbitrary bytes, and fuzzed under `fuzz/`).
//!
//! What is relayed is deliberately narrow: IPv4 without options (RFC 791) and IPv6 without
//! extension headers (RFC 8200), not fragmented, carrying one UDP datagram (RFC 768) to a
//! multicast group. Everything else is dropped and counted by reason. The checks run in this
//! order and the first failure is reported:
//!
//! * IPv4: version ([`DropReason::BadVersion`]), at least 20 bytes
//!   ([`DropReason::Truncated`]), IHL < 5 ([`DropReason::BadHeaderLength`]), IHL > 5
//!   ([`DropReason::IpOptions`]), total length beyond the frame ([`DropReason::Truncated`]) or
//!   below the header ([`DropReason::BadHeaderLength`]), header checksum
//!   ([`DropReason::BadChecksum`]), MF flag or fragment offset ([`DropReason::Fragment`]),
//!   protocol ([`DropReason::NotUdp`]), destination ([`DropReason::NotMulticast`]), UDP header
//!   within the total length ([`DropReason::Truncated`]), UDP length equal to the IP payload
//!   length ([`DropReason::BadUdpLength`]).
//! * IPv6: version, at least 40 bytes, payload length within the frame
//!   ([`DropReason::Truncated`]), next header: UDP, else a fragment header
//!   ([`DropReason::Fragment`]), else any other extension header of the IANA registry
//!   ([`DropReason::ExtensionHeaders`]), else [`DropReason::NotUdp`]; then destination, UDP
//!   header, UDP length as for IPv4.
//!
//! Bytes after the IP total length (Ethernet minimum-size padding) are ignored. The UDP checksum
//! is not verified: the payload is re-sent through a UDP socket, which computes a fresh one, and
//! verifying would touch every payload byte. A zero-length UDP payload is valid.
//!
//! Frames valid or malformed on purpose, for tests, benchmarks, the fuzz corpus and the
//! end-to-end tests that inject them, are built by `testkit::frames`, which is not part of the
//! shipped library (feature `testkit`).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a received frame was not relayed. The order is the order of `DropReason::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than the IP header, or the IP total length exceeds what was captured.
    Truncated,
    /// IP version is neither 4 nor 6, or does not match the link-layer protocol.
    BadVersion,
    /// IPv4 IHL < 5 or beyond the frame.
    BadHeaderLength,
    /// IPv4 header checksum is wrong.
    BadChecksum,
    /// IPv4 options present.
    IpOptions,
    /// IPv6 extension headers present.
    ExtensionHeaders,
    /// A fragment (first or later).
    Fragment,
    /// Not UDP.
    NotUdp,
    /// UDP length disagrees with the IP payload length.
    BadUdpLength,
    /// Destination is not a multicast address.
    NotMulticast,
    /// Multicast, but no route in the table (filter fallback or a race with a reload).
    NoRoute,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLength,
        DropReason::BadChecksum,
        DropReason::IpOptions,
        DropReason::ExtensionHeaders,
        DropReason::Fragment,
        DropReason::NotUdp,
        DropReason::BadUdpLength,
        DropReason::NotMulticast,
        DropReason::NoRoute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::IpOptions => "ip_options",
            DropReason::ExtensionHeaders => "extension_headers",
            DropReason::Fragment => "fragment",
            DropReason::NotUdp => "not_udp",
            DropReason::BadUdpLength => "bad_udp_length",
            DropReason::NotMulticast => "not_multicast",
            DropReason::NoRoute => "no_route",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The link-layer protocol a frame arrived with: `ETH_P_IP` or `ETH_P_IPV6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The ethertype (`ETH_P_IP` = 0x0800, `ETH_P_IPV6` = 0x86DD), host byte order.
    pub const fn ethertype(self) -> u16 {
        match self {
            Family::V4 => ETH_P_IP,
            Family::V6 => ETH_P_IPV6,
        }
    }

    /// The family of an ethertype (host byte order), `None` for anything but IPv4 and IPv6.
    pub const fn from_ethertype(ethertype: u16) -> Option<Family> {
        match ethertype {
            ETH_P_IP => Some(Family::V4),
            ETH_P_IPV6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The family of an address.
    pub const fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A UDP datagram to a multicast group (to any address when from [`parse_any`]), checked: every
/// field comes from a frame that passed all the checks listed in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub source: IpAddr,
    pub group: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub ttl: u8,
    /// The UDP payload (possibly empty), without trailing link-layer padding.
    pub payload: &'a [u8],
}

/// `ETH_P_IP`, host byte order.
pub const ETH_P_IP: u16 = 0x0800;
/// `ETH_P_IPV6`, host byte order.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IP protocol number / IPv6 next header of UDP.
pub const PROTO_UDP: u8 = 17;
/// IPv6 next header of a fragment header.
pub const NEXT_HEADER_FRAGMENT: u8 = 44;

/// Parses a frame that starts at the IP header, as received with link-layer protocol `family`.
#[inline]
pub fn parse(frame: &[u8], family: Family) -> Result<Datagram<'_>, DropReason> {
    match family {
        Family::V4 => parse_v4(frame),
        Family::V6 => parse_v6(frame),
    }
}

/// Like [`parse`], but the destination may be any address, not only a multicast group: for
/// unicast ingress (`listen` routes) and the inner packets of tunnels. The checks are the same
/// except [`DropReason::NotMulticast`], which this never returns.
#[inline]
pub fn parse_any(frame: &[u8], family: Family) -> Result<Datagram<'_>, DropReason> {
    match family {
        Family::V4 => parse_v4_to::<false>(frame),
        Family::V6 => parse_v6_to::<false>(frame),
    }
}

/// [`parse`] for a frame received as `ETH_P_IP`.
#[inline]
pub fn parse_v4(frame: &[u8]) -> Result<Datagram<'_>, DropReason> {
    parse_v4_to::<true>(frame)
}

/// [`parse_v4`], or [`parse_any`] for IPv4 when `MULTICAST_ONLY` is false.
#[inline]
fn parse_v4_to<const MULTICAST_ONLY: bool>(frame: &[u8]) -> Result<Datagram<'_>, DropReason> {
    let Some(h) = frame.first_chunk::<IPV4_HEADER_LEN>() else {
        return Err(short_frame(frame, 4));
    };
    if h[0] >> 4 != 4 {
        return Err(DropReason::BadVersion);
    }
    let ihl = h[0] & 0x0f;
    if ihl < 5 {
        return Err(DropReason::BadHeaderLength);
    }
    if ihl > 5 {
        return Err(DropReason::IpOptions);
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total > frame.len() {
        return Err(DropReason::Truncated);
    }
    if total < IPV4_HEADER_LEN {
        return Err(DropReason::BadHeaderLength);
    }
    if ipv4_header_sum(h) != 0xffff {
        return Err(DropReason::BadChecksum);
    }
    // MF (0x2000) or a fragment offset (0x1fff); DF (0x4000) is fine.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(DropReason::Fragment);
    }
    if h[9] != PROTO_UDP {
        return Err(DropReason::NotUdp);
    }
    let group = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    if MULTICAST_ONLY && !group.is_multicast() {
        return Err(DropReason::NotMulticast);
    }
    let source = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let ip_payload = frame.get(IPV4_HEADER_LEN..total).unwrap_or_default();
    udp(ip_payload, IpAddr::V4(source), IpAddr::V4(group), h[8])
}

/// [`parse`] for a frame received as `ETH_P_IPV6`.
#[inline]
pub fn parse_v6(frame: &[u8]) -> Result<Datagram<'_>, DropReason> {
    parse_v6_to::<true>(frame)
}

/// [`parse_v6`], or [`parse_any`] for IPv6 when `MULTICAST_ONLY` is false.
#[inline]
fn parse_v6_to<const MULTICAST_ONLY: bool>(frame: &[u8]) -> Result<Datagram<'_>, DropReason> {
    let Some(h) = frame.first_chunk::<IPV6_HEADER_LEN>() else {
        return Err(short_frame(frame, 6));
    };
    if h[0] >> 4 != 6 {
        return Err(DropReason::BadVersion);
    }
    let end = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if end > frame.len() {
        return Err(DropReason::Truncated);
    }
    match h[6] {
        PROTO_UDP => {}
        NEXT_HEADER_FRAGMENT => return Err(DropReason::Fragment),
        n if is_extension_header(n) => return Err(DropReason::ExtensionHeaders),
        _ => return Err(DropReason::NotUdp),
    }
    if MULTICAST_ONLY && h[24] != 0xff {
        return Err(DropReason::NotMulticast);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&h[24..40]);
    let ip_payload = frame.get(IPV6_HEADER_LEN..end).unwrap_or_default();
    udp(
        ip_payload,
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        h[7],
    )
}

/// Whether an IPv6 next-header value names an extension header (IANA "IPv6 Extension Header
/// Types": hop-by-hop 0, routing 43, fragment 44, ESP 50, AH 51, destination options 60,
/// mobility 135, HIP 139, shim6 140, experimental 253 and 254).
pub const fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

/// The one's-complement sum of an IPv4 header, folded to 16 bits: 0xffff when the checksum in
/// it is right.
#[inline]
pub fn ipv4_header_sum(header: &[u8; IPV4_HEADER_LEN]) -> u16 {
    let mut sum = 0u32;
    for pair in header.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    fold(sum)
}

/// Sum of big-endian 16-bit words (an odd last byte padded with zero) for the Internet
/// checksum (RFC 1071), partially folded so that it cannot overflow for any UDP-sized input;
/// add sums of several parts, then [`fold`] and complement.
pub(crate) fn add_words(bytes: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    u32::from(fold(sum))
}

/// Folds a one's-complement sum to 16 bits.
#[inline]
pub(crate) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Why a frame shorter than the fixed IP header is dropped: its version when there is one byte
/// to read it from and it is wrong, else truncation.
#[cold]
fn short_frame(frame: &[u8], version: u8) -> DropReason {
    match frame.first() {
        Some(b) if b >> 4 != version => DropReason::BadVersion,
        _ => DropReason::Truncated,
    }
}

/// The UDP part, `ip_payload` being exactly the IP payload (total length already checked).
#[inline]
fn udp(
    ip_payload: &[u8],
    source: IpAddr,
    group: IpAddr,
    ttl: u8,
) -> Result<Datagram<'_>, DropReason> {
    let Some((u, payload)) = ip_payload.split_first_chunk::<UDP_HEADER_LEN>() else {
        return Err(DropReason::Truncated);
    };
    if usize::from(u16::from_be_bytes([u[4], u[5]])) != ip_payload.len() {
        return Err(DropReason::BadUdpLength);
    }
    Ok(Datagram {
        source,
        group,
        src_port: u16::from_be_bytes([u[0], u[1]]),
        dst_port: u16::from_be_bytes([u[2], u[3]]),
        ttl,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::frames::*;
    use proptest::prelude::*;

    const PAYLOAD: &[u8] = b"hello, multicast";

    #[test]
    fn valid_v4_parses() {
        let b = example_v4();
        let f = b.frame(PAYLOAD);
        let d = parse(&f, Family::V4).unwrap();
        assert_eq!(d.source, IpAddr::V4(b.source));
        assert_eq!(d.group, IpAddr::V4(b.destination));
        assert_eq!((d.src_port, d.dst_port, d.ttl), (4000, 5000, 64));
        assert_eq!(d.payload, PAYLOAD);
    }

    #[test]
    fn valid_v6_parses() {
        let mut b = example_v6();
        b.hop_limit = 7;
        let f = b.frame(PAYLOAD);
        let d = parse(&f, Family::V6).unwrap();
        assert_eq!(d.source, IpAddr::V6(b.source));
        assert_eq!(d.group, IpAddr::V6(b.destination));
        assert_eq!((d.src_port, d.dst_port, d.ttl), (4000, 5000, 7));
        assert_eq!(d.payload, PAYLOAD);
    }

    #[test]
    fn parse_any_takes_unicast_and_checks_the_rest_alike() {
        for family in [Family::V4, Family::V6] {
            for (reason, frame) in malformed_set(family, PAYLOAD) {
                let expected = match reason {
                    DropReason::NotMulticast => Ok(()),
                    other => Err(other),
                };
                assert_eq!(
                    parse_any(&frame, family).map(|_| ()),
                    expected,
                    "{reason:?}"
                );
            }
        }
        let mut b = example_v4();
        b.destination = Ipv4Addr::new(192, 0, 2, 7);
        let frame = b.frame(PAYLOAD);
        let d = parse_any(&frame, Family::V4).unwrap();
        assert_eq!(d.group, IpAddr::V4(b.destination));
        assert_eq!(d.payload, PAYLOAD);
    }

    #[test]
    fn empty_payload_is_valid() {
        let f = example_v4().frame(b"");
        assert!(parse(&f, Family::V4).unwrap().payload.is_empty());
        let f = example_v6().frame(b"");
        assert!(parse(&f, Family::V6).unwrap().payload.is_empty());
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut b = example_v4();
        b.padding = 18;
        let f = b.frame(b"ab");
        assert_eq!(parse(&f, Family::V4).unwrap().payload, b"ab");
        let mut b = example_v6();
        b.padding = 3;
        let f = b.frame(b"ab");
        assert_eq!(parse(&f, Family::V6).unwrap().payload, b"ab");
    }

    #[test]
    fn dont_fragment_is_not_a_fragment() {
        let mut b = example_v4();
        b.dont_fragment = true;
        assert!(parse(&b.frame(PAYLOAD), Family::V4).is_ok());
        b.dont_fragment = false;
        assert!(parse(&b.frame(PAYLOAD), Family::V4).is_ok());
    }

    #[test]
    fn builder_checksums_are_right() {
        let f = example_v4().frame(PAYLOAD);
        let h: &[u8; 20] = f.first_chunk().unwrap();
        assert_eq!(ipv4_header_sum(h), 0xffff);
        // UDP checksum over pseudo-header + UDP verifies to 0xffff too.
        let mut sum = 0u32;
        for c in f[12..20].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        sum += 17 + (f.len() as u32 - 20);
        let udp = &f[20..];
        for c in udp.chunks(2) {
            let hi = c[0];
            let lo = c.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([hi, lo]));
        }
        assert_eq!(fold(sum), 0xffff);
    }

    /// Every reason each family can show is produced by the builder and reported by the parser.
    #[test]
    fn every_reason_is_detected() {
        for family in [Family::V4, Family::V6] {
            let set = malformed_set(family, PAYLOAD);
            for (reason, frame) in &set {
                assert_eq!(
                    parse(frame, family).err(),
                    Some(*reason),
                    "{family:?} {reason:?}"
                );
            }
            let expected = match family {
                Family::V4 => 9,
                Family::V6 => 7,
            };
            assert_eq!(set.len(), expected, "{family:?}: {set:?}");
        }
    }

    #[test]
    fn family_mismatch_is_bad_version() {
        assert_eq!(
            parse(&example_v6().frame(PAYLOAD), Family::V4).err(),
            Some(DropReason::BadVersion)
        );
        assert_eq!(
            parse(&example_v4().frame(PAYLOAD), Family::V6).err(),
            Some(DropReason::BadVersion)
        );
        assert_eq!(
            parse(&[0x60], Family::V4).err(),
            Some(DropReason::BadVersion)
        );
    }

    #[test]
    fn short_frames_are_truncated() {
        let f = example_v4().frame(PAYLOAD);
        for n in [0, 1, 19] {
            assert_eq!(
                parse(&f[..n], Family::V4).err(),
                Some(DropReason::Truncated),
                "{n}"
            );
        }
        let f = example_v6().frame(PAYLOAD);
        for n in [0, 1, 39, 47] {
            assert_eq!(
                parse(&f[..n], Family::V6).err(),
                Some(DropReason::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn ip_length_too_short_for_udp_header_is_truncated() {
        let mut b = example_v4();
        b.total_length = Some(24);
        assert_eq!(
            parse(&b.frame(PAYLOAD), Family::V4).err(),
            Some(DropReason::Truncated)
        );
        let mut b = example_v6();
        b.payload_length = Some(4);
        assert_eq!(
            parse(&b.frame(PAYLOAD), Family::V6).err(),
            Some(DropReason::Truncated)
        );
    }

    #[test]
    fn total_length_below_header_is_bad_header_length() {
        let mut b = example_v4();
        b.total_length = Some(19);
        let f = b.frame(PAYLOAD);
        assert_eq!(
            parse(&f, Family::V4).err(),
            Some(DropReason::BadHeaderLength)
        );
    }

    #[test]
    fn total_length_shorter_than_frame_is_padding() {
        // IP says 4 payload bytes fewer: UDP length then disagrees with the IP payload length.
        let mut b = example_v4();
        b.total_length = Some((28 + PAYLOAD.len() - 4) as u16);
        let f = b.frame(PAYLOAD);
        assert_eq!(parse(&f, Family::V4).err(), Some(DropReason::BadUdpLength));
    }

    #[test]
    fn later_fragments_are_fragments() {
        let mut b = example_v4();
        b.fragment_offset = 185;
        assert_eq!(
            parse(&b.frame(PAYLOAD), Family::V4).err(),
            Some(DropReason::Fragment)
        );
        let mut b = example_v6();
        b.extension_headers = vec![ExtensionHeader::Fragment {
            offset: 185,
            more: false,
            identification: 1,
        }];
        assert_eq!(
            parse(&b.frame(PAYLOAD), Family::V6).err(),
            Some(DropReason::Fragment)
        );
    }

    #[test]
    fn every_v6_extension_header_is_refused() {
        for h in [
            ExtensionHeader::HopByHop,
            ExtensionHeader::Routing,
            ExtensionHeader::DestinationOptions,
        ] {
            let mut b = example_v6();
            b.extension_headers = vec![h, ExtensionHeader::DestinationOptions];
            let f = b.frame(PAYLOAD);
            assert_eq!(
                parse(&f, Family::V6).err(),
                Some(DropReason::ExtensionHeaders),
                "{h:?}"
            );
        }
        for n in [50, 51, 135, 139, 140, 253, 254] {
            let mut b = example_v6();
            b.next_header = n;
            let f = b.frame(PAYLOAD);
            assert_eq!(
                parse(&f, Family::V6).err(),
                Some(DropReason::ExtensionHeaders),
                "{n}"
            );
        }
    }

    #[test]
    fn family_and_ethertype() {
        assert_eq!(Family::from_ethertype(0x0800), Some(Family::V4));
        assert_eq!(Family::from_ethertype(0x86dd), Some(Family::V6));
        assert_eq!(Family::from_ethertype(0x0806), None);
        assert_eq!(Family::V6.ethertype(), 0x86dd);
        assert_eq!(Family::of(&"ff02::1".parse().unwrap()), Family::V6);
    }

    fn v4_frame() -> impl Strategy<Value = (Ipv4Udp, Vec<u8>)> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 3]>(),
            (224u8..240),
            any::<(u16, u16, u8, u8)>(),
            (any::<bool>(), 0usize..30),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(src, g, g0, (sp, dp, ttl, tos), (df, pad), payload)| {
                let mut b = Ipv4Udp::new(src.into(), [g0, g[0], g[1], g[2]].into(), sp, dp);
                b.ttl = ttl;
                b.tos = tos;
                b.dont_fragment = df;
                b.padding = pad;
                (b, payload)
            })
    }

    fn v6_frame() -> impl Strategy<Value = (Ipv6Udp, Vec<u8>)> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 15]>(),
            any::<(u16, u16, u8, u8, u32)>(),
            0usize..30,
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(src, g, (sp, dp, hl, tc, fl), pad, payload)| {
                let mut dst = [0xffu8; 16];
                dst[1..].copy_from_slice(&g);
                let mut b = Ipv6Udp::new(src.into(), dst.into(), sp, dp);
                b.hop_limit = hl;
                b.traffic_class = tc;
                b.flow_label = fl;
                b.padding = pad;
                (b, payload)
            })
    }

    proptest! {
        #[test]
        fn never_panics(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse(&frame, Family::V4);
            let _ = parse(&frame, Family::V6);
        }

        /// Arbitrary bytes behind a plausible header reach the deeper checks.
        #[test]
        fn never_panics_near_valid(
            (b, payload) in v4_frame(),
            (b6, payload6) in v6_frame(),
            pos in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            for (mut f, family) in [(b.frame(&payload), Family::V4), (b6.frame(&payload6), Family::V6)] {
                let i = pos.index(f.len());
                f[i] = byte;
                let _ = parse(&f, family);
                let n = cut.index(f.len() + 1);
                let _ = parse(&f[..n], family);
            }
        }

        #[test]
        fn v4_round_trips((b, payload) in v4_frame()) {
            let f = b.frame(&payload);
            let d = parse(&f, Family::V4).unwrap();
            prop_assert_eq!(d.source, IpAddr::V4(b.source));
            prop_assert_eq!(d.group, IpAddr::V4(b.destination));
            prop_assert_eq!((d.src_port, d.dst_port, d.ttl), (b.src_port, b.dst_port, b.ttl));
            prop_assert_eq!(d.payload, &payload[..]);
        }

        #[test]
        fn v6_round_trips((b, payload) in v6_frame()) {
            let f = b.frame(&payload);
            let d = parse(&f, Family::V6).unwrap();
            prop_assert_eq!(d.source, IpAddr::V6(b.source));
            prop_assert_eq!(d.group, IpAddr::V6(b.destination));
            prop_assert_eq!((d.src_port, d.dst_port, d.ttl), (b.src_port, b.dst_port, b.hop_limit));
            prop_assert_eq!(d.payload, &payload[..]);
        }

        /// Each malformation is reported as itself whatever the addresses, ports and payload.
        #[test]
        fn malformations_round_trip(
            (b, payload) in v4_frame(),
            (b6, payload6) in v6_frame(),
            r in proptest::sample::select(DropReason::ALL.to_vec()),
        ) {
            if let Some(f) = malformed_v4(&b, &payload, r) {
                prop_assert_eq!(parse(&f, Family::V4).err(), Some(r));
            }
            if let Some(f) = malformed_v6(&b6, &payload6, r) {
                prop_assert_eq!(parse(&f, Family::V6).err(), Some(r));
            }
        }
    }
}
