//! What a reload changes: the difference between two routing tables, in the user's words.
//!
//! Pure. Groups are identified by what they match (ingress interface name, group, port, source),
//! destinations by name, so that renumbered indexes between two compilations do not show up as
//! changes. The diff is logged for every reload and returned to `mcrelay reload`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::table::{DestKind, RouteId, Table};

/// The difference between the running table and the one replacing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDiff {
    pub from: u64,
    pub to: u64,
    pub groups_added: Vec<String>,
    pub groups_removed: Vec<String>,
    pub groups_changed: Vec<String>,
    pub destinations_added: Vec<String>,
    pub destinations_removed: Vec<String>,
    pub destinations_changed: Vec<String>,
    /// Ingress interfaces that gain / lose their workers.
    pub workers_started: Vec<String>,
    pub workers_stopped: Vec<String>,
    /// `[daemon]` settings that changed (some take effect only after a restart).
    pub daemon_changed: Vec<String>,
}

/// A group as the user identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupId {
    interface: String,
    group: IpAddr,
    port: Option<u16>,
    source: Option<IpAddr>,
}

/// A group's resolved settings, compared to detect a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupBody {
    label: String,
    destinations: Vec<String>,
    rtp: bool,
    /// A group with `legs`: every leg (by interface name) and the mode; a change starts its
    /// merge or failover state afresh.
    redundancy: Option<String>,
}

/// A destination resolved to names, so index shifts do not count as changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DestBody {
    kind: String,
    ttl: u8,
    dscp: u8,
}

/// `[daemon]` settings that only take effect at the next start.
pub const RESTART_ONLY: [&str; 6] = [
    "control_socket",
    "control_group",
    "metrics_listen",
    "user",
    "stats_interval",
    "reload_debounce",
];

/// Computes what changes from `old` to `new`. Generations are taken from the tables.
pub fn diff(old: &Table, new: &Table) -> TableDiff {
    let old_groups = groups(old);
    let new_groups = groups(new);
    let old_dests = destinations(old);
    let new_dests = destinations(new);
    let mut d = TableDiff {
        from: old.generation.0,
        to: new.generation.0,
        ..TableDiff::default()
    };
    for (id, body) in &new_groups {
        match old_groups.get(id) {
            None => d.groups_added.push(describe(id, body)),
            Some(old_body) if old_body != body => d.groups_changed.push(describe(id, body)),
            Some(_) => {}
        }
    }
    for (id, body) in &old_groups {
        if !new_groups.contains_key(id) {
            d.groups_removed.push(describe(id, body));
        }
    }
    for (name, body) in &new_dests {
        match old_dests.get(name) {
            None => d.destinations_added.push(name.clone()),
            Some(b) if b != body => d.destinations_changed.push(name.clone()),
            Some(_) => {}
        }
    }
    d.destinations_removed = old_dests
        .keys()
        .filter(|n| !new_dests.contains_key(*n))
        .cloned()
        .collect();
    let old_ifs = ingress(old);
    let new_ifs = ingress(new);
    d.workers_started = new_ifs.difference(&old_ifs).cloned().collect();
    d.workers_stopped = old_ifs.difference(&new_ifs).cloned().collect();
    let (a, b) = (&old.daemon, &new.daemon);
    let changed = [
        ("control_socket", a.control_socket != b.control_socket),
        ("control_group", a.control_group != b.control_group),
        ("stats_interval", a.stats_interval != b.stats_interval),
        ("silence_timeout", a.silence_timeout != b.silence_timeout),
        ("reload_debounce", a.reload_debounce != b.reload_debounce),
        ("metrics_listen", a.metrics_listen != b.metrics_listen),
        ("user", a.user != b.user),
    ];
    d.daemon_changed = changed
        .iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| n.to_string())
        .collect();
    d
}

impl TableDiff {
    /// True when nothing a worker or an operator would notice changed.
    pub fn is_empty(&self) -> bool {
        self.groups_added.is_empty()
            && self.groups_removed.is_empty()
            && self.groups_changed.is_empty()
            && self.destinations_added.is_empty()
            && self.destinations_removed.is_empty()
            && self.destinations_changed.is_empty()
            && self.workers_started.is_empty()
            && self.workers_stopped.is_empty()
            && self.daemon_changed.is_empty()
    }

    /// One line: "generation 3 → 4: groups +2 -1 ~0, destinations +0 -0 ~1, workers +0 -0".
    pub fn summary(&self) -> String {
        format!(
            "generation {} → {}: groups +{} -{} ~{}, destinations +{} -{} ~{}, workers +{} -{}",
            self.from,
            self.to,
            self.groups_added.len(),
            self.groups_removed.len(),
            self.groups_changed.len(),
            self.destinations_added.len(),
            self.destinations_removed.len(),
            self.destinations_changed.len(),
            self.workers_started.len(),
            self.workers_stopped.len(),
        )
    }
}

impl TableDiff {
    /// Logs each change as its own line (`reload: + group camera-1 (239.1.1.1:5000 on eth0)`),
    /// carrying what it is about as fields (`generation`, and `group` with `interface`,
    /// `destination`, or `interface` for a worker), which the journal stores as `MCRELAY_*`
    /// fields: `journalctl -u mcrelay MCRELAY_GROUP=camera-1` lists the reloads that touched it.
    pub fn log(&self) {
        let generation = self.to;
        let groups = [
            ("+", &self.groups_added),
            ("-", &self.groups_removed),
            ("~", &self.groups_changed),
        ];
        for (sign, items) in groups {
            for item in items {
                let (label, interface) = label_and_interface(item);
                tracing::info!(
                    generation,
                    group = label,
                    interface,
                    "reload: {sign} group {item}"
                );
            }
        }
        let destinations = [
            ("+", &self.destinations_added),
            ("-", &self.destinations_removed),
            ("~", &self.destinations_changed),
        ];
        for (sign, items) in destinations {
            for item in items {
                let name = item.split(' ').next().unwrap_or(item);
                tracing::info!(
                    generation,
                    destination = name,
                    "reload: {sign} destination {item}"
                );
            }
        }
        for (sign, items) in [("+", &self.workers_started), ("-", &self.workers_stopped)] {
            for item in items {
                let interface = item.split('/').next().unwrap_or(item);
                tracing::info!(generation, interface, "reload: {sign} worker {item}");
            }
        }
        for item in &self.daemon_changed {
            if RESTART_ONLY.contains(&item.as_str()) {
                tracing::warn!(
                    generation,
                    "reload: ~ daemon {item}: it takes effect after a restart"
                );
            } else {
                tracing::info!(generation, "reload: ~ daemon {item}");
            }
        }
    }
}

/// The group label and ingress interface of a group as [`describe`] writes it,
/// `label (… on interface)`.
fn label_and_interface(item: &str) -> (&str, &str) {
    match item.rsplit_once(" (") {
        Some((label, rest)) => {
            let inner = rest.strip_suffix(')').unwrap_or(rest);
            (label, inner.rsplit_once(" on ").map_or("", |(_, i)| i))
        }
        None => (item, ""),
    }
}

/// The full diff, one change per line, `+` added, `-` removed, `~` changed.
impl fmt::Display for TableDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "generation {} → {}", self.from, self.to)?;
        let sections: [(&str, &str, &[String]); 9] = [
            ("+", "group", &self.groups_added),
            ("-", "group", &self.groups_removed),
            ("~", "group", &self.groups_changed),
            ("+", "destination", &self.destinations_added),
            ("-", "destination", &self.destinations_removed),
            ("~", "destination", &self.destinations_changed),
            ("+", "worker", &self.workers_started),
            ("-", "worker", &self.workers_stopped),
            ("~", "daemon", &self.daemon_changed),
        ];
        let mut any = false;
        for (sign, what, items) in sections {
            for item in items {
                any = true;
                write!(f, "  {sign} {what} {item}")?;
                if what == "daemon" && RESTART_ONLY.contains(&item.as_str()) {
                    write!(f, " (takes effect after a restart)")?;
                }
                writeln!(f)?;
            }
        }
        if !any {
            writeln!(f, "  no change to groups, destinations or workers")?;
        }
        Ok(())
    }
}

fn describe(id: &GroupId, body: &GroupBody) -> String {
    let mut s = body.label.clone();
    s.push_str(" (");
    if let Some(src) = id.source {
        s.push_str(&format!("{src} → "));
    }
    match (id.group, id.port) {
        (IpAddr::V6(g), Some(p)) => s.push_str(&format!("[{g}]:{p}")),
        (g, Some(p)) => s.push_str(&format!("{g}:{p}")),
        (g, None) => s.push_str(&g.to_string()),
    }
    s.push_str(&format!(" on {})", id.interface));
    s
}

fn groups(t: &Table) -> BTreeMap<GroupId, GroupBody> {
    t.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = GroupId {
                interface: t.interface(r.key.interface).name.clone(),
                group: r.key.group,
                port: r.key.port,
                source: r.key.source,
            };
            let body = GroupBody {
                label: r.label.clone(),
                destinations: r
                    .destinations
                    .iter()
                    .map(|&d| t.destination(d).name.clone())
                    .collect(),
                rtp: r.rtp,
                redundancy: t.redundancy(RouteId(i as u32)).map(|red| {
                    let legs: Vec<String> = red
                        .legs
                        .iter()
                        .map(|k| {
                            format!(
                                "{} {} {:?} {:?}",
                                t.interface(k.interface).name,
                                k.group,
                                k.port,
                                k.source
                            )
                        })
                        .collect();
                    format!("{} {:?}", legs.join(", "), red.mode)
                }),
            };
            (id, body)
        })
        .collect()
}

fn destinations(t: &Table) -> BTreeMap<String, DestBody> {
    t.destinations
        .iter()
        .map(|d| {
            let kind = match &d.kind {
                DestKind::Multicast {
                    interface,
                    group,
                    port,
                } => format!(
                    "multicast {} {group:?} {port:?}",
                    t.interface(*interface).name
                ),
                DestKind::Unicast { address } => format!("unicast {address}"),
            };
            let body = DestBody {
                kind,
                ttl: d.ttl,
                dscp: d.dscp,
            };
            (d.name.clone(), body)
        })
        .collect()
}

fn ingress(t: &Table) -> BTreeSet<String> {
    t.ingress_interfaces()
        .keys()
        .map(|&i| t.interface(i).name.clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::table::*;
    use std::net::{Ipv4Addr, SocketAddr};

    pub(crate) use crate::testkit::interface as iface;

    pub(crate) fn mdest(name: &str, iface: u16) -> Destination {
        Destination {
            name: name.into(),
            kind: DestKind::Multicast {
                interface: IfaceId(iface),
                group: None,
                port: None,
            },
            ttl: 1,
            dscp: 0,
            source_port: None,
        }
    }

    pub(crate) fn route(iface: u16, last: u8, label: &str, dests: &[u32]) -> Route {
        Route {
            key: RouteKey {
                interface: IfaceId(iface),
                group: IpAddr::V4(Ipv4Addr::new(239, 1, 1, last)),
                port: Some(5000),
                source: None,
            },
            label: label.into(),
            destinations: dests.iter().map(|&d| DestId(d)).collect(),
            rtp: false,
        }
    }

    fn table(ifs: &[&str], dests: Vec<Destination>, routes: Vec<Route>, g: u64) -> Table {
        Table::new(
            DaemonSettings::default(),
            ifs.iter().map(|n| iface(n)).collect(),
            dests,
            routes,
        )
        .with_generation(Generation(g))
    }

    #[test]
    fn identical_tables_differ_in_nothing() {
        let a = table(
            &["in0", "out0"],
            vec![mdest("a", 1)],
            vec![route(0, 1, "cam1", &[0])],
            1,
        );
        let b = a.clone().with_generation(Generation(2));
        let d = diff(&a, &b);
        assert!(d.is_empty());
        assert_eq!((d.from, d.to), (1, 2));
        assert!(d.to_string().contains("no change"));
    }

    #[test]
    fn renumbered_interfaces_are_not_changes() {
        let a = table(
            &["in0", "out0"],
            vec![mdest("a", 1)],
            vec![route(0, 1, "cam1", &[0])],
            1,
        );
        let b = table(
            &["out0", "in0"],
            vec![mdest("a", 0)],
            vec![route(1, 1, "cam1", &[0])],
            2,
        );
        assert!(diff(&a, &b).is_empty(), "{}", diff(&a, &b));
    }

    #[test]
    fn added_removed_changed_groups_and_destinations() {
        let a = table(
            &["in0", "out0", "in1"],
            vec![mdest("a", 1), mdest("b", 1)],
            vec![
                route(0, 1, "cam1", &[0]),
                route(0, 2, "cam2", &[0, 1]),
                route(2, 3, "cam3", &[1]),
            ],
            4,
        );
        let mut b_dest = mdest("b", 1);
        b_dest.ttl = 9;
        let b = table(
            &["in0", "out0", "in1"],
            vec![mdest("a", 1), b_dest, mdest("c", 1)],
            vec![
                route(0, 1, "cam1", &[0]),
                route(0, 2, "cam2", &[0]),
                route(0, 4, "cam4", &[2]),
            ],
            5,
        );
        let d = diff(&a, &b);
        assert_eq!(d.groups_added, vec!["cam4 (239.1.1.4:5000 on in0)"]);
        assert_eq!(d.groups_removed, vec!["cam3 (239.1.1.3:5000 on in1)"]);
        assert_eq!(d.groups_changed, vec!["cam2 (239.1.1.2:5000 on in0)"]);
        assert_eq!(d.destinations_added, vec!["c"]);
        assert_eq!(d.destinations_changed, vec!["b"]);
        assert!(d.destinations_removed.is_empty());
        assert_eq!(d.workers_stopped, vec!["in1"]);
        assert!(d.workers_started.is_empty());
        assert_eq!(
            d.summary(),
            "generation 4 → 5: groups +1 -1 ~1, destinations +1 -0 ~1, workers +0 -1"
        );
        let text = d.to_string();
        assert!(text.starts_with("generation 4 → 5\n"));
        assert!(text.contains("  + group cam4 (239.1.1.4:5000 on in0)\n"));
        assert!(text.contains("  - worker in1\n"));
    }

    #[test]
    fn daemon_settings_restart_only_are_flagged() {
        let a = table(&["in0"], vec![], vec![], 1);
        let mut b = a.clone();
        b.daemon.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 9477)));
        b.daemon.silence_timeout = std::time::Duration::from_secs(9);
        let d = diff(&a, &b);
        assert_eq!(d.daemon_changed, vec!["silence_timeout", "metrics_listen"]);
        let text = d.to_string();
        assert!(text.contains("~ daemon metrics_listen (takes effect after a restart)"));
        assert!(text.contains("~ daemon silence_timeout\n"));
    }

    #[test]
    fn new_ingress_interface_starts_a_worker() {
        let a = table(&["in0", "in1"], vec![], vec![route(0, 1, "x", &[])], 1);
        let b = table(
            &["in0", "in1"],
            vec![],
            vec![route(0, 1, "x", &[]), route(1, 2, "y", &[])],
            2,
        );
        let d = diff(&a, &b);
        assert_eq!(d.workers_started, vec!["in1"]);
    }

    /// The group label and interface are read back from the text the diff holds, so the
    /// journal fields of a reload line name the group as metrics and `stats` do.
    #[test]
    fn log_fields_name_the_group_and_interface_of_each_change() {
        let id = GroupId {
            interface: "eth0".into(),
            group: "ff3e::1:5".parse().unwrap(),
            port: Some(5004),
            source: Some("2001:db8::1".parse().unwrap()),
        };
        let body = GroupBody {
            label: "studio (main) feed".into(),
            destinations: vec![],
            rtp: false,
            redundancy: None,
        };
        let text = describe(&id, &body);
        assert_eq!(
            text,
            "studio (main) feed (2001:db8::1 → [ff3e::1:5]:5004 on eth0)"
        );
        assert_eq!(label_and_interface(&text), ("studio (main) feed", "eth0"));
        assert_eq!(label_and_interface("plain"), ("plain", ""));
    }

    /// A group with legs is identified by its first leg; a change of another leg or of the
    /// mode is a change (its merge state starts afresh), a new name alone is one too.
    #[test]
    fn a_change_of_legs_or_mode_changes_the_group() {
        let text = |second: &str, mode: &str| {
            format!(
                "[interfaces.red]\n[interfaces.blue]\n[destinations.d]\naddress = \"192.0.2.1:9\"\n\
                 [[groups]]\nlegs = [{{ interface = \"red\", group = \"239.1.1.1\", port = 5000 }}, \
                 {{ interface = \"blue\", group = \"{second}\", port = 5000 }}]\n\
                 redundancy = \"{mode}\"\nto = [\"d\"]\n"
            )
        };
        let t = |text: String| {
            crate::config::compile(
                &text,
                std::path::Path::new("t.toml"),
                &crate::config::FakeResolver::everything(),
            )
            .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let a = t(text("239.2.2.2", "failover"));
        assert!(diff(&a, &t(text("239.2.2.2", "failover"))).is_empty());
        for b in [
            t(text("239.2.2.3", "failover")),
            t(text("239.2.2.2", "merge\"\nsequence = \"rtp")),
        ] {
            let d = diff(&a, &b);
            assert_eq!(
                (
                    d.groups_changed.len(),
                    d.groups_added.len(),
                    d.groups_removed.len()
                ),
                (1, 0, 0),
                "{d}"
            );
        }
    }
}
