//! A head's series by id: pages of 4,096 slots indexed by the id itself. Ids are dense
//! and handed out in order, so a write's series (mostly created together) sit in a few
//! pages and a lookup is two indexings, where a hash map would scatter them over its
//! table. A page is freed once every series in it was collected; the page table keeps
//! one pointer per 4,096 ids ever handed out (ids are never reused).

use std::sync::Arc;

use hearth_series::postings::SeriesId;

use crate::head::MemSeries;

const PAGE_BITS: u32 = 12;
const PAGE: usize = 1 << PAGE_BITS;

type Page = Box<[Option<Arc<MemSeries>>]>;

#[derive(Default)]
pub(crate) struct SeriesIds {
    pages: Vec<Option<(Page, usize)>>,
    len: usize,
}

fn at(id: SeriesId) -> (usize, usize) {
    ((id >> PAGE_BITS) as usize, id as usize & (PAGE - 1))
}

impl SeriesIds {
    pub(crate) fn get(&self, id: SeriesId) -> Option<&Arc<MemSeries>> {
        let (p, i) = at(id);
        self.pages.get(p)?.as_ref()?.0[i].as_ref()
    }

    /// Puts `s` at `id`; returns the series that was there (none, for a new id).
    pub(crate) fn insert(&mut self, id: SeriesId, s: Arc<MemSeries>) -> Option<Arc<MemSeries>> {
        let (p, i) = at(id);
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let (page, used) = self.pages[p].get_or_insert_with(|| (vec![None; PAGE].into(), 0));
        let previous = page[i].replace(s);
        if previous.is_none() {
            *used += 1;
            self.len += 1;
        }
        previous
    }

    pub(crate) fn remove(&mut self, id: SeriesId) -> Option<Arc<MemSeries>> {
        let (p, i) = at(id);
        let slot = self.pages.get_mut(p)?;
        let (page, used) = slot.as_mut()?;
        let removed = page[i].take()?;
        *used -= 1;
        self.len -= 1;
        if *used == 0 {
            *slot = None;
        }
        Some(removed)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every series, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> + '_ {
        self.pages
            .iter()
            .flatten()
            .flat_map(|(page, _)| page.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::Labels;
    use parking_lot::Mutex;

    fn series(id: SeriesId) -> Arc<MemSeries> {
        Arc::new(MemSeries {
            id,
            labels: Labels::from_pairs(&[("i", &id.to_string())]),
            state: Mutex::new(crate::head::SeriesState::from_parts(
                vec![],
                None,
                i64::MIN,
                0.0,
                vec![],
                vec![],
            )),
        })
    }

    #[test]
    fn pages_come_and_go_with_their_series() {
        let mut ids = SeriesIds::default();
        for id in [0, 1, 4_095, 4_096, 9_000, 70_000] {
            assert!(ids.insert(id, series(id)).is_none());
        }
        assert_eq!(ids.len(), 6);
        assert_eq!(ids.get(9_000).unwrap().id, 9_000);
        assert!(ids.get(9_001).is_none());
        assert!(ids.get(u32::MAX).is_none());
        let order: Vec<_> = ids.values().map(|s| s.id).collect();
        assert_eq!(order, vec![0, 1, 4_095, 4_096, 9_000, 70_000]);
        assert_eq!(ids.remove(4_096).unwrap().id, 4_096);
        assert!(ids.remove(4_096).is_none());
        assert!(ids.pages[1].is_none(), "an empty page is freed");
        assert!(ids.pages[0].is_some());
        assert_eq!(ids.len(), 5);
        assert!(ids.insert(1, series(1)).is_some(), "replaced, not added");
        assert_eq!(ids.len(), 5);
    }
}
