//! MPEG-TS continuity-counter checks per PID (ISO/IEC 13818-1 2.4.3.3; ETSI TR 101 290 check
//! 1.4, `Continuity_count_error`): the first transport-stream check operators ask for, cheap
//! enough to leave on for every packet of a route whose payload is MPEG-TS.
//!
//! A UDP payload is MPEG-TS when it is a whole number of 188-byte packets each starting with the
//! sync byte 0x47, either directly ("raw") or after an RTP header (RFC 2250, with CSRCs,
//! extension and padding skipped). Per PID the checker keeps the last counter in one byte, a
//! fixed 8 KiB table allocated once: no allocation per packet.
//!
//! Rules, per TS packet: the null PID 0x1FFF is not checked; a packet with payload must carry the
//! previous counter plus one (mod 16), or the previous counter once (a permitted duplicate); a
//! packet without payload (adaptation field only) must repeat the previous counter; a set
//! `discontinuity_indicator` accepts any counter; the first packet of a PID sets the counter.

/// Length of one transport-stream packet.
pub const TS_PACKET_LEN: usize = 188;
/// The first byte of every TS packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The null packet PID, never checked.
pub const NULL_PID: u16 = 0x1fff;

const SEEN: u8 = 0x80;
const DUPLICATE_SEEN: u8 = 0x40;

/// Counts of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TsCounters {
    /// TS packets checked (null packets excluded).
    pub packets: u64,
    /// Continuity-counter errors.
    pub cc_errors: u64,
    /// UDP payloads that were not MPEG-TS (raw or in RTP).
    pub not_ts: u64,
}

/// Continuity-counter state of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuityChecker {
    /// Per PID: `SEEN`, `DUPLICATE_SEEN` and the last counter in the low four bits.
    last: Box<[u8]>,
    counters: TsCounters,
}

impl Default for ContinuityChecker {
    fn default() -> Self {
        ContinuityChecker::new()
    }
}

impl ContinuityChecker {
    pub fn new() -> ContinuityChecker {
        ContinuityChecker {
            last: vec![0; 8192].into(),
            counters: TsCounters::default(),
        }
    }

    pub fn counters(&self) -> TsCounters {
        self.counters
    }

    /// Checks the TS packets of one UDP payload; returns the continuity errors found in it, or
    /// `None` when the payload is not MPEG-TS.
    pub fn observe(&mut self, udp_payload: &[u8]) -> Option<u32> {
        let Some(ts) = ts_packets(udp_payload) else {
            self.counters.not_ts += 1;
            return None;
        };
        let mut errors = 0;
        for p in ts.chunks_exact(TS_PACKET_LEN) {
            errors += u32::from(!self.packet(p));
        }
        self.counters.cc_errors += u64::from(errors);
        Some(errors)
    }

    /// One 188-byte packet starting with the sync byte; false on a continuity error.
    #[inline]
    fn packet(&mut self, p: &[u8]) -> bool {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if pid == NULL_PID {
            return true;
        }
        self.counters.packets += 1;
        let control = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0f;
        let has_payload = control & 0x1 != 0;
        let discontinuity = control & 0x2 != 0 && p[4] > 0 && p[5] & 0x80 != 0;
        let state = &mut self.last[usize::from(pid)];
        if *state & SEEN == 0 || discontinuity || control == 0 {
            *state = SEEN | cc;
            return true;
        }
        let prev = *state & 0x0f;
        let ok = if !has_payload {
            cc == prev
        } else if cc == (prev + 1) & 0x0f {
            true
        } else if cc == prev && *state & DUPLICATE_SEEN == 0 {
            // One repeat of a packet is allowed; mark it so a second repeat is an error.
            *state |= DUPLICATE_SEEN;
            return true;
        } else {
            false
        };
        *state = SEEN | cc;
        ok
    }
}

/// The TS packets of a UDP payload, raw or after an RTP header, if it holds whole ones.
pub fn ts_packets(payload: &[u8]) -> Option<&[u8]> {
    if is_ts(payload) {
        return Some(payload);
    }
    let rtp = rtp_payload(payload)?;
    is_ts(rtp).then_some(rtp)
}

fn is_ts(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len().is_multiple_of(TS_PACKET_LEN)
        && b.chunks_exact(TS_PACKET_LEN).all(|p| p[0] == SYNC_BYTE)
}

/// The payload of an RTP packet (RFC 3550 5.1, 5.3.1): after the CSRCs and the header extension,
/// before the padding.
fn rtp_payload(p: &[u8]) -> Option<&[u8]> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    p.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet of `pid` with counter `cc`; `control` 1 = payload only, 2 = adaptation only,
    /// 3 = both; `disc` sets the discontinuity indicator.
    fn ts(pid: u16, cc: u8, control: u8, disc: bool) -> [u8; 188] {
        let mut p = [0xffu8; 188];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = (control << 4) | (cc & 0x0f);
        if control & 2 != 0 {
            p[4] = 7;
            p[5] = if disc { 0x80 } else { 0 };
        }
        p
    }

    fn payload(packets: &[[u8; 188]]) -> Vec<u8> {
        packets.concat()
    }

    #[test]
    fn a_continuous_stream_has_no_errors_across_the_wrap() {
        let mut c = ContinuityChecker::new();
        for i in 0..40u8 {
            let p = payload(&[ts(256, i, 1, false), ts(257, i, 1, false)]);
            assert_eq!(c.observe(&p), Some(0));
        }
        assert_eq!(c.counters().packets, 80);
        assert_eq!(c.counters().cc_errors, 0);
    }

    #[test]
    fn a_lost_packet_is_one_error_and_a_single_repeat_is_allowed() {
        let mut c = ContinuityChecker::new();
        let p = payload(&[
            ts(100, 0, 1, false),
            ts(100, 1, 1, false),
            ts(100, 1, 1, false), // allowed duplicate
            ts(100, 1, 1, false), // a second repeat: error
            ts(100, 3, 1, false), // 2 lost: error
            ts(100, 3, 2, false), // adaptation only, same counter: fine
            ts(100, 5, 2, false), // adaptation only, counter moved: error
            ts(100, 9, 3, true),  // discontinuity: accepted
            ts(100, 10, 1, false),
            ts(NULL_PID, 7, 1, false), // null packets are not checked
        ]);
        assert_eq!(c.observe(&p), Some(3));
        assert_eq!(c.counters().cc_errors, 3);
        assert_eq!(c.counters().packets, 9);
    }

    #[test]
    fn ts_in_rtp_is_found_after_csrcs_extension_and_padding() {
        let body = payload(&[ts(33, 0, 1, false), ts(33, 2, 1, false)]);
        let mut rtp = vec![0x80 | 0x10 | 0x20 | 0x01, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        rtp.extend_from_slice(&[0, 0, 0, 1]); // one CSRC
        rtp.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension of one word
        rtp.extend_from_slice(&body);
        rtp.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(ts_packets(&rtp), Some(&body[..]));
        let mut c = ContinuityChecker::new();
        assert_eq!(c.observe(&rtp), Some(1));
    }

    #[test]
    fn other_payloads_are_not_ts() {
        let mut c = ContinuityChecker::new();
        assert_eq!(c.observe(&[0x47; 100]), None);
        let mut p = ts(1, 0, 1, false).to_vec();
        p[0] = 0x46;
        assert_eq!(c.observe(&p), None);
        assert_eq!(c.observe(&[]), None);
        // An RTP header claiming more padding than there is.
        let mut r = vec![0xa0, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 200];
        r.push(200);
        assert_eq!(c.observe(&r), None);
        assert_eq!(c.counters().not_ts, 4);
    }
}
