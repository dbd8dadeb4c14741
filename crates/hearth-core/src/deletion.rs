//! A deletion request (Prometheus' `delete_series`): the samples of the series that match
//! every matcher, from `start` to `end` inclusive, are gone. Queries stop seeing them at
//! once; the compactor later rewrites the blocks that still hold them.

use crate::{Labels, Matcher};

#[derive(Clone, Debug)]
pub struct Deletion {
    pub matchers: Vec<Matcher>,
    /// Inclusive milliseconds.
    pub start: i64,
    pub end: i64,
}

impl Deletion {
    /// Whether the series' labels match (Prometheus' rules: an empty-matching matcher
    /// also selects series without the label).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }

    pub fn covers(&self, t: i64) -> bool {
        self.start <= t && t <= self.end
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.start <= maxt && mint <= self.end
    }
}
