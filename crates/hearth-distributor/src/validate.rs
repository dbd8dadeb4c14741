//! Validation of incoming series, with the tenant's limits (Mimir's names and defaults)
//! and Prometheus' legacy name rules. Works on label positions inside the request
//! buffer: nothing is copied.

use hearth_core::{hash_label_bytes, ArenaLabel, TenantLimits};

/// What one request's series are checked against: the tenant's per-series limits and
/// the newest timestamp accepted now.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Samples after this (the receiving clock plus `-validation.create-grace-period`)
    /// are refused: one nanosecond timestamp must not stop a tenant's ingestion.
    pub max_timestamp_ms: i64,
}

impl Limits {
    /// The rules for a tenant with `limits`, for a request received at `now_ms`.
    pub fn for_tenant(limits: &TenantLimits, now_ms: i64) -> Limits {
        Limits {
            max_label_names_per_series: limits.max_label_names_per_series,
            max_label_name_length: limits.max_label_name_length,
            max_label_value_length: limits.max_label_value_length,
            max_timestamp_ms: now_ms.saturating_add(limits.creation_grace_period_ms),
        }
    }
}

impl Default for Limits {
    /// Mimir's defaults, without a clock (no timestamp is too far in the future).
    fn default() -> Self {
        let d = TenantLimits::default();
        Limits {
            max_label_names_per_series: d.max_label_names_per_series,
            max_label_name_length: d.max_label_name_length,
            max_label_value_length: d.max_label_value_length,
            max_timestamp_ms: i64::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError(pub String);

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(b: &[u8]) -> bool {
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(b: &[u8]) -> bool {
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

#[inline]
fn slice(buf: &[u8], r: (u32, u32)) -> &[u8] {
    &buf[r.0 as usize..r.1 as usize]
}

/// The series as Prometheus prints it, for error messages.
pub fn describe(buf: &[u8], labels: &[ArenaLabel]) -> String {
    let s = |r| String::from_utf8_lossy(slice(buf, r)).into_owned();
    let name = labels
        .iter()
        .find(|l| slice(buf, l.name) == b"__name__")
        .map(|l| s(l.value))
        .unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| slice(buf, l.name) != b"__name__")
        .map(|l| format!("{}={:?}", s(l.name), s(l.value)))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// Checks one series' labels in place: drops empty values (an empty value means "no
/// such label"), sorts by name, applies the rules; returns the label hash.
pub fn validate_series(
    buf: &[u8],
    labels: &mut Vec<ArenaLabel>,
    limits: &Limits,
) -> Result<u64, ValidationError> {
    labels.retain(|l| l.value.0 != l.value.1);
    // Senders sort labels (the specification asks them to); sort only when they did not.
    if !labels
        .windows(2)
        .all(|w| slice(buf, w[0].name) <= slice(buf, w[1].name))
    {
        labels.sort_unstable_by(|a, b| slice(buf, a.name).cmp(slice(buf, b.name)));
    }
    let err = |labels: &[ArenaLabel], msg: String| {
        ValidationError(format!("{msg}: series {}", describe(buf, labels)))
    };
    match labels.iter().find(|l| slice(buf, l.name) == b"__name__") {
        None => return Err(err(labels, "sample missing metric name".into())),
        Some(l) if !is_valid_metric_name(slice(buf, l.value)) => {
            let n = String::from_utf8_lossy(slice(buf, l.value)).into_owned();
            return Err(err(labels, format!("invalid metric name {n:?}")));
        }
        _ => {}
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err(err(
            labels,
            format!(
                "series has {} label names, more than the limit of {}",
                labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for w in labels.windows(2) {
        if slice(buf, w[0].name) == slice(buf, w[1].name) {
            let n = String::from_utf8_lossy(slice(buf, w[0].name)).into_owned();
            return Err(err(labels, format!("duplicate label name {n:?}")));
        }
    }
    for l in labels.iter() {
        let n = slice(buf, l.name);
        let v = slice(buf, l.value);
        if n != b"__name__" && !is_valid_label_name(n) {
            let n = String::from_utf8_lossy(n).into_owned();
            return Err(err(labels, format!("invalid label name {n:?}")));
        }
        if n.len() > limits.max_label_name_length {
            return Err(err(
                labels,
                format!(
                    "label name longer than {} bytes",
                    limits.max_label_name_length
                ),
            ));
        }
        if v.len() > limits.max_label_value_length {
            let n = String::from_utf8_lossy(n).into_owned();
            return Err(err(
                labels,
                format!(
                    "label value of {n:?} longer than {} bytes",
                    limits.max_label_value_length
                ),
            ));
        }
        if !v.is_ascii() && std::str::from_utf8(v).is_err() {
            let n = String::from_utf8_lossy(n).into_owned();
            return Err(err(
                labels,
                format!("label value of {n:?} is not valid UTF-8"),
            ));
        }
    }
    Ok(hash_label_bytes(
        labels
            .iter()
            .map(|l| (slice(buf, l.name), slice(buf, l.value))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::Labels;

    /// Lays pairs out in a buffer like a decoder would find them.
    fn check(pairs: &[(&str, &str)]) -> Result<(u64, String), ValidationError> {
        let mut buf = Vec::new();
        let mut labels = Vec::new();
        for (n, v) in pairs {
            let n0 = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let n1 = buf.len() as u32;
            buf.extend_from_slice(v.as_bytes());
            labels.push(ArenaLabel {
                name: (n0, n1),
                value: (n1, buf.len() as u32),
            });
        }
        let h = validate_series(&buf, &mut labels, &Limits::default())?;
        Ok((h, describe(&buf, &labels)))
    }

    #[test]
    fn rules() {
        assert!(check(&[("__name__", "up"), ("job", "x")]).is_ok());
        assert!(check(&[("job", "x")])
            .unwrap_err()
            .0
            .contains("missing metric name"));
        assert!(check(&[("__name__", "")]).is_err());
        assert!(check(&[("__name__", "1up")]).is_err());
        assert!(check(&[("__name__", "up"), ("a-b", "x")])
            .unwrap_err()
            .0
            .contains("invalid label name"));
        assert!(check(&[("__name__", "up"), ("a", "x"), ("a", "y")])
            .unwrap_err()
            .0
            .contains("duplicate"));
        let (h, d) = check(&[("z", "1"), ("__name__", "up"), ("a", "2"), ("empty", "")]).unwrap();
        assert_eq!(d, r#"up{a="2", z="1"}"#);
        assert_eq!(
            h,
            Labels::from_pairs(&[("__name__", "up"), ("a", "2"), ("z", "1")]).hash64()
        );
    }
}
