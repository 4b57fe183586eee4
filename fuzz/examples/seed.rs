//! Writes the seed corpora from `mcrelay::testkit::frames`: for the `packet` target, valid IPv4
//! and IPv6 frames and one malformed frame per drop reason, each prefixed with its selector
//! byte; for the `filter` target, the same frames behind a small table that routes them; for
//! the `tunnel` target, tunnel datagrams (keyed and keyless, IPv4 and IPv6 inside, a keepalive)
//! from the peer, and a few broken ones.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed -- fuzz/corpus`

use mcrelay::packet::Family;
use mcrelay::testkit::frames as build;
use mcrelay::tunnel::{Inner, Sender, TunnelKey};

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = format!("{root}/packet");
    let filter_dir = format!("{root}/filter");
    for d in [&dir, &filter_dir] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {d}: {e}"));
    }
    let payload = b"seed payload";
    let mut frames: Vec<(String, u8, Vec<u8>)> = vec![
        ("valid-v4".into(), 0, build::example_v4().frame(payload)),
        ("valid-v6".into(), 1, build::example_v6().frame(payload)),
        ("empty-v4".into(), 0, build::example_v4().frame(b"")),
        ("empty-v6".into(), 1, build::example_v6().frame(b"")),
    ];
    let mut padded = build::example_v4();
    padded.padding = 20;
    frames.push(("padded-v4".into(), 0, padded.frame(b"x")));
    let mut ssm = build::example_v4();
    ssm.destination = "239.1.2.4".parse().unwrap();
    frames.push(("ssm-v4".into(), 0, ssm.frame(payload)));
    for (family, selector) in [(Family::V4, 0u8), (Family::V6, 1)] {
        for (reason, frame) in build::malformed_set(family, payload) {
            let name = format!("{}-{family:?}", reason.as_str()).to_lowercase();
            frames.push((name, selector, frame));
        }
    }
    for (name, selector, frame) in frames {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(&frame);
        let path = format!("{dir}/{name}");
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        // filter: flags (family), 3 routes of the fuzz target's pools, then the frame. The
        // templates' groups end in .3 / ::3, their port is 5000 (choice 0).
        let mut f = vec![selector, 3, 3, 0, 3, 3, 3, 3, 3, 1, 0];
        f.extend_from_slice(&frame);
        let path = format!("{filter_dir}/{name}");
        std::fs::write(&path, f).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
    tunnel(&format!("{root}/tunnel"), payload);
}

/// Seeds of the `tunnel` target: selector (bit 0 keyed, bit 1 from the peer), then a datagram
/// made with the target's key.
fn tunnel(dir: &str, payload: &[u8]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir}: {e}"));
    let key = TunnelKey::from_bytes(&[0x5e; 32]).unwrap();
    let v4 = Inner {
        source: "10.1.1.100".parse().unwrap(),
        destination: "239.1.1.1:5000".parse().unwrap(),
        source_port: 4000,
        ttl: 8,
        tos: 0,
        payload,
    };
    let v6 = Inner {
        source: "2001:db8::100".parse().unwrap(),
        destination: "[ff3e::1:5]:5000".parse().unwrap(),
        ..v4
    };
    let mut buf = vec![0u8; 2048];
    let mut seeds: Vec<(&str, u8, Vec<u8>)> = Vec::new();
    for (name, keyed) in [("keyed", true), ("keyless", false)] {
        let mut s = Sender::new(0, 1, keyed.then_some(&key));
        let selector = 2 | u8::from(keyed);
        for (family, inner) in [("v4", &v4), ("v6", &v6)] {
            let n = s.encode(&mut buf, inner).unwrap();
            seeds.push((family, selector, buf[..n].to_vec()));
        }
        let n = s.keepalive(&mut buf).unwrap();
        seeds.push(("keepalive", selector, buf[..n].to_vec()));
        for (family, selector, bytes) in seeds.drain(..) {
            let path = format!("{dir}/{name}-{family}");
            let mut f = vec![selector];
            f.extend_from_slice(&bytes);
            std::fs::write(&path, f).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        }
    }
    let mut s = Sender::new(0, 1, Some(&key));
    let n = s.encode(&mut buf, &v4).unwrap();
    let mut bad_mac = buf[..n].to_vec();
    bad_mac[n - 1] ^= 1;
    let mut version_2 = buf[..n].to_vec();
    version_2[0] = 2;
    for (name, selector, bytes) in [
        ("bad-mac", 3, bad_mac),
        ("version-2", 3, version_2),
        ("stranger", 1, buf[..n].to_vec()),
    ] {
        let path = format!("{dir}/{name}");
        let mut f = vec![selector];
        f.extend_from_slice(&bytes);
        std::fs::write(&path, f).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}
