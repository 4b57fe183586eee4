//! Raw structs → [`Table`]: every check a user would expect, every error collected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustc_hash::FxHashMap;
use toml::Spanned;

use serde::Deserialize;
use toml::de::DeTable;

use super::Resolver;
use super::error::{ConfigError, Locator, Severity};
use super::keys::check_structure;
use super::raw::{
    RawConfig, RawDestination, RawGroup, RawInterface, RawLeg, RawSequence, RawTunnel,
};
use super::values::{endpoint, family, nearest, parse_size, valid_ifname};
use crate::table::{
    ByteOrder, DaemonSettings, DestId, DestKind, Destination, FieldSize, IfaceId, IngressMode,
    Interface, MAX_LEGS, Redundancy, RedundancyMode, Revert, Route, RouteId, RouteKey,
    SequenceSpec, Table, Tunnel,
};
use crate::tunnel::{KeyFileError, TunnelKey};

/// Default AF_PACKET receive buffer: 32 MiB. The kernel's default `SO_RCVBUF` is too small for
/// bursts (each queued frame is charged 1-2 KiB): measured on kernel 6.18 over veth, it dropped
/// 2673 of a 6400-datagram burst, and 32 MiB (set with `SO_RCVBUFFORCE`) dropped none.
pub const DEFAULT_RCVBUF: usize = 32 << 20;
/// Smallest and largest accepted `rcvbuf` (the kernel takes an `int` and doubles it).
pub const MIN_RCVBUF: usize = 4 << 10;
pub const MAX_RCVBUF: usize = 1 << 30;
/// Largest accepted `workers`.
pub const MAX_WORKERS: i64 = 64;
/// CPU numbers must be below this (the size of a `cpu_set_t`).
pub const MAX_CPU: i64 = 1024;
/// Default TTL of a multicast destination whose interface sets none.
pub const DEFAULT_MULTICAST_TTL: u8 = 1;
/// Default TTL of a unicast destination.
pub const DEFAULT_UNICAST_TTL: u8 = 64;
/// Default `window` of a merged group: the skew its legs may have.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(20);
/// Default `failover_after` of a failover group.
pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_millis(200);
/// Largest UDP payload (IPv4: 65535 − 20 − 8), the bound of a sequence field's end.
const MAX_UDP_PAYLOAD: i64 = 65507;

/// A compiled table plus the warnings found while compiling it.
pub(crate) fn compile_full(
    text: &str,
    path: &Path,
    resolver: &dyn Resolver,
) -> Result<(Table, Vec<ConfigError>), Vec<ConfigError>> {
    let loc = Locator::new(path, text);
    // A syntax error leaves no document to check further: it is the one error reported.
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(vec![loc.error(span, e.message().trim_end().to_string())]);
        }
    };
    // Unknown keys and values of the wrong type are reported and removed here, so that the
    // typed pass below runs on the rest and every semantic error is found in the same run.
    let structure = check_structure(doc.get_mut(), &loc);
    let mut c = Compiler {
        loc: &loc,
        findings: structure.errors,
    };
    let raw = match RawConfig::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => raw,
        Err(e) => {
            // Not expected: the structural check lets through only what the raw structs take.
            let span = e.span().unwrap_or(0..0);
            c.error(span, super::raw::reword(e.message().trim_end()));
            RawConfig::default()
        }
    };
    let table = c.compile(&raw, resolver);
    // A key removed for its type is missing to the typed pass: do not also say it is missing.
    let repeats = |e: &ConfigError| {
        structure.retyped.iter().any(|&(at, key)| {
            let owner = loc.at(at..at, Severity::Error, String::new());
            (e.line, e.col) == (owner.line, owner.col)
                && e.message.contains("needs")
                && e.message.contains(&format!("`{key}`"))
        })
    };
    let (mut errors, mut warnings): (Vec<_>, Vec<_>) = c
        .findings
        .into_iter()
        .filter(|e| !repeats(e))
        .partition(|e| e.severity == Severity::Error);
    // In file order (line and column order is byte order); stable, so findings at one place
    // keep the order they were found in.
    errors.sort_by_key(|e| (e.line, e.col));
    warnings.sort_by_key(|w| (w.line, w.col));
    if errors.is_empty() {
        Ok((table, warnings))
    } else {
        Err(errors)
    }
}

struct Compiler<'a> {
    loc: &'a Locator<'a>,
    /// Every error and warning found so far.
    findings: Vec<ConfigError>,
}

/// What has been declared so far, for groups and destinations to refer to.
#[derive(Default)]
struct Scope<'r> {
    interfaces: Vec<Interface>,
    iface_ids: FxHashMap<&'r str, IfaceId>,
    iface_names: Vec<&'r str>,
    destinations: Vec<Destination>,
    dest_ids: FxHashMap<&'r str, DestId>,
    dest_names: Vec<&'r str>,
    /// `false` for a destination that had errors (kept as a placeholder to keep ids dense).
    dest_valid: Vec<bool>,
    /// The interfaces that are tunnels.
    tunnel_ids: Vec<IfaceId>,
}

/// A route before it is known to be valid, with the spans its checks point at.
struct Candidate {
    key: RouteKey,
    /// Byte offset of the `[[groups]]` entry.
    start: usize,
    label: String,
    group_span: Range<usize>,
    name_span: Option<Range<usize>>,
    /// Which leg of its group, for a group with `legs`.
    leg: Option<usize>,
}

/// A group's own `interface`/`group`/`port`/`source`, or a leg's.
type IngressParts<'r> = (
    &'r Option<Spanned<String>>,
    &'r Option<Spanned<String>>,
    &'r Option<Spanned<i64>>,
    &'r Option<Spanned<String>>,
);

/// An ingress as far as it is valid.
struct Ingress {
    interface: Option<IfaceId>,
    group: Option<IpAddr>,
    port: Option<u16>,
    source: Option<IpAddr>,
    /// `port` and `source` are valid (or absent).
    ok: bool,
}

impl Ingress {
    fn key(&self) -> Option<RouteKey> {
        Some(RouteKey {
            interface: self.interface?,
            group: self.group?,
            port: self.port,
            source: self.source,
        })
        .filter(|_| self.ok)
    }
}

impl<'a> Compiler<'a> {
    fn error(&mut self, span: Range<usize>, message: String) {
        let e = self.loc.at(span.clone(), Severity::Error, message);
        self.findings.push(e);
    }

    fn warn(&mut self, span: Range<usize>, message: String) {
        let e = self.loc.at(span.clone(), Severity::Warning, message);
        self.findings.push(e);
    }

    fn compile(&mut self, raw: &RawConfig, resolver: &dyn Resolver) -> Table {
        let daemon = self.daemon(&raw.daemon);
        let mut scope = Scope::default();

        if raw.interfaces.len() > usize::from(u16::MAX) {
            self.error(0..0, "too many interfaces (at most 65535)".into());
        }
        for (name, ri) in &raw.interfaces {
            let id = IfaceId(scope.interfaces.len() as u16);
            scope.iface_ids.insert(name.get_ref(), id);
            scope.iface_names.push(name.get_ref());
            scope.interfaces.push(self.interface(name, ri, resolver));
        }
        let tunnels = self.tunnels(raw, &daemon, resolver);
        scope.tunnel_ids = tunnels.iter().map(|t| t.interface).collect();

        for (name, rd) in &raw.destinations {
            let before = self.findings.len();
            let dest = self.destination(name, rd, &scope);
            scope
                .dest_ids
                .insert(name.get_ref(), DestId(scope.destinations.len() as u32));
            scope.dest_names.push(name.get_ref());
            scope.destinations.push(dest);
            // An invalid destination is kept as a placeholder; groups do not check against it.
            scope.dest_valid.push(self.findings.len() == before);
        }
        self.shared_source_ports(raw, &scope);

        let mut used = vec![false; scope.destinations.len()];
        let mut routes = Vec::with_capacity(raw.groups.len());
        let mut candidates: Vec<Candidate> = Vec::with_capacity(raw.groups.len());
        let mut names: FxHashMap<&str, usize> = FxHashMap::default();
        if raw.groups.len() > u32::MAX as usize {
            self.error(0..0, "too many groups".into());
        }
        let mut redundant = BTreeMap::new();
        for g in &raw.groups {
            self.unique_name(g.get_ref(), &mut names);
            if let Some((route, cands, redundancy)) = self.group(g, &scope, &mut used) {
                // A group with bad destinations still takes part in the overlap check, so that
                // its overlaps are reported in the same run.
                if let Some(route) = route {
                    if let Some(r) = redundancy {
                        redundant.insert(RouteId(routes.len() as u32), r);
                    }
                    routes.push(route);
                }
                candidates.extend(cands);
            }
        }
        self.one_worker_per_leg(raw, &scope, &redundant);
        self.overlaps(&candidates, &scope.interfaces);
        self.listen_overlaps(&candidates, &scope.interfaces);
        self.unique_labels(&candidates, &scope.interfaces);

        for ((name, _), used) in raw.destinations.iter().zip(&used) {
            if !used {
                self.warn(
                    name.span(),
                    format!("destination `{}` is not used by any group", name.get_ref()),
                );
            }
        }

        Table::with_redundancy(
            daemon,
            scope.interfaces,
            scope.destinations,
            routes,
            redundant,
        )
        .with_tunnels(tunnels)
    }

    /// One worker receives every leg of a route with legs (the merge state has one owner), so
    /// an interface carrying a leg cannot have `workers > 1`: fanout would split the legs.
    fn one_worker_per_leg(
        &mut self,
        raw: &RawConfig,
        scope: &Scope<'_>,
        redundant: &BTreeMap<RouteId, Redundancy>,
    ) {
        let mut reported = BTreeSet::new();
        for r in redundant.values() {
            for leg in &r.legs {
                let iface = &scope.interfaces[usize::from(leg.interface.0)];
                if iface.workers <= 1 || !reported.insert(leg.interface) {
                    continue;
                }
                let span = raw
                    .interfaces
                    .iter()
                    .find(|(n, _)| *n.get_ref() == iface.name)
                    .and_then(|(_, ri)| ri.workers.as_ref().map(|w| w.span()))
                    .unwrap_or(0..0);
                self.error(
                    span,
                    format!(
                        "interface `{}` receives a leg of a group with `legs`, whose legs must all be received by one worker; remove `workers` (or set it to 1): with several workers, fanout would split the legs",
                        iface.name
                    ),
                );
            }
        }
    }

    /// Group names label groups in logs and statistics: each may be used once.
    fn unique_name<'r>(&mut self, g: &'r RawGroup, names: &mut FxHashMap<&'r str, usize>) {
        let Some(name) = &g.name else { return };
        if name.get_ref().is_empty() {
            return;
        }
        let line = self.loc.line_of(name.span().start);
        if let Some(first) = names.get(name.get_ref().as_str()) {
            self.error(
                name.span(),
                format!(
                    "group name `{}` is already used at line {first}; names label groups in logs and statistics and must be unique",
                    name.get_ref()
                ),
            );
        } else {
            names.insert(name.get_ref(), line);
        }
    }

    fn daemon(&mut self, d: &super::raw::RawDaemon) -> DaemonSettings {
        let mut s = DaemonSettings::default();
        if let Some(p) = &d.control_socket {
            let path = PathBuf::from(p.get_ref());
            if !path.is_absolute() {
                self.error(
                    p.span(),
                    format!(
                        "control_socket `{}` must be an absolute path, such as \"/run/mcrelay/control.sock\"",
                        p.get_ref()
                    ),
                );
            }
            s.control_socket = path;
        }
        if let Some(g) = &d.control_group {
            s.control_group = self.account_name(g, "control_group");
        }
        if let Some(u) = &d.user {
            s.user = self.account_name(u, "user");
        }
        if let Some(v) = &d.stats_interval {
            s.stats_interval = self
                .duration(v, "stats_interval", false)
                .unwrap_or(s.stats_interval);
        }
        if let Some(v) = &d.silence_timeout {
            s.silence_timeout = self
                .duration(v, "silence_timeout", false)
                .unwrap_or(s.silence_timeout);
        }
        if let Some(v) = &d.reload_debounce {
            s.reload_debounce = self
                .duration(v, "reload_debounce", true)
                .unwrap_or(s.reload_debounce);
        }
        if let Some(m) = &d.metrics_listen {
            match m.get_ref().parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => self.error(
                    m.span(),
                    "metrics_listen needs a port other than 0, such as \"127.0.0.1:9477\"".into(),
                ),
                Ok(a) => s.metrics_listen = Some(a),
                Err(_) => self.error(
                    m.span(),
                    format!(
                        "metrics_listen `{}` is not an address with a port; write \"127.0.0.1:9477\" (IPv6: \"[::1]:9477\")",
                        m.get_ref()
                    ),
                ),
            }
        }
        s
    }

    fn account_name(&mut self, v: &Spanned<String>, key: &str) -> Option<String> {
        let name = v.get_ref();
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c == '/')
        {
            self.error(
                v.span(),
                format!("{key} `{name}` is not a valid user or group name"),
            );
            return None;
        }
        Some(name.clone())
    }

    fn duration(&mut self, v: &Spanned<String>, key: &str, zero_ok: bool) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(v.span(), format!("{key} must be longer than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    v.span(),
                    format!(
                        "{key} `{}` is not a duration ({e}); write for example \"1s\", \"200ms\" or \"1m 30s\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn interface(
        &mut self,
        name: &Spanned<String>,
        ri: &RawInterface,
        resolver: &dyn Resolver,
    ) -> Interface {
        let n = name.get_ref();
        let valid_name = valid_ifname(n);
        if !valid_name {
            self.error(
                name.span(),
                format!(
                    "`{n}` is not a valid interface name (1 to 15 characters, no '/', ':' or white space)"
                ),
            );
        }
        // A tunnel is not a kernel interface: `tunnel` checks that no interface has its name.
        // Only for the warning: interfaces come and go, so the data plane looks indexes up
        // when it opens its sockets, and the table holds names.
        if valid_name && ri.tunnel.is_none() && resolver.ifindex(n).is_none() {
            self.warn(
                name.span(),
                format!(
                    "interface `{n}` does not exist on this machine now; mcrelay will use it when it appears"
                ),
            );
        }
        let ttl = ri
            .ttl
            .as_ref()
            .and_then(|t| self.ttl(t))
            .unwrap_or(DEFAULT_MULTICAST_TTL);
        let ingress = match ri.ingress.as_ref() {
            None => IngressMode::default(),
            Some(m) => match m.get_ref().as_str() {
                "ring" => IngressMode::Ring,
                "frames" => IngressMode::Frames,
                "recv" => {
                    self.error(
                        m.span(),
                        "ingress \"recv\" was removed: use \"frames\" (the default), which has \
                         its latency at less CPU per packet, or delete the key"
                            .into(),
                    );
                    IngressMode::default()
                }
                other => {
                    self.error(
                        m.span(),
                        format!("ingress `{other}` is not known; use \"frames\" or \"ring\""),
                    );
                    IngressMode::default()
                }
            },
        };
        let workers = match ri.workers.as_ref() {
            None => 1,
            Some(w) if (1..=MAX_WORKERS).contains(w.get_ref()) => *w.get_ref() as u16,
            Some(w) => {
                self.error(
                    w.span(),
                    format!(
                        "workers must be between 1 and {MAX_WORKERS}, not {}",
                        w.get_ref()
                    ),
                );
                1
            }
        };
        let mut cpus = Vec::new();
        if let Some(list) = &ri.cpus {
            for c in list.get_ref() {
                let v = *c.get_ref();
                if !(0..MAX_CPU).contains(&v) {
                    self.error(
                        c.span(),
                        format!("cpu {v} is not a CPU number (0 to {})", MAX_CPU - 1),
                    );
                } else if cpus.contains(&(v as usize)) {
                    self.error(c.span(), format!("cpu {v} is listed twice"));
                } else {
                    cpus.push(v as usize);
                }
            }
        }
        let rcvbuf = match ri.rcvbuf.as_ref() {
            None => DEFAULT_RCVBUF,
            Some(s) => match parse_size(s.get_ref()) {
                Ok(b) if (MIN_RCVBUF..=MAX_RCVBUF).contains(&b) => b,
                Ok(b) => {
                    self.error(
                        s.span(),
                        format!("rcvbuf must be between 4KiB and 1GiB, not {b} bytes"),
                    );
                    DEFAULT_RCVBUF
                }
                Err(m) => {
                    self.error(s.span(), m);
                    DEFAULT_RCVBUF
                }
            },
        };
        Interface {
            name: n.clone(),
            ttl,
            ingress,
            workers,
            cpus,
            rcvbuf,
        }
    }

    fn ttl(&mut self, t: &Spanned<i64>) -> Option<u8> {
        let v = *t.get_ref();
        if (1..=255).contains(&v) {
            Some(v as u8)
        } else {
            self.error(t.span(), format!("ttl must be between 1 and 255, not {v}"));
            None
        }
    }

    fn port(&mut self, p: &Spanned<i64>) -> Option<u16> {
        let v = *p.get_ref();
        if (1..=65535).contains(&v) {
            Some(v as u16)
        } else {
            self.error(
                p.span(),
                format!("port must be between 1 and 65535, not {v}"),
            );
            None
        }
    }

    fn ip(&mut self, v: &Spanned<String>, key: &str) -> Option<IpAddr> {
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    v.span(),
                    format!(
                        "{key} `{}` is not an IP address; write for example \"239.1.1.1\" or \"ff3e::1:5\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn multicast_group(&mut self, v: &Spanned<String>) -> Option<IpAddr> {
        let a = self.ip(v, "group")?;
        if !a.is_multicast() {
            self.error(
                v.span(),
                format!(
                    "group {a} is not a multicast address (IPv4 multicast is 224.0.0.0/4, IPv6 is ff00::/8)"
                ),
            );
            return None;
        }
        Some(a)
    }

    fn declared_interface(&mut self, v: &Spanned<String>, scope: &Scope) -> Option<IfaceId> {
        let n = v.get_ref();
        if let Some(&id) = scope.iface_ids.get(n.as_str()) {
            return Some(id);
        }
        let mut m = format!("interface `{n}` is not declared; add an [interfaces.{n}] table");
        if let Some(s) = nearest(n, &scope.iface_names) {
            m.push_str(&format!(" or use `{s}`"));
        }
        self.error(v.span(), m);
        None
    }

    fn destination(
        &mut self,
        name: &Spanned<String>,
        rd: &RawDestination,
        scope: &Scope,
    ) -> Destination {
        let n = name.get_ref();
        if n.is_empty()
            || n.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            self.error(
                name.span(),
                format!("`{n}` is not a valid destination name (no white space or commas)"),
            );
        }
        let ttl = rd.ttl.as_ref().and_then(|t| self.ttl(t));
        let dscp = match &rd.dscp {
            None => 0,
            Some(d) if (0..=63).contains(d.get_ref()) => *d.get_ref() as u8,
            Some(d) => {
                self.error(
                    d.span(),
                    format!("dscp must be between 0 and 63, not {}", d.get_ref()),
                );
                0
            }
        };
        let source_port = rd.source_port.as_ref().and_then(|p| {
            let v = *p.get_ref();
            if (1..=65535).contains(&v) {
                Some(v as u16)
            } else {
                self.error(
                    p.span(),
                    format!("source_port must be between 1 and 65535, not {v}"),
                );
                None
            }
        });
        // A placeholder keeps ids dense when the destination is invalid; compile fails anyway.
        let invalid = Destination {
            name: n.clone(),
            kind: DestKind::Unicast {
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
            },
            ttl: ttl.unwrap_or(DEFAULT_UNICAST_TTL),
            dscp,
            source_port,
        };
        match (&rd.interface, &rd.address) {
            (Some(_), Some(a)) => {
                self.error(
                    a.span(),
                    format!(
                        "destination `{n}` has both `interface` and `address`; use `interface` (and `group`) for multicast or `address` for unicast"
                    ),
                );
                invalid
            }
            (None, None) => {
                let m = if rd.group.is_some() || rd.port.is_some() {
                    format!("multicast destination `{n}` needs an `interface` to send out of")
                } else {
                    format!(
                        "destination `{n}` needs `interface` (multicast) or `address` (unicast)"
                    )
                };
                self.error(name.span(), m);
                // Their own mistakes are reported too, in the same run.
                if let Some(g) = &rd.group {
                    self.multicast_group(g);
                }
                if let Some(p) = &rd.port {
                    self.port(p);
                }
                invalid
            }
            (None, Some(a)) => {
                self.refuse_keys(
                    &[
                        ("group", rd.group.as_ref().map(|g| g.span())),
                        ("port", rd.port.as_ref().map(|p| p.span())),
                    ],
                    |key| format!("`{key}` is for multicast destinations; a unicast destination names its port in `address`, such as \"10.20.0.9:7000\""),
                );
                let Some(address) = self.unicast_address(a) else {
                    return invalid;
                };
                Destination {
                    name: n.clone(),
                    kind: DestKind::Unicast { address },
                    ttl: ttl.unwrap_or(DEFAULT_UNICAST_TTL),
                    dscp,
                    source_port,
                }
            }
            (Some(i), None) => {
                let interface = self.declared_interface(i, scope);
                let group = rd.group.as_ref().map(|g| self.multicast_group(g));
                let port = rd.port.as_ref().map(|p| self.port(p));
                let (Some(interface), Some(group), Some(port)) = (
                    interface,
                    group.map_or(Some(None), |g| g.map(Some)),
                    port.map_or(Some(None), |p| p.map(Some)),
                ) else {
                    return invalid;
                };
                let ttl = ttl.unwrap_or(scope.interfaces[interface.0 as usize].ttl);
                Destination {
                    name: n.clone(),
                    kind: DestKind::Multicast {
                        interface,
                        group,
                        port,
                    },
                    ttl,
                    dscp,
                    source_port,
                }
            }
        }
    }

    /// Two destinations may name the same `source_port` only when they cannot send the same
    /// flow: a receiver could not tell their datagrams apart (same source address and port, same
    /// target). So unicast destinations sharing a source port need different addresses, and
    /// multicast ones a different interface, or both a group and different groups, or both a
    /// port and different ports (a destination without `group` or `port` keeps the received
    /// one, which may be the other's). A unicast and a multicast destination may share one.
    fn shared_source_ports(&mut self, raw: &RawConfig, scope: &Scope) {
        let mut by_port: BTreeMap<u16, Vec<(usize, Range<usize>)>> = BTreeMap::new();
        for (i, rd) in raw.destinations.values().enumerate() {
            let Some(p) = &rd.source_port else { continue };
            if let (true, Some(port)) = (scope.dest_valid[i], scope.destinations[i].source_port) {
                by_port.entry(port).or_default().push((i, p.span()));
            }
        }
        for (port, users) in by_port {
            for (k, (b, span)) in users.iter().enumerate() {
                let clash = users[..k].iter().find(|(a, _)| {
                    same_flow_possible(&scope.destinations[*a].kind, &scope.destinations[*b].kind)
                });
                if let Some((a, _)) = clash {
                    self.error(
                        span.clone(),
                        format!(
                            "destinations `{}` and `{}` both send from source_port {port} and may send to the same target, so a receiver could not tell them apart; give one another source_port",
                            scope.dest_names[*a], scope.dest_names[*b]
                        ),
                    );
                }
            }
        }
    }

    /// `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6) of key `key`, or `None` after an error that
    /// says what is wrong ("`10.0.0.5` is not {what} with a port (the port is missing)") and
    /// gives `examples`.
    fn socket_address(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        what: &str,
        examples: &str,
    ) -> Option<SocketAddr> {
        let text = v.get_ref();
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Some(a);
        }
        let hint = if text.parse::<IpAddr>().is_ok() {
            " (the port is missing)"
        } else {
            ""
        };
        self.error(
            v.span(),
            format!("{key} `{text}` is not {what} with a port{hint}; write for example {examples}"),
        );
        None
    }

    fn unicast_address(&mut self, a: &Spanned<String>) -> Option<SocketAddr> {
        let address = self.socket_address(
            a,
            "address",
            "an IP address",
            "\"10.20.0.9:7000\" or \"[2001:db8::9]:7000\"",
        )?;
        let ip = address.ip();
        let problem = if ip.is_multicast() {
            Some(format!(
                "address {ip} is multicast; a multicast destination uses `interface` and `group` instead of `address`"
            ))
        } else if ip.is_unspecified() || ip == IpAddr::from([255, 255, 255, 255]) {
            Some(format!(
                "address {ip} cannot be sent to; name a unicast host"
            ))
        } else if address.port() == 0 {
            Some("address needs a port other than 0".into())
        } else {
            None
        };
        self.unless(a, problem, address)
    }

    /// The items of a list that must be given and not empty, or `None` after reporting
    /// `missing` at `at` (the key is absent) or `empty` at the list.
    fn nonempty_list<'v, T>(
        &mut self,
        list: &'v Option<Spanned<Vec<T>>>,
        at: Range<usize>,
        missing: String,
        empty: &str,
    ) -> Option<&'v [T]> {
        match list {
            None => {
                self.error(at, missing);
                None
            }
            Some(l) if l.get_ref().is_empty() => {
                self.error(l.span(), empty.into());
                None
            }
            Some(l) => Some(l.get_ref()),
        }
    }

    /// Reports each key of `keys` that is present (its span is `Some`) with the message `why`
    /// gives for it: keys that the rest of the entry excludes.
    fn refuse_keys(&mut self, keys: &[(&str, Option<Range<usize>>)], why: impl Fn(&str) -> String) {
        for (key, span) in keys {
            if let Some(span) = span {
                self.error(span.clone(), why(key));
            }
        }
    }

    /// `value`, unless there is a `problem` with it, which is reported at `at`.
    fn unless<T, V>(&mut self, at: &Spanned<T>, problem: Option<String>, value: V) -> Option<V> {
        match problem {
            Some(m) => {
                self.error(at.span(), m);
                None
            }
            None => Some(value),
        }
    }

    fn group(
        &mut self,
        g: &Spanned<RawGroup>,
        scope: &Scope,
        used: &mut [bool],
    ) -> Option<(Option<Route>, Vec<Candidate>, Option<Redundancy>)> {
        let span = g.span();
        let header = span.clone();
        let rg = g.get_ref();
        let what = rg.name.as_ref().map_or(String::from("this group"), |n| {
            format!("group `{}`", n.get_ref())
        });
        if let Some(n) = &rg.name
            && n.get_ref().is_empty()
        {
            self.error(
                n.span(),
                "name must not be empty; omit it to label the group by its address".into(),
            );
        }

        // What the group receives: its own interface/group/port/source, or each of its legs.
        let inputs: Vec<(Ingress, Range<usize>)> = match &rg.legs {
            None => {
                let input = self.ingress(
                    header.clone(),
                    &what,
                    (&rg.interface, &rg.group, &rg.port, &rg.source),
                    Some(rg),
                    scope,
                );
                let group_span = rg
                    .group
                    .as_ref()
                    .or(rg.listen.as_ref())
                    .map_or(header.clone(), |g| g.span());
                vec![(input, group_span)]
            }
            Some(legs) => self.legs(rg, legs, &what, scope),
        };
        let redundancy = self.redundancy(rg, header.clone(), &what);

        let mut dests_ok = true;
        let mut dests = Vec::new();
        match self.nonempty_list(
            &rg.to,
            header.clone(),
            format!("{what} needs `to`, the list of destinations to relay to"),
            "`to` is empty; name at least one destination",
        ) {
            None => dests_ok = false,
            Some(list) => {
                for d in list {
                    let n = d.get_ref().as_str();
                    let Some(&id) = scope.dest_ids.get(n) else {
                        let mut m = format!("no destination named `{n}`");
                        match nearest(n, &scope.dest_names) {
                            Some(s) => m.push_str(&format!("; did you mean `{s}`?")),
                            None => {
                                m.push_str(&format!("; define it in a [destinations.{n}] table"))
                            }
                        }
                        self.error(d.span(), m);
                        dests_ok = false;
                        continue;
                    };
                    used[id.0 as usize] = true;
                    if dests.contains(&id) {
                        self.error(d.span(), format!("destination `{n}` is listed twice"));
                        dests_ok = false;
                        continue;
                    }
                    dests.push(id);
                    if !scope.dest_valid[id.0 as usize] {
                        continue;
                    }
                    let dest = &scope.destinations[id.0 as usize];
                    for (input, _) in &inputs {
                        let (Some(ingress), Some(gr)) = (input.interface, input.group) else {
                            continue;
                        };
                        if !self.fits(d, dest, (ingress, gr, input.port), scope) {
                            dests_ok = false;
                            // One error per destination is enough.
                            break;
                        }
                    }
                }
            }
        }

        // Every input with a complete key takes part in the overlap check, even when the group
        // has other errors, so that its overlaps are reported in the same run.
        let keys: Vec<(RouteKey, Range<usize>)> = inputs
            .iter()
            .filter_map(|(i, span)| i.key().map(|k| (k, span.clone())))
            .collect();
        let first = keys.first()?.0;
        // Unnamed routes are labelled by what they (or their first leg) match, so labels are
        // unique per interface.
        let label = match (&rg.name, first.source) {
            (Some(n), _) if !n.get_ref().is_empty() => n.get_ref().clone(),
            (_, Some(s)) => format!("{} from {s}", endpoint(first.group, first.port)),
            (_, None) => endpoint(first.group, first.port),
        };
        let legged = rg.legs.is_some();
        let candidates = keys
            .iter()
            .enumerate()
            .map(|(leg, (key, group_span))| Candidate {
                key: *key,
                start: span.start,
                label: label.clone(),
                group_span: group_span.clone(),
                name_span: rg.name.as_ref().map(|n| n.span()),
                leg: legged.then_some(leg),
            })
            .collect();
        let complete = keys.len() == inputs.len();
        let redundancy = match (legged, redundancy) {
            (false, _) => None,
            (true, Some(mode)) if complete && keys.len() >= 2 => Some(Redundancy {
                legs: keys.iter().map(|(k, _)| *k).collect(),
                mode,
            }),
            (true, _) => return Some((None, candidates, None)),
        };
        let route = (dests_ok && complete).then(|| Route {
            key: first,
            label,
            destinations: dests,
            rtp: rg.rtp.unwrap_or(false),
        });
        Some((route, candidates, redundancy))
    }

    /// Resolves one ingress (a group's own or a leg's): each part that is valid, and whether
    /// all of them are. `own` is the group for its own ingress, where `listen` (unicast
    /// ingress) may take the place of `group` and `port`; `None` for a leg.
    fn ingress(
        &mut self,
        header: Range<usize>,
        what: &str,
        (interface, group, port, source): IngressParts<'_>,
        own: Option<&RawGroup>,
        scope: &Scope,
    ) -> Ingress {
        let listen_key = own.and_then(|rg| rg.listen.as_ref());
        let listen = match (own, listen_key) {
            (Some(rg), Some(l)) => self.listen(l, rg),
            _ => None,
        };
        let mut ok = true;
        let interface = match interface {
            Some(i) => self.declared_interface(i, scope),
            None => {
                self.error(
                    header.clone(),
                    format!("{what} needs an `interface` to receive on"),
                );
                None
            }
        };
        let group = match (group, listen_key) {
            (_, Some(_)) => {
                ok &= listen.is_some();
                listen.map(|l| l.ip())
            }
            (Some(v), None) => self.multicast_group(v),
            (None, None) if own.is_some() => {
                self.error(
                    header,
                    format!(
                        "{what} needs a multicast `group` address (or `listen = \"ADDRESS:PORT\"` to receive unicast)"
                    ),
                );
                None
            }
            (None, None) => {
                self.error(header, format!("{what} needs a multicast `group` address"));
                None
            }
        };
        let port = match port {
            _ if listen_key.is_some() => listen.map(|l| l.port()),
            Some(p) => match self.port(p) {
                Some(p) => Some(p),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let source = match source {
            None => None,
            Some(s) => match self.ip(s, "source") {
                None => {
                    ok = false;
                    None
                }
                Some(a) if a.is_multicast() || a.is_unspecified() => {
                    self.error(
                        s.span(),
                        format!("source {a} is not a unicast address; name the sender's address"),
                    );
                    ok = false;
                    None
                }
                Some(a) => {
                    if let Some(gr) = group
                        && gr.is_ipv4() != a.is_ipv4()
                    {
                        self.error(
                            s.span(),
                            format!(
                                "source {a} is {} but group {gr} is {}; a source-specific group needs a source of the same family",
                                family(a),
                                family(gr)
                            ),
                        );
                        ok = false;
                    }
                    Some(a)
                }
            },
        };
        Ingress {
            interface,
            group,
            port,
            source,
            ok,
        }
    }

    /// A group's `legs`: each resolved like a group's own ingress, with the group's own
    /// `interface`/`group`/`port`/`source` rejected next to them.
    fn legs(
        &mut self,
        rg: &RawGroup,
        legs: &Spanned<Vec<Spanned<RawLeg>>>,
        what: &str,
        scope: &Scope,
    ) -> Vec<(Ingress, Range<usize>)> {
        self.refuse_keys(
            &[
                ("interface", rg.interface.as_ref().map(|v| v.span())),
                ("group", rg.group.as_ref().map(|v| v.span())),
                ("port", rg.port.as_ref().map(|v| v.span())),
                ("source", rg.source.as_ref().map(|v| v.span())),
            ],
            |key| format!("`{key}` cannot be combined with `legs`: each leg names its own interface, group, port and source"),
        );
        let n = legs.get_ref().len();
        if n < 2 {
            self.error(
                legs.span(),
                format!(
                    "`legs` needs at least two legs, not {n}; for one input use `interface` and `group` instead"
                ),
            );
        } else if n > MAX_LEGS {
            self.error(
                legs.span(),
                format!("`legs` lists {n} legs; at most {MAX_LEGS} are supported"),
            );
        }
        legs.get_ref()
            .iter()
            .enumerate()
            .map(|(i, leg)| {
                let l = leg.get_ref();
                let input = self.ingress(
                    leg.span(),
                    &format!("leg {} of {what}", i + 1),
                    (&l.interface, &l.group, &l.port, &l.source),
                    None,
                    scope,
                );
                let group_span = l.group.as_ref().map_or(leg.span(), |g| g.span());
                (input, group_span)
            })
            .collect()
    }

    /// `redundancy` and the keys that go with it; `None` when absent (then every such key is an
    /// error) or invalid.
    fn redundancy(
        &mut self,
        rg: &RawGroup,
        header: Range<usize>,
        what: &str,
    ) -> Option<RedundancyMode> {
        let merge_keys = [
            ("sequence", rg.sequence.as_ref().map(|v| v.span())),
            ("window", rg.window.as_ref().map(|v| v.span())),
        ];
        let failover_keys = [
            (
                "failover_after",
                rg.failover_after.as_ref().map(|v| v.span()),
            ),
            ("revert", rg.revert.as_ref().map(|v| v.span())),
        ];
        if rg.legs.is_none() {
            let mut keys = vec![("redundancy", rg.redundancy.as_ref().map(|v| v.span()))];
            keys.extend(merge_keys);
            keys.extend(failover_keys);
            for (key, span) in keys {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!(
                            "`{key}` is for groups with several inputs; add `legs` (and remove `interface`, `group`, `port` and `source`) or remove `{key}`"
                        ),
                    );
                }
            }
            return None;
        }
        let Some(mode) = &rg.redundancy else {
            self.error(
                header,
                format!(
                    "{what} has `legs` but no `redundancy`; add redundancy = \"merge\" (first copy of each packet) or \"failover\" (one leg at a time)"
                ),
            );
            return None;
        };
        let (others, other_mode) = match mode.get_ref().as_str() {
            "merge" => (failover_keys, "failover"),
            "failover" => (merge_keys, "merge"),
            other => {
                self.error(
                    mode.span(),
                    format!("redundancy `{other}` is not known; use \"merge\" or \"failover\""),
                );
                return None;
            }
        };
        let mut ok = true;
        for (key, span) in others {
            if let Some(span) = span {
                self.error(
                    span,
                    format!(
                        "`{key}` is for redundancy = \"{other_mode}\", not \"{}\"",
                        mode.get_ref()
                    ),
                );
                ok = false;
            }
        }
        let result = if mode.get_ref() == "merge" {
            let window = match &rg.window {
                None => Some(DEFAULT_WINDOW),
                Some(w) => self.duration(w, "window", false),
            };
            let sequence = match &rg.sequence {
                None => {
                    self.error(
                        mode.span(),
                        "redundancy = \"merge\" needs `sequence`, where each packet's number is: \"rtp\" or a payload field such as { offset = 0, size = 4, byte_order = \"little\" }".into(),
                    );
                    None
                }
                Some(s) => self.sequence(s),
            };
            window
                .zip(sequence)
                .map(|(window, sequence)| RedundancyMode::Merge { window, sequence })
        } else {
            let after = match &rg.failover_after {
                None => Some(DEFAULT_FAILOVER_AFTER),
                Some(a) => self.duration(a, "failover_after", false),
            };
            let revert = match &rg.revert {
                None => Some(Revert::Never),
                Some(r) if r.get_ref() == "never" => Some(Revert::Never),
                Some(r) => match humantime::parse_duration(r.get_ref()) {
                    Ok(d) => Some(Revert::After(d)),
                    Err(e) => {
                        self.error(
                            r.span(),
                            format!(
                                "revert `{}` is neither \"never\" nor a duration ({e}); write for example \"never\" or \"30s\"",
                                r.get_ref()
                            ),
                        );
                        None
                    }
                },
            };
            after
                .zip(revert)
                .map(|(after, revert)| RedundancyMode::Failover { after, revert })
        };
        result.filter(|_| ok)
    }

    fn sequence(&mut self, s: &Spanned<RawSequence>) -> Option<SequenceSpec> {
        match s.get_ref() {
            RawSequence::Named(n) if n == "rtp" => Some(SequenceSpec::Rtp),
            RawSequence::Named(n) => {
                self.error(
                    s.span(),
                    format!(
                        "sequence `{n}` is not known; use \"rtp\" or a payload field such as {{ offset = 0, size = 4, byte_order = \"little\" }}"
                    ),
                );
                None
            }
            RawSequence::Field(f) => {
                let size = match &f.size {
                    None => {
                        self.error(
                            s.span(),
                            "a sequence field needs `size`, its width in bytes: 2, 4 or 8".into(),
                        );
                        None
                    }
                    Some(v) => match *v.get_ref() {
                        2 => Some(FieldSize::Two),
                        4 => Some(FieldSize::Four),
                        8 => Some(FieldSize::Eight),
                        other => {
                            self.error(
                                v.span(),
                                format!("size must be 2, 4 or 8 (bytes), not {other}"),
                            );
                            None
                        }
                    },
                };
                let offset = match &f.offset {
                    None => {
                        self.error(
                            s.span(),
                            "a sequence field needs `offset`, its position in bytes from the start of the UDP payload".into(),
                        );
                        None
                    }
                    Some(v) => {
                        let max = MAX_UDP_PAYLOAD - size.map_or(2, |s| s as i64);
                        match *v.get_ref() {
                            o if (0..=max).contains(&o) => Some(o as u16),
                            o => {
                                self.error(
                                    v.span(),
                                    format!(
                                        "offset must be between 0 and {max} (a field inside a UDP payload), not {o}"
                                    ),
                                );
                                None
                            }
                        }
                    }
                };
                let order = match &f.byte_order {
                    None => Some(ByteOrder::Big),
                    Some(b) => match b.get_ref().as_str() {
                        "big" => Some(ByteOrder::Big),
                        "little" => Some(ByteOrder::Little),
                        other => {
                            self.error(
                                b.span(),
                                format!(
                                    "byte_order `{other}` is not known; use \"big\" (network order) or \"little\""
                                ),
                            );
                            None
                        }
                    },
                };
                Some(SequenceSpec::Field {
                    offset: offset?,
                    size: size?,
                    order: order?,
                })
            }
        }
    }

    /// Checks that a destination can carry what a route receives: same address family, and not
    /// back into the route's own ingress (a loop).
    fn fits(
        &mut self,
        d: &Spanned<String>,
        dest: &Destination,
        (ingress, gr, port): (IfaceId, IpAddr, Option<u16>),
        scope: &Scope,
    ) -> bool {
        let n = &dest.name;
        let found = match dest.kind {
            DestKind::Unicast { address } if address.is_ipv4() != gr.is_ipv4() => Some(format!(
                "destination `{n}` sends to {} address {} but group {gr} is {}; relaying keeps the address family",
                family(address.ip()),
                address.ip(),
                family(gr)
            )),
            DestKind::Multicast {
                group: Some(to), ..
            } if to.is_ipv4() != gr.is_ipv4() => Some(format!(
                "destination `{n}` sends to {} group {to} but group {gr} is {}; relaying keeps the address family",
                family(to),
                family(gr)
            )),
            DestKind::Multicast {
                interface: out,
                group: None,
                ..
            } if !gr.is_multicast() && !scope.tunnel_ids.contains(&out) => Some(format!(
                "destination `{n}` keeps the group, but this group receives unicast (listen {}): it has no group to send to; give the destination a `group`",
                endpoint(gr, port)
            )),
            DestKind::Multicast {
                interface: out,
                group: to,
                port: to_port,
            } if out == ingress
                && to.unwrap_or(gr) == gr
                && (to_port.is_none() || port.is_none() || to_port == port) =>
            {
                Some(format!(
                    "destination `{n}` sends back into what this group receives ({} {}): a loop; change the destination's interface, group or port",
                    scope.iface_names[ingress.0 as usize],
                    endpoint(gr, to_port.or(port))
                ))
            }
            _ => None,
        };
        match found {
            Some(message) => {
                self.error(d.span(), message);
                false
            }
            None => true,
        }
    }

    /// Logs, statistics and metrics name a group by its label and interface: a user's name must
    /// not be the label another group on the same interface gets from its address.
    fn unique_labels(&mut self, cands: &[Candidate], interfaces: &[Interface]) {
        // Two names alike are reported as a duplicate name, two address labels alike as an
        // overlap: only a name against an address label is left to report here.
        let mut seen: FxHashMap<(IfaceId, &str), (usize, bool)> = FxHashMap::default();
        for c in cands {
            let k = (c.key.interface, c.label.as_str());
            let named = c.name_span.is_some();
            match seen.get(&k) {
                Some(&(first, first_named)) if first_named != named => {
                    let line = self.loc.line_of(first);
                    self.error(
                        c.name_span.clone().unwrap_or(c.group_span.clone()),
                        format!(
                            "the group at line {line} on {} is also labelled `{}`; name this group otherwise",
                            interfaces[c.key.interface.0 as usize].name,
                            c.label
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(k, (c.start, named));
                }
            }
        }
    }

    /// Rejects any two routes that can match the same packet, so that a packet matches at most
    /// one route and [`Table::lookup`] stays four exact probes.
    fn overlaps(&mut self, cands: &[Candidate], interfaces: &[Interface]) {
        // Each map keeps the first route (lowest index) with that part of a key; every route is
        // entered, so an overlap with a route that itself overlapped is reported too.
        let n = cands.len();
        let mut exact: FxHashMap<RouteKey, usize> = FxHashMap::default();
        let mut by_port: FxHashMap<(IfaceId, IpAddr, Option<u16>), usize> = FxHashMap::default();
        let mut by_source: FxHashMap<(IfaceId, IpAddr, Option<IpAddr>), usize> =
            FxHashMap::default();
        let mut any: FxHashMap<(IfaceId, IpAddr), usize> = FxHashMap::default();
        exact.reserve(n);
        by_port.reserve(n);
        by_source.reserve(n);
        any.reserve(n);
        for (i, c) in cands.iter().enumerate() {
            let k = c.key;
            let (ifc, g) = (k.interface, k.group);
            let with = |port, source| RouteKey {
                interface: ifc,
                group: g,
                port,
                source,
            };
            let hit = match (k.port, k.source) {
                (Some(p), Some(s)) => [
                    exact.get(&with(Some(p), Some(s))),
                    exact.get(&with(None, Some(s))),
                    exact.get(&with(Some(p), None)),
                    exact.get(&with(None, None)),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied(),
                (None, Some(s)) => [
                    by_source.get(&(ifc, g, Some(s))),
                    by_source.get(&(ifc, g, None)),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied(),
                (Some(p), None) => [
                    by_port.get(&(ifc, g, Some(p))),
                    by_port.get(&(ifc, g, None)),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied(),
                (None, None) => any.get(&(ifc, g)).copied(),
            };
            any.entry((ifc, g)).or_insert(i);
            by_port.entry((ifc, g, k.port)).or_insert(i);
            by_source.entry((ifc, g, k.source)).or_insert(i);
            exact.entry(k).or_insert(i);
            if let Some(first) = hit {
                let f = &cands[first];
                let line = self.loc.line_of(f.start);
                if let (true, Some(this), Some(that)) = (f.start == c.start, c.leg, f.leg) {
                    self.error(
                        c.group_span.clone(),
                        format!(
                            "leg {} claims packets that leg {} of the same group already claims; legs must differ in interface, group, port or source",
                            this + 1,
                            that + 1
                        ),
                    );
                    continue;
                }
                let (this, that) = (
                    c.leg.map_or(String::from("this group"), |l| {
                        format!("leg {} of this group", l + 1)
                    }),
                    f.leg
                        .map_or(String::new(), |l| format!("leg {} of ", l + 1)),
                );
                let example = match (k.source.or(f.key.source), k.port.or(f.key.port)) {
                    (Some(s), p) => format!("from {s} to {}", endpoint(k.group, p)),
                    (None, p) => format!("to {}", endpoint(k.group, p)),
                };
                self.error(
                    c.group_span.clone(),
                    format!(
                        "{this} claims packets that {that}the group at line {line} (`{}`) already claims: a packet on {} {example} would match both; give them different ports or sources, or merge their `to` lists",
                        f.label,
                        interfaces[k.interface.0 as usize].name
                    ),
                );
            }
        }
    }
}

/// True when two destinations could send a datagram to the same target out of the same way
/// (see `shared_source_ports`).
fn same_flow_possible(a: &DestKind, b: &DestKind) -> bool {
    fn overlap<T: PartialEq>(x: &Option<T>, y: &Option<T>) -> bool {
        match (x, y) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }
    match (a, b) {
        (DestKind::Unicast { address: x }, DestKind::Unicast { address: y }) => x == y,
        (
            DestKind::Multicast {
                interface: i,
                group: g,
                port: p,
            },
            DestKind::Multicast {
                interface: j,
                group: h,
                port: q,
            },
        ) => i == j && overlap(g, h) && overlap(p, q),
        _ => false,
    }
}

/// Unicast ingress (`listen`) and tunnels (issue 14): kept apart from the checks above so that
/// each reads on its own.
impl Compiler<'_> {
    /// `listen = "ADDRESS:PORT"` of a group: the address (unicast, or unspecified for every
    /// address of the interface) and port, or `None` after reporting why not.
    fn listen(&mut self, l: &Spanned<String>, rg: &RawGroup) -> Option<SocketAddr> {
        self.refuse_keys(
            &[
                ("group", rg.group.as_ref().map(|g| g.span())),
                ("port", rg.port.as_ref().map(|p| p.span())),
            ],
            |key| format!("`{key}` and `listen` exclude each other: `listen` receives unicast on an address and port of its own; use `group` and `port` for multicast"),
        );
        let address = self.socket_address(
            l,
            "listen",
            "an address",
            "\"10.0.0.5:5000\", \"0.0.0.0:5000\" or \"[2001:db8::5]:5000\"",
        )?;
        let ip = address.ip();
        let problem = if ip.is_multicast() {
            Some(format!(
                "listen {ip} is a multicast address; to receive a group write `group = \"{ip}\"` and `port = {}` instead",
                address.port()
            ))
        } else if ip == IpAddr::from([255, 255, 255, 255]) {
            Some("listen cannot be the broadcast address; name a local unicast address, or 0.0.0.0 for all of them".into())
        } else if address.port() == 0 {
            Some("listen needs a port other than 0".into())
        } else {
            None
        };
        self.unless(l, problem, address)
    }

    /// A `listen` route on the unspecified address claims every unicast address of its family:
    /// a route on one of those addresses and the same port would match the same packets.
    fn listen_overlaps(&mut self, cands: &[Candidate], interfaces: &[Interface]) {
        let wildcards: Vec<&Candidate> = cands
            .iter()
            .filter(|c| c.key.is_listen() && c.key.group.is_unspecified())
            .collect();
        for c in cands
            .iter()
            .filter(|c| c.key.is_listen() && !c.key.group.is_unspecified())
        {
            let k = c.key;
            let Some(w) = wildcards.iter().find(|w| {
                w.key.interface == k.interface
                    && w.key.group.is_ipv4() == k.group.is_ipv4()
                    && w.key.port == k.port
                    && (w.key.source.is_none() || k.source.is_none() || w.key.source == k.source)
            }) else {
                continue;
            };
            let line = self.loc.line_of(w.start);
            self.error(
                c.group_span.clone(),
                format!(
                    "this group claims packets that the group at line {line} (`{}`) already claims: {} listens on every address of {}; give them different ports or sources, or merge their `to` lists",
                    w.label,
                    endpoint(w.key.group, w.key.port),
                    interfaces[k.interface.0 as usize].name
                ),
            );
        }
    }

    /// Every `[interfaces.NAME]` with a `tunnel`, compiled; interface ids as in `compile`.
    fn tunnels(
        &mut self,
        raw: &RawConfig,
        daemon: &DaemonSettings,
        resolver: &dyn Resolver,
    ) -> Vec<Tunnel> {
        let mut tunnels: Vec<(Tunnel, Range<usize>)> = Vec::new();
        for (i, (name, ri)) in raw.interfaces.iter().enumerate() {
            let Some(rt) = &ri.tunnel else { continue };
            let id = IfaceId(i as u16);
            let Some(t) = self.tunnel(name, id, ri, rt, daemon, resolver) else {
                continue;
            };
            let local_span = rt.get_ref().local.as_ref().map_or(rt.span(), |l| l.span());
            if let Some((first, _)) = tunnels.iter().find(|(o, _)| {
                o.local.port() == t.local.port()
                    && o.local.is_ipv4() == t.local.is_ipv4()
                    && (o.local.ip() == t.local.ip()
                        || o.local.ip().is_unspecified()
                        || t.local.ip().is_unspecified())
            }) {
                let other = &raw.interfaces.keys().nth(first.interface.0 as usize);
                self.error(
                    local_span.clone(),
                    format!(
                        "tunnel `{}` and tunnel `{}` both receive on {}: give each tunnel its own local port",
                        name.get_ref(),
                        other.map_or("?", |n| n.get_ref().as_str()),
                        t.local
                    ),
                );
            }
            tunnels.push((t, local_span));
        }
        tunnels.into_iter().map(|(t, _)| t).collect()
    }

    fn tunnel(
        &mut self,
        name: &Spanned<String>,
        interface: IfaceId,
        ri: &RawInterface,
        rt: &Spanned<RawTunnel>,
        daemon: &DaemonSettings,
        resolver: &dyn Resolver,
    ) -> Option<Tunnel> {
        let n = name.get_ref();
        let t = rt.get_ref();
        let mut ok = true;
        if valid_ifname(n) && resolver.ifindex(n).is_some() {
            self.error(
                name.span(),
                format!(
                    "`{n}` is a tunnel and also the name of an interface of this machine; name the tunnel otherwise, so that groups and destinations say which one they mean"
                ),
            );
            ok = false;
        }
        if let Some(m) = &ri.ingress {
            self.error(
                m.span(),
                "ingress does not apply to a tunnel, which is received on a UDP socket; remove it"
                    .into(),
            );
        }
        if let Some(w) = &ri.workers
            && *w.get_ref() != 1
        {
            self.error(
                w.span(),
                "a tunnel is received by one worker; remove `workers`".into(),
            );
        }
        let local = match &t.local {
            None => {
                self.error(
                    rt.span(),
                    format!(
                        "tunnel `{n}` needs `local`, the address and UDP port it receives on, such as \"0.0.0.0:4789\""
                    ),
                );
                None
            }
            Some(l) => self.tunnel_address(l, "local", true),
        };
        let mut peers: Vec<SocketAddr> = Vec::new();
        match self.nonempty_list(
            &t.peers,
            rt.span(),
            format!(
                "tunnel `{n}` needs `peers`, the relays at the other end, such as [\"203.0.113.7:4789\"]"
            ),
            "`peers` is empty; name at least one relay at the other end",
        ) {
            None => ok = false,
            Some(list) => {
                for p in list {
                    let Some(a) = self.tunnel_address(p, "peer", false) else {
                        ok = false;
                        continue;
                    };
                    if let Some(l) = local
                        && l.is_ipv4() != a.is_ipv4()
                    {
                        self.error(
                            p.span(),
                            format!(
                                "peer {a} is {} but local {l} is {}; a tunnel's socket speaks one family",
                                family(a.ip()),
                                family(l.ip())
                            ),
                        );
                        ok = false;
                    } else if peers.contains(&a) {
                        self.error(p.span(), format!("peer {a} is listed twice"));
                        ok = false;
                    } else {
                        peers.push(a);
                    }
                }
            }
        }
        let (key_file, key) = match &t.key_file {
            None => {
                self.warn(
                    rt.span(),
                    format!(
                        "tunnel `{n}` has no key_file: anyone who can send UDP from a peer's address can inject multicast through it; give both ends the same key_file"
                    ),
                );
                (None, None)
            }
            Some(k) => self.key_file(k, resolver)?,
        };
        let silence_timeout = t
            .silence_timeout
            .as_ref()
            .and_then(|v| self.duration(v, "silence_timeout", false))
            .unwrap_or(daemon.silence_timeout);
        let local = local?;
        ok.then_some(Tunnel {
            interface,
            local,
            peers,
            key_file,
            key,
            silence_timeout,
        })
    }

    /// A tunnel's `local` (unspecified allowed) or a peer's address: unicast, with a port.
    fn tunnel_address(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        unspecified_ok: bool,
    ) -> Option<SocketAddr> {
        let a = self.socket_address(
            v,
            key,
            "an address",
            "\"192.0.2.10:4789\" or \"[2001:db8::10]:4789\"",
        )?;
        let ip = a.ip();
        let problem = if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            Some(format!(
                "{key} {ip} is not a unicast address; a tunnel is a unicast UDP flow"
            ))
        } else if ip.is_unspecified() && !unspecified_ok {
            Some(format!(
                "{key} {ip} cannot be sent to; name the peer relay's address"
            ))
        } else if a.port() == 0 {
            Some(format!("{key} needs a port other than 0"))
        } else {
            None
        };
        self.unless(v, problem, a)
    }

    /// `key_file`: an absolute path, read through the resolver. A file that cannot be read now is
    /// a warning (the tunnel carries nothing until a reload reads it), one that holds no key is
    /// an error. `None` after an error.
    fn key_file(
        &mut self,
        k: &Spanned<String>,
        resolver: &dyn Resolver,
    ) -> Option<(Option<PathBuf>, Option<TunnelKey>)> {
        let path = PathBuf::from(k.get_ref());
        if !path.is_absolute() {
            self.error(
                k.span(),
                format!(
                    "key_file `{}` must be an absolute path, such as \"/etc/mcrelay/tunnel.key\"",
                    k.get_ref()
                ),
            );
            return None;
        }
        match resolver.key_file(&path) {
            Ok(loaded) => {
                if let Some(w) = loaded.warning {
                    self.warn(k.span(), format!("key_file {}: {w}", path.display()));
                }
                Some((Some(path), Some(loaded.key)))
            }
            Err(KeyFileError::Io(e)) => {
                self.warn(
                    k.span(),
                    format!(
                        "key_file {} cannot be read now ({e}); the tunnel carries nothing until a reload reads it",
                        path.display()
                    ),
                );
                Some((Some(path), None))
            }
            Err(KeyFileError::Invalid(e)) => {
                self.error(k.span(), format!("key_file {}: {e}", path.display()));
                None
            }
        }
    }
}
