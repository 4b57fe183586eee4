//! The replay window: each authenticated datagram is accepted at most once.
//!
//! A sender numbers its datagrams with a 64-bit counter that starts at 0 for each session (a
//! start of the sending relay). The receiver keeps, per peer and per lane, the session it is
//! following, the highest counter seen in it and a bitmap of the [`WINDOW`] counters below that
//! (the sliding window of RFC 4303 section 3.4.3, IPsec ESP's anti-replay). A counter is
//! accepted when it is above the highest, or within the window and not seen yet; reordering
//! within the window is therefore harmless and a duplicate or a replay is refused.
//!
//! Sessions: a datagram of a *newer* session (a larger session number: senders use their start
//! time) means the peer restarted; the window starts afresh. A datagram of an *older* session
//! is refused as stale, so a recorded datagram of a previous run cannot be replayed. Without a
//! key anyone can forge the session number, and refusing older sessions would let one forged
//! datagram with a huge session lock the real peer out; so a keyless tunnel follows any session
//! change (it still drops duplicates within a session).

/// How many counters below the highest seen are remembered.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Why a datagram is refused by the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayError {
    /// This counter was already accepted in this session.
    Replayed,
    /// The counter is [`WINDOW`] or more below the highest accepted: too late to tell.
    TooOld,
    /// The datagram belongs to a session older than the one followed (keyed tunnels only).
    StaleSession,
}

/// What accepting a datagram did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first datagram from this peer and lane.
    First,
    /// Same session as before.
    Same,
    /// A different session: the peer restarted (or, without a key, someone claims it did).
    Restarted,
}

/// The sliding window of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest counter accepted.
    top: u64,
    /// Bit `n % WINDOW` set = counter `n` accepted, for `n` in `top - WINDOW + 1 ..= top`.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window whose first accepted counter is `first`.
    pub fn starting_at(first: u64) -> ReplayWindow {
        let mut w = ReplayWindow {
            top: first,
            bits: [0; WORDS],
        };
        w.set(first);
        w
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter > self.top {
            Ok(())
        } else if self.top - counter >= WINDOW {
            Err(ReplayError::TooOld)
        } else if self.is_set(counter) {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Accepts `counter` once: records it, sliding the window forward when it is the highest.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter > self.top {
            let ahead = counter - self.top;
            if ahead >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for n in self.top + 1..counter {
                    self.clear(n);
                }
            }
            self.top = counter;
        }
        self.set(counter);
        Ok(())
    }

    /// The highest counter accepted.
    pub fn top(&self) -> u64 {
        self.top
    }

    fn is_set(&self, n: u64) -> bool {
        let b = n % WINDOW;
        self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    fn set(&mut self, n: u64) {
        let b = n % WINDOW;
        self.bits[(b / 64) as usize] |= 1 << (b % 64);
    }

    fn clear(&mut self, n: u64) {
        let b = n % WINDOW;
        self.bits[(b / 64) as usize] &= !(1 << (b % 64));
    }
}

/// The session followed for one peer and lane, and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWindow {
    session: u64,
    window: ReplayWindow,
}

impl SessionWindow {
    pub fn new(session: u64, counter: u64) -> SessionWindow {
        SessionWindow {
            session,
            window: ReplayWindow::starting_at(counter),
        }
    }

    /// The session followed.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Accepts datagram (`session`, `counter`) at most once. `keyed`: the datagram was
    /// authenticated, so an older session is refused (see the module documentation).
    pub fn accept(
        &mut self,
        session: u64,
        counter: u64,
        keyed: bool,
    ) -> Result<SessionEvent, ReplayError> {
        if session == self.session {
            self.window.accept(counter)?;
            return Ok(SessionEvent::Same);
        }
        if keyed && session < self.session {
            return Err(ReplayError::StaleSession);
        }
        *self = SessionWindow::new(session, counter);
        Ok(SessionEvent::Restarted)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn duplicates_are_refused_and_reordering_within_the_window_is_not() {
        let mut w = ReplayWindow::starting_at(10);
        assert_eq!(w.accept(10), Err(ReplayError::Replayed));
        assert_eq!(w.accept(12), Ok(()));
        assert_eq!(w.accept(11), Ok(()));
        assert_eq!(w.accept(11), Err(ReplayError::Replayed));
        assert_eq!(w.accept(12 + WINDOW), Ok(()));
        assert_eq!(w.accept(12), Err(ReplayError::TooOld));
        assert_eq!(
            w.accept(13),
            Ok(()),
            "13 is inside the window of 12 + WINDOW"
        );
        assert_eq!(w.accept(u64::MAX), Ok(()));
        assert_eq!(w.accept(u64::MAX), Err(ReplayError::Replayed));
        assert_eq!(w.top(), u64::MAX);
    }

    #[test]
    fn a_slide_clears_the_bits_it_passes() {
        let mut w = ReplayWindow::starting_at(0);
        for n in 1..WINDOW {
            w.accept(n).unwrap();
        }
        // Sliding to 2 * WINDOW - 1 moves the window past 0..WINDOW - 1, whose bit positions
        // counters WINDOW..2 * WINDOW - 1 reuse: the slide must have cleared them.
        w.accept(2 * WINDOW - 1).unwrap();
        for n in WINDOW..2 * WINDOW - 1 {
            assert_eq!(w.accept(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn a_newer_session_restarts_an_older_one_is_stale_when_keyed() {
        let mut s = SessionWindow::new(100, 5);
        assert_eq!(s.accept(100, 6, true), Ok(SessionEvent::Same));
        assert_eq!(s.accept(100, 6, true), Err(ReplayError::Replayed));
        assert_eq!(s.accept(200, 0, true), Ok(SessionEvent::Restarted));
        assert_eq!(s.session(), 200);
        assert_eq!(s.accept(200, 0, true), Err(ReplayError::Replayed));
        assert_eq!(s.accept(100, 7, true), Err(ReplayError::StaleSession));
        // Without a key an older session is followed too (see the module documentation).
        assert_eq!(s.accept(100, 7, false), Ok(SessionEvent::Restarted));
        assert_eq!(s.accept(100, 7, false), Err(ReplayError::Replayed));
    }

    proptest! {
        /// The window against a model that remembers every counter ever accepted: a counter is
        /// accepted iff it is less than WINDOW below the highest so far and was never accepted.
        #[test]
        fn window_agrees_with_a_model(
            first in 0u64..4096,
            steps in prop::collection::vec((0u64..3000, any::<bool>()), 1..400),
        ) {
            let mut w = ReplayWindow::starting_at(first);
            let mut seen = BTreeSet::from([first]);
            let mut top = first;
            for (delta, up) in steps {
                let n = if up { top.saturating_add(delta) } else { top.saturating_sub(delta) };
                let expected = if n + WINDOW <= top {
                    Err(ReplayError::TooOld)
                } else if seen.contains(&n) {
                    Err(ReplayError::Replayed)
                } else {
                    Ok(())
                };
                prop_assert_eq!(w.accept(n), expected, "counter {}", n);
                if expected.is_ok() {
                    seen.insert(n);
                    top = top.max(n);
                }
            }
        }

        /// Any permutation of a run shorter than the window is accepted whole, once.
        #[test]
        fn reordering_within_the_window_loses_nothing(
            order in Just((1u64..200).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let mut w = ReplayWindow::starting_at(0);
            for &n in &order {
                prop_assert_eq!(w.accept(n), Ok(()));
            }
            for &n in &order {
                prop_assert_eq!(w.accept(n), Err(ReplayError::Replayed));
            }
        }
    }
}
