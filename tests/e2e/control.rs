//! Issue 5 end to end: the control socket, `mcrelay stats | status`, `/metrics`, against real
//! traffic through the relay.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::*;

/// One group `cam1` (239.1.1.1:5000) from in0 to rx0 (out0).
pub fn one_group() -> Config {
    Config::rx0().route("239.1.1.1:5000").name("cam1")
}

/// Runs `mcrelay ARGS` (in the test's own namespace: the control socket is a file).
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(MCRELAY)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mcrelay: {e}"))
}

/// `mcrelay <what> --json --socket <relay's>`, parsed; panics unless it exits 0.
pub fn json(relay: &Relay, what: &str) -> Value {
    let sock = relay.control_socket();
    let out = cli(&[what, "--json", "--socket", sock.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "mcrelay {what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "mcrelay {what} --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `mcrelay stats --json` until `pred` holds (or panics after `timeout`).
pub fn wait_stats(relay: &Relay, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let s = json(relay, "stats");
        if pred(&s) {
            return s;
        }
        if started.elapsed() > timeout {
            panic!(
                "stats did not reach the expected state within {timeout:?}:\n{s:#}\nlog:\n{}",
                relay.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Counters equal exactly what was sent and what arrived, in `stats --json` and in the table.
#[test]
fn stats_counters_equal_what_was_sent_and_received() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, one_group());
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let (sent, mid) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            t.send(
                &["239.1.1.1:5000"],
                &["--rate", "2000", "--count", "3000", "--size", "200"],
            )
        });
        // Mid-stream: the rates are those of the stream.
        std::thread::sleep(Duration::from_millis(900));
        let mid = json(&relay, "stats");
        (sender.join().unwrap(), mid)
    });
    let g = group_stats(&mid, "cam1");
    let pps = g["packets_per_second"].as_f64().expect("a rate mid-stream");
    let bps = g["bits_per_second"]
        .as_f64()
        .expect("a bit rate mid-stream");
    assert!(
        (1600.0..=2400.0).contains(&pps),
        "{pps} pkt/s for a 2000 pkt/s stream"
    );
    assert!(
        (pps * 200.0 * 8.0 - bps).abs() < 1.0,
        "{bps} b/s for {pps} pkt/s of 200 bytes"
    );
    assert_eq!(g["up"], true);
    let report = rx.finish();
    let got = report.assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    let n = sent.stream(0);
    let s = wait_stats(&relay, Duration::from_secs(3), |s| {
        count(&group_stats(s, "cam1")["packets"]) >= n
    });
    let g = group_stats(&s, "cam1");
    assert_eq!(count(&g["packets"]), n, "{g:#}");
    assert_eq!(count(&g["bytes"]), n * 200, "{g:#}");
    let d = &g["destinations"][0];
    assert_eq!(d["name"], "rx0");
    assert_eq!(count(&d["packets"]), got.received, "{d:#}");
    assert_eq!(count(&d["bytes"]), got.bytes, "{d:#}");
    assert_eq!((count(&d["errors"]), count(&d["drops"])), (0, 0), "{d:#}");
    let i = interface_stats(&s, "in0");
    assert!(count(&i["frames"]) >= n, "{i:#}");
    assert_eq!(count(&i["kernel_drops"]), 0, "{i:#}");

    // The human table says the same.
    let sock = relay.control_socket();
    let out = cli(&["stats", "--socket", sock.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("cam1 "))
        .unwrap_or_else(|| panic!("no cam1 row:\n{text}"));
    assert!(
        row.contains("239.1.1.1:5000") && row.contains(&n.to_string()),
        "{text}"
    );
    let dest = text
        .lines()
        .find(|l| l.starts_with("  → rx0"))
        .expect("rx0 row");
    assert!(dest.contains(&got.received.to_string()), "{text}");

    // Status: generation 1, the config and its digest, one running worker, totals.
    let st = json(&relay, "status");
    assert_eq!(count(&st["config"]["generation"]), 1);
    assert_eq!(
        st["config"]["config"],
        relay.config_path().to_str().unwrap()
    );
    let digest = st["config"]["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert_eq!(st["workers"][0]["interface"], "in0");
    assert_eq!(st["workers"][0]["state"], "running");
    assert_eq!(count(&st["totals"]["sent_packets"]), got.received);
    relay.stop();
}

/// A group turns DOWN after `silence_timeout` without packets and UP again when they resume;
/// each change is logged once.
#[test]
fn silent_group_goes_down_after_the_timeout_and_up_again() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(
        "stats_interval = \"100ms\"\nsilence_timeout = \"1s\"",
        one_group(),
    );
    let burst = |count| t.send(&["239.1.1.1:5000"], &["--rate", "1000", "--count", count]);
    let before = json(&relay, "stats");
    assert_eq!(
        group_stats(&before, "cam1")["up"],
        false,
        "never seen is DOWN"
    );
    burst("300");
    let stopped = Instant::now();
    wait_stats(&relay, Duration::from_secs(1), |s| {
        group_stats(s, "cam1")["up"] == true
    });
    let down = wait_stats(&relay, Duration::from_secs(3), |s| {
        group_stats(s, "cam1")["up"] == false
    });
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "DOWN after {after:?}, before the 1 s silence timeout: {down:#}"
    );
    let ago = group_stats(&down, "cam1")["last_seen_ago_seconds"]
        .as_f64()
        .unwrap();
    assert!(ago > 1.0, "{down:#}");
    // Stay silent a little longer than one sampler tick so the DOWN is logged, then resume.
    std::thread::sleep(Duration::from_millis(500));
    burst("300");
    wait_stats(&relay, Duration::from_secs(1), |s| {
        group_stats(s, "cam1")["up"] == true
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = relay.stop();
    let ups = log.matches("group cam1 on in0 is UP").count();
    let downs = log.matches("group cam1 on in0 is DOWN").count();
    assert_eq!((ups, downs), (2, 1), "log:\n{log}");
}

/// `/metrics` parses with the reference Python parser (`prometheus_client`), and its values
/// equal `stats --json` and `status --json`.
#[test]
fn metrics_parse_with_prometheus_client_and_match_stats() {
    let t = Topology::new(1);
    let port = 19477;
    let relay = t.start_relay_with(
        &format!("{FAST_STATS}\nmetrics_listen = \"127.0.0.1:{port}\""),
        one_group(),
    );
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let sent = t.send(&["239.1.1.1:5000"], &["--rate", "2000", "--count", "1000"]);
    rx.finish()
        .assert_complete("239.1.1.1:5000", 0, sent.stream(0));
    let stats = wait_stats(&relay, Duration::from_secs(3), |s| {
        count(&group_stats(s, "cam1")["packets"]) >= 1000
    });
    // The relay's namespace has its own loopback: scrape from inside it.
    let script = format!(
        r#"
import json, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
out = {{}}
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#
    );
    let parsed: Value = serde_json::from_str(&t.relay.exec(&["/usr/bin/python3", "-c", &script]))
        .expect("parser output is JSON");
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        parsed[name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name} in {parsed:#}"))
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s[0][*k] == *v))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {parsed:#}"))[1]
            .as_f64()
            .unwrap()
    };
    let g = group_stats(&stats, "cam1");
    let gl = [("group", "cam1"), ("interface", "in0")];
    assert_eq!(
        sample("mcrelay_group_received_packets_total", &gl),
        count(&g["packets"]) as f64
    );
    assert_eq!(
        sample("mcrelay_group_received_bytes_total", &gl),
        count(&g["bytes"]) as f64
    );
    let dl = [("group", "cam1"), ("destination", "rx0")];
    let d = &g["destinations"][0];
    assert_eq!(
        sample("mcrelay_destination_sent_packets_total", &dl),
        count(&d["packets"]) as f64
    );
    assert_eq!(
        sample("mcrelay_destination_send_errors_total", &dl),
        count(&d["errors"]) as f64
    );
    assert_eq!(sample("mcrelay_group_up", &gl), 1.0);
    assert_eq!(sample("mcrelay_config_generation", &[]), 1.0);
    assert_eq!(sample("mcrelay_config_last_reload_successful", &[]), 1.0);
    assert_eq!(
        sample("mcrelay_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    let status = json(&relay, "status");
    let loaded = status["config"]["last_success_at"].as_f64().unwrap();
    let ts = sample("mcrelay_config_last_reload_success_timestamp_seconds", &[]);
    assert!((ts - loaded).abs() < 1e-3, "{ts} vs {loaded}");
    relay.stop();
}

/// Someone outside the socket's group gets "permission denied" (exit 77); a member is served.
#[test]
fn a_user_outside_the_socket_group_is_refused() {
    let t = Topology::new(1);
    let relay = t.start_relay_with("control_group = \"nogroup\"", one_group());
    let sock = relay.control_socket();
    let meta = std::fs::metadata(&sock).expect("control socket exists");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534, "socket group is nogroup");
    // A copy of the binary nobody can run, next to the socket.
    let dir = sock.parent().unwrap();
    let bin = dir.join("mcrelay-copy");
    std::fs::copy(MCRELAY, &bin).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_user = |gid: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups"])
            .arg(&bin)
            .args(["status", "--socket", sock.to_str().unwrap()])
            .output()
            .expect("run setpriv (util-linux)")
    };
    let outsider = as_user("65533");
    assert_eq!(
        outsider.status.code(),
        Some(77),
        "outsider: {}",
        String::from_utf8_lossy(&outsider.stderr)
    );
    assert!(String::from_utf8_lossy(&outsider.stderr).contains("permission denied"));
    let member = as_user("65534");
    assert_eq!(
        member.status.code(),
        Some(0),
        "member: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    relay.stop();
}

/// Like [`raw_exchange`], retrying while the daemon says it is busy (after a flood of clients).
fn served_exchange(sock: &Path, bytes: &[u8]) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = raw_exchange(sock, bytes);
        let busy = r.len() == 1 && r[0]["error"]["code"] == "busy";
        if !busy || started.elapsed() > Duration::from_secs(5) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn raw_exchange(sock: &Path, bytes: &[u8]) -> Vec<Value> {
    let mut s = UnixStream::connect(sock).expect("connect control socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad response {l:?}: {e}")))
        .collect()
}

/// Garbage, huge requests and a flood of idle connections get errors (or wait their turn) while
/// a stream crosses the relay without losing a packet.
#[test]
fn garbage_and_huge_requests_get_errors_while_traffic_flows() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, one_group());
    let sock = relay.control_socket();
    let rx = t.receive(0, &["239.1.1.1:5000"]);
    let sender = t.start_send(&["239.1.1.1:5000"], &["--rate", "2000", "--count", "6000"]);
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let r = served_exchange(
            &sock,
            b"this is not json\n{\"version\":1,\"request\":\"format c:\"}\n[]\n",
        );
        let codes: Vec<&str> = r
            .iter()
            .map(|x| x["error"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["malformed", "unknown_request", "malformed"]);
        assert!(r.iter().all(|x| x["version"] == 1 && x["ok"] == false));
        let huge = vec![b'x'; 1 << 20];
        let r = served_exchange(&sock, &huge);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["error"]["code"], "too_large");
        let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for x in served_exchange(&sock, &binary) {
            assert_eq!(x["ok"], false);
        }
        // A flood of silent clients: some are told "busy", none hurts the daemon.
        let idle: Vec<_> = (0..40)
            .filter_map(|_| UnixStream::connect(&sock).ok())
            .collect();
        drop(idle);
        rounds += 1;
    }
    sender.wait(Duration::from_secs(60));
    let rep = rx.finish();
    // Say where a loss happened: the relay's own counters next to what arrived.
    let relayed = wait_stats(&relay, Duration::from_secs(3), |s| {
        count(&group_stats(s, "cam1")["packets"]) >= 6000
    });
    let g = group_stats(&relayed, "cam1");
    assert_eq!(
        (
            count(&g["packets"]),
            count(&g["destinations"][0]["packets"])
        ),
        (6000, 6000),
        "the relay did not receive and send every packet while the socket was flooded: {relayed:#}"
    );
    let arrived = rep
        .get("239.1.1.1:5000", 0)
        .map(|s| (s.unique, s.duplicates, s.reordered));
    assert_eq!(
        arrived,
        Some((6000, 0, 0)),
        "the relay sent all 6000, the receiver got (unique, duplicates, reordered) {arrived:?}: \
         lost after the relay; report:\n{}",
        rep.raw
    );
    rep.assert_complete("239.1.1.1:5000", 0, 6000);
    assert!(rounds >= 3, "only {rounds} rounds of garbage");
    // Still answering properly.
    let st = json(&relay, "status");
    assert_eq!(count(&st["config"]["generation"]), 1);
    relay.stop();
}

/// `rtp = true`: sequence gaps, losses, duplicates and reorders of a real RTP stream are counted
/// (RFC 3550) and shown in `stats`.
#[test]
fn rtp_sequence_problems_are_counted() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, one_group().keys("rtp = true"));
    // 0..=49 with 10 and 11 missing, 12 sent twice, 20 and 21 swapped: 49 datagrams.
    let script = r#"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.1.0.2"))
seqs = [q for q in range(50) if q not in (10, 11)]
seqs.insert(seqs.index(12) + 1, 12)
i = seqs.index(20)
seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
for q in seqs:
    hdr = struct.pack("!BBHII", 0x80, 96, q, q * 3600, 0x1234ABCD)
    s.sendto(hdr + bytes(160), ("239.1.1.1", 5000))
    time.sleep(0.002)
print(len(seqs))
"#;
    let sent: u64 = t
        .sender
        .exec(&["/usr/bin/python3", "-c", script])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sent, 49);
    let s = wait_stats(&relay, Duration::from_secs(3), |s| {
        count(&group_stats(s, "cam1")["packets"]) >= sent
    });
    let rtp = &group_stats(&s, "cam1")["rtp"];
    let got = |k: &str| count(&rtp[k]);
    assert_eq!(
        (
            got("packets"),
            got("gaps"),
            got("lost"),
            got("duplicates"),
            got("reordered"),
            got("invalid")
        ),
        // Two gaps seen (10-11 missing, and 21 before 20), two packets still lost.
        (49, 2, 2, 1, 1, 0),
        "{s:#}"
    );
    let sock = relay.control_socket();
    let out = cli(&["stats", "--socket", sock.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rtp: lost 2 gaps 2 dup 1 reordered 1 invalid 0"),
        "{text}"
    );
    relay.stop();
}

/// `stats --watch` refreshes in place (home + clear before each frame); with `--json` it prints
/// one JSON document per line.
#[test]
fn stats_watch_refreshes_in_place() {
    let t = Topology::new(1);
    let relay = t.start_relay_with(FAST_STATS, one_group());
    let sock = relay.control_socket();
    let watch = |extra: &[&str]| -> String {
        let mut child = Command::new(MCRELAY)
            .args([
                "stats",
                "--watch",
                "200ms",
                "--socket",
                sock.to_str().unwrap(),
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run mcrelay stats --watch");
        std::thread::sleep(Duration::from_millis(1100));
        child.kill().expect("stop the watcher (by its pid)");
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = watch(&[]);
    let frames: Vec<&str> = text.split("\x1b[H\x1b[2J").skip(1).collect();
    assert!(frames.len() >= 3, "{} frames:\n{text}", frames.len());
    assert!(
        frames
            .iter()
            .all(|f| f.contains("cam1") && f.contains("GROUP"))
    );
    let json_lines = watch(&["--json"]);
    let docs: Vec<Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert!(docs.len() >= 3, "{json_lines}");
    assert!(docs.iter().all(|d| d["groups"][0]["label"] == "cam1"));
    relay.stop();
}

/// Regression (issue 13, fix a): `mcrelay reload -c FILE` on a file that is not TOML, naming
/// the relay's own (non-default) control socket, asked the default socket and said "mcrelay is
/// not running" about a relay that runs. It must list the file's errors (`path:line:col`), say
/// the control socket could not be read from it, and exit 78; the relay runs on.
#[test]
fn reload_with_a_file_that_is_not_toml_lists_its_errors_instead_of_calling_the_relay_stopped() {
    let t = Topology::new(1);
    let relay = t.start_relay(one_group());
    let path = relay.config_path();
    let good = std::fs::read_to_string(&path).expect("read config");
    let broken = format!("{}\n[[groups]\n", good.trim_end());
    let line = broken.lines().count();
    std::fs::write(&path, &broken).expect("write config");
    let out = cli(&["reload", "-c", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr:\n{err}");
    let location = format!("{}:{line}:", path.display());
    assert!(err.contains(&location), "no {location} in:\n{err}");
    assert!(
        err.contains("[[groups]"),
        "the offending line is not shown:\n{err}"
    );
    assert!(
        err.contains("cannot read daemon.control_socket"),
        "does not say the socket is unknown:\n{err}"
    );
    assert!(
        !err.contains("not running"),
        "calls the relay stopped:\n{err}"
    );
    // It did run all along, on the last good configuration.
    let status = relay.status();
    assert_eq!(count(&status["config"]["generation"]), 1, "{status:#}");
    relay.stop();
}
