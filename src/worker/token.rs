//! Typed `user_data` for the worker's io_uring: what a completion is about.

/// What a submission (and so its completions) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Multishot receive on ingress socket `slot` (0 = IPv4, 1 = IPv6), opened in `epoch`.
    Recv { slot: u8, epoch: u32 },
    /// The periodic stats timer.
    Tick,
    /// The wake-up eventfd became readable (table change or stop).
    Wake,
    /// Completion of a cancel request (nothing to do).
    Cancel,
}

const KIND_SHIFT: u32 = 56;
const RECV: u64 = 1;
const TICK: u64 = 2;
const WAKE: u64 = 3;
const CANCEL: u64 = 4;

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Recv { slot, epoch } => {
                (RECV << KIND_SHIFT) | (u64::from(epoch) << 8) | u64::from(slot)
            }
            Token::Tick => TICK << KIND_SHIFT,
            Token::Wake => WAKE << KIND_SHIFT,
            Token::Cancel => CANCEL << KIND_SHIFT,
        }
    }

    pub fn decode(v: u64) -> Option<Token> {
        match v >> KIND_SHIFT {
            RECV => Some(Token::Recv {
                slot: (v & 0xff) as u8,
                epoch: ((v >> 8) & 0xffff_ffff) as u32,
            }),
            TICK => Some(Token::Tick),
            WAKE => Some(Token::Wake),
            CANCEL => Some(Token::Cancel),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Recv { slot: 0, epoch: 0 },
            Token::Recv {
                slot: 1,
                epoch: u32::MAX,
            },
            Token::Tick,
            Token::Wake,
            Token::Cancel,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }
}
