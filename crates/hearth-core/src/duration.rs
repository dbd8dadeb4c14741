//! Prometheus durations (`1h30m`, `5m`, `100ms`, `2d`, `1y`), as `model.ParseDuration`
//! reads them, in milliseconds.

/// Parses a Prometheus duration (`1h30m`, `100ms`, `0`); `None` if it is not one.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    parse_duration(s).ok()
}

/// Parses a Prometheus duration as Prometheus' `model.ParseDuration` does: units from
/// the largest to the smallest, each at most once, and the same error texts.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    // (unit, nanoseconds); the index is the unit's rank, which must increase.
    const UNITS: [(&str, u128); 7] = [
        ("y", 365 * 86_400 * 1_000_000_000),
        ("w", 7 * 86_400 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {s:?}");
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    let mut last_rank: Option<usize> = None;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(invalid());
        }
        let n: u64 = s[start..i].parse().map_err(|_| invalid())?;
        let unit_start = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if unit_start == i {
            return Err(invalid());
        }
        let unit = &s[unit_start..i];
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(invalid());
        }
        last_rank = Some(rank);
        let mult = UNITS[rank].1;
        if u128::from(n) > (1u128 << 63) / mult {
            return Err("duration out of range".into());
        }
        total += u128::from(n) * mult;
        if total > (1u128 << 63) - 1 {
            return Err("duration out of range".into());
        }
    }
    Ok((total / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("10s53ms"), Some(10_053));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("1x"), None);
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("1y2w3d4h5m6s7ms"), Some(33_019_506_007));
        // Units go from the largest to the smallest, each once.
        assert_eq!(
            parse_duration("5m1h"),
            Err("not a valid duration string: \"5m1h\"".into())
        );
        assert_eq!(
            parse_duration("5m1m"),
            Err("not a valid duration string: \"5m1m\"".into())
        );
        assert_eq!(
            parse_duration("5y1hs"),
            Err("unknown unit \"hs\" in duration \"5y1hs\"".into())
        );
        assert_eq!(parse_duration("300y"), Err("duration out of range".into()));
    }
}
