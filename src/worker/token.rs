//! Typed `user_data` for the worker's io_uring: each operation has its own token, so a
//! completion says what it is about.

/// What a submission (and so its completions) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The readability poll of source `source` (its index in the worker's source set), armed
    /// while the source had `epoch`.
    Poll { source: u16, epoch: u32 },
    /// The periodic timer: stats publication, kernel statistics, retries.
    Tick,
    /// The wake-up eventfd became readable (table change or stop).
    Wake,
    /// Completion of a cancel request (nothing to do).
    Cancel,
}

const KIND_SHIFT: u32 = 56;
const POLL: u64 = 1;
const TICK: u64 = 2;
const WAKE: u64 = 3;
const CANCEL: u64 = 4;

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Poll { source, epoch } => {
                (POLL << KIND_SHIFT) | (u64::from(epoch) << 16) | u64::from(source)
            }
            Token::Tick => TICK << KIND_SHIFT,
            Token::Wake => WAKE << KIND_SHIFT,
            Token::Cancel => CANCEL << KIND_SHIFT,
        }
    }

    pub fn decode(v: u64) -> Option<Token> {
        match v >> KIND_SHIFT {
            POLL => Some(Token::Poll {
                source: (v & 0xffff) as u16,
                epoch: ((v >> 16) & 0xffff_ffff) as u32,
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
            Token::Poll {
                source: 0,
                epoch: 0,
            },
            Token::Poll {
                source: u16::MAX,
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
