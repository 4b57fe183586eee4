//! Relay-to-relay tunnels (docs/TUNNEL.md): a site relay carries multicast groups through one
//! unicast UDP flow across a WAN that carries no multicast to a cloud relay, which re-emits
//! them as multicast; every byte checked.
//!
//! ```text
//!  snd            site                       wan                       cloud                 rx
//!  eth0 ------- in0    wan0 ----------- wa     wb ----------- wan0    out0 ----------- eth0
//!  10.1.0.2     10.1.0.1  172.16.0.1    172.16.0.2  172.16.1.2   172.16.1.1  10.2.0.1   10.2.0.2
//!  fd01::2      fd01::1   fd10::1       fd10::2     fd11::2      fd11::1     fd02::1    fd02::2
//! ```
//!
//! The WAN routes unicast between the relays and drops all multicast (an nftables rule in its
//! forward hook), so only the tunnel gets through.

use std::fmt::Write as _;

use crate::netns::*;

/// The five namespaces of a site-to-cloud test.
struct Wan {
    snd: Netns,
    site: Netns,
    wan: Netns,
    cloud: Netns,
    rx: Netns,
    /// The key file both relays read.
    key: TempDir,
}

impl Wan {
    fn new() -> Wan {
        let t = Wan {
            snd: Netns::new("snd"),
            site: Netns::new("site"),
            wan: Netns::new("wan"),
            cloud: Netns::new("cloud"),
            rx: Netns::new("rx"),
            key: TempDir::new(),
        };
        link(
            &t.snd,
            "eth0",
            &["10.1.0.2/24", "fd01::2/64"],
            &t.site,
            "in0",
            &["10.1.0.1/24", "fd01::1/64"],
        );
        link(
            &t.site,
            "wan0",
            &["172.16.0.1/24", "fd10::1/64"],
            &t.wan,
            "wa",
            &["172.16.0.2/24", "fd10::2/64"],
        );
        link(
            &t.wan,
            "wb",
            &["172.16.1.2/24", "fd11::2/64"],
            &t.cloud,
            "wan0",
            &["172.16.1.1/24", "fd11::1/64"],
        );
        link(
            &t.cloud,
            "out0",
            &["10.2.0.1/24", "fd02::1/64"],
            &t.rx,
            "eth0",
            &["10.2.0.2/24", "fd02::2/64"],
        );
        t.site
            .ip(&["route", "add", "172.16.1.0/24", "via", "172.16.0.2"]);
        t.site
            .ip(&["-6", "route", "add", "fd11::/64", "via", "fd10::2"]);
        t.cloud
            .ip(&["route", "add", "172.16.0.0/24", "via", "172.16.1.2"]);
        t.cloud
            .ip(&["-6", "route", "add", "fd10::/64", "via", "fd11::2"]);
        t.wan.sysctl("net.ipv4.ip_forward", "1");
        t.wan.sysctl("net.ipv6.conf.all.forwarding", "1");
        t.wan.exec(&[
            "nft",
            "add table inet wan; \
             add chain inet wan nomcast { type filter hook forward priority 0; }; \
             add rule inet wan nomcast ip daddr 224.0.0.0/4 counter drop; \
             add rule inet wan nomcast ip6 daddr ff00::/8 counter drop",
        ]);
        // a site sender's groups never reach the cloud without the tunnel: the premise
        t.rx.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
        std::fs::write(
            t.key.path().join("tunnel.key"),
            "5f0e8a1d3c2b4a6978796a5b4c3d2e1f00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        t
    }

    fn key_file(&self) -> String {
        self.key.path().join("tunnel.key").display().to_string()
    }

    /// The site relay's configuration: `groups` on in0, each into the tunnel `cloud`.
    fn site_config(&self, outer6: bool, groups: &[String]) -> String {
        let (local, peer) = if outer6 {
            ("[fd10::1]:9510", "[fd11::1]:9510")
        } else {
            ("172.16.0.1:9510", "172.16.1.1:9510")
        };
        let mut c = format!(
            "[interfaces.in0]\n\
             [interfaces.cloud]\n\
             tunnel = {{ local = \"{local}\", peers = [\"{peer}\"], key_file = \"{}\" }}\n\
             [destinations.to-cloud]\ninterface = \"cloud\"\n",
            self.key_file()
        );
        for g in groups {
            write_group(&mut c, "in0", g, "to-cloud");
        }
        c
    }

    /// The cloud relay's configuration: `groups` from the tunnel `site`, out of out0.
    fn cloud_config(&self, outer6: bool, groups: &[String]) -> String {
        let (local, peer) = if outer6 {
            ("[::]:9510", "[fd10::1]:9510")
        } else {
            ("0.0.0.0:9510", "172.16.0.1:9510")
        };
        let mut c = format!(
            "[interfaces.out0]\n\
             [interfaces.site]\n\
             tunnel = {{ local = \"{local}\", peers = [\"{peer}\"], key_file = \"{}\", silence_timeout = \"1s\" }}\n\
             [destinations.lan]\ninterface = \"out0\"\n",
            self.key_file()
        );
        for g in groups {
            write_group(&mut c, "site", g, "lan");
        }
        c
    }
}

fn write_group(c: &mut String, interface: &str, endpoint: &str, to: &str) {
    let addr: std::net::SocketAddr = endpoint.parse().unwrap();
    write!(
        c,
        "[[groups]]\ninterface = \"{interface}\"\ngroup = \"{}\"\nport = {}\nto = [\"{to}\"]\n",
        addr.ip(),
        addr.port()
    )
    .unwrap();
}

/// Prints where datagrams could have been lost (shown when the test fails): both relays'
/// counters and the kernel's UDP and interface drop counters on the way.
fn diagnose(site: &Relay, cloud: &Relay, t: &Wan) {
    eprintln!("site stats: {}", site.stats());
    eprintln!("cloud stats: {}", cloud.stats());
    for (name, ns) in [("site", &t.site), ("cloud", &t.cloud), ("rx", &t.rx)] {
        eprintln!(
            "{name}: Udp RcvbufErrors {} SndbufErrors {} InErrors {}",
            netstat(ns, "Udp", "RcvbufErrors"),
            netstat(ns, "Udp", "SndbufErrors"),
            netstat(ns, "Udp", "InErrors")
        );
    }
    eprintln!(
        "wan: {}",
        t.wan
            .exec(&["nft", "list", "chain", "inet", "wan", "nomcast"])
    );
}

/// `n` IPv4 groups 239.5.0.1.. on port 5000 (what `--streams n` sends to).
fn groups4(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("239.5.0.{i}:5000")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tunnel_carries_50_groups_across_a_unicast_only_wan_without_loss() {
    let t = Wan::new();
    let groups = groups4(50);
    let cloud = Relay::start_with(&t.cloud, FAST_STATS, t.cloud_config(false, &groups));
    let site = Relay::start_with(&t.site, FAST_STATS, t.site_config(false, &groups));
    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
    let sent = send(
        &t.snd,
        &[
            "-i",
            "eth0",
            "--to",
            "239.5.0.1:5000",
            "--streams",
            "50",
            "--rate",
            "5000",
            "--duration",
            "3s",
            "--size",
            "1316",
        ],
    );
    let r = rx.finish();
    diagnose(&site, &cloud, &t);
    r.assert_no_unexpected();
    for (i, g) in groups.iter().enumerate() {
        r.assert_complete(g, i as u16, sent.stream(i as u16));
    }
    // the WAN dropped multicast (the site's own joins, at least) and forwarded the tunnel
    let dropped = t
        .wan
        .exec(&["nft", "list", "chain", "inet", "wan", "nomcast"]);
    assert!(dropped.contains("drop"), "{dropped}");
    site.stop();
    cloud.stop();
}

/// The key the relays of these tests share (as written to `tunnel.key`).
const KEY_HEX: &str = "5f0e8a1d3c2b4a6978796a5b4c3d2e1f00112233445566778899aabbccddeeff";

/// Sends `bytes` as one UDP datagram from `from` (address, port) to `to` inside `ns`.
fn send_raw(ns: &Netns, from: (&str, u16), to: (&str, u16), bytes: &[u8]) {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ns.exec(&[
        "/usr/bin/python3",
        "-c",
        "import socket, sys\n\
         a = sys.argv\n\
         s = socket.socket(socket.AF_INET6 if ':' in a[1] else socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind((a[1], int(a[2])))\n\
         s.sendto(bytes.fromhex(a[5]), (a[3], int(a[4])))\n",
        from.0,
        &from.1.to_string(),
        to.0,
        &to.1.to_string(),
        &hex,
    ]);
}

/// A tunnel datagram carrying `payload` from 10.1.0.2:40000 to 239.5.0.1:5000, made by a sender
/// with `key` (a hex key) in `session`.
fn forged(key: &str, session: u64, payload: &[u8]) -> Vec<u8> {
    use mcrelay::tunnel::{Inner, Sender, TunnelKey};
    let key = TunnelKey::parse(key).unwrap();
    let mut s = Sender::new(200, session, Some(&key));
    let inner = Inner {
        source: "10.1.0.2".parse().unwrap(),
        destination: "239.5.0.1:5000".parse().unwrap(),
        source_port: 40000,
        ttl: 8,
        tos: 0,
        payload,
    };
    let mut buf = vec![0; s.encoded_len(&inner)];
    let n = s.encode(&mut buf, &inner).unwrap();
    buf.truncate(n);
    buf
}

/// The cloud relay's view of its tunnel `site` in `stats --json`.
fn tunnel_stats(stats: &serde_json::Value) -> &serde_json::Value {
    stats["tunnels"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["interface"] == "site"))
        .unwrap_or_else(|| panic!("no tunnel `site` in {stats}"))
}

/// `(reason, count)` pairs as the snapshot lists them.
fn reason(list: &serde_json::Value, name: &str) -> u64 {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|r| r[0] == name)
        .map_or(0, |r| count(&r[1]))
}

#[test]
fn tunnel_refuses_non_peers_bad_macs_and_replays_and_never_shows_its_key() {
    let t = Wan::new();
    let groups = groups4(1);
    // Only the cloud relay runs: the test speaks for the site (its address and port).
    let cloud = Relay::start_with(&t.cloud, FAST_STATS, t.cloud_config(false, &groups));
    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &["--idle", "3s"]);
    let session = 1_700_000_000_000_000;
    let wrong_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let good = forged(KEY_HEX, session, b"the one datagram that is relayed");
    let site = ("172.16.0.1", 9510);
    let cloud_at = ("172.16.1.1", 9510);
    // from a host that is no peer, with the right key: not_a_peer
    send_raw(&t.wan, ("172.16.1.2", 9510), cloud_at, &good);
    // from the peer's address, made with another key: bad_mac
    send_raw(
        &t.site,
        site,
        cloud_at,
        &forged(wrong_key, session, b"forged with another key"),
    );
    // the real thing, once; then the same bytes again: replayed
    send_raw(&t.site, site, cloud_at, &good);
    send_raw(&t.site, site, cloud_at, &good);
    let stats = cloud.stats_when(std::time::Duration::from_secs(5), |s| {
        let t = tunnel_stats(s);
        let p = &t["peers"][0];
        count(&p["rx_datagrams"]) >= 1 && reason(&p["refused"], "replayed") >= 1
    });
    let r = rx.finish();
    let tun = tunnel_stats(&stats);
    let peer = &tun["peers"][0];
    assert_eq!(reason(&tun["refused"], "not_a_peer"), 1, "{tun}");
    assert_eq!(reason(&peer["refused"], "bad_mac"), 1, "{tun}");
    assert_eq!(reason(&peer["refused"], "replayed"), 1, "{tun}");
    assert_eq!(count(&peer["rx_datagrams"]), 1, "{tun}");
    let l = r
        .listeners
        .iter()
        .find(|l| l.address == "239.5.0.1:5000")
        .unwrap();
    assert_eq!(
        l.received, 1,
        "only the authentic datagram is relayed, once:\n{}",
        r.raw
    );
    // the key shows nowhere: status, stats, metrics-free text views, the log
    let status = cloud.status();
    let log = cloud.stop();
    for (what, text) in [
        ("status", status.to_string()),
        ("stats", stats.to_string()),
        ("log", log),
    ] {
        assert!(
            !text.to_lowercase().contains(&KEY_HEX[..16]),
            "the key shows in {what}:\n{text}"
        );
    }
}

/// Sends `n` streams to `first` and the following addresses from snd, 2 s at 2000 pps in all.
fn send_streams(t: &Wan, first: &str, n: usize, first_stream: u16) -> SendReport {
    let n = n.to_string();
    let fs = first_stream.to_string();
    send(
        &t.snd,
        &[
            "-i",
            "eth0",
            "--to",
            first,
            "--streams",
            &n,
            "--first-stream",
            &fs,
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--size",
            "1316",
        ],
    )
}

fn assert_streams(r: &RecvReport, groups: &[String], sent: &SendReport, first_stream: u16) {
    for (i, g) in groups.iter().enumerate() {
        let id = first_stream + i as u16;
        r.assert_complete(g, id, sent.stream(id));
    }
}

#[test]
fn tunnel_carries_ipv6_inside_ipv4_and_ipv4_inside_ipv6() {
    for outer6 in [false, true] {
        let t = Wan::new();
        let (groups, first): (Vec<String>, &str) = if outer6 {
            (groups4(4), "239.5.0.1:5000")
        } else {
            (
                (1..=4).map(|i| format!("[ff3e::5:{i}]:5000")).collect(),
                "[ff3e::5:1]:5000",
            )
        };
        let cloud = Relay::start(&t.cloud, t.cloud_config(outer6, &groups));
        let site = Relay::start(&t.site, t.site_config(outer6, &groups));
        let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
        let sent = send_streams(&t, first, 4, 0);
        let r = rx.finish();
        r.assert_no_unexpected();
        assert_streams(&r, &groups, &sent, 0);
        site.stop();
        cloud.stop();
    }
}

#[test]
fn tunnel_follows_a_peer_restart_and_shows_it_down_meanwhile() {
    let t = Wan::new();
    let groups = groups4(2);
    let cloud = Relay::start_with(&t.cloud, FAST_STATS, t.cloud_config(false, &groups));
    let site = Relay::start_with(&t.site, FAST_STATS, t.site_config(false, &groups));
    let peer_up = |s: &serde_json::Value| tunnel_stats(s)["peers"][0]["up"] == true;
    let s = cloud.stats_when(std::time::Duration::from_secs(5), peer_up);
    assert!(peer_up(&s), "the site never showed UP (keepalives):\n{s}");

    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
    let before = send_streams(&t, "239.5.0.1:5000", 2, 0);
    let r = rx.finish();
    assert_streams(&r, &groups, &before, 0);

    site.stop();
    // silence_timeout is 1 s on the cloud's side
    let s = cloud.stats_when(std::time::Duration::from_secs(5), |s| !peer_up(s));
    assert!(!peer_up(&s), "the stopped site still shows UP:\n{s}");
    let text = String::from_utf8_lossy(
        &std::process::Command::new(MCRELAY)
            .args([
                "stats",
                "--socket",
                cloud.control_socket().to_str().unwrap(),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        text.contains("DOWN") && text.contains("172.16.0.1:9510"),
        "stats shows no DOWN peer:\n{text}"
    );

    // a new run of the site relay: a new session, followed at once (no replay refusals)
    let site = Relay::start_with(&t.site, FAST_STATS, t.site_config(false, &groups));
    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
    let after = send_streams(&t, "239.5.0.1:5000", 2, 10);
    let r = rx.finish();
    assert_streams(&r, &groups, &after, 10);
    let s = cloud.stats_when(std::time::Duration::from_secs(5), peer_up);
    let peer = &tunnel_stats(&s)["peers"][0];
    assert!(peer_up(&s), "{s}");
    assert_eq!(reason(&peer["refused"], "stale_session"), 0, "{peer}");
    assert_eq!(reason(&peer["refused"], "replayed"), 0, "{peer}");
    site.stop();
    let log = cloud.stop();
    assert!(log.contains("restarted"), "no restart logged:\n{log}");
}

#[test]
fn tunnel_reload_adds_a_group_on_both_ends_without_loss_on_the_others() {
    let t = Wan::new();
    let groups = groups4(3);
    let cloud = Relay::start(&t.cloud, t.cloud_config(false, &groups[..2]));
    let site = Relay::start(&t.site, t.site_config(false, &groups[..2]));
    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
    let steady = Sending::start(
        &t.snd,
        &send_args(
            "eth0",
            &["239.5.0.1:5000"],
            &[
                "--streams",
                "2",
                "--rate",
                "2000",
                "--duration",
                "4s",
                "--size",
                "1316",
            ],
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(800));
    for (relay, text) in [
        (&cloud, t.cloud_config(false, &groups)),
        (&site, t.site_config(false, &groups)),
    ] {
        let path = relay.config_path();
        let old = std::fs::read_to_string(&path).unwrap();
        let daemon = old.split("\n\n").next().unwrap();
        std::fs::write(&path, format!("{daemon}\n\n{text}")).unwrap();
        let out = std::process::Command::new(MCRELAY)
            .args([
                "reload",
                "--socket",
                relay.control_socket().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let added = send(
        &t.snd,
        &[
            "-i",
            "eth0",
            "--to",
            "239.5.0.3:5000",
            "--first-stream",
            "2",
            "--rate",
            "500",
            "--count",
            "500",
            "--size",
            "1316",
        ],
    );
    let steady = steady.wait(std::time::Duration::from_secs(15));
    let r = rx.finish();
    diagnose(&site, &cloud, &t);
    r.assert_no_unexpected();
    assert_streams(&r, &groups[..2], &steady, 0);
    r.assert_complete(&groups[2], 2, added.stream(2));
    site.stop();
    cloud.stop();
}

/// `examples/tunnel-site.toml` and `examples/tunnel-cloud.toml` as written (only the key file's
/// path differs: the test's own): the site's LAN and the cloud's are both `eth0`, the relays at
/// 192.0.2.10 and 203.0.113.7 across a WAN that drops multicast.
#[test]
fn tunnel_examples_work_as_written() {
    let snd = Netns::new("snd");
    let site = Netns::new("site");
    let wan = Netns::new("wan");
    let cloud = Netns::new("cloud");
    let rx = Netns::new("rx");
    let key = TempDir::new();
    link(
        &snd,
        "eth0",
        &["10.1.0.2/24"],
        &site,
        "eth0",
        &["10.1.0.1/24"],
    );
    link(
        &site,
        "wan0",
        &["192.0.2.10/24"],
        &wan,
        "wa",
        &["192.0.2.1/24"],
    );
    link(
        &wan,
        "wb",
        &["203.0.113.1/24"],
        &cloud,
        "wan0",
        &["203.0.113.7/24"],
    );
    link(
        &cloud,
        "eth0",
        &["10.30.0.1/24"],
        &rx,
        "eth0",
        &["10.30.0.20/24"],
    );
    site.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.1"]);
    cloud.ip(&["route", "add", "192.0.2.0/24", "via", "203.0.113.1"]);
    wan.sysctl("net.ipv4.ip_forward", "1");
    wan.exec(&[
        "nft",
        "add table inet wan; \
         add chain inet wan nomcast { type filter hook forward priority 0; }; \
         add rule inet wan nomcast ip daddr 224.0.0.0/4 counter drop",
    ]);
    rx.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let key_path = key.path().join("site-cloud.key");
    std::fs::write(&key_path, format!("{KEY_HEX}\n")).unwrap();
    let example = |name: &str| {
        let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("/etc/mcrelay/site-cloud.key", key_path.to_str().unwrap())
    };
    let cloud_relay = Relay::start(&cloud, example("tunnel-cloud.toml"));
    let site_relay = Relay::start(&site, example("tunnel-site.toml"));
    let streams = ["239.1.1.1:5000", "239.1.1.2:5000", "239.1.2.1:6000"];
    let r = Receiver::listen(&rx, "eth0", &streams, &[]);
    let unicast = Receiver::listen(&rx, "eth0", &["10.30.0.20:5000"], &[]);
    let mut args = vec!["-i", "eth0"];
    for s in streams {
        args.extend(["--to", s]);
    }
    args.extend(["--rate", "3000", "--duration", "2s", "--size", "1316"]);
    let sent = send(&snd, &args);
    let r = r.finish();
    let u = unicast.finish();
    for (i, s) in streams.iter().enumerate() {
        r.assert_complete(s, i as u16, sent.stream(i as u16));
    }
    // camera-1 also goes to the transcoder, as unicast
    u.assert_complete("10.30.0.20:5000", 0, sent.stream(0));
    site_relay.stop();
    cloud_relay.stop();
}

/// A path narrower than the tunnel's datagrams: the kernel fragments them, none is lost, and
/// the site counts each as fragmented.
#[test]
fn tunnel_datagrams_larger_than_the_path_are_fragmented_and_counted_not_lost() {
    let t = Wan::new();
    for (ns, ifname) in [(&t.site, "wan0"), (&t.wan, "wa")] {
        ns.ip(&["link", "set", ifname, "mtu", "1400"]);
    }
    let groups = groups4(2);
    let cloud = Relay::start(&t.cloud, t.cloud_config(false, &groups));
    let site = Relay::start_with(&t.site, FAST_STATS, t.site_config(false, &groups));
    let rx = Receiver::listen(&t.rx, "eth0", &refs(&groups), &[]);
    // 1316 + 28 (inner) + 36 (tunnel, keyed) + 28 (outer) = 1408 > 1400
    let sent = send_streams(&t, "239.5.0.1:5000", 2, 0);
    let r = rx.finish();
    assert_streams(&r, &groups, &sent, 0);
    let total = sent.sent;
    let s = site.stats_when(std::time::Duration::from_secs(3), |s| {
        count(&s["tunnels"][0]["fragmented"]) >= total
    });
    assert_eq!(count(&s["tunnels"][0]["fragmented"]), total, "{s}");
    site.stop();
    cloud.stop();
}
