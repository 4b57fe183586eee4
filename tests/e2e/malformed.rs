//! Malformed frames, crafted with `mcrelay::testkit::frames` and put on the wire with a raw socket
//! (`mcrelay-traffic inject`), mixed into valid traffic for the same groups: every valid packet
//! is delivered, no bad one is relayed, and each is counted under its drop reason (read from
//! `mcrelay stats --json`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::netns::*;

/// Reasons `inject` sends per family (what `testkit::frames::malformed_*` can make) except
/// `not_multicast`, whose frames name no routed group and are filtered in the kernel by design
/// (see `src/filter.rs`); they are checked separately below.
const V4: &[&str] = &[
    "truncated",
    "bad_version",
    "bad_header_length",
    "bad_checksum",
    "ip_options",
    "fragment",
    "not_udp",
    "bad_udp_length",
];
const V6: &[&str] = &[
    "truncated",
    "bad_version",
    "extension_headers",
    "fragment",
    "not_udp",
    "bad_udp_length",
];
const ROUNDS: u64 = 40;

fn inject(t: &Topology, source: &str, to: &str, kinds: &[&str]) -> Proc {
    let kinds = kinds.join(",");
    t.sender.spawn(&[
        TRAFFIC,
        "inject",
        "--json",
        "-i",
        "eth0",
        "--source",
        source,
        "--to",
        to,
        "--kinds",
        &kinds,
        "--rounds",
        &ROUNDS.to_string(),
        "--rate",
        "400",
    ])
}

#[test]
fn malformed_frames_are_counted_by_reason_and_valid_traffic_is_untouched() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(
        FAST_STATS,
        Config::rx0()
            .route("239.1.2.3:5000")
            .route("[ff3e::1:3]:5000"),
    );
    let rx = t.receive(0, &["239.1.2.3:5000", "[ff3e::1:3]:5000"]);
    let valid = t.start_send(
        &["239.1.2.3:5000", "[ff3e::1:3]:5000"],
        &["--rate", "3000", "--duration", "3s", "--size", "200"],
    );
    let bad4 = inject(&t, "10.1.0.2", "239.1.2.3:5000", V4);
    let bad6 = inject(&t, "fd01::2", "[ff3e::1:3]:5000", V6);
    let stray4 = inject(&t, "10.1.0.2", "239.1.2.3:5000", &["not_multicast"]);
    let stray6 = inject(&t, "fd01::2", "[ff3e::1:3]:5000", &["not_multicast"]);
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    for p in [bad4, bad6, stray4, stray6] {
        let exit = p.wait(Duration::from_secs(30));
        assert_eq!(exit.code, Some(0), "inject failed: {}", exit.stderr);
        let v: serde_json::Value = serde_json::from_str(&exit.stdout).expect("inject report");
        for (k, n) in v["sent"].as_object().expect("sent map") {
            *injected.entry(k.clone()).or_default() += n.as_u64().expect("a count");
        }
    }
    let sent = valid.wait(Duration::from_secs(30));
    let r = rx.finish();

    // every valid datagram, and none of the bad ones (stream 9999)
    r.assert_complete("239.1.2.3:5000", 0, sent.stream(0));
    r.assert_complete("[ff3e::1:3]:5000", 1, sent.stream(1));
    assert!(
        r.get("239.1.2.3:5000", 9999).is_none() && r.get("[ff3e::1:3]:5000", 9999).is_none(),
        "a malformed frame was relayed:\n{}",
        r.raw
    );
    r.assert_no_unexpected();

    // each bad frame counted under its reason
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for k in V4 {
        *expected.entry(k.to_string()).or_default() += ROUNDS;
    }
    for k in V6 {
        *expected.entry(k.to_string()).or_default() += ROUNDS;
    }
    let mut want_injected = expected.clone();
    want_injected.insert("not_multicast".into(), 2 * ROUNDS);
    assert_eq!(
        injected, want_injected,
        "inject did not send what was asked"
    );
    let drops_of = |s: &serde_json::Value| -> BTreeMap<String, u64> {
        interface_stats(s, "in0")["drops"]
            .as_object()
            .expect("drops map")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    let stats = relay.stats_when(Duration::from_secs(10), |s| drops_of(s) == expected);
    relay.stop();
    assert_eq!(
        drops_of(&stats),
        expected,
        "relay drops by reason (left) differ from what was injected (right); stats:\n{stats:#}"
    );
}
