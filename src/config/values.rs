//! Small pure helpers of the compiler: value formats and "did you mean".

use std::net::IpAddr;

use super::raw::RawSize;

/// `group:port`, `[v6]:port`, or just the group when every port is meant.
pub(crate) fn endpoint(group: IpAddr, port: Option<u16>) -> String {
    match (group, port) {
        (g, None) => g.to_string(),
        (IpAddr::V4(g), Some(p)) => format!("{g}:{p}"),
        (IpAddr::V6(g), Some(p)) => format!("[{g}]:{p}"),
    }
}

pub(crate) fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The kernel's rules for interface names (IFNAMSIZ 16 including the NUL, no '/' or ':' or
/// white space, not "." or "..").
pub(crate) fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && !n
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Parses a byte size: an integer, or a number with a unit (B, KiB, MiB, GiB, kB, MB, GB).
pub(crate) fn parse_size(s: &RawSize) -> Result<usize, String> {
    let text = match s {
        RawSize::Bytes(b) => {
            return usize::try_from(*b).map_err(|_| format!("rcvbuf must be positive, not {b}"));
        }
        RawSize::Text(t) => t.trim(),
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(digits);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => u64::MAX,
    };
    match num.parse::<u64>() {
        Ok(n) if mult != u64::MAX => n
            .checked_mul(mult)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| format!("rcvbuf `{text}` is too large")),
        _ => Err(format!(
            "rcvbuf `{text}` is not a size; write bytes as an integer or a string such as \"32MiB\" (units B, KiB, MiB, GiB, kB, MB, GB)"
        )),
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
pub(crate) fn nearest<'n>(name: &str, candidates: &[&'n str]) -> Option<&'n str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<usize, String> {
        parse_size(&RawSize::Text(s.into()))
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(size("32MiB"), Ok(32 << 20));
        assert_eq!(size("32 MiB"), Ok(32 << 20));
        assert_eq!(size("4KiB"), Ok(4096));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2MB"), Ok(2_000_000));
        assert_eq!(size("8kB"), Ok(8_000));
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("100B"), Ok(100));
        assert_eq!(parse_size(&RawSize::Bytes(4096)), Ok(4096));
        assert!(size("32mb").is_err());
        assert!(size("MiB").is_err());
        assert!(size("1.5MiB").is_err());
        assert!(size("99999999999999999999GiB").is_err());
        assert_eq!(
            parse_size(&RawSize::Bytes(-1)),
            Err("rcvbuf must be positive, not -1".to_string())
        );
    }

    #[test]
    fn interface_names_follow_ifnamsiz() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a234567890abcde"));
        assert!(!valid_ifname("a234567890abcdef"));
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "a\tb"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("239.1.1.1".parse().unwrap(), Some(5)),
            "239.1.1.1:5"
        );
        assert_eq!(endpoint("ff3e::1".parse().unwrap(), Some(5)), "[ff3e::1]:5");
        assert_eq!(endpoint("ff3e::1".parse().unwrap(), None), "ff3e::1");
    }
}
