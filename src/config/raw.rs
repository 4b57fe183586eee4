//! `Raw*`: the configuration exactly as the user wrote it (ripgrep's "low-level arguments").
//!
//! Every table rejects unknown keys. Values that a semantic error can point at are
//! `toml::Spanned`, and numbers and addresses are read as integers and strings so that a value out
//! of range is reported by [`super::compile`] (which collects every error) rather than by serde
//! (which stops at the first).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub interfaces: BTreeMap<Spanned<String>, RawInterface>,
    #[serde(default)]
    pub destinations: BTreeMap<Spanned<String>, RawDestination>,
    #[serde(default)]
    pub groups: Vec<Spanned<RawGroup>>,
}

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub control_socket: Option<Spanned<String>>,
    pub control_group: Option<Spanned<String>>,
    pub stats_interval: Option<Spanned<String>>,
    pub silence_timeout: Option<Spanned<String>>,
    pub reload_debounce: Option<Spanned<String>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
}

/// `[interfaces.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterface {
    pub ttl: Option<Spanned<i64>>,
    pub ingress: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
    pub cpus: Option<Spanned<Vec<Spanned<i64>>>>,
    pub rcvbuf: Option<Spanned<RawSize>>,
    /// Makes the interface a tunnel to peer relays instead of a kernel interface.
    pub tunnel: Option<Spanned<RawTunnel>>,
}

/// `tunnel = { local = "...", peers = [...], key_file = "...", silence_timeout = "..." }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub local: Option<Spanned<String>>,
    pub peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub key_file: Option<Spanned<String>>,
    pub silence_timeout: Option<Spanned<String>>,
}

/// A size in bytes: an integer, or a string with a unit such as `"32MiB"`.
#[derive(Debug, Clone)]
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawSize, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"32MiB\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Rewords serde's type errors in the file's own terms ("an integer", "an array", "a table")
/// rather than Rust's ("i64", "a sequence", "struct RawInterface").
pub(crate) fn reword(message: &str) -> String {
    let mut m = message.replace("expected i64", "expected an integer");
    m = m.replace("expected a sequence", "expected an array");
    m = m.replace("expected a map", "expected a table");
    if let Some(at) = m.find("expected struct Raw") {
        m.truncate(at);
        m.push_str("expected a table");
    }
    m
}

/// `[destinations.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestination {
    pub interface: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub address: Option<Spanned<String>>,
    pub ttl: Option<Spanned<i64>>,
    pub dscp: Option<Spanned<i64>>,
    pub source_port: Option<Spanned<i64>>,
}

/// One `[[groups]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub name: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    /// Unicast ingress: `ADDRESS:PORT` in place of `group` and `port`.
    pub listen: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub rtp: Option<bool>,
    /// Redundant inputs, in place of `interface`/`group`/`port`/`source`.
    pub legs: Option<Spanned<Vec<Spanned<RawLeg>>>>,
    pub redundancy: Option<Spanned<String>>,
    pub sequence: Option<Spanned<RawSequence>>,
    pub window: Option<Spanned<String>>,
    pub failover_after: Option<Spanned<String>>,
    pub revert: Option<Spanned<String>>,
}

/// One entry of a group's `legs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeg {
    pub interface: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub source: Option<Spanned<String>>,
}

/// `sequence`: a name (`"rtp"`) or a field of the payload.
#[derive(Debug)]
pub(crate) enum RawSequence {
    Named(String),
    Field(RawSequenceField),
}

/// `sequence = { offset = N, size = 2 | 4 | 8, byte_order = "big" | "little" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSequenceField {
    pub offset: Option<Spanned<i64>>,
    pub size: Option<Spanned<i64>>,
    pub byte_order: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawSequence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawSequence, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSequence;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "\"rtp\" or a table such as { offset = 0, size = 4, byte_order = \"little\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSequence, E> {
                Ok(RawSequence::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawSequence, A::Error> {
                RawSequenceField::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawSequence::Field)
            }
        }
        d.deserialize_any(V)
    }
}
