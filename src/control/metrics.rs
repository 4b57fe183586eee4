//! Prometheus metrics at `http://<daemon.metrics_listen>/metrics`, off by default.
//!
//! The exposition is written by the `prometheus-client` crate (Prometheus text format 0.0.4) from
//! the same [`StatsReport`] and [`ReloadStatus`] that `mcrelay stats --json` and `status --json`
//! print, so the numbers agree. A fresh registry is built per scrape (the counters live in the
//! workers, not here). Each family is one row of a table (name, help, and how to read its value
//! from a group, destination, interface, worker or the daemon), registered in order. Counters
//! are in base units with `_total`; group, interface and destination names are labels.
//! `scripts/test.d/45-monitoring` lints a running relay's exposition with `promtool check
//! metrics`. The `mcrelay_config_*` names mirror Prometheus' and Alertmanager's own, so
//! existing alert rules carry over. The HTTP side is a minimal HTTP/1.1 responder on one thread:
//! `GET /metrics` (and `/`), one request per connection, short timeouts, bounded request size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::view::{
    DestinationStats, GroupStats, InterfaceStats, LegStats, RedundancyStats, StatsReport,
};
use crate::reload::ReloadStatus;
use crate::stats::WorkerState;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The text exposition of everything the daemon knows.
/// Per tunnel peer: datagrams and bytes each way, refusals by reason, UP, last heard.
fn tunnel_metrics(reg: &mut Registry, tunnels: &[crate::stats::TunnelSnapshot]) {
    let counter_family = || Family::<Labels, Counter>::default();
    let fragmented = counter_family();
    let (rxd, rxb, txd, txb, refused, not_sent) = (
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
    );
    let (up, heard) = (
        Family::<Labels, FloatGauge>::default(),
        Family::<Labels, FloatGauge>::default(),
    );
    for t in tunnels {
        for p in &t.peers {
            let l: Labels = vec![
                ("tunnel".into(), t.interface.clone()),
                ("peer".into(), p.address.clone()),
            ];
            rxd.get_or_create(&l).inc_by(p.rx_datagrams);
            rxb.get_or_create(&l).inc_by(p.rx_bytes);
            txd.get_or_create(&l).inc_by(p.tx_datagrams);
            txb.get_or_create(&l).inc_by(p.tx_bytes);
            up.get_or_create(&l).set(if p.up { 1.0 } else { 0.0 });
            if let Some(ms) = p.last_heard_ms {
                heard.get_or_create(&l).set(ms as f64 / 1000.0);
            }
            for (reason, n) in &p.refused {
                let mut rl = l.clone();
                rl.push(("reason".into(), reason.clone()));
                refused.get_or_create(&rl).inc_by(*n);
            }
        }
        for (reason, n) in &t.refused {
            let rl: Labels = vec![
                ("tunnel".into(), t.interface.clone()),
                ("peer".into(), String::new()),
                ("reason".into(), reason.clone()),
            ];
            refused.get_or_create(&rl).inc_by(*n);
        }
        fragmented
            .get_or_create(&vec![("tunnel".into(), t.interface.clone())])
            .inc_by(t.fragmented);
        for (reason, n) in &t.send_refused {
            let rl: Labels = vec![
                ("tunnel".into(), t.interface.clone()),
                ("reason".into(), reason.clone()),
            ];
            not_sent.get_or_create(&rl).inc_by(*n);
        }
    }
    reg.register(
        "mcrelay_tunnel_received_datagrams",
        "Tunnel datagrams with a stream accepted from the peer",
        rxd,
    );
    reg.register(
        "mcrelay_tunnel_received_bytes",
        "Bytes of the tunnel datagrams accepted from the peer",
        rxb,
    );
    reg.register(
        "mcrelay_tunnel_sent_datagrams",
        "Tunnel datagrams sent to the peer",
        txd,
    );
    reg.register(
        "mcrelay_tunnel_sent_bytes",
        "Bytes of the tunnel datagrams sent to the peer",
        txb,
    );
    reg.register(
        "mcrelay_tunnel_refused_datagrams",
        "Tunnel datagrams refused, by reason (peer empty: not from a peer)",
        refused,
    );
    reg.register(
        "mcrelay_tunnel_unsent_datagrams",
        "Datagrams that could not be sent into the tunnel, by reason",
        not_sent,
    );
    reg.register(
        "mcrelay_tunnel_fragmented_datagrams",
        "Tunnel datagrams sent larger than the path MTU (fragmented by the kernel)",
        fragmented,
    );
    reg.register(
        "mcrelay_tunnel_peer_up",
        "1 while the peer was heard from within the tunnel's silence_timeout",
        up,
    );
    reg.register(
        "mcrelay_tunnel_peer_last_heard_seconds",
        "Seconds since the peer's last authentic datagram",
        heard,
    );
}

pub fn encode(
    config: &ReloadStatus,
    stats: &StatsReport,
    started_at: f64,
    workers: &[(String, u16, WorkerState, u64)],
) -> String {
    let mut reg = Registry::default();
    let this = Daemon { config, started_at };
    register(&mut reg, daemon_table(), std::slice::from_ref(&this));
    let c = &config.counts;
    let reloads = [
        ("success", c.applied),
        ("unchanged", c.unchanged),
        ("failure", c.rejected + c.unreadable),
    ];
    register(&mut reg, reloads_table(), &reloads);
    register(&mut reg, workers_table(), workers);
    register(&mut reg, groups_table(), &stats.groups);
    let destinations: Vec<_> = stats
        .groups
        .iter()
        .flat_map(|g| g.destinations.iter().map(move |d| (g, d)))
        .collect();
    register(&mut reg, destinations_table(), &destinations);
    register(&mut reg, interfaces_table(), &stats.interfaces);
    let redundant: Vec<_> = stats
        .groups
        .iter()
        .filter_map(|g| g.redundancy.as_ref().map(|r| (g, r)))
        .collect();
    register(&mut reg, redundancy_table(), &redundant);
    let legs: Vec<_> = redundant
        .iter()
        .flat_map(|&(g, r)| r.legs.iter().enumerate().map(move |(i, l)| (g, i, l)))
        .collect();
    register(&mut reg, legs_table(), &legs);
    let drops: Vec<_> = stats
        .interfaces
        .iter()
        .flat_map(|i| i.drops.iter().map(move |(r, n)| (i, r.as_str(), *n)))
        .collect();
    register(&mut reg, relay_drops_table(), &drops);
    tunnel_metrics(&mut reg, &stats.tunnels);

    let mut out = String::new();
    if let Err(e) = prometheus_text::encode(&mut out, &reg) {
        tracing::error!("cannot encode metrics: {e}");
    }
    out
}

/// Metrics about one kind of thing (the daemon, a group, a destination...): the labels that
/// name one of them, then one row per metric.
struct Table<T> {
    labels: fn(&T) -> Vec<(&'static str, String)>,
    metrics: Vec<Metric<T>>,
}

/// One metric: its name (a counter's without `_total`, which the encoder appends), help text,
/// and how to read its value from one thing (`None`: no sample for this one).
struct Metric<T> {
    name: &'static str,
    help: &'static str,
    value: Value<T>,
}

enum Value<T> {
    /// A monotonic count, in base units.
    Counter(fn(&T) -> Option<u64>),
    /// A value that goes up and down.
    Gauge(fn(&T) -> Option<f64>),
}

/// Registers every metric of `table`, with a sample for each of `things` that has one.
fn register<T>(reg: &mut Registry, table: Table<T>, things: &[T]) {
    let labels: Vec<Labels> = things
        .iter()
        .map(|t| {
            (table.labels)(t)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect();
    for m in &table.metrics {
        match m.value {
            Value::Counter(get) => {
                let family = Family::<Labels, Counter>::default();
                for (t, l) in things.iter().zip(&labels) {
                    if let Some(v) = get(t) {
                        family.get_or_create(l).inc_by(v);
                    }
                }
                reg.register(m.name, m.help, family);
            }
            Value::Gauge(get) => {
                let family = Family::<Labels, FloatGauge>::default();
                for (t, l) in things.iter().zip(&labels) {
                    if let Some(v) = get(t) {
                        family.get_or_create(l).set(v);
                    }
                }
                reg.register(m.name, m.help, family);
            }
        }
    }
}

const fn counter<T>(
    name: &'static str,
    help: &'static str,
    get: fn(&T) -> Option<u64>,
) -> Metric<T> {
    Metric {
        name,
        help,
        value: Value::Counter(get),
    }
}

const fn gauge<T>(name: &'static str, help: &'static str, get: fn(&T) -> Option<f64>) -> Metric<T> {
    Metric {
        name,
        help,
        value: Value::Gauge(get),
    }
}

fn flag(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// The daemon as a whole: one sample per metric, no labels.
struct Daemon<'a> {
    config: &'a ReloadStatus,
    started_at: f64,
}

fn daemon_table<'a>() -> Table<Daemon<'a>> {
    Table {
        labels: |_| Vec::new(),
        metrics: vec![
            gauge(
                "mcrelay_start_time_seconds",
                "Start time of the daemon since the Unix epoch",
                |d| Some(d.started_at),
            ),
            gauge(
                "mcrelay_config_generation",
                "Generation of the routing table the workers run",
                |d| Some(d.config.generation as f64),
            ),
            gauge(
                "mcrelay_config_last_reload_successful",
                "Whether the last configuration reload attempt was successful (1) or rejected (0)",
                |d| flag(d.config.last_successful),
            ),
            gauge(
                "mcrelay_config_last_reload_success_timestamp_seconds",
                "Time of the last successful configuration load since the Unix epoch",
                |d| Some(d.config.last_success_at),
            ),
        ],
    }
}

fn reloads_table() -> Table<(&'static str, u64)> {
    Table {
        labels: |(result, _)| vec![("result", result.to_string())],
        metrics: vec![counter(
            "mcrelay_config_reloads",
            "Configuration reloads by result (success = new generation, unchanged = nothing to do, failure = rejected or unreadable)",
            |(_, n)| Some(*n),
        )],
    }
}

fn workers_table() -> Table<(String, u16, WorkerState, u64)> {
    Table {
        labels: |(interface, index, _, _)| {
            vec![
                ("interface", interface.clone()),
                ("worker", index.to_string()),
            ]
        },
        metrics: vec![
            gauge(
                "mcrelay_worker_generation",
                "Generation each worker acknowledged",
                |(_, _, _, generation)| Some(*generation as f64),
            ),
            gauge(
                "mcrelay_worker_running",
                "1 when the worker runs, 0 when it waits, stops or failed",
                |(_, _, state, _)| flag(*state == WorkerState::Running),
            ),
        ],
    }
}

fn group_labels(g: &GroupStats) -> Vec<(&'static str, String)> {
    vec![
        ("group", g.label.clone()),
        ("interface", g.interface.clone()),
    ]
}

fn groups_table() -> Table<GroupStats> {
    Table {
        labels: group_labels,
        metrics: vec![
            counter(
                "mcrelay_group_icmp_suppressed_datagrams",
                "Datagrams of a listen route the host did not answer with ICMP port-unreachable (also in Udp InErrors)",
                |g| g.icmp_suppressed,
            ),
            counter(
                "mcrelay_group_received_packets",
                "Packets received for the group",
                |g| Some(g.packets),
            ),
            counter(
                "mcrelay_group_received_bytes",
                "UDP payload bytes received for the group",
                |g| Some(g.bytes),
            ),
            gauge(
                "mcrelay_group_up",
                "1 while the group received a packet within daemon.silence_timeout",
                |g| flag(g.up),
            ),
            gauge(
                "mcrelay_group_last_seen_timestamp_seconds",
                "Time of the group's last packet since the Unix epoch",
                |g| g.last_seen,
            ),
            counter(
                "mcrelay_rtp_packets",
                "RTP packets seen (groups with rtp = true)",
                |g| g.rtp.as_ref().map(|r| r.packets),
            ),
            counter("mcrelay_rtp_sequence_gaps", "RTP sequence gaps", |g| {
                g.rtp.as_ref().map(|r| r.gaps)
            }),
            counter(
                "mcrelay_rtp_lost_packets",
                "RTP packets missing (gaps minus late arrivals)",
                |g| g.rtp.as_ref().map(|r| r.lost),
            ),
            counter(
                "mcrelay_rtp_duplicate_packets",
                "RTP packets received twice",
                |g| g.rtp.as_ref().map(|r| r.duplicates),
            ),
            counter(
                "mcrelay_rtp_reordered_packets",
                "RTP packets arriving after a later one",
                |g| g.rtp.as_ref().map(|r| r.reordered),
            ),
            counter(
                "mcrelay_rtp_invalid_packets",
                "Payloads too short or not RTP version 2",
                |g| g.rtp.as_ref().map(|r| r.invalid),
            ),
            gauge(
                "mcrelay_rtp_jitter_seconds",
                "RFC 3550 interarrival jitter of the group's packets (90 kHz clock)",
                |g| g.rtp_jitter_seconds,
            ),
            counter(
                "mcrelay_ts_packets",
                "MPEG-TS packets checked (groups whose payload is MPEG-TS, raw or in RTP)",
                |g| g.ts.map(|t| t.packets),
            ),
            counter(
                "mcrelay_ts_cc_errors",
                "MPEG-TS continuity-counter errors (TR 101 290 1.4)",
                |g| g.ts.map(|t| t.cc_errors),
            ),
        ],
    }
}

fn destinations_table<'a>() -> Table<(&'a GroupStats, &'a DestinationStats)> {
    Table {
        labels: |(g, d)| {
            let mut l = group_labels(g);
            l.push(("destination", d.name.clone()));
            l
        },
        metrics: vec![
            counter(
                "mcrelay_destination_sent_packets",
                "Datagrams sent to the destination for the group",
                |(_, d)| Some(d.packets),
            ),
            counter(
                "mcrelay_destination_sent_bytes",
                "UDP payload bytes sent to the destination for the group",
                |(_, d)| Some(d.bytes),
            ),
            counter(
                "mcrelay_destination_send_errors",
                "Sends that failed with an error",
                |(_, d)| Some(d.errors),
            ),
            counter(
                "mcrelay_destination_drops",
                "Datagrams dropped because the socket was full",
                |(_, d)| Some(d.drops),
            ),
        ],
    }
}

/// The output stream of each group with `legs`.
fn redundancy_table<'a>() -> Table<(&'a GroupStats, &'a RedundancyStats)> {
    Table {
        labels: |(g, r)| {
            let mut l = group_labels(g);
            l.push(("mode", r.mode.clone()));
            l
        },
        metrics: vec![
            counter(
                "mcrelay_redundancy_output_packets",
                "Packets a group with legs sent on (the first copy of each number, or the active leg's)",
                |(_, r)| Some(r.output.forwarded),
            ),
            counter(
                "mcrelay_redundancy_lost_packets",
                "Sequence numbers no leg delivered within the window",
                |(_, r)| Some(r.output.lost),
            ),
            counter(
                "mcrelay_redundancy_reordered_packets",
                "Packets sent after a higher number (a hole filled by a lagging leg)",
                |(_, r)| Some(r.output.reordered),
            ),
            counter(
                "mcrelay_redundancy_duplicate_packets",
                "Copies dropped because another leg delivered the number first",
                |(_, r)| Some(r.output.duplicates),
            ),
            counter(
                "mcrelay_redundancy_jumps",
                "Packets dropped for a sequence number far from the stream's (or another SSRC)",
                |(_, r)| Some(r.output.jumps),
            ),
            counter(
                "mcrelay_redundancy_switches",
                "Failover switches from one leg to another",
                |(_, r)| Some(r.output.switches),
            ),
        ],
    }
}

/// Each leg of each group with `legs`; `interface` is the leg's own.
fn legs_table<'a>() -> Table<(&'a GroupStats, usize, &'a LegStats)> {
    Table {
        labels: |(g, i, l)| {
            vec![
                ("group", g.label.clone()),
                ("leg", i.to_string()),
                ("interface", l.interface.clone()),
            ]
        },
        metrics: vec![
            counter(
                "mcrelay_leg_received_packets",
                "Packets received on the leg",
                |(_, _, l)| Some(l.packets),
            ),
            counter(
                "mcrelay_leg_forwarded_packets",
                "Packets of the leg that were sent on (it was first, or the active leg)",
                |(_, _, l)| Some(l.forwarded),
            ),
            counter(
                "mcrelay_leg_unique_packets",
                "Sequence numbers only this leg delivered",
                |(_, _, l)| Some(l.unique),
            ),
            counter(
                "mcrelay_leg_duplicate_packets",
                "Copies of the leg dropped because another leg was first",
                |(_, _, l)| Some(l.duplicates),
            ),
            counter(
                "mcrelay_leg_late_packets",
                "Copies of the leg arriving after their number was settled",
                |(_, _, l)| Some(l.late),
            ),
            counter(
                "mcrelay_leg_missing_packets",
                "Sequence numbers the leg never delivered",
                |(_, _, l)| Some(l.missing),
            ),
            counter(
                "mcrelay_leg_no_key_packets",
                "Packets of the leg without a sequence number (too short, not RTP)",
                |(_, _, l)| Some(l.no_key.values().sum()),
            ),
            counter(
                "mcrelay_leg_downs",
                "Times the leg went DOWN",
                |(_, _, l)| Some(l.downs),
            ),
            gauge(
                "mcrelay_leg_up",
                "1 while the leg delivers, 0 after its down time without a packet",
                |(_, _, l)| flag(l.up),
            ),
            gauge(
                "mcrelay_leg_behind_seconds",
                "How long after the first copy this leg's copy of a sampled number arrived",
                |(_, _, l)| l.behind_seconds,
            ),
            gauge(
                "mcrelay_leg_lead_packets",
                "The leg's highest sequence number minus the output's",
                |(_, _, l)| Some(l.lead as f64),
            ),
        ],
    }
}

fn interfaces_table() -> Table<InterfaceStats> {
    Table {
        labels: |i| vec![("interface", i.name.clone())],
        metrics: vec![
            counter(
                "mcrelay_interface_received_frames",
                "Frames the relay received on the interface",
                |i| Some(i.frames),
            ),
            counter(
                "mcrelay_interface_received_bytes",
                "Bytes of the frames received on the interface",
                |i| Some(i.frame_bytes),
            ),
            counter(
                "mcrelay_interface_kernel_drops",
                "Frames the kernel dropped before the relay read them (PACKET_STATISTICS)",
                |i| Some(i.kernel_drops),
            ),
        ],
    }
}

fn relay_drops_table<'a>() -> Table<(&'a InterfaceStats, &'a str, u64)> {
    Table {
        labels: |(i, reason, _)| {
            vec![
                ("interface", i.name.clone()),
                ("reason", reason.to_string()),
            ]
        },
        metrics: vec![counter(
            "mcrelay_interface_relay_drops",
            "Frames the relay dropped, by reason",
            |(_, _, n)| Some(*n),
        )],
    }
}

/// A running metrics endpoint; stopped when dropped.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What `/metrics` answers: the exposition text as of now.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` on `addr`, each scrape answered with `exposition()`.
pub fn serve(exposition: Exposition, addr: SocketAddr) -> Result<MetricsServer, String> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen for metrics on {addr}: {e}; change daemon.metrics_listen or free the port")
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            super::yield_to_workers();
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(&*exposition, s) {
                            tracing::debug!("metrics client: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("metrics accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    tracing::info!("serving metrics at http://{addr}/metrics");
    Ok(MetricsServer {
        stop,
        addr,
        thread: Some(thread),
    })
}

const MAX_REQUEST: usize = 8 * 1024;

fn answer(
    exposition: &(dyn Fn() -> String + Send + Sync),
    mut s: TcpStream,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") | ("GET", "/") => {
            let body = exposition();
            respond(&mut s, "200 OK", prometheus_text::CONTENT_TYPE, &body)
        }
        ("GET", _) => respond(&mut s, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", "only GET\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::tests::{snap, t0, table};
    use crate::control::view::{RedundancyOutputStats, Sample, stats_report};
    use crate::reload::ReloadCounts;

    #[test]
    fn exposition_has_the_alerting_names_and_values() {
        let c = snap(0, 1.0, 2000, Some(0.8));
        let s = Sample {
            prev: None,
            cur: &c,
        };
        let now = t0() + Duration::from_secs(1);
        let r = stats_report(&table(), &[s], now, Duration::from_secs(2));
        let cfg = ReloadStatus {
            config: "/etc/mcrelay/mcrelay.toml".into(),
            digest: None,
            generation: 3,
            last: None,
            last_successful: false,
            last_success_at: 1_800_000_000.0,
            counts: ReloadCounts {
                applied: 2,
                unchanged: 1,
                rejected: 4,
                unreadable: 1,
            },
        };
        let text = encode(&cfg, &r, 1.0, &[("in0".into(), 0, WorkerState::Running, 3)]);
        for line in [
            "mcrelay_config_generation 3.0",
            "mcrelay_config_last_reload_successful 0.0",
            "mcrelay_config_last_reload_success_timestamp_seconds 1800000000.0",
            "mcrelay_config_reloads_total{result=\"failure\"} 5",
            "mcrelay_config_reloads_total{result=\"success\"} 2",
            "mcrelay_group_received_packets_total{group=\"cam1\",interface=\"in0\"} 2000",
            "mcrelay_group_up{group=\"cam1\",interface=\"in0\"} 1.0",
            "mcrelay_destination_drops_total{group=\"cam1\",interface=\"in0\",destination=\"b\"} 2",
            "mcrelay_interface_relay_drops_total{interface=\"in0\",reason=\"no_route\"} 5",
            "mcrelay_rtp_lost_packets_total{group=\"cam2\",interface=\"in0\"} 0",
            "mcrelay_worker_generation{interface=\"in0\",worker=\"0\"} 3.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("# TYPE mcrelay_group_received_packets_total counter"));
    }

    /// Every family the exposition can carry is named in mcrelay(8), METRICS, as served
    /// (`_total` on counters), and counters and gauges are named as Prometheus expects.
    fn redundant_group() -> RedundancyStats {
        let leg = |interface: &str, packets| LegStats {
            interface: interface.into(),
            group: "239.1.1.1".parse().unwrap(),
            port: Some(5000),
            source: None,
            up: true,
            packets,
            forwarded: packets - 3,
            unique: 2,
            duplicates: 3,
            late: 0,
            missing: 1,
            no_key: [("too_short".to_string(), 1)].into(),
            behind_seconds: Some(0.002),
            lead: -1,
            downs: 1,
        };
        RedundancyStats {
            mode: "merge".into(),
            active_leg: None,
            legs: vec![leg("in0", 100), leg("in1", 90)],
            output: RedundancyOutputStats {
                forwarded: 184,
                lost: 4,
                duplicates: 6,
                reordered: 5,
                late: 0,
                jumps: 0,
                restarts: 0,
                no_key: 2,
                switches: 0,
            },
        }
    }

    #[test]
    fn legs_are_exposed_per_leg_and_group() {
        let c = snap(0, 1.0, 2000, Some(0.8));
        let s = Sample {
            prev: None,
            cur: &c,
        };
        let mut r = stats_report(
            &table(),
            &[s],
            t0() + Duration::from_secs(1),
            Duration::from_secs(2),
        );
        r.groups[0].redundancy = Some(redundant_group());
        let text = encode(
            &ReloadStatus {
                config: "/etc/mcrelay/mcrelay.toml".into(),
                digest: None,
                generation: 1,
                last: None,
                last_successful: true,
                last_success_at: 1.0,
                counts: ReloadCounts::default(),
            },
            &r,
            1.0,
            &[],
        );
        for line in [
            "mcrelay_redundancy_output_packets_total{group=\"cam1\",interface=\"in0\",mode=\"merge\"} 184",
            "mcrelay_redundancy_lost_packets_total{group=\"cam1\",interface=\"in0\",mode=\"merge\"} 4",
            "mcrelay_leg_received_packets_total{group=\"cam1\",leg=\"1\",interface=\"in1\"} 90",
            "mcrelay_leg_forwarded_packets_total{group=\"cam1\",leg=\"0\",interface=\"in0\"} 97",
            "mcrelay_leg_no_key_packets_total{group=\"cam1\",leg=\"0\",interface=\"in0\"} 1",
            "mcrelay_leg_up{group=\"cam1\",leg=\"0\",interface=\"in0\"} 1.0",
            "mcrelay_leg_lead_packets{group=\"cam1\",leg=\"1\",interface=\"in1\"} -1.0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn every_metric_is_documented_and_named_by_the_conventions() {
        let page = include_str!("../../man/mcrelay.8");
        let section = &page[page.find(".Ss Metrics").unwrap()..page.find(".Sh SIGNALS").unwrap()];
        let c = snap(0, 1.0, 2000, Some(0.8));
        let s = Sample {
            prev: None,
            cur: &c,
        };
        let mut r = stats_report(
            &table(),
            &[s],
            t0() + Duration::from_secs(1),
            Duration::from_secs(2),
        );
        // A group with legs and MPEG-TS over RTP, so that those families are exposed too.
        r.groups[0].redundancy = Some(redundant_group());
        r.groups[0].rtp_jitter_seconds = Some(0.001);
        r.groups[0].ts = Some(crate::stats::TsCounters {
            packets: 70,
            cc_errors: 1,
            not_ts: 0,
        });
        let cfg = ReloadStatus {
            config: "/etc/mcrelay/mcrelay.toml".into(),
            digest: None,
            generation: 1,
            last: None,
            last_successful: true,
            last_success_at: 1.0,
            counts: ReloadCounts::default(),
        };
        let text = encode(&cfg, &r, 1.0, &[("in0".into(), 0, WorkerState::Running, 1)]);
        let mut families = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            families += 1;
            assert!(
                section.contains(name),
                "{name} is not described in mcrelay(8), METRICS"
            );
            match kind {
                "counter" => assert!(name.ends_with("_total"), "counter {name}"),
                "gauge" => assert!(!name.ends_with("_total"), "gauge {name}"),
                other => panic!("{name}: unexpected type {other}"),
            }
            for unit in ["_milliseconds", "_microseconds", "_bits", "_kilobytes"] {
                assert!(!name.contains(unit), "{name}: not a base unit");
            }
        }
        assert_eq!(families, 45, "a family was added or lost:\n{text}");
    }
}
