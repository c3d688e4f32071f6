//! The counters of the daemon's operator commands (cost estimator and event handler runs,
//! failures, drops), by metric family and label set, served at `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A metric family (a name after `overlay_`) and a label set (`{a="b"}` or empty).
type Key = (&'static str, String);

/// The counters of the operator's commands, by family and label set: counted here, or
/// read from a counter kept elsewhere (an event subscription's drops).
#[derive(Default)]
pub(crate) struct Counters {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    counts: BTreeMap<Key, u64>,
    linked: BTreeMap<Key, Arc<AtomicU64>>,
}

impl Counters {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one to `family` with `labels`.
    pub(crate) fn add(&self, family: &'static str, labels: String) {
        *self.lock().counts.entry((family, labels)).or_default() += 1;
    }

    /// Counts `family` with `labels` from `source` from now on; what a source linked before
    /// under the same key counted is kept.
    pub(crate) fn link(&self, family: &'static str, labels: String, source: Arc<AtomicU64>) {
        let mut state = self.lock();
        let key = (family, labels);
        if let Some(old) = state.linked.insert(key.clone(), source) {
            *state.counts.entry(key).or_default() += old.load(Ordering::Relaxed);
        }
    }

    /// Every sample: family, labels, value.
    pub(crate) fn samples(&self) -> Vec<(&'static str, String, u64)> {
        let state = self.lock();
        let mut all = state.counts.clone();
        for (key, source) in &state.linked {
            *all.entry(key.clone()).or_default() += source.load(Ordering::Relaxed);
        }
        all.into_iter().map(|((f, l), v)| (f, l, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_counters_are_read_live_and_kept_across_replacements() {
        let c = Counters::default();
        c.add("runs_total", String::new());
        let first = Arc::new(AtomicU64::new(2));
        c.link("dropped_total", "{h=\"0\"}".into(), first.clone());
        first.fetch_add(1, Ordering::Relaxed);
        let second = Arc::new(AtomicU64::new(4));
        c.link("dropped_total", "{h=\"0\"}".into(), second);
        first.fetch_add(100, Ordering::Relaxed);
        assert_eq!(
            c.samples(),
            [
                ("dropped_total", "{h=\"0\"}".to_string(), 7),
                ("runs_total", String::new(), 1)
            ]
        );
    }
}
