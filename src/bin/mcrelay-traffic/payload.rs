//! The test payload: a fixed 24-byte header followed by filler bytes that are a deterministic
//! function of (stream, sequence, offset), so a receiver can check every byte it gets.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "MCRT"
//!      4     2  stream id (big endian)
//!      6     2  payload length as sent (big endian)
//!      8     8  sequence number, from 0 per stream (big endian)
//!     16     8  send time, CLOCK_MONOTONIC nanoseconds (big endian; namespaces share the clock)
//!     24     …  filler: byte i = filler_word(stream, seq, i / 8).to_le_bytes()[i % 8]
//! ```

/// First four bytes of every payload we send.
pub const MAGIC: [u8; 4] = *b"MCRT";
/// Bytes before the filler; also the smallest payload.
pub const HEADER_LEN: usize = 24;
/// Largest UDP payload over IPv4.
pub const MAX_LEN: usize = 65507;

/// The parsed header of one of our payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub stream: u16,
    /// Payload length the sender wrote; compare with what arrived.
    pub len: u16,
    pub seq: u64,
    pub sent_ns: u64,
}

/// What a received datagram turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not one of ours (too short or wrong magic).
    Foreign,
    /// Ours. `length_ok` says whether it arrived with the length it was sent with; `corrupt`
    /// whether any filler byte (up to the shorter of both lengths) differs.
    Ours {
        header: Header,
        length_ok: bool,
        corrupt: bool,
    },
}

/// Writes a complete payload (header and filler) into `buf`; its length is the payload size.
pub fn encode(buf: &mut [u8], stream: u16, seq: u64, sent_ns: u64) {
    assert!(
        (HEADER_LEN..=MAX_LEN).contains(&buf.len()),
        "payload length {} outside {HEADER_LEN}..={MAX_LEN}",
        buf.len()
    );
    buf[0..4].copy_from_slice(&MAGIC);
    buf[4..6].copy_from_slice(&stream.to_be_bytes());
    let len = buf.len() as u16;
    buf[6..8].copy_from_slice(&len.to_be_bytes());
    buf[8..16].copy_from_slice(&seq.to_be_bytes());
    stamp(buf, sent_ns);
    let seed = seed(stream, seq);
    for (k, chunk) in buf[HEADER_LEN..].chunks_mut(8).enumerate() {
        let w = filler_word(seed, (HEADER_LEN / 8 + k) as u64).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// Overwrites the send time of an encoded payload (just before it goes out).
pub fn stamp(buf: &mut [u8], sent_ns: u64) {
    buf[16..24].copy_from_slice(&sent_ns.to_be_bytes());
}

/// Reads the header, if `buf` is one of ours.
pub fn header(buf: &[u8]) -> Option<Header> {
    if buf.len() < HEADER_LEN || buf[0..4] != MAGIC {
        return None;
    }
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let be64 = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
    Some(Header {
        stream: be16(4),
        len: be16(6),
        seq: be64(8),
        sent_ns: be64(16),
    })
}

/// Classifies a received datagram and checks every filler byte.
pub fn check(buf: &[u8]) -> Verdict {
    let Some(header) = header(buf) else {
        return Verdict::Foreign;
    };
    let length_ok = buf.len() == header.len as usize;
    let upto = buf.len().min(header.len as usize).max(HEADER_LEN);
    let seed = seed(header.stream, header.seq);
    let corrupt = buf[HEADER_LEN..upto]
        .chunks(8)
        .enumerate()
        .any(|(k, chunk)| {
            let w = filler_word(seed, (HEADER_LEN / 8 + k) as u64).to_le_bytes();
            chunk != &w[..chunk.len()]
        });
    Verdict::Ours {
        header,
        length_ok,
        corrupt,
    }
}

fn seed(stream: u16, seq: u64) -> u64 {
    ((stream as u64) << 48) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// splitmix64 of (seed, word index): cheap, and every byte depends on stream, seq and offset.
fn filler_word(seed: u64, word: u64) -> u64 {
    let mut z = seed.wrapping_add(word.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(len: usize, stream: u16, seq: u64) -> Vec<u8> {
        let mut b = vec![0; len];
        encode(&mut b, stream, seq, 123_456_789);
        b
    }

    #[test]
    fn round_trip_every_length() {
        for len in [24, 25, 31, 32, 33, 64, 1316, 1472, 9000] {
            let b = encoded(len, 7, 42);
            assert_eq!(
                check(&b),
                Verdict::Ours {
                    header: Header {
                        stream: 7,
                        len: len as u16,
                        seq: 42,
                        sent_ns: 123_456_789
                    },
                    length_ok: true,
                    corrupt: false
                },
                "len {len}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_in_the_filler_is_caught() {
        let b = encoded(100, 1, 9);
        for i in HEADER_LEN..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x01;
            assert!(
                matches!(check(&c), Verdict::Ours { corrupt: true, .. }),
                "flip at {i} not seen"
            );
        }
    }

    #[test]
    fn filler_depends_on_stream_and_seq() {
        let a = encoded(64, 1, 1);
        let b = encoded(64, 2, 1);
        let c = encoded(64, 1, 2);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_ne!(a[HEADER_LEN..], c[HEADER_LEN..]);
        // a payload relabelled with another sequence number fails the check
        let mut d = a.clone();
        d[8..16].copy_from_slice(&2u64.to_be_bytes());
        assert!(matches!(check(&d), Verdict::Ours { corrupt: true, .. }));
    }

    #[test]
    fn truncated_and_padded_payloads_are_length_mismatches() {
        let b = encoded(200, 3, 5);
        assert!(matches!(
            check(&b[..150]),
            Verdict::Ours {
                length_ok: false,
                corrupt: false,
                ..
            }
        ));
        let mut p = b.clone();
        p.extend_from_slice(&[0; 10]);
        assert!(matches!(
            check(&p),
            Verdict::Ours {
                length_ok: false,
                corrupt: false,
                ..
            }
        ));
    }

    #[test]
    fn foreign_datagrams() {
        assert_eq!(check(b""), Verdict::Foreign);
        assert_eq!(check(&[0u8; 100]), Verdict::Foreign);
        let b = encoded(64, 0, 0);
        assert_eq!(check(&b[..23]), Verdict::Foreign);
    }

    #[test]
    fn stamp_changes_only_the_time() {
        let mut b = encoded(64, 4, 4);
        stamp(&mut b, 99);
        assert_eq!(header(&b).unwrap().sent_ns, 99);
        assert!(matches!(check(&b), Verdict::Ours { corrupt: false, .. }));
    }
}
