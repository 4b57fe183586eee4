//! Reading a packet's sequence number ([`SequenceSpec`]) and extending it to 64 bits.
//!
//! A key is the stream it belongs to (the RTP SSRC; 0 for a payload field) and the number as the
//! packet carries it (16, 32 or 64 bits). The merge state extends it to a 64-bit counter by
//! choosing the value closest to the highest number seen so far ([`extend`]), so a 16-bit RTP
//! number wraps from 65535 to 0 without a jump (RFC 3550 A.1 does the same with a cycle count).

use crate::table::{ByteOrder, FieldSize, SequenceSpec};

/// Fixed RTP header length (RFC 3550 5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// A packet's sequence number as carried, with the stream it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqKey {
    /// The RTP SSRC; 0 for a payload field.
    pub stream: u32,
    /// The number, below `2^bits`.
    pub value: u64,
    /// 16, 32 or 64.
    pub bits: u8,
}

/// Why a packet has no sequence key. Such a packet is never forwarded by a merged route (it
/// cannot be told apart from a copy already sent) and is counted under its reason; a failover
/// route forwards it from the active leg (it only needs the key for its health counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoKey {
    /// The payload ends before the sequence field (or the 12-byte RTP header).
    TooShort,
    /// `sequence = "rtp"` and the payload is not RTP version 2.
    NotRtp,
}

impl NoKey {
    pub const ALL: [NoKey; 2] = [NoKey::TooShort, NoKey::NotRtp];

    /// Name in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoKey::TooShort => "too_short",
            NoKey::NotRtp => "not_rtp",
        }
    }
}

/// Reads the sequence key of one UDP payload.
#[inline]
pub fn key(spec: &SequenceSpec, payload: &[u8]) -> Result<SeqKey, NoKey> {
    match *spec {
        SequenceSpec::Rtp => {
            if payload.len() < RTP_HEADER_LEN {
                return Err(NoKey::TooShort);
            }
            if payload[0] >> 6 != 2 {
                return Err(NoKey::NotRtp);
            }
            Ok(SeqKey {
                stream: u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]),
                value: u64::from(u16::from_be_bytes([payload[2], payload[3]])),
                bits: 16,
            })
        }
        SequenceSpec::Field {
            offset,
            size,
            order,
        } => {
            let start = usize::from(offset);
            let n = size as usize;
            let Some(field) = payload.get(start..start + n) else {
                return Err(NoKey::TooShort);
            };
            let mut buf = [0u8; 8];
            let value = match order {
                ByteOrder::Big => {
                    buf[8 - n..].copy_from_slice(field);
                    u64::from_be_bytes(buf)
                }
                ByteOrder::Little => {
                    buf[..n].copy_from_slice(field);
                    u64::from_le_bytes(buf)
                }
            };
            let bits = match size {
                FieldSize::Two => 16,
                FieldSize::Four => 32,
                FieldSize::Eight => 64,
            };
            Ok(SeqKey {
                stream: 0,
                value,
                bits,
            })
        }
    }
}

/// The 64-bit value of a `bits`-wide number `value` closest to `reference` (modulo 2^64):
/// 65535 followed by 0 becomes 65535, 65536.
#[inline]
pub fn extend(value: u64, bits: u8, reference: u64) -> u64 {
    if bits >= 64 {
        return value;
    }
    let modulus = 1u64 << bits;
    let mask = modulus - 1;
    // Forward distance from the reference to the value, in [0, modulus).
    let ahead = value.wrapping_sub(reference) & mask;
    if ahead < modulus / 2 {
        reference.wrapping_add(ahead)
    } else {
        reference.wrapping_sub(modulus - ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(offset: u16, size: FieldSize, order: ByteOrder) -> SequenceSpec {
        SequenceSpec::Field {
            offset,
            size,
            order,
        }
    }

    fn rtp(seq: u16, ssrc: u32) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn rtp_key_is_sequence_and_ssrc() {
        let k = key(&SequenceSpec::Rtp, &rtp(65535, 0xdead_beef)).unwrap();
        assert_eq!(
            k,
            SeqKey {
                stream: 0xdead_beef,
                value: 65535,
                bits: 16
            }
        );
    }

    #[test]
    fn rtp_without_header_or_version_2_has_no_key() {
        assert_eq!(key(&SequenceSpec::Rtp, &[0x80; 11]), Err(NoKey::TooShort));
        let mut p = rtp(1, 1);
        p[0] = 0x40;
        assert_eq!(key(&SequenceSpec::Rtp, &p), Err(NoKey::NotRtp));
        assert_eq!(key(&SequenceSpec::Rtp, &[]), Err(NoKey::TooShort));
    }

    /// MoldUDP64: a 10-byte session, then the sequence number, 8 bytes big-endian.
    #[test]
    fn eight_byte_big_endian_at_offset_10() {
        let mut p = vec![b'S'; 10];
        p.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        p.extend_from_slice(&[0, 1]); // message count
        let k = key(&field(10, FieldSize::Eight, ByteOrder::Big), &p).unwrap();
        assert_eq!((k.value, k.bits, k.stream), (0x0102_0304_0506_0708, 64, 0));
        // One byte short of the field.
        assert_eq!(
            key(&field(10, FieldSize::Eight, ByteOrder::Big), &p[..17]),
            Err(NoKey::TooShort)
        );
    }

    /// CME MDP 3.0: the packet sequence number, 4 bytes little-endian at offset 0.
    #[test]
    fn four_byte_little_endian_at_0() {
        let mut p = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        p.extend_from_slice(&[9; 8]); // sending time
        let k = key(&field(0, FieldSize::Four, ByteOrder::Little), &p).unwrap();
        assert_eq!((k.value, k.bits), (0xa1b2_c3d4, 32));
        let k = key(&field(0, FieldSize::Two, ByteOrder::Big), &p).unwrap();
        assert_eq!((k.value, k.bits), (0xd4c3, 16));
    }

    #[test]
    fn garbage_payloads_never_panic() {
        let specs = [
            SequenceSpec::Rtp,
            field(0, FieldSize::Eight, ByteOrder::Little),
            field(65535, FieldSize::Eight, ByteOrder::Big),
        ];
        for len in 0..40 {
            let p: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for s in &specs {
                let _ = key(s, &p);
            }
        }
        assert_eq!(
            key(&specs[2], &[0u8; 100]),
            Err(NoKey::TooShort),
            "offset beyond the payload"
        );
    }

    #[test]
    fn extension_wraps_at_65535() {
        assert_eq!(extend(0, 16, 65535), 65536);
        assert_eq!(extend(65535, 16, 65536), 65535);
        assert_eq!(extend(5, 16, 65530), 65541);
        assert_eq!(extend(65530, 16, 65541), 65530);
        assert_eq!(extend(0, 32, u64::from(u32::MAX)), 1 << 32);
        assert_eq!(extend(7, 64, 123), 7);
        // Below zero of the extended space wraps modulo 2^64 (callers use wrapping deltas).
        assert_eq!(extend(65535, 16, 0), u64::MAX);
    }

    proptest! {
        /// Extending a number within half the modulus of the reference gives back the number.
        #[test]
        fn extension_recovers_nearby_numbers(reference in any::<u64>(), delta in -32767i64..32767) {
            let n = reference.wrapping_add(delta as u64);
            prop_assert_eq!(extend(n & 0xffff, 16, reference), n);
            prop_assert_eq!(extend(n & 0xffff_ffff, 32, reference), n);
        }

        /// Any payload of any spec: a key or a reason, never a panic; a key's value fits its bits.
        #[test]
        fn keys_fit_their_width(payload in proptest::collection::vec(any::<u8>(), 0..64),
                                offset in 0u16..70, size in 0usize..3, little in any::<bool>()) {
            let size = [FieldSize::Two, FieldSize::Four, FieldSize::Eight][size];
            let order = if little { ByteOrder::Little } else { ByteOrder::Big };
            for spec in [SequenceSpec::Rtp, field(offset, size, order)] {
                if let Ok(k) = key(&spec, &payload) {
                    prop_assert!(k.bits == 64 || k.value < 1u64 << k.bits);
                }
            }
        }
    }
}
