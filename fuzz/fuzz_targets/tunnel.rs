//! `tunnel::wire::decode` and `tunnel::Receiver::receive` on arbitrary bytes.
//!
//! Input: one selector byte (bit 0: the receiving tunnel has the key; bit 1: the datagram comes
//! from the peer, else from a stranger), then the datagram. Besides "never panics", checks that
//! what decodes is consistent with the bytes, that only a peer's datagrams are accepted, and
//! that a datagram accepted once is refused the second time (the replay window).
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use mcrelay::tunnel::replay::ReplayError;
use mcrelay::tunnel::wire::{self, HEADER_LEN};
use mcrelay::tunnel::{MacKey, Receiver, Refusal, TunnelKey};

/// The key of the seed corpus (`examples/seed.rs`).
const KEY: [u8; 32] = [0x5e; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, datagram)) = data.split_first() else {
        return;
    };
    let key = TunnelKey::from_bytes(&KEY).unwrap();
    let keyed = selector & 1 != 0;
    let mac = keyed.then(|| MacKey::new(&key));
    if let Ok(d) = wire::decode(datagram, mac.as_ref()) {
        assert_eq!(d.authenticated, keyed);
        let tag = if keyed { 16 } else { 0 };
        assert_eq!(HEADER_LEN + d.inner_packet.len() + tag, datagram.len());
        assert_eq!(d.inner.is_none(), d.inner_packet.is_empty());
        if let Some(i) = d.inner {
            let start = i.payload.as_ptr() as usize - datagram.as_ptr() as usize;
            assert_eq!(start + i.payload.len() + tag, datagram.len());
        }
    }
    let peer: SocketAddr = "192.0.2.1:9510".parse().unwrap();
    let from: SocketAddr = if selector & 2 != 0 {
        peer
    } else {
        "192.0.2.2:9510".parse().unwrap()
    };
    let mut rx = Receiver::new(&[peer], keyed.then_some(&key));
    let now = Instant::now();
    match rx.receive(from, datagram, now) {
        Ok(a) => {
            assert_eq!(from, peer);
            assert_eq!(a.peer, 0);
            let again = rx.receive(from, datagram, now).unwrap_err();
            assert_eq!(again.reason, Refusal::Replay(ReplayError::Replayed));
        }
        Err(r) if from != peer => assert_eq!(r.reason, Refusal::NotAPeer),
        Err(r) => assert!(matches!(r.reason, Refusal::Decode(_))),
    }
});
