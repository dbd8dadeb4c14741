//! Validation of incoming series, with Mimir's default limits and Prometheus' legacy
//! name rules.

use hearth_core::{Label, Labels, METRIC_NAME};

/// Per-series limits (Mimir's defaults).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
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
pub fn is_valid_label_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

fn describe(pairs: &[(String, String)]) -> String {
    let name = pairs
        .iter()
        .find(|(n, _)| n == METRIC_NAME)
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let rest: Vec<String> = pairs
        .iter()
        .filter(|(n, _)| n != METRIC_NAME)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// Checks and sorts a series' labels; empty-valued labels are dropped as Prometheus
/// drops them.
pub fn validate_labels(pairs: Vec<(String, String)>, limits: &Limits) -> Result<Labels, ValidationError> {
    let mut v: Vec<(String, String)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let series = || describe(&v);
    match v.iter().find(|(n, _)| n == METRIC_NAME) {
        None => return Err(ValidationError(format!("sample missing metric name: series {}", series()))),
        Some((_, name)) if !is_valid_metric_name(name) => {
            return Err(ValidationError(format!(
                "invalid metric name {name:?}: series {}",
                series()
            )))
        }
        _ => {}
    }
    if v.len() > limits.max_label_names_per_series {
        return Err(ValidationError(format!(
            "series has {} label names, more than the limit of {}: series {}",
            v.len(),
            limits.max_label_names_per_series,
            series()
        )));
    }
    for w in v.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(ValidationError(format!(
                "duplicate label name {:?}: series {}",
                w[0].0,
                series()
            )));
        }
    }
    for (n, val) in &v {
        if n != METRIC_NAME && !is_valid_label_name(n) {
            return Err(ValidationError(format!("invalid label name {n:?}: series {}", series())));
        }
        if n.len() > limits.max_label_name_length {
            return Err(ValidationError(format!(
                "label name longer than {} bytes: series {}",
                limits.max_label_name_length,
                series()
            )));
        }
        if val.len() > limits.max_label_value_length {
            return Err(ValidationError(format!(
                "label value of {n:?} longer than {} bytes: series {}",
                limits.max_label_value_length,
                series()
            )));
        }
    }
    Ok(Labels::from_sorted(
        v.into_iter().map(|(n, val)| Label::new(n, val)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn rules() {
        let l = Limits::default();
        assert!(validate_labels(p(&[("__name__", "up"), ("job", "x")]), &l).is_ok());
        assert!(validate_labels(p(&[("job", "x")]), &l).unwrap_err().0.contains("missing metric name"));
        assert!(validate_labels(p(&[("__name__", "")]), &l).is_err());
        assert!(validate_labels(p(&[("__name__", "1up")]), &l).is_err());
        assert!(validate_labels(p(&[("__name__", "up"), ("a-b", "x")]), &l).unwrap_err().0.contains("invalid label name"));
        assert!(validate_labels(p(&[("__name__", "up"), ("a", "x"), ("a", "y")]), &l).unwrap_err().0.contains("duplicate"));
        let sorted = validate_labels(p(&[("z", "1"), ("__name__", "up"), ("a", "2")]), &l).unwrap();
        assert_eq!(sorted.to_string(), r#"up{a="2", z="1"}"#);
    }
}
