//! Text a person reads: `mcrelay status`, `mcrelay stats` and `mcrelay reload` output.
//!
//! Pure: reports in, strings out, `now` as an argument. Tables are aligned on the widest cell of
//! each column; numbers are right-aligned.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::control::view::{GroupStats, RedundancyStats, StatsReport, StatusReport};
use crate::reload::{ReloadOutcome, ReloadResult};

/// "0 b/s", "950 b/s", "12.3 kb/s", "8.19 Mb/s", "1.20 Gb/s" (SI prefixes, as networks count).
pub fn bitrate(bps: f64) -> String {
    let units = [(1e9, "Gb/s"), (1e6, "Mb/s"), (1e3, "kb/s")];
    for (scale, unit) in units {
        if bps >= scale {
            return format!("{} {unit}", three_digits(bps / scale));
        }
    }
    format!("{} b/s", bps.round() as u64)
}

/// Three significant digits: 1.23, 12.3, 123.
fn three_digits(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Packets per second: "0", "2.5", "1000".
pub fn pps(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// "0.2s ago", "12s ago", "3m12s ago", "2h05m ago", "never".
pub fn ago(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "never".into();
    };
    let s = s.max(0.0);
    if s < 10.0 {
        format!("{s:.1}s ago")
    } else if s < 60.0 {
        format!("{}s ago", s as u64)
    } else if s < 3600.0 {
        let s = s as u64;
        format!("{}m{:02}s ago", s / 60, s % 60)
    } else {
        let m = s as u64 / 60;
        format!("{}h{:02}m ago", m / 60, m % 60)
    }
}

/// "1h 2m 3s", "4d 1h 0m".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Unix seconds as RFC 3339 UTC, to the second.
pub fn timestamp(unix: f64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn address(g: &GroupStats) -> String {
    let group = match (g.group, g.port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    match g.source {
        Some(s) => format!("{s}→{group}"),
        None => group,
    }
}

/// A table of cells; column `i` is right-aligned when `right[i]`. A `Line` row is printed as is
/// and does not widen any column.
struct Grid {
    right: Vec<bool>,
    rows: Vec<Row>,
}

enum Row {
    Cells(Vec<String>),
    Line(String),
}

impl Grid {
    fn new(header: &[&str], right: &[bool]) -> Grid {
        Grid {
            right: right.to_vec(),
            rows: vec![Row::Cells(header.iter().map(|s| s.to_string()).collect())],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }

    fn line(&mut self, text: String) {
        self.rows.push(Row::Line(text));
    }

    fn render(&self, out: &mut String) {
        let cols = self.right.len();
        let mut width = vec![0; cols];
        for r in &self.rows {
            if let Row::Cells(r) = r {
                for (i, c) in r.iter().enumerate().take(cols) {
                    width[i] = width[i].max(c.chars().count());
                }
            }
        }
        for r in &self.rows {
            let r = match r {
                Row::Cells(r) => r,
                Row::Line(text) => {
                    out.push_str(text);
                    out.push('\n');
                    continue;
                }
            };
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(cols) {
                let pad = width[i] - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn opt_rate(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The `stats` table.
pub fn stats(r: &StatsReport) -> String {
    let mut out = String::new();
    let up = r.groups.iter().filter(|g| g.up).count();
    let _ = writeln!(
        out,
        "mcrelay stats at {}  generation {}  groups {} up / {} down  (DOWN after {}s of silence)\n",
        timestamp(r.at),
        r.generation,
        up,
        r.groups.len() - up,
        r.silence_timeout_seconds
    );
    let mut g = Grid::new(
        &[
            "GROUP",
            "ADDRESS",
            "IN",
            "PKT/S",
            "RATE",
            "PACKETS",
            "LAST SEEN",
            "STATE",
            "ERRORS",
            "DROPS",
        ],
        &[
            false, false, false, true, true, true, true, false, true, true,
        ],
    );
    for grp in &r.groups {
        g.row(vec![
            grp.label.clone(),
            address(grp),
            grp.interface.clone(),
            opt_rate(grp.packets_per_second, pps),
            opt_rate(grp.bits_per_second, bitrate),
            grp.packets.to_string(),
            ago(grp.last_seen_ago_seconds),
            if grp.up { "UP" } else { "DOWN" }.into(),
            grp.destinations
                .iter()
                .map(|d| d.errors)
                .sum::<u64>()
                .to_string(),
            grp.destinations
                .iter()
                .map(|d| d.drops)
                .sum::<u64>()
                .to_string(),
        ]);
        if let Some(n) = grp.icmp_suppressed {
            g.line(format!("  icmp port-unreachable suppressed: {n}"));
        }
        if let Some(rtp) = &grp.rtp {
            let mut line = format!(
                "  rtp: lost {} gaps {} dup {} reordered {} invalid {}",
                rtp.lost, rtp.gaps, rtp.duplicates, rtp.reordered, rtp.invalid
            );
            if let Some(j) = grp.rtp_jitter_seconds {
                let _ = write!(line, " jitter {:.3}ms", j * 1e3);
            }
            g.line(line);
        }
        if let Some(ts) = &grp.ts {
            g.line(format!(
                "  mpeg-ts: packets {} cc errors {} not ts {}",
                ts.packets, ts.cc_errors, ts.not_ts
            ));
        }
        if let Some(red) = &grp.redundancy {
            redundancy_lines(&mut g, red);
        }
        for d in &grp.destinations {
            g.row(vec![
                format!("  → {}", d.name),
                String::new(),
                String::new(),
                opt_rate(d.packets_per_second, pps),
                opt_rate(d.bits_per_second, bitrate),
                d.packets.to_string(),
                String::new(),
                String::new(),
                d.errors.to_string(),
                d.drops.to_string(),
            ]);
        }
    }
    if r.groups.is_empty() {
        out.push_str("no groups configured\n");
    } else {
        g.render(&mut out);
    }
    out.push('\n');
    let mut i = Grid::new(
        &[
            "INTERFACE",
            "WORKERS",
            "FRAMES/S",
            "FRAMES",
            "KERNEL DROPS",
            "RELAY DROPS",
        ],
        &[false, true, true, true, true, false],
    );
    for ifs in &r.interfaces {
        let drops: Vec<String> = ifs
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        i.row(vec![
            ifs.name.clone(),
            ifs.workers.to_string(),
            opt_rate(ifs.frames_per_second, pps),
            ifs.frames.to_string(),
            ifs.kernel_drops.to_string(),
            if drops.is_empty() {
                "0".into()
            } else {
                drops.join(", ")
            },
        ]);
    }
    if r.interfaces.is_empty() {
        out.push_str("no worker is running\n");
    } else {
        i.render(&mut out);
    }
    tunnels(&r.tunnels, &mut out);
    out
}

/// The tunnels section of `stats` and `status`: one row per peer.
fn tunnels(tunnels: &[crate::stats::TunnelSnapshot], out: &mut String) {
    if tunnels.is_empty() {
        return;
    }
    out.push('\n');
    let mut g = Grid::new(
        &[
            "TUNNEL",
            "PEER",
            "STATE",
            "LAST HEARD",
            "IN",
            "IN BYTES",
            "OUT",
            "OUT BYTES",
            "REFUSED",
        ],
        &[false, false, false, true, true, true, true, true, false],
    );
    let reasons = |r: &[(String, u64)]| -> String {
        if r.is_empty() {
            "0".into()
        } else {
            r.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for t in tunnels {
        let name = format!("{} ({})", t.interface, t.local);
        for p in &t.peers {
            g.row(vec![
                name.clone(),
                p.address.clone(),
                if !t.ready {
                    "NO KEY".into()
                } else if p.up {
                    "UP".into()
                } else {
                    "DOWN".into()
                },
                ago(p.last_heard_ms.map(|ms| ms as f64 / 1000.0)),
                p.rx_datagrams.to_string(),
                bytes(p.rx_bytes),
                p.tx_datagrams.to_string(),
                bytes(p.tx_bytes),
                reasons(&p.refused),
            ]);
        }
        if !t.refused.is_empty() || !t.send_refused.is_empty() || t.fragmented > 0 {
            g.line(format!(
                "  {}: refused from non-peers: {}; not sent: {}; sent fragmented: {}",
                t.interface,
                reasons(&t.refused),
                reasons(&t.send_refused),
                t.fragmented
            ));
        }
    }
    g.render(out);
}

/// The lines under a group with `legs`: its output stream, then one per leg.
fn redundancy_lines(g: &mut Grid, r: &RedundancyStats) {
    let o = &r.output;
    let mut head = format!(
        "  {}: out {} lost {} reordered {} late {} jumps {} no-key {}",
        r.mode, o.forwarded, o.lost, o.reordered, o.late, o.jumps, o.no_key
    );
    if let Some(active) = r.active_leg {
        let _ = write!(head, " active leg {active} switches {}", o.switches);
    }
    g.line(head);
    for (i, l) in r.legs.iter().enumerate() {
        let mut addr = match (l.group, l.port) {
            (a, None) => a.to_string(),
            (std::net::IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        };
        if let Some(src) = l.source {
            let _ = write!(addr, " from {src}");
        }
        let behind = l
            .behind_seconds
            .map_or_else(|| "-".to_string(), |b| format!("{:.3}ms", b * 1e3));
        g.line(format!(
            "  leg {i} {} {addr} {}: packets {} first {} only {} dup {} late {} missing {} \
             no-key {} behind {behind} lead {} downs {}",
            l.interface,
            if l.up { "UP" } else { "DOWN" },
            l.packets,
            l.forwarded,
            l.unique,
            l.duplicates,
            l.late,
            l.missing,
            l.no_key.values().sum::<u64>(),
            l.lead,
            l.downs
        ));
    }
}

/// The `status` text.
pub fn status(s: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mcrelay {} (pid {}), running since {} (up {})",
        s.version,
        s.pid,
        timestamp(s.started_at),
        duration(s.uptime_seconds)
    );
    let c = &s.config;
    let _ = writeln!(out, "config:       {}", c.config.display());
    let _ = writeln!(out, "sha256:       {}", c.digest.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "generation:   {}", c.generation);
    match &c.last {
        None => {
            let _ = writeln!(
                out,
                "last reload:  none since start (loaded {})",
                timestamp(c.last_success_at)
            );
        }
        Some(l) => {
            let _ = writeln!(out, "last reload:  {}", reload_line(l));
            for e in &l.errors {
                for line in e.lines() {
                    let _ = writeln!(out, "                {line}");
                }
            }
            if !c.last_successful {
                let _ = writeln!(
                    out,
                    "              still running generation {} loaded {}",
                    c.generation,
                    timestamp(c.last_success_at)
                );
            }
        }
    }
    let n = &c.counts;
    let _ = writeln!(
        out,
        "reloads:      {} applied, {} unchanged, {} rejected, {} unreadable",
        n.applied, n.unchanged, n.rejected, n.unreadable
    );
    let _ = writeln!(out, "control:      {}", s.control_socket);
    let _ = writeln!(
        out,
        "metrics:      {}",
        s.metrics_listen
            .as_deref()
            .map(|m| format!("http://{m}/metrics"))
            .unwrap_or_else(|| "off".into())
    );
    out.push('\n');
    if s.workers.is_empty() {
        out.push_str("no worker is running\n");
    } else {
        let mut g = Grid::new(
            &[
                "INTERFACE",
                "WORKER",
                "STATE",
                "GENERATION",
                "FRAMES",
                "ERROR",
            ],
            &[false, true, false, true, true, false],
        );
        for w in &s.workers {
            g.row(vec![
                w.interface.clone(),
                w.index.to_string(),
                format!("{:?}", w.state).to_lowercase(),
                w.generation.to_string(),
                w.frames.to_string(),
                w.error.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        g.render(&mut out);
    }
    let t = &s.totals;
    let _ = writeln!(
        out,
        "\ntotals: {} interfaces, {} workers, {} groups ({} up), {} destinations; \
         {} frames in, {} datagrams out ({}), {} send errors, {} send drops, {} relay drops, {} kernel drops",
        t.interfaces,
        t.workers,
        t.groups,
        t.groups_up,
        t.destinations,
        t.frames,
        t.sent_packets,
        bytes(t.sent_bytes),
        t.send_errors,
        t.send_drops,
        t.relay_drops,
        t.kernel_drops
    );
    tunnels(&s.tunnels, &mut out);
    out
}

/// "12 B", "3.40 kB", "1.20 GB".
pub fn bytes(n: u64) -> String {
    let v = n as f64;
    for (scale, unit) in [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")] {
        if v >= scale {
            return format!("{} {unit}", three_digits(v / scale));
        }
    }
    format!("{n} B")
}

/// "2026-11-24T20:45:00Z by signal: applied, generation 4 (12.0 ms)".
pub fn reload_line(l: &ReloadOutcome) -> String {
    let what = match l.result {
        ReloadResult::Applied => format!(
            "applied, generation {} → {}",
            l.diff.as_ref().map(|d| d.from).unwrap_or(l.generation),
            l.generation
        ),
        ReloadResult::Unchanged => format!("unchanged, generation {}", l.generation),
        ReloadResult::Rejected => format!(
            "REJECTED ({} error{}), generation {} kept",
            l.errors.len(),
            if l.errors.len() == 1 { "" } else { "s" },
            l.generation
        ),
        ReloadResult::Unreadable => {
            format!("UNREADABLE file, generation {} kept", l.generation)
        }
    };
    format!(
        "{} by {}: {} ({:.1} ms)",
        timestamp(l.at),
        l.trigger.as_str(),
        what,
        l.duration_seconds * 1e3
    )
}

/// What `mcrelay reload` prints.
pub fn reload(l: &ReloadOutcome) -> String {
    let mut out = String::new();
    match l.result {
        ReloadResult::Applied => {
            if let Some(d) = &l.diff {
                out.push_str(&d.to_string());
            }
            if !l.acknowledged {
                let _ = writeln!(
                    out,
                    "warning: not every worker acknowledged generation {} in time",
                    l.generation
                );
            }
        }
        ReloadResult::Unchanged => {
            let _ = writeln!(
                out,
                "configuration unchanged; generation {} runs",
                l.generation
            );
        }
        ReloadResult::Rejected | ReloadResult::Unreadable => {
            for e in &l.errors {
                out.push_str(e);
                if !e.ends_with('\n') {
                    out.push('\n');
                }
            }
            let _ = writeln!(
                out,
                "configuration {}; generation {} keeps running",
                l.result.as_str(),
                l.generation
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::tests::{snap, t0, table};
    use crate::control::view::{Sample, stats_report};

    #[test]
    fn units() {
        assert_eq!(bitrate(0.0), "0 b/s");
        assert_eq!(bitrate(950.0), "950 b/s");
        assert_eq!(bitrate(12_345.0), "12.3 kb/s");
        assert_eq!(bitrate(8_192_000.0), "8.19 Mb/s");
        assert_eq!(bitrate(123_456_789.0), "123 Mb/s");
        assert_eq!(bitrate(1.2e9), "1.20 Gb/s");
        assert_eq!(pps(0.0), "0");
        assert_eq!(pps(2.54), "2.5");
        assert_eq!(pps(999.6), "1000");
        assert_eq!(ago(None), "never");
        assert_eq!(ago(Some(0.24)), "0.2s ago");
        assert_eq!(ago(Some(12.7)), "12s ago");
        assert_eq!(ago(Some(192.0)), "3m12s ago");
        assert_eq!(ago(Some(7500.0)), "2h05m ago");
        assert_eq!(duration(3723.0), "1h 2m 3s");
        assert_eq!(bytes(3400), "3.40 kB");
        assert_eq!(timestamp(1_800_000_000.0), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn tunnels_show_each_peer_with_its_state_and_refusals() {
        let c = snap(0, 1.0, 2000, Some(0.8));
        let s = Sample {
            prev: None,
            cur: &c,
        };
        let now = t0() + std::time::Duration::from_secs(1);
        let mut r = stats_report(&table(), &[s], now, std::time::Duration::from_secs(2));
        r.tunnels = vec![crate::stats::TunnelSnapshot {
            interface: "cloud".into(),
            local: "192.0.2.10:9510".into(),
            ready: true,
            peers: vec![
                crate::stats::PeerSnapshot {
                    address: "203.0.113.7:9510".into(),
                    up: true,
                    last_heard_ms: Some(300),
                    rx_datagrams: 12,
                    tx_datagrams: 3400,
                    tx_bytes: 4_700_000,
                    refused: vec![("bad_mac".into(), 2)],
                    ..Default::default()
                },
                crate::stats::PeerSnapshot {
                    address: "198.51.100.9:9510".into(),
                    ..Default::default()
                },
            ],
            refused: vec![("not_a_peer".into(), 5)],
            send_refused: Vec::new(),
            fragmented: 0,
        }];
        let text = stats(&r);
        let up = text
            .lines()
            .find(|l| l.contains("203.0.113.7:9510"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(up.starts_with("cloud (192.0.2.10:9510)"), "{up}");
        assert!(up.contains(" UP ") && up.contains("0.3s ago"), "{up}");
        assert!(up.contains("3400") && up.ends_with("bad_mac 2"), "{up}");
        let down = text.lines().find(|l| l.contains("198.51.100.9")).unwrap();
        assert!(down.contains(" DOWN ") && down.contains("never"), "{down}");
        assert!(
            text.contains("refused from non-peers: not_a_peer 5"),
            "{text}"
        );
    }

    #[test]
    fn stats_table_is_aligned_and_complete() {
        let (p, c) = (snap(0, 0.0, 1000, Some(0.0)), snap(0, 1.0, 2000, Some(0.8)));
        let s = Sample {
            prev: Some(&p),
            cur: &c,
        };
        let now = t0() + std::time::Duration::from_secs(1);
        let r = stats_report(&table(), &[s], now, std::time::Duration::from_secs(2));
        let text = stats(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("generation 3  groups 1 up / 1 down"),
            "{text}"
        );
        let header = lines[2];
        assert!(header.starts_with("GROUP"), "{text}");
        let cam1 = lines.iter().find(|l| l.starts_with("cam1 ")).unwrap();
        assert!(cam1.contains("239.1.1.1:5000"));
        assert!(cam1.contains("1000  8.00 Mb/s"), "{cam1}");
        assert!(cam1.contains("0.2s ago  UP"), "{cam1}");
        let to_a = lines.iter().find(|l| l.starts_with("  → a")).unwrap();
        // Right-aligned columns end at the same position in every row.
        let col_end =
            |l: &str, pat: &str| l[..l.find(pat).unwrap()].chars().count() + pat.chars().count();
        assert_eq!(col_end(header, "PKT/S"), col_end(cam1, " 1000"));
        assert_eq!(col_end(header, "PKT/S"), col_end(to_a, " 1000"));
        let cam2 = lines.iter().find(|l| l.starts_with("cam2 ")).unwrap();
        let words: Vec<&str> = cam2.split_whitespace().collect();
        assert_eq!(
            words[words.len() - 4..],
            ["never", "DOWN", "0", "0"][..],
            "{cam2}"
        );
        assert!(text.contains("  rtp: lost 0 gaps 0 dup 0 reordered 0 invalid 0"));
        let ifline = lines.iter().find(|l| l.starts_with("in0 ")).unwrap();
        assert!(ifline.ends_with("no_route 5"), "{ifline}");
    }

    #[test]
    fn rejected_reload_prints_every_error() {
        let o = ReloadOutcome {
            trigger: crate::reload::Trigger::Control,
            at: 1_800_000_000.0,
            duration_seconds: 0.002,
            result: ReloadResult::Rejected,
            generation: 4,
            digest: None,
            diff: None,
            errors: vec![
                "/etc/m.toml:3:7: bad\n  x = 1\n      ^".into(),
                "/etc/m.toml:9:1: worse".into(),
            ],
            acknowledged: true,
        };
        let text = reload(&o);
        assert_eq!(
            text,
            "/etc/m.toml:3:7: bad\n  x = 1\n      ^\n/etc/m.toml:9:1: worse\nconfiguration rejected; generation 4 keeps running\n"
        );
        assert_eq!(
            reload_line(&o),
            "2027-01-15T08:00:00Z by control: REJECTED (2 errors), generation 4 kept (2.0 ms)"
        );
    }
}
