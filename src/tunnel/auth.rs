//! The tunnel's message authentication code: HMAC-SHA256 (RFC 2104, FIPS 180-4) over the
//! tunnel header and the inner packet, truncated to its first [`TAG_LEN`] bytes (RFC 2104
//! section 5 allows truncation to no less than half the output; 128 bits leave a forger a
//! 2^-128 chance per try).
//!
//! Why HMAC-SHA256 and not an AEAD: the inner packet is not secret (it was multicast on a LAN a
//! hop ago) and must stay readable by tcpdump, so only integrity and origin are needed; SHA-256
//! was already a dependency of mcrelay. The key's inner and outer pads are hashed once, in
//! [`MacKey::new`], and each datagram clones that state (a copy of a few hundred bytes, no
//! allocation).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::key::TunnelKey;

/// Bytes of MAC at the end of an authenticated datagram.
pub const TAG_LEN: usize = 16;

/// A tunnel key ready to authenticate datagrams.
#[derive(Clone)]
pub struct MacKey {
    keyed: Hmac<Sha256>,
}

impl MacKey {
    pub fn new(key: &TunnelKey) -> MacKey {
        MacKey {
            // HMAC accepts a key of any length, so this cannot fail.
            keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
                .expect("HMAC takes keys of any length"),
        }
    }

    /// The truncated MAC of `parts` concatenated.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.keyed.clone();
        for p in parts {
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the MAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() == TAG_LEN && bool::from(self.tag(parts).ct_eq(tag))
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 ("Jefe"), whose key is shorter than ours: checked through the
    /// same HMAC state MacKey uses, so the construction (not only the crate) is the standard one.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        let k = MacKey { keyed };
        let tag = k.tag(&[b"what do ya want ", b"for nothing?"]);
        let expected = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7,
        ];
        assert_eq!(tag, expected);
        assert!(k.verify(&[b"what do ya want for nothing?"], &expected));
    }

    #[test]
    fn a_wrong_tag_key_or_message_fails() {
        let a = MacKey::new(&TunnelKey::from_bytes(&[7; 32]).unwrap());
        let b = MacKey::new(&TunnelKey::from_bytes(&[8; 32]).unwrap());
        let tag = a.tag(&[b"hello"]);
        assert!(a.verify(&[b"hello"], &tag));
        assert!(!b.verify(&[b"hello"], &tag));
        assert!(!a.verify(&[b"hellO"], &tag));
        assert!(!a.verify(&[b"hello"], &tag[..15]));
        let mut flipped = tag;
        flipped[15] ^= 1;
        assert!(!a.verify(&[b"hello"], &flipped));
        assert_eq!(format!("{a:?}"), "MacKey(redacted)");
    }
}
