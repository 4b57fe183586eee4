//! Whole Ethernet + IPv4 + UDP frames for `send --via packet`.
//!
//! Put on the link through an AF_PACKET socket, a pre-built frame skips the kernel's UDP/IP output
//! path (route lookup, IP header, neighbour output), which is most of what a datagram costs the
//! sender. That matters where the sender, not the relay, is what a benchmark measures. IPv4
//! multicast only: the destination MAC follows from the group (RFC 1112 section 6.4: 01:00:5e and
//! the group's low 23 bits), so no neighbour resolution is needed.
//!
//! The bytes are what the kernel would send for the same datagram, except for the IP
//! identification (a counter of ours) and the UDP source port (fixed per run).

use std::net::{Ipv4Addr, SocketAddrV4};

/// Ethernet, IPv4 (no options) and UDP headers.
pub const HEADERS: usize = ETH + IP + UDP;
const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;

/// The headers of one stream's frames, with the fields that change per frame left to
/// [`Template::finish`].
#[derive(Debug, Clone)]
pub struct Template {
    head: [u8; HEADERS],
    /// One's-complement sum of the UDP pseudo header, port and length fields (they never change).
    udp_fixed: u32,
}

impl Template {
    /// Headers from `src` (MAC and address, port) to the multicast group `to`.
    pub fn new(
        src_mac: [u8; 6],
        src: Ipv4Addr,
        src_port: u16,
        to: SocketAddrV4,
        payload_len: usize,
        ttl: u8,
        tos: u8,
    ) -> Result<Template, String> {
        if !to.ip().is_multicast() {
            return Err(format!(
                "--via packet sends IPv4 multicast only; {to} is not a multicast group"
            ));
        }
        let ip_len = IP + UDP + payload_len;
        let ip_len = u16::try_from(ip_len)
            .map_err(|_| format!("payload of {payload_len} bytes does not fit an IPv4 packet"))?;
        let udp_len = ip_len - IP as u16;
        let mut h = [0u8; HEADERS];
        h[0..6].copy_from_slice(&multicast_mac(*to.ip()));
        h[6..12].copy_from_slice(&src_mac);
        h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut h[ETH..ETH + IP];
        ip[0] = 0x45;
        ip[1] = tos;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        // identification (4..6) per frame; flags and fragment offset 0, as the kernel sends
        // multicast UDP (no DF)
        ip[8] = ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&to.ip().octets());
        let udp = &mut h[ETH + IP..];
        udp[0..2].copy_from_slice(&src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&to.port().to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let mut fixed = sum(&src.octets()) + sum(&to.ip().octets()) + 17 + udp_len as u32;
        fixed += sum(&h[ETH + IP..ETH + IP + 6]);
        Ok(Template {
            head: h,
            udp_fixed: fixed,
        })
    }

    /// Completes `frame`, whose payload is already in `frame[HEADERS..]`: writes the headers with
    /// the IP identification `ip_id` and both checksums.
    pub fn finish(&self, frame: &mut [u8], ip_id: u16) {
        frame[..HEADERS].copy_from_slice(&self.head);
        let ip = ETH;
        frame[ip + 4..ip + 6].copy_from_slice(&ip_id.to_be_bytes());
        let c = fold(sum(&frame[ip..ip + IP]));
        frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        let mut u = fold(self.udp_fixed + sum(&frame[HEADERS..]));
        if u == 0 {
            u = 0xffff; // 0 would mean "no checksum" (RFC 768)
        }
        frame[ETH + IP + 6..ETH + IP + 8].copy_from_slice(&u.to_be_bytes());
    }
}

/// The Ethernet address an IPv4 multicast group is sent to (RFC 1112 section 6.4).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// Parses `aa:bb:cc:dd:ee:ff` (sysfs `address`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// Sum of big-endian 16-bit words (an odd last byte padded with zero), not yet folded. Large
/// enough for any IPv4 packet without overflow (65535 bytes of 0xff sum to under 2^32).
fn sum(b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    let mut s: u32 = chunks
        .by_ref()
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    if let [last] = chunks.remainder() {
        s += (*last as u32) << 8;
    }
    s
}

/// One's-complement of the folded sum: the Internet checksum (RFC 1071).
fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let t = Template::new(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 1, 0, 2),
            40000,
            "239.1.0.1:5000".parse().unwrap(),
            payload.len(),
            16,
            0xb8,
        )
        .unwrap();
        let mut f = vec![0u8; HEADERS + payload.len()];
        f[HEADERS..].copy_from_slice(payload);
        t.finish(&mut f, 0x1234);
        f
    }

    #[test]
    fn headers_are_those_of_the_datagram() {
        let f = frame(b"hello");
        assert_eq!(&f[0..6], &[0x01, 0x00, 0x5e, 0x01, 0x00, 0x01]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[1], 0xb8);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 5);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0x1234);
        assert_eq!((ip[8], ip[9]), (16, 17));
        assert_eq!(&ip[12..16], &[10, 1, 0, 2]);
        assert_eq!(&ip[16..20], &[239, 1, 0, 1]);
        let udp = &f[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 40000);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 5000);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 8 + 5);
        assert_eq!(&f[42..], b"hello");
    }

    /// A receiver's check: the sum over the header including its checksum folds to 0xffff, and
    /// so does the sum over pseudo header, UDP header and payload.
    #[test]
    fn checksums_verify_as_a_receiver_checks_them() {
        for len in [0, 1, 5, 24, 64, 1316, 1473] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let f = frame(&payload);
            assert_eq!(fold(sum(&f[14..34])), 0, "IP header, {len} bytes");
            let udp_len = (8 + len) as u32;
            let pseudo = sum(&f[26..34]) + 17 + udp_len;
            assert_eq!(fold(pseudo + sum(&f[34..])), 0, "UDP, {len} bytes");
        }
    }

    /// Known answer: the IPv4 header example of RFC 1071's usual worked case
    /// (4500 0073 0000 4000 4011 ---- c0a8 0001 c0a8 00c7 → checksum b861).
    #[test]
    fn ip_checksum_known_answer() {
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum(&h)), 0xb861);
    }

    #[test]
    fn refuses_unicast_and_oversize() {
        let mk = |to: &str, len| {
            Template::new(
                [0; 6],
                Ipv4Addr::new(10, 0, 0, 1),
                1,
                to.parse().unwrap(),
                len,
                1,
                0,
            )
        };
        assert!(mk("10.0.0.2:5000", 64).is_err());
        assert!(mk("239.1.0.1:5000", 65508).is_err());
        assert!(mk("239.1.0.1:5000", 65507).is_ok());
    }

    #[test]
    fn macs() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
        assert_eq!(
            parse_mac("02:ab:00:10:ff:7e\n"),
            Some([2, 0xab, 0, 0x10, 0xff, 0x7e])
        );
        assert_eq!(parse_mac("02:ab:00:10:ff"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:7e:01"), None);
    }
}
