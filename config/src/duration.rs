//! Durations in `lb.toml`: one or more `<integer><unit>` groups with unit
//! `ms`, `s`, `m` or `h` (`"900ms"`, `"2s"`, `"1h30m"`, `"0s"`).

use std::time::Duration;

/// The accepted form, quoted in error messages.
pub const DURATION_FORM: &str =
    "one or more <integer><unit> groups with unit ms, s, m or h (e.g. \"900ms\", \"2s\", \"15m\", \"1h30m\")";

/// Parses a duration string such as `"1h30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected {DURATION_FORM}");
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let value: u64 = s[start..i].parse().map_err(|_| bad())?;
        let unit_ms: u64 = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1
            }
            (Some(b's'), _) => {
                i += 1;
                1_000
            }
            (Some(b'm'), _) => {
                i += 1;
                60_000
            }
            (Some(b'h'), _) => {
                i += 1;
                3_600_000
            }
            _ => return Err(bad()),
        };
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the same form `parse_duration` accepts, e.g. `1h30m`, `900ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accepted_forms() {
        assert_eq!(parse_duration("900ms"), Ok(Duration::from_millis(900)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "5",
            "s",
            "1.5s",
            "1 s",
            " 1s",
            "1d",
            "-1s",
            "1S",
            "1h30",
            "ms",
            "99999999999999999999h",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("invalid duration"), "{s}: {e}");
        }
        assert!(parse_duration("5").unwrap_err().contains("<integer><unit>"));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["0s", "900ms", "2s", "15m", "1h30m", "1m30s500ms", "2h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
