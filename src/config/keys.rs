//! Every key the configuration accepts, with its type: the one list that the structural check of
//! a file ([`check_structure`]), the JSON Schema for editors ([`json_schema`]) and the
//! documentation check (every key in mcrelay.toml(5), with the same type and range) are built
//! from.
//!
//! The structural check runs before the typed (serde) pass so that an unknown key or a value of
//! the wrong type is one error among the others, not the end of the run: it reports such a key
//! and removes it from the parsed document, and the typed pass and every semantic check then run
//! on what is left.

use std::fmt::Write as _;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Locator};
use super::values::nearest;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A table of settings (`[daemon]`).
    Table,
    /// A table of named tables (`[interfaces.NAME]`): the entries' keys are `PATH.*.key`.
    NamedTables,
    /// An array of tables (`[[groups]]`): the entries' keys are `PATH.key`.
    ArrayOfTables,
    /// A string with a meaning the compiler checks (an address, a duration, a name).
    Text(&'static str),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// One of these strings, or a table of settings (its keys are `PATH.key`).
    OneOfOrTable(&'static [&'static str]),
    /// An integer in `min..=max`.
    Integer {
        min: i64,
        max: i64,
    },
    /// An array of integers in `min..=max`.
    Integers {
        min: i64,
        max: i64,
    },
    /// An array of strings.
    Strings,
    Boolean,
    /// A size: a number of bytes in `min..=max`, or a string with a unit such as "32MiB".
    Size {
        min: i64,
        max: i64,
    },
}

/// One accepted key: its dotted path (`*` for a user-chosen name), what it holds, and a line of
/// description for editors (mcrelay.toml(5) says the rest).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub path: &'static str,
    pub kind: Kind,
    pub about: &'static str,
}

const fn key(path: &'static str, kind: Kind, about: &'static str) -> Key {
    Key { path, kind, about }
}

const TTL: Kind = Kind::Integer { min: 1, max: 255 };
const PORT: Kind = Kind::Integer { min: 1, max: 65535 };
const DURATION: Kind = Kind::Text("a duration such as \"1s\", \"200ms\" or \"1m 30s\"");
const ADDRESS: Kind = Kind::Text("an IP address");

/// Every key, in the order of mcrelay.toml(5).
pub(crate) const KEYS: &[Key] = &[
    key("daemon", Kind::Table, "Settings of the daemon itself."),
    key(
        "daemon.control_socket",
        Kind::Text("an absolute path"),
        "Path of the control socket used by mcrelay reload, status and stats.",
    ),
    key(
        "daemon.control_group",
        Kind::Text("a group name"),
        "Group that owns the control socket (mode 0660), so its members can use the control commands.",
    ),
    key(
        "daemon.user",
        Kind::Text("a user name"),
        "User to switch to after start-up as root, keeping only the capabilities needed.",
    ),
    key(
        "daemon.stats_interval",
        DURATION,
        "How often packet and byte rates are computed.",
    ),
    key(
        "daemon.silence_timeout",
        DURATION,
        "A group that received nothing for this long is reported down.",
    ),
    key(
        "daemon.reload_debounce",
        DURATION,
        "Wait for the file to be quiet this long before reloading it; zero reloads at once.",
    ),
    key(
        "daemon.metrics_listen",
        Kind::Text("an address with a port, such as \"127.0.0.1:9477\""),
        "Serve Prometheus metrics over HTTP at this address; off without it.",
    ),
    key(
        "interfaces",
        Kind::NamedTables,
        "Every interface received on or sent out of, by its kernel name.",
    ),
    key(
        "interfaces.*.ttl",
        TTL,
        "TTL or hop limit of multicast sent out of this interface by destinations without their own.",
    ),
    key(
        "interfaces.*.ingress",
        Kind::OneOf(&["frames", "ring"]),
        "How the interface is received on: \"frames\" (TPACKET_V2 ring, the default) or \"ring\" (TPACKET_V3 blocks).",
    ),
    key(
        "interfaces.*.workers",
        Kind::Integer { min: 1, max: 64 },
        "Number of threads receiving on this interface.",
    ),
    key(
        "interfaces.*.cpus",
        Kind::Integers { min: 0, max: 1023 },
        "CPUs to pin this interface's workers to, each once.",
    ),
    key(
        "interfaces.*.rcvbuf",
        Kind::Size {
            min: 4 << 10,
            max: 1 << 30,
        },
        "Size of the receive ring, in bytes or with a unit such as \"32MiB\".",
    ),
    key(
        "interfaces.*.tunnel",
        Kind::Table,
        "Makes this interface a relay-to-relay tunnel (a UDP flow to peer relays), not a kernel interface.",
    ),
    key(
        "interfaces.*.tunnel.local",
        Kind::Text("an address with a port, such as \"0.0.0.0:4789\""),
        "Address and UDP port the tunnel receives on and sends from.",
    ),
    key(
        "interfaces.*.tunnel.peers",
        Kind::Strings,
        "Addresses with ports of the relays at the other end; datagrams from anyone else are refused.",
    ),
    key(
        "interfaces.*.tunnel.key_file",
        Kind::Text("an absolute path"),
        "File holding the tunnel's key (64 to 128 hex digits): every datagram is authenticated with it.",
    ),
    key(
        "interfaces.*.tunnel.silence_timeout",
        DURATION,
        "A peer heard from not for this long is reported down.",
    ),
    key(
        "destinations",
        Kind::NamedTables,
        "Named places to send to: multicast with `interface`, or unicast with `address`.",
    ),
    key(
        "destinations.*.interface",
        Kind::Text("a declared interface"),
        "Makes the destination multicast: the declared interface to send out of.",
    ),
    key(
        "destinations.*.group",
        ADDRESS,
        "Multicast only: the group to send to; default: the received group.",
    ),
    key(
        "destinations.*.port",
        PORT,
        "Multicast only: the UDP port to send to; default: the received port.",
    ),
    key(
        "destinations.*.address",
        Kind::Text("an IP address with a port, such as \"10.20.0.9:7000\""),
        "Makes the destination unicast: the host and port to send to.",
    ),
    key(
        "destinations.*.ttl",
        TTL,
        "TTL or hop limit of the datagrams sent.",
    ),
    key(
        "destinations.*.dscp",
        Kind::Integer { min: 0, max: 63 },
        "Differentiated Services code point of the datagrams sent.",
    ),
    key(
        "destinations.*.source_port",
        PORT,
        "UDP source port of the datagrams sent; default: one chosen at start, kept for the life of the process.",
    ),
    key(
        "groups",
        Kind::ArrayOfTables,
        "The multicast streams to relay.",
    ),
    key(
        "groups.name",
        Kind::Text("a label"),
        "Label used in logs, statistics and metrics; unique among the groups.",
    ),
    key(
        "groups.interface",
        Kind::Text("a declared interface"),
        "The declared interface to receive on.",
    ),
    key(
        "groups.group",
        ADDRESS,
        "The IPv4 or IPv6 multicast group to receive.",
    ),
    key(
        "groups.port",
        PORT,
        "Only datagrams to this UDP port; default: every port.",
    ),
    key(
        "groups.listen",
        Kind::Text("an address with a port, such as \"10.0.0.5:5000\" or \"0.0.0.0:5000\""),
        "Receive unicast UDP to this local address and port instead of a group (unicast ingress).",
    ),
    key(
        "groups.source",
        ADDRESS,
        "Only datagrams from this unicast sender (source-specific multicast).",
    ),
    key(
        "groups.to",
        Kind::Strings,
        "Names of the destinations to send each datagram to.",
    ),
    key(
        "groups.rtp",
        Kind::Boolean,
        "The stream carries RTP: also count sequence gaps, duplicates and reordering.",
    ),
    key(
        "groups.legs",
        Kind::ArrayOfTables,
        "Two or more inputs (legs) of one stream, in place of interface, group, port and source.",
    ),
    key(
        "groups.legs.interface",
        Kind::Text("a declared interface"),
        "The declared interface this leg is received on.",
    ),
    key(
        "groups.legs.group",
        ADDRESS,
        "The multicast group of this leg.",
    ),
    key(
        "groups.legs.port",
        PORT,
        "Only datagrams to this UDP port; default: every port.",
    ),
    key(
        "groups.legs.source",
        ADDRESS,
        "Only datagrams from this sender.",
    ),
    key(
        "groups.redundancy",
        Kind::OneOf(&["merge", "failover"]),
        "What to do with the legs: \"merge\" (first copy of each sequence number, SMPTE ST 2022-7) or \"failover\" (one leg at a time).",
    ),
    key(
        "groups.sequence",
        Kind::OneOfOrTable(&["rtp"]),
        "Merge only: where each packet's sequence number is: \"rtp\", or a field { offset, size, byte_order } of the UDP payload.",
    ),
    key(
        "groups.sequence.offset",
        Kind::Integer { min: 0, max: 65535 },
        "Byte offset of the sequence field in the UDP payload.",
    ),
    key(
        "groups.sequence.size",
        Kind::Integer { min: 2, max: 8 },
        "Size of the sequence field in bytes: 2, 4 or 8.",
    ),
    key(
        "groups.sequence.byte_order",
        Kind::OneOf(&["big", "little"]),
        "Byte order of the sequence field; default: big.",
    ),
    key(
        "groups.window",
        DURATION,
        "Merge only: the skew the legs may have (how long a missing number is waited for); default 20ms.",
    ),
    key(
        "groups.failover_after",
        DURATION,
        "Failover only: switch to the next leg after this long without packets; default 200ms.",
    ),
    key(
        "groups.revert",
        Kind::Text("\"never\" or a duration"),
        "Failover only: go back to an earlier leg once it has been healthy this long, or never (the default).",
    ),
];

/// Every key the configuration accepts, dotted; `*` stands for a user-chosen name
/// (an interface or destination name). Tables are listed too (`daemon`, `interfaces`, ...).
pub fn known_keys() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.path).collect()
}

/// What the structural check found.
pub(crate) struct Structure {
    /// Unknown keys and values of the wrong type, each located.
    pub errors: Vec<ConfigError>,
    /// Keys removed for their type, as (byte offset of the table they were in, key): the typed
    /// pass sees them as missing, and a "needs `key`" finding there would only repeat the error.
    pub retyped: Vec<(usize, &'static str)>,
}

/// Checks every key of a parsed document against [`KEYS`]: each unknown key and each value of
/// the wrong type is an error, and is removed from the document so that the typed pass sees
/// only keys it accepts, of the types it expects.
pub(crate) fn check_structure(root: &mut DeTable<'_>, loc: &Locator<'_>) -> Structure {
    let mut found = Structure {
        errors: Vec::new(),
        retyped: Vec::new(),
    };
    check_table(root, "", "the top level", &[], loc, &mut found);
    found
}

/// The keys directly under `prefix` (`""` for the top level).
fn children(prefix: &str) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().filter(move |k| match prefix {
        "" => !k.path.contains('.'),
        p => k
            .path
            .strip_prefix(p)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|leaf| !leaf.contains('.')),
    })
}

/// A suggestion is worth making only for a likely typo, which rarely changes the first letter
/// (`host` is not a misspelt `port`).
fn same_start(a: &str, b: &str) -> bool {
    a.chars().next() == b.chars().next()
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Checks the keys of one table; `owners` are the offsets where findings about the table as a
/// whole are located (its header, or its name in a table of named tables).
fn check_table(
    table: &mut DeTable<'_>,
    prefix: &str,
    place: &str,
    owners: &[usize],
    loc: &Locator<'_>,
    found: &mut Structure,
) {
    let accepted: Vec<&'static Key> = children(prefix).collect();
    let names: Vec<&str> = accepted.iter().map(|k| leaf(k.path)).collect();
    let mut remove = Vec::new();
    for (name, value) in table.iter_mut() {
        let Some(key) = accepted.iter().find(|k| leaf(k.path) == name.get_ref()) else {
            let mut m = format!("unknown key `{}` in {place}", name.get_ref());
            match nearest(name.get_ref(), &names).filter(|s| same_start(s, name.get_ref())) {
                Some(s) => {
                    let _ = write!(m, "; did you mean `{s}`?");
                }
                None if names.is_empty() => {}
                None => {
                    let _ = write!(m, "; the keys here are {}", names.join(", "));
                }
            }
            found.errors.push(loc.error(name.span(), m));
            remove.push(name.get_ref().to_string());
            continue;
        };
        if !check_value(key, value, name.get_ref(), place, loc, found) {
            remove.push(name.get_ref().to_string());
            found
                .retyped
                .extend(owners.iter().map(|&o| (o, leaf(key.path))));
        }
    }
    for name in remove {
        table.remove(name.as_str());
    }
}

/// Checks one value; `false` when it must be removed.
fn check_value(
    key: &Key,
    value: &mut Spanned<DeValue<'_>>,
    name: &str,
    place: &str,
    loc: &Locator<'_>,
    found: &mut Structure,
) -> bool {
    let span = value.span();
    let wrong = |errors: &mut Vec<ConfigError>, what: &str, value: &DeValue<'_>| {
        errors.push(loc.error(
            span.clone(),
            format!(
                "`{name}` in {place} must be {what}, not {}",
                describe(value)
            ),
        ));
        false
    };
    match key.kind {
        Kind::Table => match value.get_mut() {
            DeValue::Table(t) => {
                check_table(
                    t,
                    key.path,
                    &format!("[{}]", key.path),
                    &[span.start],
                    loc,
                    found,
                );
                true
            }
            other => wrong(&mut found.errors, "a table", other),
        },
        Kind::NamedTables => match value.get_mut() {
            DeValue::Table(t) => {
                let prefix = format!("{}.*", key.path);
                let mut remove = Vec::new();
                for (entry, v) in t.iter_mut() {
                    let here = format!("[{}.{}]", key.path, entry.get_ref());
                    let entry_span = v.span();
                    match v.get_mut() {
                        DeValue::Table(inner) => {
                            let owners = [entry.span().start, entry_span.start];
                            check_table(inner, &prefix, &here, &owners, loc, found)
                        }
                        other => {
                            found.errors.push(loc.error(
                                entry_span,
                                format!(
                                    "`{}` in [{}] must be a table of settings, not {}; write it as {here}",
                                    entry.get_ref(),
                                    key.path,
                                    describe(other)
                                ),
                            ));
                            remove.push(entry.get_ref().to_string());
                        }
                    }
                }
                for entry in remove {
                    t.remove(entry.as_str());
                }
                true
            }
            other => wrong(&mut found.errors, "a table of named tables", other),
        },
        Kind::ArrayOfTables => match value.get_mut() {
            DeValue::Array(a) => {
                let mut ok = true;
                for entry in a.iter_mut() {
                    let entry_span = entry.span();
                    match entry.get_mut() {
                        DeValue::Table(t) => {
                            let here = format!("[[{}]]", key.path);
                            check_table(t, key.path, &here, &[entry_span.start], loc, found)
                        }
                        other => {
                            found.errors.push(loc.error(
                                entry_span,
                                format!(
                                    "each entry of `{name}` must be a table, written [[{}]], not {}",
                                    key.path,
                                    describe(other)
                                ),
                            ));
                            ok = false;
                        }
                    }
                }
                ok
            }
            other => wrong(
                &mut found.errors,
                &format!("[[{}]] tables", key.path),
                other,
            ),
        },
        Kind::OneOfOrTable(_) => match value.get_mut() {
            DeValue::String(_) => true,
            DeValue::Table(t) => {
                check_table(
                    t,
                    key.path,
                    &format!("`{}`", key.path),
                    &[span.start],
                    loc,
                    found,
                );
                true
            }
            other => wrong(
                &mut found.errors,
                &format!("{} or a table", expected(key.kind)),
                other,
            ),
        },
        Kind::Text(_) | Kind::OneOf(_) => match value.get_ref() {
            DeValue::String(_) => true,
            other => wrong(
                &mut found.errors,
                &format!("a string ({})", expected(key.kind)),
                other,
            ),
        },
        Kind::Boolean => match value.get_ref() {
            DeValue::Boolean(_) => true,
            other => wrong(&mut found.errors, "true or false", other),
        },
        Kind::Integer { .. } => integer(value, name, place, loc, &mut found.errors, "an integer"),
        Kind::Size { .. } => match value.get_ref() {
            DeValue::String(_) => true,
            DeValue::Integer(_) => integer(value, name, place, loc, &mut found.errors, "a size"),
            other => wrong(
                &mut found.errors,
                "a size: a number of bytes or a string such as \"32MiB\"",
                other,
            ),
        },
        Kind::Integers { .. } | Kind::Strings => {
            let (what, of) = if key.kind == Kind::Strings {
                ("an array of strings", "a string")
            } else {
                ("an array of integers", "an integer")
            };
            let DeValue::Array(a) = value.get_ref() else {
                return wrong(&mut found.errors, what, value.get_ref());
            };
            let mut ok = true;
            for item in a.iter() {
                let fits = match item.get_ref() {
                    DeValue::String(_) => key.kind == Kind::Strings,
                    DeValue::Integer(i) => {
                        key.kind != Kind::Strings
                            && i64::from_str_radix(i.as_str(), i.radix()).is_ok()
                    }
                    _ => false,
                };
                if !fits {
                    found.errors.push(loc.error(
                        item.span(),
                        format!(
                            "each item of `{name}` in {place} must be {of}, not {}",
                            describe(item.get_ref())
                        ),
                    ));
                    ok = false;
                }
            }
            ok
        }
    }
}

/// An integer that fits in 64 bits (the range is the compiler's to check).
fn integer(
    value: &Spanned<DeValue<'_>>,
    name: &str,
    place: &str,
    loc: &Locator<'_>,
    errors: &mut Vec<ConfigError>,
    what: &str,
) -> bool {
    match value.get_ref() {
        DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_ok() => true,
        DeValue::Integer(i) => {
            errors.push(loc.error(
                value.span(),
                format!("`{name}` in {place} is too large: {}", i.as_str()),
            ));
            false
        }
        other => {
            errors.push(loc.error(
                value.span(),
                format!(
                    "`{name}` in {place} must be {what}, not {}",
                    describe(other)
                ),
            ));
            false
        }
    }
}

/// "a string (\"yes\")", "an integer (3)", ... as the user wrote it.
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("a string (\"{s}\")"),
        DeValue::Integer(i) => format!("an integer ({})", i.as_str()),
        DeValue::Float(f) => format!("a float ({})", f.as_str()),
        DeValue::Boolean(b) => format!("a boolean ({b})"),
        DeValue::Datetime(d) => format!("a date-time ({d})"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// What a string key expects, in words.
fn expected(kind: Kind) -> String {
    match kind {
        Kind::Text(what) => what.to_string(),
        Kind::OneOf(values) | Kind::OneOfOrTable(values) => {
            let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
            format!("one of {}", quoted.join(", "))
        }
        _ => "text".into(),
    }
}

/// The JSON Schema (draft 07) of the configuration file, for editors with TOML support (taplo:
/// VS Code's Even Better TOML, Helix, Neovim): key completion, descriptions, and unknown keys,
/// wrong types and out-of-range numbers flagged while typing. The package ships it as
/// /usr/share/mcrelay/mcrelay.schema.json; a `#:schema` line at the top of a file selects it.
pub fn json_schema() -> serde_json::Value {
    let mut root = object_schema("");
    root["$schema"] = "http://json-schema.org/draft-07/schema#".into();
    root["title"] = "mcrelay.toml".into();
    root["description"] =
        "Configuration of mcrelay, the multicast relay; every key is described in mcrelay.toml(5)."
            .into();
    root
}

/// The schema of a table whose keys are the children of `prefix`.
fn object_schema(prefix: &str) -> serde_json::Value {
    let mut properties = serde_json::Map::new();
    for k in children(prefix) {
        properties.insert(leaf(k.path).to_string(), key_schema(k));
    }
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

fn key_schema(k: &Key) -> serde_json::Value {
    use serde_json::json;
    let mut s = match k.kind {
        Kind::Table => object_schema(k.path),
        Kind::NamedTables => {
            json!({"type": "object", "additionalProperties": object_schema(&format!("{}.*", k.path))})
        }
        Kind::ArrayOfTables => json!({"type": "array", "items": object_schema(k.path)}),
        Kind::Text(_) => json!({"type": "string"}),
        Kind::OneOf(values) => json!({"type": "string", "enum": values}),
        Kind::OneOfOrTable(values) => json!({
            "anyOf": [{"type": "string", "enum": values}, object_schema(k.path)],
        }),
        Kind::Integer { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Integers { min, max } => json!({
            "type": "array",
            "uniqueItems": true,
            "items": {"type": "integer", "minimum": min, "maximum": max},
        }),
        Kind::Strings => {
            json!({"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string"}})
        }
        Kind::Boolean => json!({"type": "boolean"}),
        Kind::Size { min, max } => json!({
            "anyOf": [
                {"type": "integer", "minimum": min, "maximum": max},
                {"type": "string"},
            ],
        }),
    };
    s["description"] = k.about.into();
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::{KEYS, Kind, json_schema, known_keys};
    use crate::config::raw::RawConfig;
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

[interfaces.wan]
tunnel = { local = "192.0.2.1:4789", peers = ["198.51.100.7:4789"], key_file = "/etc/mcrelay/wan.key", silence_timeout = "5s" }

[destinations.studio]
interface = "eth1"
group = "239.2.2.2"
port = 6000
ttl = 8
dscp = 34
source_port = 40000

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
interface = "eth0"
listen = "10.10.1.1:5000"
to = ["archive"]

[[groups]]
name = "feed-ab"
legs = [
    { interface = "eth1", group = "239.1.1.2", port = 5000, source = "10.10.1.100" },
    { interface = "eth1", group = "239.1.1.12", port = 5000 },
]
redundancy = "merge"
sequence = { offset = 10, size = 8, byte_order = "big" }
window = "20ms"
to = ["archive"]

[[groups]]
name = "camera-2"
legs = [
    { interface = "eth1", group = "239.1.1.3", port = 5000 },
    { interface = "eth1", group = "239.1.1.13", port = 5000 },
]
redundancy = "failover"
failover_after = "100ms"
revert = "30s"
to = ["archive"]
"#;

    /// eth0 and eth1 exist (a tunnel's name must not be a kernel interface's); the tunnel's
    /// key file holds a key.
    fn resolver() -> FakeResolver {
        FakeResolver::new(&[("eth0", 2), ("eth1", 3)])
            .with_key_file("/etc/mcrelay/wan.key", FakeResolver::EVERY_KEY)
    }

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
        let t = compile(MAXIMAL, Path::new("max.toml"), &resolver())
            .unwrap_or_else(|e| panic!("{}", crate::config::render_errors(&e)));
        assert!(t.routes[0].rtp);
        assert_eq!(t.daemon.user.as_deref(), Some("mcrelay"));
        assert_eq!(t.redundant_routes().count(), 2);
    }

    /// serde's "unknown field" error lists every field a `Raw*` struct accepts: compare that list
    /// with `known_keys()` for each table, so a field added to a `Raw*` struct without being
    /// listed (or listed without existing) fails here. (This deserializes the raw structs
    /// directly: `compile` removes unknown keys before serde could see them.)
    #[test]
    fn known_keys_is_exactly_what_each_raw_struct_accepts() {
        let tables = [
            ("", "zz_unknown = 1\n"),
            ("daemon", "[daemon]\nzz_unknown = 1\n"),
            ("interfaces.*", "[interfaces.eth0]\nzz_unknown = 1\n"),
            ("destinations.*", "[destinations.d]\nzz_unknown = 1\n"),
            ("groups", "[[groups]]\nzz_unknown = 1\n"),
            (
                "interfaces.*.tunnel",
                "[interfaces.eth0]\ntunnel = { zz_unknown = 1 }\n",
            ),
            ("groups.legs", "[[groups]]\nlegs = [{ zz_unknown = 1 }]\n"),
            (
                "groups.sequence",
                "[[groups]]\nsequence = { zz_unknown = 1 }\n",
            ),
        ];
        let mut covered = BTreeSet::new();
        for (prefix, text) in tables {
            let message = toml::from_str::<RawConfig>(text)
                .expect_err("serde must reject an unknown key")
                .message()
                .to_string();
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
            let listed: BTreeSet<String> = super::children(prefix)
                .map(|k| k.path.to_string())
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

    /// Replaces the value of `key` (a leaf of MAXIMAL, in the table `table`) with `value`.
    fn maximal_with(table: &str, leaf: &str, value: &str) -> String {
        let mut out = String::new();
        let mut current = String::new();
        let mut done = false;
        for line in MAXIMAL.lines() {
            if line.starts_with('[') {
                current = line.trim_matches(|c| c == '[' || c == ']').to_string();
            }
            if !done && current == table && line.starts_with(&format!("{leaf} = ")) {
                out.push_str(&format!("{leaf} = {value}\n"));
                done = true;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(done, "MAXIMAL has no {leaf} in [{table}]");
        out
    }

    /// Where MAXIMAL sets each leaf key (the table header it is under).
    fn maximal_table(path: &str) -> &'static str {
        match path.rsplit_once('.').map(|(t, _)| t) {
            Some("daemon") => "daemon",
            Some("interfaces.*") => "interfaces.eth0",
            Some("destinations.*") if path.ends_with("address") => "destinations.archive",
            Some("destinations.*") => "destinations.studio",
            Some("groups") => "groups",
            other => panic!("no table for {other:?}"),
        }
    }

    /// The ranges the schema announces are exactly the compiler's: the bounds compile, one
    /// past them is an error located at the value; each value of a list of choices compiles.
    #[test]
    fn the_schema_ranges_and_choices_are_the_compilers() {
        let compiles = |text: &str| compile(text, Path::new("t.toml"), &resolver());
        // Keys of inline tables inside a group (legs, sequence), and `redundancy`, whose each
        // choice needs keys of its own, are left to `config::redundancy_tests`.
        let nested = |p: &str| {
            p.starts_with("groups.legs.")
                || p.starts_with("groups.sequence.")
                || p == "groups.redundancy"
        };
        for k in KEYS.iter().filter(|k| !nested(k.path)) {
            let leaf = k.path.rsplit('.').next().unwrap();
            let table = || maximal_table(k.path);
            let (min, max, quote) = match k.kind {
                Kind::Integer { min, max } => (min, max, false),
                Kind::Size { min, max } => (min, max, false),
                Kind::Integers { min, max } => (min, max, true),
                Kind::OneOf(values) => {
                    for v in values {
                        let text = maximal_with(table(), leaf, &format!("\"{v}\""));
                        assert!(compiles(&text).is_ok(), "{} = \"{v}\" is refused", k.path);
                    }
                    let text = maximal_with(table(), leaf, "\"zz-none\"");
                    assert!(compiles(&text).is_err(), "{} takes any string", k.path);
                    continue;
                }
                _ => continue,
            };
            let as_value = |n: i64| {
                if quote {
                    format!("[{n}]")
                } else {
                    n.to_string()
                }
            };
            for ok in [min, max] {
                let text = maximal_with(table(), leaf, &as_value(ok));
                if let Err(e) = compiles(&text) {
                    panic!(
                        "{} = {ok} is in the schema's range but refused:\n{}",
                        k.path,
                        crate::config::render_errors(&e)
                    );
                }
            }
            for bad in [min - 1, max + 1] {
                let text = maximal_with(table(), leaf, &as_value(bad));
                let errors = compiles(&text).err().unwrap_or_else(|| {
                    panic!(
                        "{} = {bad} is outside the schema's range but accepted",
                        k.path
                    )
                });
                assert!(
                    errors
                        .iter()
                        .any(|e| e.source_line.starts_with(&format!("{leaf} = "))),
                    "{} = {bad}: no error on its line",
                    k.path
                );
            }
        }
    }

    /// Every key is documented in its own section of mcrelay.toml(5), as `.It Ic key`, with the
    /// type and, for numbers, the range that the key list gives it.
    #[test]
    fn every_key_is_documented_in_the_man_page_with_its_type_and_range() {
        let page = include_str!("../../man/mcrelay.toml.5");
        let mut section = String::new();
        let mut items: Vec<(String, String, String)> = Vec::new();
        for line in page.lines() {
            if let Some(title) = line.strip_prefix(".Ss ") {
                section = title.to_string();
            } else if let Some(item) = line.strip_prefix(".It Ic ") {
                let (key, rest) = item.split_once(' ').unwrap_or((item, ""));
                items.push((section.clone(), key.to_string(), rest.to_string()));
            }
        }
        let sections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".Ss "))
            .collect();
        for k in KEYS {
            let (table, leaf) = match k.path.split_once('.') {
                None => {
                    assert!(
                        sections.iter().any(|s| s.contains(k.path)),
                        "man page has no .Ss section for the {} table",
                        k.path
                    );
                    continue;
                }
                Some((table, rest)) => (table, rest.trim_start_matches("*.")),
            };
            let Some((_, _, doc)) = items
                .iter()
                .find(|(s, i, _)| s.contains(table) && i == leaf)
            else {
                panic!(
                    "man page does not document {} (as `.It Ic {leaf}` in the {table} section)",
                    k.path
                );
            };
            let want = match k.kind {
                Kind::Integer { min, max } => format!("Pq Vt integer No {min} to {max} ,"),
                Kind::Integers { .. } => "Pq Vt array of integers ,".into(),
                Kind::Strings => "Pq Vt array of strings ,".into(),
                Kind::Boolean => "Pq Vt boolean ,".into(),
                Kind::Size { min, max } => {
                    format!("Pq Vt size No {}KiB to {}GiB ,", min >> 10, max >> 30)
                }
                _ => "Pq Vt ".into(),
            };
            assert!(
                doc.starts_with(&want),
                "mcrelay.toml(5) gives {} as `{doc}`, the key list as `{want}`",
                k.path
            );
        }
    }

    /// The schema the package ships is the one generated from the key list. After changing
    /// the keys, regenerate it with `MCRELAY_WRITE_SCHEMA=1 cargo test --lib schema`.
    #[test]
    fn the_shipped_schema_is_generated_from_the_key_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/mcrelay.schema.json");
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("MCRELAY_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let shipped = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            shipped == generated,
            "{path} is not the schema generated from src/config/keys.rs; regenerate it with MCRELAY_WRITE_SCHEMA=1 cargo test --lib schema"
        );
    }

    /// Every key of the key list has its place in the schema, and the schema has no other.
    #[test]
    fn the_schema_has_exactly_the_known_keys() {
        fn walk(s: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
            if let Some(props) = s.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in props {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(path.clone());
                    walk(v, &path, out);
                }
            }
            if let Some(inner) = s.get("additionalProperties").filter(|v| v.is_object()) {
                walk(inner, &format!("{prefix}.*"), out);
            }
            if let Some(items) = s.get("items") {
                walk(items, prefix, out);
            }
            for alternative in s
                .get("anyOf")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                walk(alternative, prefix, out);
            }
        }
        let mut found = BTreeSet::new();
        walk(&json_schema(), "", &mut found);
        let known: BTreeSet<String> = known_keys().iter().map(|k| k.to_string()).collect();
        assert_eq!(found, known);
    }
}
