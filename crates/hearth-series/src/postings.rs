//! The inverted index of the head: label pair -> sorted series ids, and the set
//! operations that resolve matchers against it.
//!
//! Ids are handed out in increasing order and never reused, so appending keeps every
//! list sorted without a sort. Intersections gallop through the longer list.

use std::collections::HashMap;
use std::sync::Arc;

use hearth_core::{MatchOp, Matcher};

pub type SeriesId = u32;

/// Sorted ids of the series that have one label pair.
#[derive(Default)]
pub struct MemPostings {
    /// name -> value -> ids.
    by_label: HashMap<Arc<str>, HashMap<Arc<str>, Vec<SeriesId>>>,
    all: Vec<SeriesId>,
}

impl MemPostings {
    pub fn add(&mut self, id: SeriesId, labels: &hearth_core::Labels) {
        for l in labels {
            let values = self.by_label.entry(l.name.clone()).or_default();
            let list = values.entry(l.value.clone()).or_default();
            push_sorted(list, id);
        }
        push_sorted(&mut self.all, id);
    }

    /// Removes series (head garbage collection): each touched list is rewritten once,
    /// whatever the number of removed ids in it. `removed` pairs an id with its labels.
    pub fn delete<'a>(
        &mut self,
        removed: impl IntoIterator<Item = (SeriesId, &'a hearth_core::Labels)>,
    ) {
        let mut by_pair: HashMap<(Arc<str>, Arc<str>), Vec<SeriesId>> = HashMap::new();
        let mut all_removed = Vec::new();
        for (id, labels) in removed {
            for l in labels {
                by_pair
                    .entry((l.name.clone(), l.value.clone()))
                    .or_default()
                    .push(id);
            }
            all_removed.push(id);
        }
        for ((name, value), mut ids) in by_pair {
            ids.sort_unstable();
            let Some(values) = self.by_label.get_mut(&name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&value) {
                *list = difference(list, &ids);
                if list.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(&name);
            }
        }
        all_removed.sort_unstable();
        self.all = difference(&self.all, &all_removed);
    }

    pub fn all(&self) -> &[SeriesId] {
        &self.all
    }

    pub fn get(&self, name: &str, value: &str) -> &[SeriesId] {
        self.by_label
            .get(name)
            .and_then(|v| v.get(value))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn label_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_label.keys()
    }

    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &Arc<str>> {
        self.by_label.get(name).into_iter().flat_map(|m| m.keys())
    }

    /// (label name, number of values, number of series with the label) for status/tsdb.
    pub fn cardinality(&self) -> Vec<(Arc<str>, usize, usize)> {
        self.by_label
            .iter()
            .map(|(n, vs)| (n.clone(), vs.len(), vs.values().map(Vec::len).sum()))
            .collect()
    }

    /// (name=value, series count) pairs.
    pub fn pair_counts(&self) -> Vec<(Arc<str>, Arc<str>, usize)> {
        let mut out = Vec::new();
        for (n, vs) in &self.by_label {
            for (v, ids) in vs {
                out.push((n.clone(), v.clone(), ids.len()));
            }
        }
        out
    }

    pub fn values_count(&self, name: &str) -> usize {
        self.by_label.get(name).map_or(0, HashMap::len)
    }

    /// Union of the lists of every value of `name` accepted by `pred`.
    fn union_values(&self, name: &str, pred: impl Fn(&str) -> bool) -> Vec<SeriesId> {
        let Some(values) = self.by_label.get(name) else {
            return Vec::new();
        };
        let lists: Vec<&[SeriesId]> = values
            .iter()
            .filter(|(v, _)| pred(v))
            .map(|(_, l)| l.as_slice())
            .collect();
        union_many(&lists)
    }

    /// Resolves matchers to the sorted ids of the series that satisfy all of them.
    ///
    /// As Prometheus does: positive matchers (those that do not match the empty string)
    /// are intersected first; negative ones are subtracted; a matcher that matches the
    /// empty string also selects series without the label.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut acc: Option<Vec<SeriesId>> = None;
        let mut subtract: Vec<Vec<SeriesId>> = Vec::new();
        // Positive, cheapest first: equality before regex.
        let mut ordered: Vec<&Matcher> = matchers.iter().collect();
        ordered.sort_by_key(|m| match m.op {
            MatchOp::Equal => 0,
            MatchOp::RegexMatch => 1,
            _ => 2,
        });
        for m in ordered {
            if m.matches_empty() {
                // Selects series lacking the label too: subtract the ones whose value
                // does not match.
                let not_matching = match m.op {
                    MatchOp::Equal => {
                        // `l=""`: series that have any value of l.
                        self.union_values(&m.name, |_| true)
                    }
                    MatchOp::NotEqual => self.get(&m.name, &m.value).to_vec(),
                    _ => self.union_values(&m.name, |v| !m.matches(v)),
                };
                subtract.push(not_matching);
                continue;
            }
            let ids = match m.op {
                MatchOp::Equal => self.get(&m.name, &m.value).to_vec(),
                MatchOp::RegexMatch => match m.literal_set() {
                    Some(set) => {
                        let lists: Vec<&[SeriesId]> =
                            set.iter().map(|v| self.get(&m.name, v)).collect();
                        union_many(&lists)
                    }
                    None => self.union_values(&m.name, |v| m.matches(v)),
                },
                // `!=` / `!~` that do not match "": only series with a matching value.
                _ => self.union_values(&m.name, |v| m.matches(v)),
            };
            acc = Some(match acc {
                None => ids,
                Some(a) => intersect(&a, &ids),
            });
            if acc.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut result = acc.unwrap_or_else(|| self.all.clone());
        for s in subtract {
            result = difference(&result, &s);
        }
        result
    }
}

fn push_sorted(list: &mut Vec<SeriesId>, id: SeriesId) {
    match list.last() {
        Some(&last) if last >= id => {
            if let Err(pos) = list.binary_search(&id) {
                list.insert(pos, id);
            }
        }
        _ => list.push(id),
    }
}

/// Intersection of two sorted lists, galloping through the longer one.
pub fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len() * 16 < large.len() {
        let mut lo = 0usize;
        for &x in small {
            // Gallop: find a window [lo, lo+bound] that holds x's insertion point.
            let mut bound = 1usize;
            while lo + bound < large.len() && large[lo + bound] < x {
                bound *= 2;
            }
            let hi = (lo + bound + 1).min(large.len());
            match large[lo..hi].binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    lo += i + 1;
                }
                Err(i) => lo += i,
            }
            if lo >= large.len() {
                break;
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the ids in `b` (both sorted).
pub fn difference(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Union of many sorted lists.
pub fn union_many(lists: &[&[SeriesId]]) -> Vec<SeriesId> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists[0].to_vec(),
        _ => {
            let total: usize = lists.iter().map(|l| l.len()).sum();
            let mut out = Vec::with_capacity(total);
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::Labels;
    use rand::{Rng, SeedableRng};

    fn naive_intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
        a.iter().copied().filter(|x| b.contains(x)).collect()
    }

    #[test]
    fn intersect_matches_naive() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut a: Vec<u32> = (0..rng.random_range(0..50))
                .map(|_| rng.random_range(0..2000))
                .collect();
            let mut b: Vec<u32> = (0..rng.random_range(0..3000))
                .map(|_| rng.random_range(0..2000))
                .collect();
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            assert_eq!(intersect(&a, &b), naive_intersect(&a, &b));
            assert_eq!(intersect(&b, &a), naive_intersect(&a, &b));
            let d = difference(&b, &a);
            assert!(d.iter().all(|x| !a.contains(x)));
            assert_eq!(d.len() + naive_intersect(&a, &b).len(), b.len());
        }
    }

    fn index() -> MemPostings {
        let mut p = MemPostings::default();
        let series = [
            vec![("__name__", "up"), ("job", "a"), ("instance", "1")],
            vec![("__name__", "up"), ("job", "b"), ("instance", "2")],
            vec![("__name__", "up"), ("job", "b")],
            vec![("__name__", "x"), ("job", "c"), ("instance", "3")],
        ];
        for (i, s) in series.iter().enumerate() {
            p.add(i as u32, &Labels::from_pairs(s));
        }
        p
    }

    fn sel(p: &MemPostings, ms: &[(MatchOp, &str, &str)]) -> Vec<u32> {
        let ms: Vec<Matcher> = ms
            .iter()
            .map(|(o, n, v)| Matcher::new(*o, n, v).unwrap())
            .collect();
        p.select(&ms)
    }

    #[test]
    fn matchers_resolve_like_prometheus() {
        use MatchOp::*;
        let p = index();
        assert_eq!(sel(&p, &[(Equal, "__name__", "up")]), vec![0, 1, 2]);
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (Equal, "job", "b")]),
            vec![1, 2]
        );
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (NotEqual, "job", "b")]),
            vec![0]
        );
        assert_eq!(sel(&p, &[(RegexMatch, "job", "a|c")]), vec![0, 3]);
        assert_eq!(sel(&p, &[(RegexMatch, "job", "[ab]")]), vec![0, 1, 2]);
        assert_eq!(
            sel(
                &p,
                &[(Equal, "__name__", "up"), (RegexNoMatch, "job", "b.*")]
            ),
            vec![0]
        );
        // Absent label matches "" :
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (Equal, "instance", "")]),
            vec![2]
        );
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (NotEqual, "instance", "")]),
            vec![0, 1]
        );
        assert_eq!(sel(&p, &[(RegexMatch, "instance", ".*")]), vec![0, 1, 2, 3]);
        assert_eq!(sel(&p, &[(RegexMatch, "instance", ".+")]), vec![0, 1, 3]);
        assert_eq!(sel(&p, &[(Equal, "__name__", "nope")]), Vec::<u32>::new());
    }
}
