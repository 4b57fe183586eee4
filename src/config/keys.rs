//! Every dotted key the parser accepts, for documentation checks and editors.

/// Every key the configuration accepts, dotted; `*` stands for a user-chosen name
/// (an interface or destination name). Tables are listed too (`daemon`, `interfaces`, ...).
pub fn known_keys() -> &'static [&'static str] {
    &[
        "daemon",
        "daemon.control_socket",
        "daemon.control_group",
        "daemon.stats_interval",
        "daemon.silence_timeout",
        "daemon.reload_debounce",
        "daemon.metrics_listen",
        "daemon.user",
        "interfaces",
        "interfaces.*.ttl",
        "interfaces.*.ingress",
        "interfaces.*.workers",
        "interfaces.*.cpus",
        "interfaces.*.rcvbuf",
        "destinations",
        "destinations.*.interface",
        "destinations.*.group",
        "destinations.*.port",
        "destinations.*.address",
        "destinations.*.ttl",
        "destinations.*.dscp",
        "groups",
        "groups.name",
        "groups.interface",
        "groups.group",
        "groups.port",
        "groups.source",
        "groups.to",
        "groups.rtp",
        "groups.legs",
        "groups.legs.interface",
        "groups.legs.group",
        "groups.legs.port",
        "groups.legs.source",
        "groups.redundancy",
        "groups.sequence",
        "groups.sequence.offset",
        "groups.sequence.size",
        "groups.sequence.byte_order",
        "groups.window",
        "groups.failover_after",
        "groups.revert",
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::known_keys;
    use crate::config::{FakeResolver, compile};

    /// A configuration that sets every key the parser accepts.
    const MAXIMAL: &str = r#"
[daemon]
control_socket = "/run/mcrelay/control.sock"
control_group = "mcrelay"
stats_interval = "1s"
silence_timeout = "2s"
reload_debounce = "200ms"
metrics_listen = "127.0.0.1:9477"
user = "mcrelay"

[interfaces.eth0]
ttl = 4
ingress = "ring"
workers = 2
cpus = [0, 1]
rcvbuf = "32MiB"

[interfaces.eth1]

[destinations.studio]
interface = "eth1"
group = "239.2.2.2"
port = 6000
ttl = 8
dscp = 34

[destinations.archive]
address = "10.20.0.9:7000"
ttl = 30
dscp = 10

[[groups]]
name = "camera-1"
interface = "eth0"
group = "239.1.1.1"
port = 5000
source = "10.10.1.100"
to = ["studio", "archive"]
rtp = true

[[groups]]
name = "feed-ab"
legs = [
    { interface = "eth0", group = "239.1.1.2", port = 5000, source = "10.10.1.100" },
    { interface = "eth1", group = "239.1.1.2", port = 5000 },
]
redundancy = "merge"
sequence = { offset = 10, size = 8, byte_order = "big" }
window = "20ms"
to = ["archive"]

[[groups]]
name = "camera-2"
legs = [
    { interface = "eth0", group = "239.1.1.3", port = 5000 },
    { interface = "eth1", group = "239.1.1.3", port = 5000 },
]
redundancy = "failover"
failover_after = "100ms"
revert = "30s"
to = ["archive"]
"#;

    /// The dotted keys a TOML document sets, with user-chosen names replaced by `*`.
    fn keys_of(value: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in value {
            let key = match prefix {
                "" => k.clone(),
                "interfaces" | "destinations" => format!("{prefix}.*"),
                _ => format!("{prefix}.{k}"),
            };
            if !key.ends_with(".*") {
                out.insert(key.clone());
            }
            match v {
                toml::Value::Table(t) => keys_of(t, &key, out),
                toml::Value::Array(a) => {
                    for t in a.iter().filter_map(|v| v.as_table()) {
                        keys_of(t, &key, out);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn the_maximal_config_uses_exactly_the_known_keys_and_compiles() {
        let doc: toml::Table = MAXIMAL.parse().unwrap();
        let mut used = BTreeSet::new();
        keys_of(&doc, "", &mut used);
        let known: BTreeSet<String> = known_keys().iter().map(|k| k.to_string()).collect();
        assert_eq!(used, known, "MAXIMAL and known_keys() disagree");
        assert_eq!(
            known.len(),
            known_keys().len(),
            "known_keys() lists a key twice"
        );
        let t = compile(MAXIMAL, Path::new("max.toml"), &FakeResolver::everything())
            .unwrap_or_else(|e| panic!("{}", crate::config::render_errors(&e)));
        assert!(t.routes[0].rtp);
        assert_eq!(t.daemon.user.as_deref(), Some("mcrelay"));
        assert_eq!(t.redundant_routes().count(), 2);
    }

    /// serde's "unknown field" error lists every field a table accepts: compare that list with
    /// `known_keys()` for each table, so a field added to a `Raw*` struct without being listed
    /// (or listed without existing) fails here.
    #[test]
    fn known_keys_is_exactly_what_each_table_accepts() {
        let tables = [
            ("", "zz_unknown = 1\n"),
            ("daemon", "[daemon]\nzz_unknown = 1\n"),
            ("interfaces.*", "[interfaces.eth0]\nzz_unknown = 1\n"),
            ("destinations.*", "[destinations.d]\nzz_unknown = 1\n"),
            ("groups", "[[groups]]\nzz_unknown = 1\n"),
            ("groups.legs", "[[groups]]\nlegs = [{ zz_unknown = 1 }]\n"),
            (
                "groups.sequence",
                "[[groups]]\nsequence = { zz_unknown = 1 }\n",
            ),
        ];
        let mut covered = BTreeSet::new();
        for (prefix, text) in tables {
            let errors = compile(text, Path::new("t.toml"), &FakeResolver::everything())
                .expect_err("an unknown key must be rejected");
            let message = &errors[0].message;
            let list = message
                .split_once("expected one of ")
                .unwrap_or_else(|| panic!("unexpected message for {prefix:?}: {message}"))
                .1;
            let accepted: BTreeSet<String> = list
                .split(", ")
                .map(|f| {
                    let f = f.trim().trim_matches('`');
                    if prefix.is_empty() {
                        f.to_string()
                    } else {
                        format!("{prefix}.{f}")
                    }
                })
                .collect();
            let listed: BTreeSet<String> = known_keys()
                .iter()
                .filter(|k| match prefix {
                    "" => !k.contains('.'),
                    p => k
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.')),
                })
                .map(|k| k.to_string())
                .collect();
            assert_eq!(accepted, listed, "table {prefix:?}");
            covered.extend(listed);
        }
        let all: BTreeSet<String> = known_keys().iter().map(|k| k.to_string()).collect();
        assert_eq!(
            covered, all,
            "known_keys() lists keys outside the checked tables"
        );
    }

    /// Every key is documented in its own section of mcrelay.toml(5), as `.It Ic key`.
    #[test]
    fn every_key_is_documented_in_the_man_page() {
        let page = include_str!("../../man/mcrelay.toml.5");
        let mut section = String::new();
        let mut items: Vec<(String, String)> = Vec::new();
        for line in page.lines() {
            if let Some(title) = line.strip_prefix(".Ss ") {
                section = title.to_string();
            } else if let Some(item) = line.strip_prefix(".It Ic ") {
                let key = item.split_whitespace().next().unwrap_or("").to_string();
                items.push((section.clone(), key));
            }
        }
        let sections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".Ss "))
            .collect();
        for key in known_keys() {
            let (table, leaf) = match key.split_once('.') {
                None => {
                    assert!(
                        sections.iter().any(|s| s.contains(key)),
                        "man page has no .Ss section for the {key} table"
                    );
                    continue;
                }
                Some((table, rest)) => (table, rest.trim_start_matches("*.")),
            };
            assert!(
                items.iter().any(|(s, k)| s.contains(table) && k == leaf),
                "man page does not document {key} (as `.It Ic {leaf}` in the {table} section)"
            );
        }
    }
}
