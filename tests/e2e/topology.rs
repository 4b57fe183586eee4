//! The usual shape of a relay test, built from a few parameters, so that a test module states
//! only what is special about its scenario:
//!
//! ```text
//!  sender            relay                       rx[i]
//!  eth<k> --------- in<k>                out<i> ------ eth0
//!  10.1.<k>.2/24    10.1.<k>.1/24   10.<i+2>.0.1/24    10.<i+2>.0.2/24
//!  fd01:<k>::2/64   fd01:<k>::1/64  fd0<i+2>::1/64     fd0<i+2>::2/64
//! ```
//!
//! ```text
//! let t = Topology::new(1); // one ingress link (in0), one receiver (out0 -> rx[0])
//! let relay = t.start_relay(Config::rx0().route("239.1.1.1:5000"));
//! let rx = t.receive(0, &["239.1.1.1:5000"]);
//! let sent = t.send(&["239.1.1.1:5000"], &["--rate", "2000", "--count", "4000"]);
//! rx.finish().assert_complete("239.1.1.1:5000", 0, sent.stream(0));
//! relay.stop();
//! ```
//!
//! * [`Topology::builder`] for more ingress links (`in1` …), none at first (linked later with
//!   [`Topology::link_ingress`]) or another MTU; [`Topology::new`] is the common case.
//! * [`Config`] writes the relay's configuration (everything but `[daemon]`): [`Config::rx0`] is
//!   "in0, out0 and a destination `rx0` on out0", [`Config::route`] adds a group on in0 to rx0;
//!   anything else goes through [`Config::new`], [`Config::dest`] and [`Config::group`].
//! * Traffic: [`Topology::receive`] / [`Receiver::listen`] take listener addresses (`--group` for
//!   multicast ones, `--unicast` otherwise); [`Topology::send`] / [`Topology::start_send`] send
//!   out of the sender's eth0 to each address, with the rest of the arguments given as is.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// `[daemon]` keys for tests that read counters: published every 200 ms instead of every
/// second (see [`Topology::start_relay_with`]).
pub const FAST_STATS: &str = "stats_interval = \"200ms\"";

/// Namespaces of one test: `sender`, `relay` and the receivers `rx[i]`, removed on drop.
pub struct Topology {
    pub sender: Netns,
    pub relay: Netns,
    pub rx: Vec<Netns>,
}

/// Parameters of a [`Topology`]; see [`Topology::builder`].
pub struct TopologyBuilder {
    ingress: usize,
    receivers: usize,
    mtu: Option<u32>,
}

impl TopologyBuilder {
    /// Ingress links `in0` … `in<n-1>` (default 1). With 0, the sender is not linked yet.
    pub fn ingress(mut self, n: usize) -> Self {
        self.ingress = n;
        self
    }

    /// Receivers `rx[0]` … `rx[n-1]` behind `out0` … (default 1).
    pub fn receivers(mut self, n: usize) -> Self {
        self.receivers = n;
        self
    }

    /// The MTU of every link, set once they are all up.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn build(self) -> Topology {
        // the addressing plan: receivers on 10.2-8.0.0/24 and fd02-08::/64, ingress links on
        // 10.1.0-9.0/24 and fd01:0-9::/64
        assert!(
            self.receivers <= 7 && self.ingress <= 10,
            "at most 7 receivers and 10 ingress links, not {} and {}",
            self.receivers,
            self.ingress
        );
        let sender = Netns::new("snd");
        let relay = Netns::new("rly");
        let rx = (0..self.receivers)
            .map(|i| Netns::new(&format!("rx{i}")))
            .collect();
        let t = Topology { sender, relay, rx };
        for k in 0..self.ingress {
            t.link_ingress(k);
        }
        for i in 0..self.receivers {
            t.link_egress(i);
        }
        if let Some(mtu) = self.mtu {
            t.set_mtu(mtu);
        }
        t
    }
}

impl Topology {
    /// One ingress link and `receivers` receivers.
    pub fn new(receivers: usize) -> Topology {
        Topology::builder().receivers(receivers).build()
    }

    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            ingress: 1,
            receivers: 1,
            mtu: None,
        }
    }

    /// Links the sender's `eth<k>` to the relay's `in<k>` (again, after it was deleted).
    pub fn link_ingress(&self, k: usize) {
        link(
            &self.sender,
            &format!("eth{k}"),
            &[&format!("10.1.{k}.2/24"), &format!("fd01:{k}::2/64")],
            &self.relay,
            &format!("in{k}"),
            &[&format!("10.1.{k}.1/24"), &format!("fd01:{k}::1/64")],
        );
    }

    /// Links the relay's `out<i>` to `eth0` of `rx[i]` (again, after it was deleted).
    pub fn link_egress(&self, i: usize) {
        let n = i + 2;
        link(
            &self.relay,
            &format!("out{i}"),
            &[&format!("10.{n}.0.1/24"), &format!("fd0{n}::1/64")],
            &self.rx[i],
            "eth0",
            &[&format!("10.{n}.0.2/24"), &format!("fd0{n}::2/64")],
        );
    }

    /// Sets the MTU of both ends of the ingress link `in<k>`.
    pub fn set_ingress_mtu(&self, k: usize, mtu: u32) {
        self.sender
            .ip(&["link", "set", &format!("eth{k}"), "mtu", &mtu.to_string()]);
        self.relay
            .ip(&["link", "set", &format!("in{k}"), "mtu", &mtu.to_string()]);
    }

    /// Sets the MTU of both ends of every link there is.
    pub fn set_mtu(&self, mtu: u32) {
        for k in (0..).take_while(|k| self.relay.has_link(&format!("in{k}"))) {
            self.set_ingress_mtu(k, mtu);
        }
        for (i, rx) in self.rx.iter().enumerate() {
            let mtu = mtu.to_string();
            self.relay
                .ip(&["link", "set", &format!("out{i}"), "mtu", &mtu]);
            rx.ip(&["link", "set", "eth0", "mtu", &mtu]);
        }
    }

    /// Runs the relay on `config` in the relay namespace (see [`Relay::start`]).
    pub fn start_relay(&self, config: impl fmt::Display) -> Relay {
        Relay::start(&self.relay, config)
    }

    /// Like [`Topology::start_relay`], with extra `[daemon]` keys (see [`Relay::start_with`]).
    pub fn start_relay_with(&self, daemon_keys: &str, config: impl fmt::Display) -> Relay {
        Relay::start_with(&self.relay, daemon_keys, config)
    }

    /// A receiver in `rx[i]` listening on `listen` (see [`Receiver::listen`]).
    pub fn receive(&self, i: usize, listen: &[&str]) -> Receiver {
        Receiver::listen(&self.rx[i], "eth0", listen, &[])
    }

    /// Like [`Topology::receive`], with more `mcrelay-traffic recv` arguments (`--idle`, …).
    pub fn receive_with(&self, i: usize, listen: &[&str], extra: &[&str]) -> Receiver {
        Receiver::listen(&self.rx[i], "eth0", listen, extra)
    }

    /// Sends from the sender's eth0 to each of `to` (one stream each) with the `mcrelay-traffic
    /// send` arguments `extra`, to completion (see [`send`]).
    pub fn send(&self, to: &[&str], extra: &[&str]) -> SendReport {
        self.send_via("eth0", to, extra)
    }

    /// Like [`Topology::send`] out of the sender's `ifname`.
    pub fn send_via(&self, ifname: &str, to: &[&str], extra: &[&str]) -> SendReport {
        send(&self.sender, &send_args(ifname, to, extra))
    }

    /// Like [`Topology::send`] out of the sender's `ifname`, without waiting for it.
    pub fn start_send_via(&self, ifname: &str, to: &[&str], extra: &[&str]) -> Sending {
        Sending::start(&self.sender, &send_args(ifname, to, extra))
    }

    /// Like [`Topology::send`], without waiting for it.
    pub fn start_send(&self, to: &[&str], extra: &[&str]) -> Sending {
        self.start_send_via("eth0", to, extra)
    }
}

/// `mcrelay-traffic send` arguments: out of `ifname`, `--to` each of `to`, then `extra`.
pub fn send_args<'a>(ifname: &'a str, to: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-i", ifname];
    for addr in to {
        args.extend(["--to", addr]);
    }
    args.extend_from_slice(extra);
    args
}

/// Whether a listener or destination address (`239.1.1.1:5000`, `[ff3e::1]:5000`, optionally
/// with `@source`) is a multicast one.
fn is_multicast(addr: &str) -> bool {
    let addr = addr.split('@').next().unwrap_or(addr);
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr:?} is not an address:port ({e})"))
        .ip()
        .is_multicast()
}

impl Receiver {
    /// A receiver in `ns` listening on each of `listen`: `--group` (joined on `ifname`) for a
    /// multicast address, `--unicast` otherwise; then the `mcrelay-traffic recv` arguments
    /// `extra`. See [`Receiver::start`] for when it stops.
    pub fn listen(ns: &Netns, ifname: &str, listen: &[&str], extra: &[&str]) -> Receiver {
        let mut args = Vec::new();
        if listen.iter().any(|a| is_multicast(a)) {
            args.extend(["-i", ifname]);
        }
        for addr in listen {
            let flag = if is_multicast(addr) {
                "--group"
            } else {
                "--unicast"
            };
            args.extend([flag, addr]);
        }
        args.extend_from_slice(extra);
        Receiver::start(ns, &args)
    }
}

/// `mcrelay-traffic send --json` running in the background.
pub struct Sending(Proc);

impl Sending {
    /// Starts `mcrelay-traffic send --json ARGS` in `ns`.
    pub fn start(ns: &Netns, args: &[&str]) -> Sending {
        let mut cmd = vec![TRAFFIC, "send", "--json"];
        cmd.extend_from_slice(args);
        Sending(ns.spawn(&cmd))
    }

    /// Waits for the sender (at most `timeout`) and returns its report; asserts that it exited
    /// with 0. Send errors are allowed (a fault may make the sender's interface vanish): the
    /// report counts them.
    pub fn wait(self, timeout: Duration) -> SendReport {
        let exit = self.0.wait(timeout);
        assert_eq!(
            exit.code,
            Some(0),
            "mcrelay-traffic send failed:\n{}",
            exit.stderr
        );
        serde_json::from_str(&exit.stdout)
            .unwrap_or_else(|e| panic!("bad send report ({e}):\n{}", exit.stdout))
    }
}

/// A relay configuration without `[daemon]` (the harness adds it), written as TOML by
/// `Display`: interfaces, then destinations, then groups, in the order they were added.
#[derive(Clone, Default)]
pub struct Config {
    interfaces: Vec<(String, String)>,
    destinations: Vec<(String, String)>,
    groups: Vec<String>,
}

impl Config {
    /// `[interfaces.NAME]` for each of `interfaces`, nothing else yet.
    pub fn new(interfaces: &[&str]) -> Config {
        let mut c = Config::default();
        for name in interfaces {
            c = c.interface(name, "");
        }
        c
    }

    /// The common case: interfaces in0 and out0, destination `rx0` on out0, no groups yet.
    pub fn rx0() -> Config {
        Config::new(&["in0", "out0"]).multicast("rx0", "out0")
    }

    /// Declares interface `name` (if not yet) and adds `keys` (TOML lines) to it.
    pub fn interface(mut self, name: &str, keys: &str) -> Config {
        match self.interfaces.iter_mut().find(|(n, _)| n == name) {
            Some((_, k)) => push_lines(k, keys),
            None => self.interfaces.push((name.into(), lines(keys))),
        }
        self
    }

    /// Destination `name` with `keys` (TOML lines, e.g. `interface = "out0"\ngroup = "…"`).
    pub fn dest(mut self, name: &str, keys: &str) -> Config {
        self.destinations.push((name.into(), lines(keys)));
        self
    }

    /// A multicast destination on `interface` (the group's own address and port).
    pub fn multicast(self, name: &str, interface: &str) -> Config {
        self.dest(name, &format!("interface = \"{interface}\""))
    }

    /// A unicast destination (`10.2.0.2:7000`, `[fd02::2]:7006`).
    pub fn unicast(self, name: &str, address: &str) -> Config {
        self.dest(name, &format!("address = \"{address}\""))
    }

    /// A group on `interface` for `endpoint` (`239.1.1.1:5000`, `[ff3e::1:1]:5000`) to the
    /// destinations `to`. [`Config::name`], [`Config::source`] and [`Config::keys`] add to it.
    pub fn group(mut self, interface: &str, endpoint: &str, to: &[&str]) -> Config {
        let addr: SocketAddr = endpoint
            .parse()
            .unwrap_or_else(|e| panic!("{endpoint:?} is not a group:port ({e})"));
        let to: Vec<String> = to.iter().map(|d| format!("\"{d}\"")).collect();
        self.groups.push(format!(
            "interface = \"{interface}\"\ngroup = \"{}\"\nport = {}\nto = [{}]\n",
            addr.ip(),
            addr.port(),
            to.join(", ")
        ));
        self
    }

    /// A `listen` route (unicast ingress) on `interface` for `address` (`10.1.0.1:6000`,
    /// `0.0.0.0:6000`, `[fd01::1]:6000`) to the destinations `to`.
    pub fn listen(mut self, interface: &str, address: &str, to: &[&str]) -> Config {
        let to: Vec<String> = to.iter().map(|d| format!("\"{d}\"")).collect();
        self.groups.push(format!(
            "interface = \"{interface}\"\nlisten = \"{address}\"\nto = [{}]\n",
            to.join(", ")
        ));
        self
    }

    /// A group on in0 for `endpoint` to `rx0` (see [`Config::rx0`]).
    pub fn route(self, endpoint: &str) -> Config {
        self.group("in0", endpoint, &["rx0"])
    }

    /// A group with `legs` (one route fed by several inputs): `legs` is the TOML array's
    /// content, `keys` the other lines (`redundancy`, `sequence`, …); sends to `to`.
    pub fn legs(mut self, legs: &str, keys: &str, to: &[&str]) -> Config {
        let to: Vec<String> = to.iter().map(|d| format!("\"{d}\"")).collect();
        let mut g = format!("legs = [{legs}]\nto = [{}]\n", to.join(", "));
        push_lines(&mut g, keys);
        self.groups.push(g);
        self
    }

    /// Names the last group added (its label in `stats`).
    pub fn name(self, label: &str) -> Config {
        self.keys(&format!("name = \"{label}\""))
    }

    /// Makes the last group added source-specific.
    pub fn source(self, source: &str) -> Config {
        self.keys(&format!("source = \"{source}\""))
    }

    /// Adds `keys` (TOML lines, e.g. `rtp = true`) to the last group added.
    pub fn keys(mut self, keys: &str) -> Config {
        let g = self
            .groups
            .last_mut()
            .expect("Config::keys: add a group first");
        push_lines(g, keys);
        self
    }
}

/// `keys` with each line trimmed and ended by a newline.
fn lines(keys: &str) -> String {
    let mut s = String::new();
    push_lines(&mut s, keys);
    s
}

fn push_lines(s: &mut String, keys: &str) {
    for l in keys.lines().map(str::trim).filter(|l| !l.is_empty()) {
        s.push_str(l);
        s.push('\n');
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, keys) in &self.interfaces {
            write!(f, "[interfaces.{name}]\n{keys}")?;
        }
        for (name, keys) in &self.destinations {
            write!(f, "\n[destinations.{name}]\n{keys}")?;
        }
        for keys in &self.groups {
            write!(f, "\n[[groups]]\n{keys}")?;
        }
        Ok(())
    }
}
