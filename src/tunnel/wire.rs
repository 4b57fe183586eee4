//! The tunnel datagram: a 20-byte header, the inner IP packet, and a 16-byte MAC when the
//! tunnel has a key. docs/TUNNEL.md specifies it field by field; this module is the only code
//! that reads or writes it.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+---------------+
//! |  version = 1  |  flags (A=1)  |  key id = 0   |     lane      |  0
//! +---------------+---------------+---------------+---------------+
//! |                      session (64 bits)                        |  4
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                      counter (64 bits)                        |  12
//! |                                                               |
//! +---------------------------------------------------------------+
//! |      inner packet: IPv4 or IPv6 header, UDP header, payload   |  20
//! |      (absent in a keepalive)                                  |
//! +---------------------------------------------------------------+
//! |      MAC: HMAC-SHA256 of every byte above, first 16 bytes     |  (when A is set)
//! +---------------------------------------------------------------+
//! ```
//!
//! Multi-byte fields are big-endian. [`encode`] writes into a buffer the caller owns and
//! [`decode`] returns views into the received bytes: neither allocates.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::auth::{MacKey, TAG_LEN};
use crate::packet::DropReason;
use crate::packet::{
    self, Datagram, Family, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN, add_words, fold,
};

/// The only version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of the tunnel header.
pub const HEADER_LEN: usize = 20;
/// Flag bit: the datagram ends with a [`TAG_LEN`]-byte MAC.
pub const FLAG_AUTHENTICATED: u8 = 0x01;
/// Flag bits this version defines; a datagram with any other bit set is refused.
pub const KNOWN_FLAGS: u8 = FLAG_AUTHENTICATED;
/// Bytes a keyed tunnel adds to an inner packet (header and MAC), before the outer IP and UDP
/// headers.
pub const OVERHEAD_KEYED: usize = HEADER_LEN + TAG_LEN;
/// Bytes a keyless tunnel adds.
pub const OVERHEAD_KEYLESS: usize = HEADER_LEN;
/// The largest tunnel datagram: the largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_DATAGRAM: usize = 65507;

/// The tunnel header's fields that vary (version, flags and key id are implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Which of the sender's sending contexts (workers) wrote the datagram: each numbers its
    /// datagrams on its own, so the receiver keeps a replay window per lane.
    pub lane: u8,
    /// The sender's session: its start time in microseconds since the Unix epoch; larger is
    /// newer. A new session tells the receiver that the peer restarted.
    pub session: u64,
    /// Position of this datagram in the lane's session, from 0 up.
    pub counter: u64,
}

/// The inner packet to build: the original datagram's addresses and ports (after any rewrite
/// the destination makes), and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner<'a> {
    pub source: IpAddr,
    /// The group (or unicast address) and port the far side's routes match on.
    pub destination: SocketAddr,
    pub source_port: u16,
    /// TTL / hop limit written into the inner header (the far side sends with its own).
    pub ttl: u8,
    /// The TOS / traffic class byte (DSCP << 2).
    pub tos: u8,
    pub payload: &'a [u8],
}

impl Inner<'_> {
    /// Length of the inner IP packet.
    pub fn len(&self) -> usize {
        let ip = match self.source {
            IpAddr::V4(_) => IPV4_HEADER_LEN,
            IpAddr::V6(_) => IPV6_HEADER_LEN,
        };
        ip + UDP_HEADER_LEN + self.payload.len()
    }

    /// Never true: an inner packet has at least its headers.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a datagram could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// Source and destination are of different address families.
    FamilyMismatch,
    /// The tunnel datagram would exceed [`MAX_DATAGRAM`] (or the inner packet its IP length
    /// field): such a datagram cannot be sent in one UDP datagram at all.
    TooLarge { len: usize },
    /// The caller's buffer is shorter than the datagram.
    BufferTooSmall { needed: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FamilyMismatch => {
                f.write_str("inner source and destination are of different address families")
            }
            EncodeError::TooLarge { len } => write!(
                f,
                "a tunnel datagram of {len} bytes exceeds the UDP maximum of {MAX_DATAGRAM}"
            ),
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "encoding needs a buffer of {needed} bytes")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Bytes [`encode`] writes for this inner packet (`None`: a keepalive).
pub fn encoded_len(inner: Option<&Inner>, keyed: bool) -> usize {
    let overhead = if keyed {
        OVERHEAD_KEYED
    } else {
        OVERHEAD_KEYLESS
    };
    overhead + inner.map_or(0, Inner::len)
}

/// Writes a tunnel datagram into `out` and returns its length. `inner` `None` writes a
/// keepalive (a header and MAC only). With `mac`, the datagram is authenticated.
pub fn encode(
    out: &mut [u8],
    header: &Header,
    inner: Option<&Inner>,
    mac: Option<&MacKey>,
) -> Result<usize, EncodeError> {
    if let Some(i) = inner
        && i.source.is_ipv4() != i.destination.is_ipv4()
    {
        return Err(EncodeError::FamilyMismatch);
    }
    let len = encoded_len(inner, mac.is_some());
    if len > MAX_DATAGRAM {
        return Err(EncodeError::TooLarge { len });
    }
    let Some(out) = out.get_mut(..len) else {
        return Err(EncodeError::BufferTooSmall { needed: len });
    };
    out[0] = VERSION;
    out[1] = if mac.is_some() { FLAG_AUTHENTICATED } else { 0 };
    out[2] = 0;
    out[3] = header.lane;
    out[4..12].copy_from_slice(&header.session.to_be_bytes());
    out[12..20].copy_from_slice(&header.counter.to_be_bytes());
    let body_end = len - if mac.is_some() { TAG_LEN } else { 0 };
    if let Some(i) = inner {
        write_inner(&mut out[HEADER_LEN..body_end], i);
    }
    if let Some(mac) = mac {
        let (body, tag) = out.split_at_mut(body_end);
        tag.copy_from_slice(&mac.tag(&[body]));
    }
    Ok(len)
}

/// A tunnel datagram, checked and authenticated (when the tunnel has a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub header: Header,
    /// Whether the datagram carried a MAC (and it was right).
    pub authenticated: bool,
    /// The inner datagram; `None` for a keepalive.
    pub inner: Option<Datagram<'a>>,
    /// The inner IP packet's bytes (empty for a keepalive).
    pub inner_packet: &'a [u8],
}

/// Why a received tunnel datagram is refused. Each is counted under its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than the header (or than header and MAC when the A flag is set).
    TooShort,
    /// The first byte is not a version this code knows; nothing after it is read.
    UnknownVersion(u8),
    /// A flag bit this version does not define is set.
    UnknownFlags(u8),
    /// A key id other than 0 (key ids are reserved for key rotation).
    UnknownKeyId(u8),
    /// The tunnel has a key and the datagram carries no MAC.
    Unauthenticated,
    /// The datagram carries a MAC but this end of the tunnel has no key (configure the same
    /// `key_file` on both ends).
    NoKey,
    /// The MAC is wrong: forged, corrupted, or made with another key.
    BadMac,
    /// The inner packet is not a valid IPv4/IPv6 UDP packet.
    Inner(DropReason),
    /// The inner IP packet's length field disagrees with the bytes carried.
    InnerLength,
}

impl DecodeError {
    /// A short stable name, for counters and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooShort => "too_short",
            DecodeError::UnknownVersion(_) => "unknown_version",
            DecodeError::UnknownFlags(_) => "unknown_flags",
            DecodeError::UnknownKeyId(_) => "unknown_key_id",
            DecodeError::Unauthenticated => "unauthenticated",
            DecodeError::NoKey => "no_key",
            DecodeError::BadMac => "bad_mac",
            DecodeError::Inner(_) | DecodeError::InnerLength => "inner_malformed",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("shorter than a tunnel header"),
            DecodeError::UnknownVersion(v) => write!(
                f,
                "tunnel format version {v} is not known (this relay speaks version {VERSION})"
            ),
            DecodeError::UnknownFlags(b) => write!(f, "unknown flag bits {b:#04x}"),
            DecodeError::UnknownKeyId(k) => write!(f, "key id {k} is not known"),
            DecodeError::Unauthenticated => f.write_str("no MAC, but this tunnel has a key"),
            DecodeError::NoKey => f.write_str("a MAC, but this end of the tunnel has no key_file"),
            DecodeError::BadMac => f.write_str("wrong MAC"),
            DecodeError::Inner(r) => write!(f, "inner packet malformed ({})", r.as_str()),
            DecodeError::InnerLength => {
                f.write_str("inner packet length disagrees with the datagram")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Checks a received tunnel datagram in the order of the format (version first, the MAC before
/// anything after the header is trusted) and returns views of it.
pub fn decode<'a>(datagram: &'a [u8], mac: Option<&MacKey>) -> Result<Decoded<'a>, DecodeError> {
    let Some(&version) = datagram.first() else {
        return Err(DecodeError::TooShort);
    };
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let Some(h) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::TooShort);
    };
    let flags = h[1];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnknownFlags(flags & !KNOWN_FLAGS));
    }
    if h[2] != 0 {
        return Err(DecodeError::UnknownKeyId(h[2]));
    }
    let authenticated = flags & FLAG_AUTHENTICATED != 0;
    let body_end = if authenticated {
        let Some(end) = datagram
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&e| e >= HEADER_LEN)
        else {
            return Err(DecodeError::TooShort);
        };
        let Some(mac) = mac else {
            return Err(DecodeError::NoKey);
        };
        let (body, tag) = datagram.split_at(end);
        if !mac.verify(&[body], tag) {
            return Err(DecodeError::BadMac);
        }
        end
    } else {
        if mac.is_some() {
            return Err(DecodeError::Unauthenticated);
        }
        datagram.len()
    };
    let header = Header {
        lane: h[3],
        session: u64::from_be_bytes(h[4..12].try_into().expect("8 bytes")),
        counter: u64::from_be_bytes(h[12..20].try_into().expect("8 bytes")),
    };
    let inner_packet = &datagram[HEADER_LEN..body_end];
    let inner = match inner_packet.first() {
        None => None,
        Some(b) => {
            let family = match b >> 4 {
                4 => Family::V4,
                6 => Family::V6,
                _ => return Err(DecodeError::Inner(DropReason::BadVersion)),
            };
            let d = packet::parse_any(inner_packet, family).map_err(DecodeError::Inner)?;
            let ip_header = match family {
                Family::V4 => IPV4_HEADER_LEN,
                Family::V6 => IPV6_HEADER_LEN,
            };
            if ip_header + UDP_HEADER_LEN + d.payload.len() != inner_packet.len() {
                return Err(DecodeError::InnerLength);
            }
            Some(d)
        }
    };
    Ok(Decoded {
        header,
        authenticated,
        inner,
        inner_packet,
    })
}

/// Writes the inner IP and UDP headers and the payload into `out` (exactly `inner.len()` bytes).
fn write_inner(out: &mut [u8], inner: &Inner) {
    let total = inner.len();
    let udp_len = UDP_HEADER_LEN + inner.payload.len();
    let ip_len = total - udp_len;
    let (ip, rest) = out.split_at_mut(ip_len);
    let (udp, payload) = rest.split_at_mut(UDP_HEADER_LEN);
    payload.copy_from_slice(inner.payload);
    let mut sum: u32 = 0;
    match (inner.source, inner.destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ip[0] = 0x45;
            ip[1] = inner.tos;
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            // Identification 0 and Don't Fragment: an atomic datagram (RFC 6864).
            ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
            ip[8] = inner.ttl;
            ip[9] = packet::PROTO_UDP;
            ip[10..12].fill(0);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let header: &[u8; IPV4_HEADER_LEN] = (&*ip).try_into().expect("20 bytes");
            let check = !packet::ipv4_header_sum(header);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            sum += add_words(&s.octets()) + add_words(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ip[0] = 0x60 | inner.tos >> 4;
            ip[1] = inner.tos << 4;
            ip[2..4].fill(0);
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = packet::PROTO_UDP;
            ip[7] = inner.ttl;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            sum += add_words(&s.octets()) + add_words(&d.octets());
        }
        _ => unreachable!("encode checked the families"),
    }
    udp[0..2].copy_from_slice(&inner.source_port.to_be_bytes());
    udp[2..4].copy_from_slice(&inner.destination.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].fill(0);
    // The pseudo-header's protocol and length (RFC 768; RFC 8200 section 8.1), then the UDP
    // header and payload.
    sum += u32::from(packet::PROTO_UDP) + udp_len as u32;
    sum += add_words(udp) + add_words(payload);
    let mut check = !fold(sum);
    if check == 0 {
        // 0 means "no checksum" in IPv4 and is forbidden in IPv6: send all ones instead.
        check = 0xffff;
    }
    udp[6..8].copy_from_slice(&check.to_be_bytes());
}
