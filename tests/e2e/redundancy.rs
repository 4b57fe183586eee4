//! Redundant inputs (issue 15): one route fed by two legs on two interfaces (the red and blue
//! networks of ST 2022-7, a feed's A and B lines). The sender sends the same stream out of eth0
//! and eth1 (two `mcrelay-traffic send` with the same stream id: identical payloads, sequence
//! number at payload offset 8, 8 bytes big-endian); nftables rules on the relay's ingress
//! interfaces (netdev ingress hook, so before the relay's packet sockets) lose packets per leg.
//!
//! The merged output reaches the receiver on the first leg's group and port (one output stream);
//! every byte of every datagram is checked by the receiver. Reordering is allowed: a packet lost
//! on one leg is filled by the other leg's copy, which arrives as late as that leg lags (the two
//! senders start a few milliseconds apart), after higher numbers already went out.

use std::time::Duration;

use crate::netns::*;

const RED: &str = "239.1.1.1:5000";
const BLUE: &str = "239.2.2.2:5000";
const LEGS: &str = "{ interface = \"in0\", group = \"239.1.1.1\", port = 5000 }, \
                    { interface = \"in1\", group = \"239.2.2.2\", port = 5000 }";
/// The traffic tool's sequence number.
const SEQUENCE: &str = "sequence = { offset = 8, size = 8, byte_order = \"big\" }";

/// Where the payload's sequence number's lowest byte is, in bits from the start of the UDP
/// header (8 bytes of UDP header, then bytes 8..16 of the payload): nftables' `@th,184,8`.
const SEQ_LOW_BYTE: &str = "@th,184,8";

fn two_legs() -> Topology {
    Topology::builder().ingress(2).build()
}

fn merged(window: &str) -> Config {
    Config::new(&["in0", "in1", "out0"])
        .multicast("rx0", "out0")
        .legs(
            LEGS,
            &format!("name = \"feed\"\nredundancy = \"merge\"\n{SEQUENCE}\nwindow = \"{window}\""),
            &["rx0"],
        )
}

/// nftables rules in the netdev ingress hook of each of `rules`' interfaces, in a table of
/// their own (`table`), each rule counted.
fn nft_drop(ns: &Netns, table: &str, rules: &[(&str, String)]) {
    let dir = TempDir::new();
    let mut text = format!("table netdev {table} {{\n");
    for (i, (iface, rule)) in rules.iter().enumerate() {
        text.push_str(&format!(
            "  chain c{i} {{\n    type filter hook ingress device \"{iface}\" priority 0;\n    {rule} counter drop\n  }}\n"
        ));
    }
    text.push_str("}\n");
    let path = dir.path().join("rules.nft");
    std::fs::write(&path, &text).unwrap();
    ns.exec(&["nft", "-f", path.to_str().unwrap()]);
}

fn nft_delete(ns: &Netns, table: &str) {
    ns.exec(&["nft", "delete", "table", "netdev", table]);
}

/// Packets the counted rule of chain `c{i}` in `table` dropped.
fn nft_dropped(ns: &Netns, table: &str, i: usize) -> u64 {
    let out = ns.exec(&[
        "nft",
        "-j",
        "list",
        "chain",
        "netdev",
        table,
        &format!("c{i}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .find_map(|e| e["counter"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no counter in {out}"))
}

/// Matches the test stream to `group` (leg traffic only: IGMP and the like never count).
fn stream(group: &str) -> String {
    let ip = group.split(':').next().unwrap();
    format!("ip daddr {ip} udp dport 5000")
}

/// Starts the same stream (id 0) out of eth0 to the red group and eth1 to the blue group.
fn send_both(t: &Topology, extra: &[&str]) -> (Sending, Sending) {
    (
        t.start_send_via("eth0", &[RED], extra),
        t.start_send_via("eth1", &[BLUE], extra),
    )
}

/// Every number exactly once, every byte intact, on the red group; nothing on the blue one.
fn assert_merged(r: &RecvReport, sent: u64) {
    r.assert_no_unexpected();
    let s = r
        .get(RED, 0)
        .unwrap_or_else(|| panic!("nothing arrived; report:\n{}", r.raw));
    assert_eq!(
        (
            s.unique,
            s.received,
            s.duplicates,
            s.corrupt,
            s.length_mismatch
        ),
        (sent, sent, 0, 0, 0),
        "(unique, received, duplicates, corrupt, length mismatches) of {sent} sent; report:\n{}",
        r.raw
    );
    assert_eq!(s.highest_seq, Some(sent - 1));
    r.assert_nothing(BLUE);
}

/// The acceptance test: each leg loses a different 5 % (red the even numbers' share,
/// blue the odd ones', at random), the merged stream has every packet once.
#[test]
fn two_legs_losing_different_packets_merge_into_one_complete_stream() {
    let t = two_legs();
    let relay = t.start_relay_with(FAST_STATS, merged("300ms"));
    assert_joined(&t.relay, "in0", "239.1.1.1");
    assert_joined(&t.relay, "in1", "239.2.2.2");
    // 10 % of the even numbers on red, 10 % of the odd ones on blue: 5 % of each leg, never
    // the same number on both.
    lose_5_percent_each(&t.relay);
    let rx = t.receive(0, &[RED, BLUE]);
    let (a, b) = send_both(
        &t,
        &["--rate", "2000", "--count", "10000", "--size", "1316"],
    );
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    assert_eq!((a.stream(0), b.stream(0)), (10_000, 10_000));
    let r = rx.finish();
    let (lost_red, lost_blue) = (
        nft_dropped(&t.relay, "loss", 0),
        nft_dropped(&t.relay, "loss", 1),
    );
    // Each leg lost about 5 % (500 of 10 000).
    for (leg, lost) in [("red", lost_red), ("blue", lost_blue)] {
        assert!(
            (300..=700).contains(&lost),
            "{leg} lost {lost} packets, not about 500"
        );
    }
    assert_merged(&r, 10_000);
    println!(
        "red lost {lost_red}, blue lost {lost_blue} of 10000; merged: {} unique, {} reordered",
        r.get(RED, 0).unwrap().unique,
        r.get(RED, 0).unwrap().reordered
    );
    // The per-leg counters tell which leg carried what (published every 200 ms). A number is
    // settled, and counted as missing on a leg and unique to the other, once the stream has
    // been past its 64-number word for the window: the last word (9984..9999), where the
    // stream stopped, stays open.
    let open_word =
        |lost: u64, counted: Option<u64>| counted.is_some_and(|c| c <= lost && c + 64 >= lost);
    let settled = |s: &serde_json::Value| {
        let red = &group_stats(s, "feed")["redundancy"];
        red["output"]["forwarded"] == 10_000
            && open_word(lost_red, red["legs"][0]["missing"].as_u64())
            && open_word(lost_blue, red["legs"][1]["missing"].as_u64())
            && open_word(lost_blue, red["legs"][0]["unique"].as_u64())
            && open_word(lost_red, red["legs"][1]["unique"].as_u64())
    };
    let stats = relay.stats_when(Duration::from_secs(5), settled);
    let red = &group_stats(&stats, "feed")["redundancy"];
    assert!(
        settled(&stats),
        "lost {lost_red} red, {lost_blue} blue: {red:#}"
    );
    let leg = |i: usize, k: &str| red["legs"][i][k].as_u64().unwrap();
    assert_eq!(red["mode"], "merge");
    assert_eq!(red["output"]["lost"], 0, "{red:#}");
    assert_eq!(red["legs"][0]["interface"], "in0");
    assert_eq!(red["legs"][1]["interface"], "in1");
    assert_eq!(leg(0, "packets"), 10_000 - lost_red, "{red:#}");
    assert_eq!(leg(1, "packets"), 10_000 - lost_blue, "{red:#}");
    assert_eq!(leg(0, "forwarded") + leg(1, "forwarded"), 10_000);
    assert_eq!(
        leg(0, "duplicates") + leg(0, "late") + leg(1, "duplicates") + leg(1, "late"),
        10_000 - lost_red - lost_blue
    );
    assert_eq!(group_stats(&stats, "feed")["packets"], 10_000);
    let text = run(
        MCRELAY,
        &[
            "stats",
            "--socket",
            relay.control_socket().to_str().unwrap(),
        ],
    );
    assert!(
        text.contains(&format!(
            "leg 0 in0 239.1.1.1:5000 UP: packets {}",
            10_000 - lost_red
        )),
        "{text}"
    );
    relay.stop();
}

/// Losses on both legs as in the acceptance test, in the background of the other scenarios.
fn lose_5_percent_each(ns: &Netns) {
    nft_drop(
        ns,
        "loss",
        &[
            (
                "in0",
                format!(
                    "{} {SEQ_LOW_BYTE} & 1 == 0 numgen random mod 100 < 10",
                    stream(RED)
                ),
            ),
            (
                "in1",
                format!(
                    "{} {SEQ_LOW_BYTE} & 1 == 1 numgen random mod 100 < 10",
                    stream(BLUE)
                ),
            ),
        ],
    );
}

/// Log lines containing every one of `words`.
fn log_lines(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// The blue leg dead for a second and back: the merge loses nothing (red carries it), and the
/// leg's DOWN and its return are logged once each.
#[test]
fn a_leg_dead_for_a_second_costs_a_merge_nothing() {
    let t = two_legs();
    let relay = t.start_relay_with(
        &format!("{FAST_STATS}\nsilence_timeout = \"300ms\""),
        merged("300ms"),
    );
    let rx = t.receive(0, &[RED, BLUE]);
    let (a, b) = send_both(&t, &["--rate", "2000", "--count", "8000"]);
    std::thread::sleep(Duration::from_millis(1000));
    nft_drop(&t.relay, "dead", &[("in1", stream(BLUE))]);
    std::thread::sleep(Duration::from_millis(1000));
    nft_delete(&t.relay, "dead");
    // The log while the stream still flows (when it ends, both legs go DOWN).
    std::thread::sleep(Duration::from_millis(500));
    let log = relay.log();
    assert_eq!(
        log_lines(&log, &["redundant leg DOWN", "feed", "in1 239.2.2.2:5000"]),
        1,
        "log:\n{log}"
    );
    // UP when it first delivered, and once more when it came back.
    assert_eq!(
        log_lines(&log, &["redundant leg UP", "feed", "in1 239.2.2.2:5000"]),
        2,
        "log:\n{log}"
    );
    assert_eq!(log_lines(&log, &["redundant leg DOWN"]), 1, "log:\n{log}");
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    assert_eq!((a.stream(0), b.stream(0)), (8000, 8000));
    let r = rx.finish();
    assert_merged(&r, 8000);
    relay.stop();
}

/// Failover: the active (red) leg dead for a second: the route switches to blue once, losing
/// at most about `failover_after` of the stream, and stays there (`revert = "never"`).
#[test]
fn failover_loses_at_most_failover_after_and_switches_once() {
    let t = two_legs();
    let relay = t.start_relay_with(
        FAST_STATS,
        Config::new(&["in0", "in1", "out0"])
            .multicast("rx0", "out0")
            .legs(
                LEGS,
                "name = \"feed\"\nredundancy = \"failover\"\nfailover_after = \"100ms\"\nrevert = \"never\"",
                &["rx0"],
            ),
    );
    let rx = t.receive(0, &[RED, BLUE]);
    let (a, b) = send_both(&t, &["--rate", "2000", "--count", "8000"]);
    std::thread::sleep(Duration::from_millis(1000));
    nft_drop(&t.relay, "dead", &[("in0", stream(RED))]);
    std::thread::sleep(Duration::from_millis(1000));
    nft_delete(&t.relay, "dead");
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    assert_eq!((a.stream(0), b.stream(0)), (8000, 8000));
    let r = rx.finish();
    r.assert_no_unexpected();
    r.assert_nothing(BLUE);
    let s = r.get(RED, 0).expect("the stream arrived");
    assert_eq!(
        (s.duplicates, s.corrupt, s.length_mismatch),
        (0, 0, 0),
        "{}",
        r.raw
    );
    let lost = 8000 - s.unique;
    // 100 ms at 2000 packets per second is 200 packets; the switch waits for blue's next
    // packet after that, and the two senders are a few milliseconds apart.
    assert!(
        (150..=300).contains(&lost),
        "lost {lost} packets, expected about 200 (failover_after = 100 ms); report:\n{}",
        r.raw
    );
    println!("failover: lost {lost} of 8000 at 2000 packets/s with failover_after = 100ms");
    let log = relay.stop();
    assert_eq!(
        log_lines(
            &log,
            &["failover: switched to leg", "feed", "in1 239.2.2.2:5000"]
        ),
        1,
        "log:\n{log}"
    );
    assert_eq!(log_lines(&log, &["switched"]), 1, "log:\n{log}");
}

/// A reload mid-stream that keeps the route's legs (here: a new name and another group added)
/// keeps its merge state: with both legs losing packets, nothing is lost or sent twice.
#[test]
fn a_reload_mid_stream_loses_nothing() {
    let t = two_legs();
    let relay = t.start_relay_with("reload_debounce = \"30s\"", merged("300ms"));
    lose_5_percent_each(&t.relay);
    let rx = t.receive(0, &[RED, BLUE]);
    let (a, b) = send_both(&t, &["--rate", "2000", "--count", "8000"]);
    std::thread::sleep(Duration::from_millis(1500));
    let path = relay.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("name = \"feed\"", "name = \"feed-renamed\"")
        + "\n[[groups]]\ninterface = \"in0\"\ngroup = \"239.9.9.9\"\nport = 5000\nto = [\"rx0\"]\n";
    std::fs::write(&path, changed).unwrap();
    let sock = relay.control_socket();
    run(MCRELAY, &["reload", "--socket", sock.to_str().unwrap()]);
    assert_eq!(relay.status()["config"]["generation"].as_u64(), Some(2));
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    assert_eq!((a.stream(0), b.stream(0)), (8000, 8000));
    let r = rx.finish();
    assert!(nft_dropped(&t.relay, "loss", 0) > 0 && nft_dropped(&t.relay, "loss", 1) > 0);
    assert_merged(&r, 8000);
    relay.stop();
}

/// One leg about 10 ms behind the other (its sender starts 10 ms later; both pace from their
/// start), each losing 5 %: the lagging leg's copies fill the leading leg's holes within the
/// 50 ms window, and the per-leg counters show which leg is behind and by about how much.
#[test]
fn a_leg_10ms_behind_still_fills_every_hole() {
    let t = two_legs();
    let relay = t.start_relay_with(FAST_STATS, merged("50ms"));
    lose_5_percent_each(&t.relay);
    let rx = t.receive(0, &[RED, BLUE]);
    let args = ["--rate", "2000", "--count", "6000"];
    let a = t.start_send_via("eth0", &[RED], &args);
    std::thread::sleep(Duration::from_millis(10));
    let b = t.start_send_via("eth1", &[BLUE], &args);
    // While the stream flows (3 s): each leg's lag, as sampled by the merge (a number the
    // leading leg lost has the lagging one first, so single samples vary; take the median).
    let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        let stats = relay.stats();
        let red = &group_stats(&stats, "feed")["redundancy"];
        for (i, s) in samples.iter_mut().enumerate() {
            if let Some(b) = red["legs"][i]["behind_seconds"].as_f64() {
                s.push(b);
            }
        }
    }
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    assert_eq!((a.stream(0), b.stream(0)), (6000, 6000));
    let r = rx.finish();
    assert_merged(&r, 6000);
    let median = |v: &mut Vec<f64>| {
        assert!(v.len() >= 5, "too few samples: {v:?}");
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (red, blue) = (median(&mut samples[0]), median(&mut samples[1]));
    println!("behind (median of samples): red {red} s, blue {blue} s");
    assert_eq!(red, 0.0, "red leads: {samples:?}");
    assert!(
        (0.002..0.045).contains(&blue),
        "blue should be about 10 ms behind: {samples:?}"
    );
    relay.stop();
}
