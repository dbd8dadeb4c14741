//! A deletion request (Prometheus' `delete_series`): the samples of the series that match
//! every matcher, from `start` to `end` inclusive, are gone. Queries stop seeing them at
//! once; the compactor later rewrites the blocks that still hold them.
//!
//! As in Prometheus (`Head.Delete`: "do not delete anything beyond the currently valid
//! range"), a request deletes only what the series held when it was made: each matching
//! series' interval ends at its newest sample then, and series that held nothing in the
//! interval (or did not exist yet) lose nothing written later.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Labels, Matcher};

#[derive(Clone, Debug)]
pub struct Deletion {
    pub matchers: Vec<Matcher>,
    /// Inclusive milliseconds.
    pub start: i64,
    pub end: i64,
    /// Each series the request deleted from, by `Labels::hash64`, with its newest
    /// sample in `[start, end]` when the request was made. `None` only for requests
    /// stored before this clamp existed: the whole interval applies to every match.
    pub series_ends: Option<Arc<HashMap<u64, i64>>>,
}

impl Deletion {
    /// Whether the series' labels match (Prometheus' rules: an empty-matching matcher
    /// also selects series without the label).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }

    /// The interval deleted from the series with these labels, if any: its matchers
    /// match and it held samples in the interval when the request was made.
    pub fn interval(&self, labels: &Labels) -> Option<(i64, i64)> {
        if !self.matches(labels) {
            return None;
        }
        match &self.series_ends {
            None => Some((self.start, self.end)),
            Some(ends) => ends
                .get(&labels.hash64())
                .map(|&e| (self.start, e.min(self.end))),
        }
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.start <= maxt && mint <= self.end
    }
}
