//! Request parameters as the Prometheus API reads them: from the URL and, for POST, a
//! form body; times as RFC 3339 or float seconds; durations as float seconds or a
//! Prometheus duration.

use axum::http::{header, HeaderMap, Method, Uri};
use chrono::DateTime;

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Params {
        let mut v: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if *method == Method::POST && is_form {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(v)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Prometheus' minimum and maximum API times (year -292273086 / 292277025 clamped to
/// what the API prints as defaults).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (f * 1000.0).round();
        if ms > MAX_TIME_MS as f64 || ms < MIN_TIME_MS as f64 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    // Prometheus accepts its own min/max time strings too.
    match s {
        "0001-01-01T00:00:00Z" | "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A Prometheus duration (`1h30m`, `5m`, `1.5`, `90`) in milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms > i64::MAX as f64 || ms < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms.round() as i64);
    }
    parse_prom_duration(s).ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

pub fn parse_prom_duration(s: &str) -> Option<i64> {
    hearth_core::duration::parse_duration_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1.5").unwrap(), 1500);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1435781451781
        );
        assert!(parse_time("abc").is_err());
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("100ms").unwrap(), 100);
        assert!(parse_duration("1x").is_err());
    }
}
