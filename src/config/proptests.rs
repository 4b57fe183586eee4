//! Differential test (after the Linux wireguard selftest): the compiled table's exact-match
//! lookup against a deliberately naive linear scan of the raw groups.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use proptest::prelude::*;

use super::{FakeResolver, compile};
use crate::table::RouteId;

const IFACES: [&str; 2] = ["eth0", "eth1"];
const GROUPS: [&str; 3] = ["239.1.1.1", "239.1.1.2", "ff3e::1"];
const V4_SOURCES: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
const V6_SOURCES: [&str; 3] = ["2001:db8::1", "2001:db8::2", "2001:db8::3"];
const PORTS: [u16; 3] = [1000, 1001, 1002];

/// A `[[groups]]` entry as the test wrote it.
#[derive(Debug, Clone)]
struct G {
    iface: usize,
    group: usize,
    port: Option<u16>,
    source: Option<usize>,
}

fn v6(group: usize) -> bool {
    GROUPS[group].contains(':')
}

fn source_of(group: usize, s: usize) -> &'static str {
    if v6(group) {
        V6_SOURCES[s]
    } else {
        V4_SOURCES[s]
    }
}

fn arb_group() -> impl Strategy<Value = G> {
    // Sources 0..2 only, so that packets from source 2 exercise "no such source".
    (
        0..IFACES.len(),
        0..GROUPS.len(),
        prop::option::of(prop::sample::select(PORTS.to_vec())),
        prop::option::of(0usize..2),
    )
        .prop_map(|(iface, group, port, source)| G {
            iface,
            group,
            port,
            source,
        })
}

fn render(groups: &[G]) -> String {
    let mut s = String::from(
        "[interfaces.eth0]\n[interfaces.eth1]\n[destinations.u4]\naddress = \"10.9.9.9:9\"\n[destinations.u6]\naddress = \"[2001:db8::9]:9\"\n",
    );
    for g in groups {
        let _ = write!(
            s,
            "[[groups]]\ninterface = \"{}\"\ngroup = \"{}\"\n",
            IFACES[g.iface], GROUPS[g.group]
        );
        if let Some(p) = g.port {
            let _ = writeln!(s, "port = {p}");
        }
        if let Some(src) = g.source {
            let _ = writeln!(s, "source = \"{}\"", source_of(g.group, src));
        }
        let _ = writeln!(s, "to = [\"{}\"]", if v6(g.group) { "u6" } else { "u4" });
    }
    s
}

/// Does raw group `g` match this packet? Straight from the documented semantics.
fn naive_matches(g: &G, iface: usize, source: &str, group: usize, port: u16) -> bool {
    g.iface == iface
        && g.group == group
        && g.port.is_none_or(|p| p == port)
        && g.source.is_none_or(|s| source_of(g.group, s) == source)
}

fn naive_overlap(groups: &[G]) -> bool {
    groups.iter().enumerate().any(|(i, a)| {
        groups[..i].iter().any(|b| {
            a.iface == b.iface
                && a.group == b.group
                && (a.port.is_none() || b.port.is_none() || a.port == b.port)
                && (a.source.is_none() || b.source.is_none() || a.source == b.source)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lookup_agrees_with_a_naive_scan(groups in prop::collection::vec(arb_group(), 0..12)) {
        let text = render(&groups);
        let result = compile(&text, Path::new("p.toml"), &FakeResolver::everything());
        let overlap = naive_overlap(&groups);
        match result {
            Err(errors) => {
                prop_assert!(overlap, "rejected without an overlap: {errors:?}\n{text}");
                for e in &errors {
                    prop_assert!(e.message.starts_with("this group claims packets"), "{}", e.message);
                }
            }
            Ok(table) => {
                prop_assert!(!overlap, "accepted overlapping groups:\n{text}");
                prop_assert_eq!(table.routes.len(), groups.len());
                for (iface, iface_name) in IFACES.iter().enumerate() {
                    let id = table.interface_id(iface_name).unwrap();
                    for (group, group_text) in GROUPS.iter().enumerate() {
                        let gaddr: IpAddr = group_text.parse().unwrap();
                        for s in 0..3 {
                            let source = source_of(group, s);
                            let saddr: IpAddr = source.parse().unwrap();
                            for port in [999, 1000, 1001, 1002] {
                                let hits: Vec<usize> = groups
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, g)| naive_matches(g, iface, source, group, port))
                                    .map(|(i, _)| i)
                                    .collect();
                                prop_assert!(hits.len() <= 1, "naive scan found {hits:?}");
                                let want = hits.first().map(|&i| RouteId(i as u32));
                                prop_assert_eq!(
                                    table.lookup(id, saddr, gaddr, port),
                                    want,
                                    "packet on {} from {} to {}:{}\n{}",
                                    iface_name, source, group_text, port, text
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Edits of a valid file: replace a byte range of the sample with random text.
fn arb_edit() -> impl Strategy<Value = String> {
    let sample = super::tests::SAMPLE;
    (
        0..sample.len(),
        0usize..12,
        "[ -~\\n\\t\u{e9}\u{1f600}]{0,12}",
    )
        .prop_map(move |(at, len, insert)| {
            let mut at = at;
            while !sample.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + len).min(sample.len());
            while !sample.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}{insert}{}", &sample[..at], &sample[end..])
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever the text, compile returns (never panics), and every error points inside it.
    #[test]
    fn compile_never_panics_and_errors_point_into_the_text(text in arb_edit()) {
        let lines: Vec<&str> = text.split('\n').collect();
        if let Err(errors) = compile(&text, Path::new("f.toml"), &FakeResolver::everything()) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(e.line >= 1 && e.line <= lines.len(), "{e:?}");
                let line = lines[e.line - 1].trim_end_matches('\r');
                prop_assert_eq!(&e.source_line, line);
                prop_assert!(e.col >= 1 && e.col <= line.chars().count() + 1, "{e:?}");
                prop_assert!(e.width >= 1);
                prop_assert!(!e.message.is_empty() && !e.message.ends_with('.'), "{}", e.message);
                let shown = e.to_string();
                prop_assert!(shown.starts_with(&format!("f.toml:{}:{}: ", e.line, e.col)), "{}", shown);
            }
            let mut positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.col)).collect();
            let sorted = { let mut p = positions.clone(); p.sort(); p };
            prop_assert_eq!(std::mem::take(&mut positions), sorted, "errors are not in file order");
        }
    }
}
