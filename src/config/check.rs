//! What `mcrelay check` prints: a one-line summary of a compiled table, and the table itself in
//! a canonical (sorted, one line per item) form that two people can diff.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::table::{
    ByteOrder, DestKind, IfaceId, IngressMode, Redundancy, RedundancyMode, Revert, RouteId,
    SequenceSpec, Table,
};

/// `N groups, M destinations, K interfaces`, and `, T tunnels` when there are any.
pub fn summary(table: &Table) -> String {
    let mut s = format!(
        "{}, {}, {}",
        plural(table.routes.len(), "group"),
        plural(table.destinations.len(), "destination"),
        plural(table.interfaces.len(), "interface")
    );
    if !table.tunnels.is_empty() {
        s.push_str(&format!(", {}", plural(table.tunnels.len(), "tunnel")));
    }
    s
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The table in a canonical, readable form: daemon settings, interfaces, destinations, then one
/// line per route sorted by (interface, group, port, source) with its destinations resolved.
pub fn canonical(table: &Table) -> String {
    let mut out = String::new();
    let d = &table.daemon;
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "daemon control_socket {} control_group {} user {} stats_interval {} silence_timeout {} reload_debounce {} metrics_listen {}",
        d.control_socket.display(),
        opt(&d.control_group),
        opt(&d.user),
        humantime::format_duration(d.stats_interval),
        humantime::format_duration(d.silence_timeout),
        humantime::format_duration(d.reload_debounce),
        d.metrics_listen
            .map_or("off".to_string(), |a| a.to_string()),
    );
    for (n, i) in table.interfaces.iter().enumerate() {
        let kind = if table.tunnel(IfaceId(n as u16)).is_some() {
            " tunnel"
        } else {
            ""
        };
        let cpus = if i.cpus.is_empty() {
            "any".to_string()
        } else {
            i.cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = writeln!(
            out,
            "interface {}{kind} ttl {} ingress {} workers {} cpus {} rcvbuf {}",
            i.name,
            i.ttl,
            match i.ingress {
                IngressMode::Ring => "ring",
                IngressMode::Frames => "frames",
            },
            i.workers,
            cpus,
            i.rcvbuf
        );
    }
    for t in &table.tunnels {
        let peers: Vec<String> = t.peers.iter().map(|p| p.to_string()).collect();
        let key = match (&t.key_file, &t.key) {
            (None, _) => "none (unauthenticated)".to_string(),
            (Some(f), Some(_)) => f.display().to_string(),
            (Some(f), None) => format!("{} (not readable now)", f.display()),
        };
        let _ = writeln!(
            out,
            "tunnel {} local {} peers {} key_file {} silence_timeout {}",
            table.interface(t.interface).name,
            t.local,
            peers.join(","),
            key,
            humantime::format_duration(t.silence_timeout)
        );
    }
    for dest in &table.destinations {
        let where_ = match dest.kind {
            DestKind::Unicast { address } => format!("unicast {address}"),
            DestKind::Multicast {
                interface,
                group,
                port,
            } => format!(
                "multicast {} group {} port {}",
                table.interface(interface).name,
                group.map_or("same".to_string(), |g| g.to_string()),
                port.map_or("same".to_string(), |p| p.to_string()),
            ),
        };
        let _ = write!(
            out,
            "destination {} {} ttl {} dscp {}",
            dest.name, where_, dest.ttl, dest.dscp
        );
        if let Some(p) = dest.source_port {
            let _ = write!(out, " source_port {p}");
        }
        out.push('\n');
    }
    let mut routes: Vec<_> = table.routes.iter().enumerate().collect();
    routes.sort_by_key(|(_, r)| r.key);
    for (id, r) in routes {
        let k = r.key;
        let _ = write!(
            out,
            "{} {}{}",
            table.interface(k.interface).name,
            if k.is_listen() { "listen " } else { "" },
            socket(k.group, k.port)
        );
        if let Some(s) = k.source {
            let _ = write!(out, " from {s}");
        }
        out.push_str(" ->");
        for (n, id) in r.destinations.iter().enumerate() {
            let dest = table.destination(*id);
            let target = match dest.kind {
                DestKind::Unicast { address } => address.to_string(),
                DestKind::Multicast {
                    interface,
                    group,
                    port,
                } => format!(
                    "{} {}",
                    table.interface(interface).name,
                    socket(group.unwrap_or(k.group), port.or(k.port))
                ),
            };
            let sep = if n == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}{} ({target} ttl {}", dest.name, dest.ttl);
            if dest.dscp != 0 {
                let _ = write!(out, " dscp {}", dest.dscp);
            }
            out.push(')');
        }
        let _ = write!(out, "  # {}", r.label);
        if r.rtp {
            out.push_str(", rtp");
        }
        if let Some(red) = table.redundancy(RouteId(id as u32)) {
            out.push_str(&redundancy(table, red));
        }
        out.push('\n');
    }
    out
}

/// `, merge rtp window 20ms, legs eth0 239.1.1.1:5004 | eth1 239.2.2.2:5004 from 10.0.0.9`.
fn redundancy(table: &Table, red: &Redundancy) -> String {
    let mut out = match red.mode {
        RedundancyMode::Merge { window, sequence } => {
            let seq = match sequence {
                SequenceSpec::Rtp => "rtp".to_string(),
                SequenceSpec::Field {
                    offset,
                    size,
                    order,
                } => format!(
                    "offset {offset} size {} {}",
                    size as u8,
                    match order {
                        ByteOrder::Big => "big",
                        ByteOrder::Little => "little",
                    }
                ),
            };
            format!(
                ", merge sequence {seq} window {}",
                humantime::format_duration(window)
            )
        }
        RedundancyMode::Failover { after, revert } => format!(
            ", failover after {} revert {}",
            humantime::format_duration(after),
            match revert {
                Revert::Never => "never".to_string(),
                Revert::After(d) => humantime::format_duration(d).to_string(),
            }
        ),
    };
    out.push_str(", legs");
    for (i, k) in red.legs.iter().enumerate() {
        let sep = if i == 0 { " " } else { " | " };
        let _ = write!(
            out,
            "{sep}{} {}",
            table.interface(k.interface).name,
            socket(k.group, k.port)
        );
        if let Some(s) = k.source {
            let _ = write!(out, " from {s}");
        }
    }
    out
}

/// `group:port`, `[v6]:port`, with `*` for every port.
fn socket(group: IpAddr, port: Option<u16>) -> String {
    let p = port.map_or("*".to_string(), |p| p.to_string());
    match group {
        IpAddr::V4(g) => format!("{g}:{p}"),
        IpAddr::V6(g) => format!("[{g}]:{p}"),
    }
}
