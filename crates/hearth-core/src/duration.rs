//! Prometheus durations (`1h30m`, `5m`, `100ms`, `2d`, `1y`), as `model.ParseDuration`
//! reads them, in milliseconds.

/// Parses a Prometheus duration (`1h30m`, `100ms`, `0`); `None` if it is not one.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    parse_duration(s).ok()
}

/// Formats milliseconds as Prometheus' `model.Duration` prints them: the largest units
/// first, each at most once, years and weeks only when they divide the whole (`30d`,
/// not `4w2d`), `0s` for zero (`90000` -> `1m30s`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (i, (unit, size)) in UNITS.into_iter().enumerate() {
        if i < 2 && !rest.is_multiple_of(size as u64) {
            continue;
        }
        let n = rest / size as u64;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            rest -= n * size as u64;
        }
    }
    out
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
    fn formats_as_prometheus() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(90_000), "1m30s");
        assert_eq!(format_duration_ms(86_400_000), "1d");
        assert_eq!(format_duration_ms(15 * 86_400_000), "15d");
        assert_eq!(format_duration_ms(30 * 86_400_000), "30d");
        assert_eq!(format_duration_ms(14 * 86_400_000), "2w");
        assert_eq!(format_duration_ms(1_500), "1s500ms");
        for ms in [1, 60_000, 3_600_000 * 25, 400 * 86_400_000] {
            assert_eq!(parse_duration(&format_duration_ms(ms)), Ok(ms));
        }
    }

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
