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
