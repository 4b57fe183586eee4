//! Writes the seed corpora from `mcrelay::testkit::frames`: for the `packet` target, valid IPv4
//! and IPv6 frames and one malformed frame per drop reason, each prefixed with its selector
//! byte; for the `filter` target, the same frames behind a small table that routes them.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed -- fuzz/corpus`

use mcrelay::packet::Family;
use mcrelay::testkit::frames as build;

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
}
