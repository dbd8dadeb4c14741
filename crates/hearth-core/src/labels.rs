//! Label sets: the identity of a series.
//!
//! A [`Labels`] is a list of name/value pairs sorted by name with unique names. Strings
//! are `Arc<str>` so the tsdb can intern them and share one allocation across series.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted, duplicate-free set of labels.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    /// Builds from pairs in any order; later duplicates replace earlier ones and empty
    /// values are dropped (an empty label value means "no such label" in Prometheus).
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Labels {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.set(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Wraps labels that the caller guarantees are sorted by name and unique.
    pub fn from_sorted(labels: Vec<Label>) -> Labels {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A stable 64-bit hash of the label set (xxh3 over `name 0xff value 0xff ...`).
    pub fn hash64(&self) -> u64 {
        crate::batch::hash_label_bytes(
            self.0
                .iter()
                .map(|l| (l.name.as_bytes(), l.value.as_bytes())),
        )
    }

    /// Hash of only the named labels (`on`) or of all but the named ones (`ignoring`).
    pub fn hash_for(&self, names: &[String], include: bool) -> u64 {
        let mut h = Xxh3::new();
        for l in &self.0 {
            let listed = names.iter().any(|n| **n == *l.name);
            if listed == include {
                h.update(l.name.as_bytes());
                h.update(&[0xff]);
                h.update(l.value.as_bytes());
                h.update(&[0xff]);
            }
        }
        h.digest()
    }

    /// The labels without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| &*l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// Keeps only the named labels (`include`) or drops them (`!include`).
    pub fn filtered(&self, names: &[String], include: bool) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.iter().any(|n| **n == *l.name) == include)
                .cloned()
                .collect(),
        )
    }

    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// Total bytes of names and values (used for size limits and memory accounting).
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + l.value.len()).sum()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self.0.iter().filter(|l| &*l.name != METRIC_NAME).collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Edits a label set; `build` sorts and drops empty values.
#[derive(Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new() -> LabelsBuilder {
        LabelsBuilder::default()
    }

    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        if let Some(l) = self.labels.iter_mut().find(|l| &*l.name == name) {
            l.value = Arc::from(value);
        } else {
            self.labels.push(Label::new(name, value));
        }
        self
    }

    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| &*l.value)
    }

    pub fn build(&self) -> Labels {
        let mut v: Vec<Label> = self
            .labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Labels(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_formatted() {
        let l = Labels::from_pairs(&[("job", "a"), ("__name__", "up"), ("instance", "x")]);
        assert_eq!(l.to_string(), r#"up{instance="x", job="a"}"#);
        assert_eq!(l.get("job"), Some("a"));
        assert_eq!(
            l.without_metric_name().to_string(),
            r#"{instance="x", job="a"}"#
        );
        assert_ne!(l.hash64(), l.without_metric_name().hash64());
    }

    #[test]
    fn empty_values_are_dropped() {
        let l = Labels::from_pairs(&[("a", ""), ("b", "1")]);
        assert_eq!(l.len(), 1);
    }
}
