//! The counters of the daemon's operator commands (cost estimator and event handler runs,
//! failures, drops), by metric family and label set, served at `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The counters of the operator's commands (estimator runs, handler runs), by family and
/// label set.
#[derive(Default)]
pub(crate) struct Counters {
    counts: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Counters {
    /// Adds one to `family` (a name after `overlay_`) with `labels` (`{a="b"}` or empty).
    pub(crate) fn add(&self, family: &'static str, labels: String) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((family, labels)).or_default() += 1;
    }

    /// Every sample: family, labels, value.
    pub(crate) fn samples(&self) -> Vec<(&'static str, String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|((f, l), v)| (*f, l.clone(), *v))
            .collect()
    }
}
