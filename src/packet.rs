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
//! [`build`] crafts frames, valid or malformed on purpose, for tests, benchmarks, the fuzz corpus
//! and the end-to-end tests that inject them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::stats::DropReason;

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

#[inline]
fn fold(mut sum: u32) -> u16 {
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

/// Builders of IPv4/IPv6 UDP frames as AF_PACKET `SOCK_DGRAM` delivers them (starting at the IP
/// header), valid by default and malformed on request, for tests, benchmarks, the fuzz corpus
/// and end-to-end tests.
///
/// Injecting them: send with an AF_PACKET `SOCK_DGRAM` socket (`sendto` with a `sockaddr_ll`
/// naming the ethertype, the ifindex and the multicast MAC address), which transmits the bytes
/// as they are. An `IPPROTO_RAW` / `IP_HDRINCL` socket does not do: the kernel rewrites the IPv4
/// total length and header checksum, and refuses some malformed headers.
pub mod build {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::{Family, PROTO_UDP, fold};
    use crate::stats::DropReason;

    /// An IPv4 UDP frame. [`Ipv4Udp::new`] gives a valid one; change fields to break it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Ipv4Udp {
        pub source: Ipv4Addr,
        pub destination: Ipv4Addr,
        pub src_port: u16,
        pub dst_port: u16,
        pub ttl: u8,
        pub tos: u8,
        pub identification: u16,
        pub dont_fragment: bool,
        pub more_fragments: bool,
        /// Fragment offset in 8-byte units (13 bits).
        pub fragment_offset: u16,
        /// IP version nibble (4 for a valid frame).
        pub version: u8,
        /// IP protocol (17 for UDP).
        pub protocol: u8,
        /// Raw IPv4 options, padded with zeros (end of option list) to a multiple of 4 bytes.
        pub options: Vec<u8>,
        /// IHL to write instead of the computed one (32-bit words).
        pub ihl: Option<u8>,
        /// IP total length to write instead of the computed one.
        pub total_length: Option<u16>,
        /// UDP length to write instead of the computed one.
        pub udp_length: Option<u16>,
        /// Write a wrong header checksum.
        pub corrupt_checksum: bool,
        /// Zero bytes appended after the IP datagram (link-layer padding).
        pub padding: usize,
    }

    impl Ipv4Udp {
        /// A valid frame: TTL 64, DF set, identification 1.
        pub fn new(source: Ipv4Addr, destination: Ipv4Addr, src_port: u16, dst_port: u16) -> Self {
            Ipv4Udp {
                source,
                destination,
                src_port,
                dst_port,
                ttl: 64,
                tos: 0,
                identification: 1,
                dont_fragment: true,
                more_fragments: false,
                fragment_offset: 0,
                version: 4,
                protocol: PROTO_UDP,
                options: Vec::new(),
                ihl: None,
                total_length: None,
                udp_length: None,
                corrupt_checksum: false,
                padding: 0,
            }
        }

        /// The frame carrying `payload`. Lengths that do not fit 16 bits are truncated to them,
        /// as the field would be.
        pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
            let mut options = self.options.clone();
            while !options.len().is_multiple_of(4) {
                options.push(0);
            }
            let header_len = 20 + options.len();
            let udp_len = 8 + payload.len();
            let total = header_len + udp_len;
            let mut f = Vec::with_capacity(total + self.padding);
            let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
            f.push((self.version << 4) | (ihl & 0x0f));
            f.push(self.tos);
            f.extend_from_slice(&self.total_length.unwrap_or(total as u16).to_be_bytes());
            f.extend_from_slice(&self.identification.to_be_bytes());
            let flags = (u16::from(self.dont_fragment) << 14)
                | (u16::from(self.more_fragments) << 13)
                | (self.fragment_offset & 0x1fff);
            f.extend_from_slice(&flags.to_be_bytes());
            f.push(self.ttl);
            f.push(self.protocol);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&self.source.octets());
            f.extend_from_slice(&self.destination.octets());
            f.extend_from_slice(&options);
            let mut sum = !fold(sum_words(&f, 0));
            if self.corrupt_checksum {
                sum ^= 0x5a5a;
            }
            f[10..12].copy_from_slice(&sum.to_be_bytes());
            let udp_len = self.udp_length.unwrap_or(udp_len as u16);
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&self.source.octets());
            pseudo.extend_from_slice(&self.destination.octets());
            pseudo.extend_from_slice(&[0, PROTO_UDP]);
            pseudo.extend_from_slice(&udp_len.to_be_bytes());
            push_udp(
                &mut f,
                &pseudo,
                self.src_port,
                self.dst_port,
                udp_len,
                payload,
            );
            f.resize(f.len() + self.padding, 0);
            f
        }
    }

    /// An IPv6 extension header, 8 bytes each as written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ExtensionHeader {
        /// Hop-by-hop options (PadN only).
        HopByHop,
        /// Routing header, type 253 (experimental), no segments left.
        Routing,
        /// Fragment header.
        Fragment {
            /// Offset in 8-byte units (13 bits).
            offset: u16,
            more: bool,
            identification: u32,
        },
        /// Destination options (PadN only).
        DestinationOptions,
    }

    impl ExtensionHeader {
        fn next_header_value(self) -> u8 {
            match self {
                ExtensionHeader::HopByHop => 0,
                ExtensionHeader::Routing => 43,
                ExtensionHeader::Fragment { .. } => 44,
                ExtensionHeader::DestinationOptions => 60,
            }
        }

        fn write(self, next: u8, f: &mut Vec<u8>) {
            match self {
                ExtensionHeader::HopByHop | ExtensionHeader::DestinationOptions => {
                    // PadN option of 4 bytes of padding fills the 6 bytes after next/len.
                    f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                }
                ExtensionHeader::Routing => f.extend_from_slice(&[next, 0, 253, 0, 0, 0, 0, 0]),
                ExtensionHeader::Fragment {
                    offset,
                    more,
                    identification,
                } => {
                    f.extend_from_slice(&[next, 0]);
                    f.extend_from_slice(
                        &(((offset & 0x1fff) << 3) | u16::from(more)).to_be_bytes(),
                    );
                    f.extend_from_slice(&identification.to_be_bytes());
                }
            }
        }
    }

    /// An IPv6 UDP frame. [`Ipv6Udp::new`] gives a valid one; change fields to break it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Ipv6Udp {
        pub source: Ipv6Addr,
        pub destination: Ipv6Addr,
        pub src_port: u16,
        pub dst_port: u16,
        pub hop_limit: u8,
        pub traffic_class: u8,
        /// Flow label (20 bits).
        pub flow_label: u32,
        /// IP version nibble (6 for a valid frame).
        pub version: u8,
        /// Extension headers, in order, between the fixed header and the UDP header.
        pub extension_headers: Vec<ExtensionHeader>,
        /// Next-header value of the last header instead of UDP (17).
        pub next_header: u8,
        /// Payload length to write instead of the computed one.
        pub payload_length: Option<u16>,
        /// UDP length to write instead of the computed one.
        pub udp_length: Option<u16>,
        /// Zero bytes appended after the IP datagram (link-layer padding).
        pub padding: usize,
    }

    impl Ipv6Udp {
        /// A valid frame: hop limit 64.
        pub fn new(source: Ipv6Addr, destination: Ipv6Addr, src_port: u16, dst_port: u16) -> Self {
            Ipv6Udp {
                source,
                destination,
                src_port,
                dst_port,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                version: 6,
                extension_headers: Vec::new(),
                next_header: PROTO_UDP,
                payload_length: None,
                udp_length: None,
                padding: 0,
            }
        }

        /// The frame carrying `payload`.
        pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
            let udp_len = 8 + payload.len();
            let payload_len = 8 * self.extension_headers.len() + udp_len;
            let mut f = Vec::with_capacity(40 + payload_len + self.padding);
            let word = (u32::from(self.version) << 28)
                | (u32::from(self.traffic_class) << 20)
                | (self.flow_label & 0x000f_ffff);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(
                &self
                    .payload_length
                    .unwrap_or(payload_len as u16)
                    .to_be_bytes(),
            );
            let first = self
                .extension_headers
                .first()
                .map_or(self.next_header, |h| h.next_header_value());
            f.push(first);
            f.push(self.hop_limit);
            f.extend_from_slice(&self.source.octets());
            f.extend_from_slice(&self.destination.octets());
            for (i, h) in self.extension_headers.iter().enumerate() {
                let next = self
                    .extension_headers
                    .get(i + 1)
                    .map_or(self.next_header, |n| n.next_header_value());
                h.write(next, &mut f);
            }
            let udp_len = self.udp_length.unwrap_or(udp_len as u16);
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&self.source.octets());
            pseudo.extend_from_slice(&self.destination.octets());
            pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, PROTO_UDP]);
            push_udp(
                &mut f,
                &pseudo,
                self.src_port,
                self.dst_port,
                udp_len,
                payload,
            );
            f.resize(f.len() + self.padding, 0);
            f
        }
    }

    /// A frame derived from the valid `base` that [`super::parse`] rejects with exactly `reason`,
    /// or `None` when IPv4 cannot show that reason (extension headers) or it is not a property
    /// of a frame (no route).
    pub fn malformed_v4(base: &Ipv4Udp, payload: &[u8], reason: DropReason) -> Option<Vec<u8>> {
        let mut b = base.clone();
        match reason {
            DropReason::Truncated => {
                b.padding = 0;
                let mut f = b.frame(payload);
                f.pop();
                return Some(f);
            }
            DropReason::BadVersion => b.version = 6,
            DropReason::BadHeaderLength => b.ihl = Some(4),
            DropReason::BadChecksum => b.corrupt_checksum = true,
            // Router alert (RFC 2113), as IGMP uses.
            DropReason::IpOptions => b.options = vec![148, 4, 0, 0],
            DropReason::Fragment => b.more_fragments = true,
            DropReason::NotUdp => b.protocol = 253,
            DropReason::BadUdpLength => {
                b.udp_length = Some(((8 + payload.len()) as u16).wrapping_add(1));
            }
            DropReason::NotMulticast => b.destination = Ipv4Addr::new(192, 0, 2, 99),
            DropReason::ExtensionHeaders | DropReason::NoRoute => return None,
        }
        Some(b.frame(payload))
    }

    /// As [`malformed_v4`] for IPv6 (`None` for IPv4-only reasons: header length, checksum,
    /// options).
    pub fn malformed_v6(base: &Ipv6Udp, payload: &[u8], reason: DropReason) -> Option<Vec<u8>> {
        let mut b = base.clone();
        match reason {
            DropReason::Truncated => {
                b.padding = 0;
                let mut f = b.frame(payload);
                f.pop();
                return Some(f);
            }
            DropReason::BadVersion => b.version = 4,
            DropReason::ExtensionHeaders => b.extension_headers = vec![ExtensionHeader::HopByHop],
            DropReason::Fragment => {
                b.extension_headers = vec![ExtensionHeader::Fragment {
                    offset: 0,
                    more: true,
                    identification: 7,
                }]
            }
            // "No next header" (59).
            DropReason::NotUdp => b.next_header = 59,
            DropReason::BadUdpLength => {
                b.udp_length = Some(((8 + payload.len()) as u16).wrapping_add(1));
            }
            DropReason::NotMulticast => {
                b.destination = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99)
            }
            DropReason::BadHeaderLength
            | DropReason::BadChecksum
            | DropReason::IpOptions
            | DropReason::NoRoute => return None,
        }
        Some(b.frame(payload))
    }

    /// One frame per drop reason the family can show, each from a fixed valid template
    /// (192.0.2.1 → 239.1.2.3, 2001:db8::1 → ff0e::1:3, ports 4000 → 5000).
    pub fn malformed_set(family: Family, payload: &[u8]) -> Vec<(DropReason, Vec<u8>)> {
        DropReason::ALL
            .iter()
            .filter_map(|&r| {
                let f = match family {
                    Family::V4 => malformed_v4(&example_v4(), payload, r),
                    Family::V6 => malformed_v6(&example_v6(), payload, r),
                }?;
                Some((r, f))
            })
            .collect()
    }

    /// The IPv4 template of [`malformed_set`]: 192.0.2.1:4000 → 239.1.2.3:5000.
    pub fn example_v4() -> Ipv4Udp {
        Ipv4Udp::new(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(239, 1, 2, 3),
            4000,
            5000,
        )
    }

    /// The IPv6 template of [`malformed_set`]: [2001:db8::1]:4000 → [ff0e::1:3]:5000.
    pub fn example_v6() -> Ipv6Udp {
        Ipv6Udp::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 1, 3),
            4000,
            5000,
        )
    }

    fn sum_words(bytes: &[u8], mut sum: u32) -> u32 {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Fold early so that long payloads cannot overflow.
        u32::from(fold(sum))
    }

    fn push_udp(f: &mut Vec<u8>, pseudo: &[u8], sport: u16, dport: u16, len: u16, payload: &[u8]) {
        let start = f.len();
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        let sum = sum_words(&f[start..], sum_words(pseudo, 0));
        let mut c = !fold(sum);
        if c == 0 {
            c = 0xffff;
        }
        f[start + 6..start + 8].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
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
