//! Prometheus metrics at `http://<daemon.metrics_listen>/metrics`, off by default.
//!
//! The exposition is written by the `prometheus-client` crate (Prometheus text format 0.0.4) from
//! the same [`StatsReport`] and [`ReloadStatus`] that `mcrelay stats --json` and `status --json`
//! print, so the numbers agree. A fresh registry is built per scrape (the counters live in the
//! workers, not here). Counters are in base units with `_total`; group, interface and destination
//! names are labels. The `mcrelay_config_*` names mirror Prometheus' and Alertmanager's own, so
//! existing alert rules carry over. The HTTP side is a minimal HTTP/1.1 responder on one thread:
//! `GET /metrics` (and `/`), one request per connection, short timeouts, bounded request size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::server::ControlState;
use crate::control::view::StatsReport;
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

    let gauge = |reg: &mut Registry, name: &str, help: &str, v: f64| {
        let g = FloatGauge::default();
        g.set(v);
        reg.register(name, help, g);
    };
    gauge(
        &mut reg,
        "mcrelay_start_time_seconds",
        "Start time of the daemon since the Unix epoch",
        started_at,
    );
    gauge(
        &mut reg,
        "mcrelay_config_generation",
        "Generation of the routing table the workers run",
        config.generation as f64,
    );
    gauge(
        &mut reg,
        "mcrelay_config_last_reload_successful",
        "Whether the last configuration reload attempt was successful (1) or rejected (0)",
        if config.last_successful { 1.0 } else { 0.0 },
    );
    gauge(
        &mut reg,
        "mcrelay_config_last_reload_success_timestamp_seconds",
        "Time of the last successful configuration load since the Unix epoch",
        config.last_success_at,
    );
    let reloads = Family::<Labels, Counter>::default();
    let c = &config.counts;
    for (result, n) in [
        ("success", c.applied),
        ("unchanged", c.unchanged),
        ("failure", c.rejected + c.unreadable),
    ] {
        reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc_by(n);
    }
    reg.register(
        "mcrelay_config_reloads",
        "Configuration reloads by result (success = new generation, unchanged = nothing to do, failure = rejected or unreadable)",
        reloads,
    );

    let wgen = Family::<Labels, FloatGauge>::default();
    let wup = Family::<Labels, FloatGauge>::default();
    for (iface, index, state, generation) in workers {
        let l = vec![
            ("interface".into(), iface.clone()),
            ("worker".into(), index.to_string()),
        ];
        wgen.get_or_create(&l).set(*generation as f64);
        wup.get_or_create(&l)
            .set(if *state == WorkerState::Running {
                1.0
            } else {
                0.0
            });
    }
    reg.register(
        "mcrelay_worker_generation",
        "Generation each worker acknowledged",
        wgen,
    );
    reg.register(
        "mcrelay_worker_running",
        "1 when the worker runs, 0 when it waits, stops or failed",
        wup,
    );

    let counter_family = || Family::<Labels, Counter>::default();
    let (gp, gb) = (counter_family(), counter_family());
    let (gup, gseen) = (
        Family::<Labels, FloatGauge>::default(),
        Family::<Labels, FloatGauge>::default(),
    );
    let (dp, db, de, dd) = (
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
    );
    let (rp, rg, rl, rd, rr, ri) = (
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
    );
    let suppressed = counter_family();
    for g in &stats.groups {
        let l: Labels = vec![
            ("group".into(), g.label.clone()),
            ("interface".into(), g.interface.clone()),
        ];
        if let Some(n) = g.icmp_suppressed {
            suppressed.get_or_create(&l).inc_by(n);
        }
        gp.get_or_create(&l).inc_by(g.packets);
        gb.get_or_create(&l).inc_by(g.bytes);
        gup.get_or_create(&l).set(if g.up { 1.0 } else { 0.0 });
        if let Some(t) = g.last_seen {
            gseen.get_or_create(&l).set(t);
        }
        if let Some(r) = &g.rtp {
            rp.get_or_create(&l).inc_by(r.packets);
            rg.get_or_create(&l).inc_by(r.gaps);
            rl.get_or_create(&l).inc_by(r.lost);
            rd.get_or_create(&l).inc_by(r.duplicates);
            rr.get_or_create(&l).inc_by(r.reordered);
            ri.get_or_create(&l).inc_by(r.invalid);
        }
        for d in &g.destinations {
            let mut dl = l.clone();
            dl.push(("destination".into(), d.name.clone()));
            dp.get_or_create(&dl).inc_by(d.packets);
            db.get_or_create(&dl).inc_by(d.bytes);
            de.get_or_create(&dl).inc_by(d.errors);
            dd.get_or_create(&dl).inc_by(d.drops);
        }
    }
    reg.register(
        "mcrelay_group_received_packets",
        "Packets received for the group",
        gp,
    );
    reg.register(
        "mcrelay_group_received_bytes",
        "UDP payload bytes received for the group",
        gb,
    );
    reg.register(
        "mcrelay_group_icmp_suppressed_datagrams",
        "Datagrams of a listen route the host did not answer with ICMP port-unreachable (also in Udp InErrors)",
        suppressed,
    );
    reg.register(
        "mcrelay_group_up",
        "1 while the group received a packet within daemon.silence_timeout",
        gup,
    );
    reg.register(
        "mcrelay_group_last_seen_timestamp_seconds",
        "Time of the group's last packet since the Unix epoch",
        gseen,
    );
    reg.register(
        "mcrelay_destination_sent_packets",
        "Datagrams sent to the destination for the group",
        dp,
    );
    reg.register(
        "mcrelay_destination_sent_bytes",
        "UDP payload bytes sent to the destination for the group",
        db,
    );
    reg.register(
        "mcrelay_destination_send_errors",
        "Sends that failed with an error",
        de,
    );
    reg.register(
        "mcrelay_destination_drops",
        "Datagrams dropped because the socket was full",
        dd,
    );
    reg.register(
        "mcrelay_rtp_packets",
        "RTP packets seen (groups with rtp = true)",
        rp,
    );
    reg.register("mcrelay_rtp_sequence_gaps", "RTP sequence gaps", rg);
    reg.register(
        "mcrelay_rtp_lost_packets",
        "RTP packets missing (gaps minus late arrivals)",
        rl,
    );
    reg.register(
        "mcrelay_rtp_duplicate_packets",
        "RTP packets received twice",
        rd,
    );
    reg.register(
        "mcrelay_rtp_reordered_packets",
        "RTP packets arriving after a later one",
        rr,
    );
    reg.register(
        "mcrelay_rtp_invalid_packets",
        "Payloads too short or not RTP version 2",
        ri,
    );

    tunnel_metrics(&mut reg, &stats.tunnels);

    let (fr, fb, kd, rs, dr) = (
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
        counter_family(),
    );
    for i in &stats.interfaces {
        let l: Labels = vec![("interface".into(), i.name.clone())];
        fr.get_or_create(&l).inc_by(i.frames);
        fb.get_or_create(&l).inc_by(i.frame_bytes);
        kd.get_or_create(&l).inc_by(i.kernel_drops);
        rs.get_or_create(&l).inc_by(i.ring_stalls);
        for (reason, n) in &i.drops {
            let mut rl = l.clone();
            rl.push(("reason".into(), reason.clone()));
            dr.get_or_create(&rl).inc_by(*n);
        }
    }
    reg.register(
        "mcrelay_interface_received_frames",
        "Frames the relay received on the interface",
        fr,
    );
    reg.register(
        "mcrelay_interface_received_bytes",
        "Bytes of the frames received on the interface",
        fb,
    );
    reg.register(
        "mcrelay_interface_kernel_drops",
        "Frames the kernel dropped before the relay read them (PACKET_STATISTICS)",
        kd,
    );
    reg.register(
        "mcrelay_interface_ring_stalls",
        "Times the receive buffer ring ran empty",
        rs,
    );
    reg.register(
        "mcrelay_interface_relay_drops",
        "Frames the relay dropped, by reason",
        dr,
    );

    let mut out = String::new();
    if let Err(e) = prometheus_text::encode(&mut out, &reg) {
        tracing::error!("cannot encode metrics: {e}");
    }
    out
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

/// Serves `/metrics` on `addr` from `state`.
pub fn serve(state: Arc<ControlState>, addr: SocketAddr) -> Result<MetricsServer, String> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen for metrics on {addr}: {e}; change daemon.metrics_listen or free the port")
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            crate::control::server::yield_to_workers();
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(&state, s) {
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

fn answer(state: &ControlState, mut s: TcpStream) -> std::io::Result<()> {
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
            let body = state.metrics(SystemTime::now());
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
    use crate::control::view::{Sample, stats_report};
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
}
