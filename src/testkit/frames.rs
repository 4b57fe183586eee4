//! Builders of IPv4/IPv6 UDP frames as AF_PACKET `SOCK_DGRAM` delivers them (starting at the IP
//! header), valid by default and malformed on request, for tests, benchmarks, the fuzz corpus
//! and end-to-end tests.
//!
//! Injecting them: send with an AF_PACKET `SOCK_DGRAM` socket (`sendto` with a `sockaddr_ll`
//! naming the ethertype, the ifindex and the multicast MAC address), which transmits the bytes
//! as they are. An `IPPROTO_RAW` / `IP_HDRINCL` socket does not do: the kernel rewrites the IPv4
//! total length and header checksum, and refuses some malformed headers.
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::DropReason;
use crate::packet::{Family, PROTO_UDP, add_words, fold};

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
        let mut sum = !fold(add_words(&f));
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
                f.extend_from_slice(&(((offset & 0x1fff) << 3) | u16::from(more)).to_be_bytes());
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

fn push_udp(f: &mut Vec<u8>, pseudo: &[u8], sport: u16, dport: u16, len: u16, payload: &[u8]) {
    let start = f.len();
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let sum = add_words(&f[start..]) + add_words(pseudo);
    let mut c = !fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    f[start + 6..start + 8].copy_from_slice(&c.to_be_bytes());
}
