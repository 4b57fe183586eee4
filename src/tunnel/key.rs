//! [`TunnelKey`]: the secret a tunnel's datagrams are authenticated with, and its key file.
//!
//! A key is a type of its own so that it cannot reach a log line, a `Debug` dump or `status`
//! output by accident: `Debug` and `Display` print `TunnelKey(redacted)`, equality is compared in
//! constant time, and the bytes are overwritten with zeros when the value is dropped.
//!
//! # Key file format
//!
//! One line of hexadecimal digits (upper or lower case) encoding 32 to 64 bytes (64 to 128
//! digits), optionally followed by a line break. White space around the digits is ignored;
//! nothing else may be in the file. Both ends of a tunnel hold the same file. To make one:
//!
//! ```text
//! umask 077; openssl rand -hex 32 > /etc/mcrelay/site-cloud.key
//! ```
//!
//! [`read_key_file`] reads it and returns, besides the key, a warning when the file can be read
//! by every user of the machine (mode `o+r`) or written by users other than its owner.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Fewest key bytes accepted: the output size of SHA-256, HMAC's natural key size.
pub const MIN_KEY_BYTES: usize = 32;
/// Most key bytes accepted: one SHA-256 block; a longer HMAC key would be hashed first anyway.
pub const MAX_KEY_BYTES: usize = 64;

/// Key files larger than this are refused unread (a key file is about 65 bytes).
const MAX_FILE_BYTES: u64 = 4096;

/// A tunnel's secret key: 32 to 64 bytes, redacted in every printed form, zeroized on drop.
#[derive(Clone)]
pub struct TunnelKey {
    bytes: Vec<u8>,
}

impl TunnelKey {
    /// A key from raw bytes, or why not (wrong length).
    pub fn from_bytes(bytes: &[u8]) -> Result<TunnelKey, KeyError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyError::Length { bytes: bytes.len() });
        }
        Ok(TunnelKey {
            bytes: bytes.to_vec(),
        })
    }

    /// Parses the contents of a key file (see the module documentation).
    pub fn parse(text: &str) -> Result<TunnelKey, KeyError> {
        let start = text.len() - text.trim_start().len();
        let digits = text.trim();
        if digits.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some(at) = digits.find(['\n', '\r']) {
            let line = 1 + text[..start + at].matches('\n').count();
            return Err(KeyError::ExtraLines { line: line + 1 });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
        let mut high = None;
        for (i, c) in digits.char_indices() {
            let Some(v) = c.to_digit(16) else {
                return Err(KeyError::NotHex {
                    column: text[..start + i].chars().count() + 1,
                    found: if c.is_ascii_graphic() { c } else { '?' },
                });
            };
            match high.take() {
                None => high = Some(v as u8),
                Some(h) => bytes.push(h << 4 | v as u8),
            }
        }
        if high.is_some() {
            return Err(KeyError::OddDigits {
                digits: digits.len(),
            });
        }
        TunnelKey::from_bytes(&bytes)
    }

    /// The key's bytes, for the MAC (see [`super::auth::MacKey`]).
    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for TunnelKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for TunnelKey {}

impl PartialEq for TunnelKey {
    /// Constant time in the key's contents (lengths are not secret).
    fn eq(&self, other: &TunnelKey) -> bool {
        self.bytes.len() == other.bytes.len() && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl Eq for TunnelKey {}

impl fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TunnelKey(redacted)")
    }
}

impl fmt::Display for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Why a key file's contents are not a key. Messages name the place (line or column) and what
/// to write instead; they never contain key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The file holds only white space.
    Empty,
    /// Something other than white space follows the first line.
    ExtraLines { line: usize },
    /// A character that is not a hexadecimal digit, at this 1-based column of line 1 (`?` when
    /// the character is not printable; the character itself is shown only when printable ASCII).
    NotHex { column: usize, found: char },
    /// An odd number of hexadecimal digits.
    OddDigits { digits: usize },
    /// Too few or too many bytes.
    Length { bytes: usize },
    /// The file is far larger than any key file (its size in bytes); it is not read.
    FileTooLarge { bytes: u64 },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAKE: &str = "make one with `openssl rand -hex 32`";
        match self {
            KeyError::Empty => write!(f, "the key file is empty; {MAKE}"),
            KeyError::ExtraLines { line } => write!(
                f,
                "line {line}: the key must be the only line of the file (64 to 128 hexadecimal digits)"
            ),
            KeyError::NotHex { column, found } => write!(
                f,
                "line 1, column {column}: `{found}` is not a hexadecimal digit; the key is written in hexadecimal ({MAKE})"
            ),
            KeyError::OddDigits { digits } => write!(
                f,
                "line 1: {digits} hexadecimal digits is an odd number; each byte takes two digits"
            ),
            KeyError::Length { bytes } => write!(
                f,
                "line 1: the key has {bytes} bytes; it must have {MIN_KEY_BYTES} to {MAX_KEY_BYTES} ({MAKE})"
            ),
            KeyError::FileTooLarge { bytes } => write!(
                f,
                "the file has {bytes} bytes; a key file is one line of 64 to 128 hexadecimal digits"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// A key read from a file, with what is worth telling the operator about the file.
#[derive(Debug)]
pub struct LoadedKey {
    pub key: TunnelKey,
    /// Set when the file's permissions let other users read or change the key.
    pub warning: Option<String>,
}

/// Why a key file could not be used.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file was read but does not hold a key.
    Invalid(KeyError),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io(e) => write!(f, "cannot read it: {e}"),
            KeyFileError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Reads and parses a key file, and checks its permissions (see the module documentation).
pub fn read_key_file(path: &Path) -> Result<LoadedKey, KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(KeyFileError::Io)?;
    if !meta.is_file() {
        return Err(KeyFileError::Io(std::io::Error::other(
            "not a regular file",
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(KeyFileError::Invalid(KeyError::FileTooLarge {
            bytes: meta.len(),
        }));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(KeyFileError::Io)?);
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        KeyFileError::Invalid(KeyError::NotHex {
            column: e.valid_up_to() + 1,
            found: '?',
        })
    })?;
    let key = TunnelKey::parse(text).map_err(KeyFileError::Invalid)?;
    Ok(LoadedKey {
        key,
        warning: permission_warning(meta.permissions().mode()),
    })
}

/// The warning for a key file's mode bits, if any.
pub fn permission_warning(mode: u32) -> Option<String> {
    if mode & 0o004 != 0 {
        Some(format!(
            "the key file can be read by every user (mode {:04o}); make it readable by mcrelay only (chmod 0600, or 0640 with group mcrelay)",
            mode & 0o7777
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "the key file can be changed by users other than its owner (mode {:04o}); chmod go-w it",
            mode & 0o7777
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_key_file_is_one_line_of_hex() {
        let k = TunnelKey::parse(&format!("{HEX32}\n")).unwrap();
        assert_eq!(k.expose(), (0u8..32).collect::<Vec<_>>().as_slice());
        let upper = TunnelKey::parse(&format!("  {}\r\n", HEX32.to_uppercase())).unwrap();
        assert_eq!(k, upper);
        assert_eq!(
            TunnelKey::parse(&HEX32.repeat(2)).unwrap().expose().len(),
            64
        );
    }

    #[test]
    fn key_file_errors_say_where_and_what() {
        assert_eq!(TunnelKey::parse(" \n"), Err(KeyError::Empty));
        assert_eq!(
            TunnelKey::parse(&format!("{HEX32}\n# comment\n")),
            Err(KeyError::ExtraLines { line: 2 })
        );
        let mut bad = HEX32.to_string();
        bad.replace_range(10..11, "g");
        assert_eq!(
            TunnelKey::parse(&bad),
            Err(KeyError::NotHex {
                column: 11,
                found: 'g'
            })
        );
        assert_eq!(
            TunnelKey::parse(&HEX32[1..]),
            Err(KeyError::OddDigits { digits: 63 })
        );
        assert_eq!(
            TunnelKey::parse(&HEX32[..62]),
            Err(KeyError::Length { bytes: 31 })
        );
        assert_eq!(
            TunnelKey::parse(&format!("{HEX32}{HEX32}00")),
            Err(KeyError::Length { bytes: 65 })
        );
        let m = KeyError::NotHex {
            column: 3,
            found: 'x',
        }
        .to_string();
        assert!(
            m.contains("column 3") && m.contains("openssl rand -hex 32"),
            "{m}"
        );
    }

    #[test]
    fn a_key_never_prints_its_bytes() {
        let k = TunnelKey::parse(HEX32).unwrap();
        for shown in [format!("{k:?}"), format!("{k}"), format!("{:?}", Some(&k))] {
            assert!(shown.contains("redacted"), "{shown}");
            assert!(
                !shown.contains("0a0b") && !shown.contains("10, 11"),
                "{shown}"
            );
        }
    }

    #[test]
    fn keys_compare_by_contents() {
        let a = TunnelKey::from_bytes(&[1; 32]).unwrap();
        let mut other = [1; 32];
        other[31] = 2;
        assert_eq!(a, TunnelKey::from_bytes(&[1; 32]).unwrap());
        assert_ne!(a, TunnelKey::from_bytes(&other).unwrap());
        assert_ne!(a, TunnelKey::from_bytes(&[1; 33]).unwrap());
    }

    #[test]
    fn permissions_that_share_the_key_are_warned_about() {
        assert_eq!(permission_warning(0o100600), None);
        assert_eq!(permission_warning(0o100640), None);
        assert!(permission_warning(0o100644).unwrap().contains("every user"));
        assert!(permission_warning(0o100620).unwrap().contains("go-w"));
    }

    #[test]
    fn read_key_file_reads_checks_and_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mcrelay-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        std::fs::write(&path, format!("{HEX32}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = read_key_file(&path).unwrap();
        assert_eq!(loaded.key, TunnelKey::parse(HEX32).unwrap());
        assert_eq!(loaded.warning, None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&path).unwrap().warning.is_some());
        std::fs::write(&path, "zz\n").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid(KeyError::NotHex { column: 1, .. }))
        ));
        assert!(matches!(
            read_key_file(&dir.join("absent")),
            Err(KeyFileError::Io(_))
        ));
        assert!(matches!(read_key_file(&dir), Err(KeyFileError::Io(_))));
        std::fs::write(&path, "0".repeat(5000)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid(KeyError::FileTooLarge {
                bytes: 5000
            }))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
