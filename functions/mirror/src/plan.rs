//! Splitting a bucket into key ranges for a Distributed Map, in memory that does
//! not grow with the bucket.
//!
//! The planner sees the sorted source keys once and keeps at most `2 × shards`
//! sample keys, taken every `step` keys; when the sample fills up it keeps every
//! other one and doubles `step`. The kept samples are evenly spaced, so picking
//! `shards - 1` of them gives ranges of about equal size.

/// Collects range boundaries from a sorted stream of keys.
#[derive(Debug, Clone)]
pub struct Boundaries {
    shards: usize,
    step: u64,
    seen: u64,
    samples: Vec<String>,
}

impl Boundaries {
    /// A planner for `shards` ranges (at least 1).
    pub fn new(shards: usize) -> Self {
        Self { shards: shards.max(1), step: 1, seen: 0, samples: Vec::new() }
    }

    /// Observes the next key of the sorted listing.
    pub fn observe(&mut self, key: &str) {
        self.seen += 1;
        if self.seen % self.step == 0 {
            self.samples.push(key.to_owned());
            if self.samples.len() >= 2 * self.shards {
                // Keep the samples at multiples of the doubled step.
                let kept: Vec<String> = self.samples.drain(..).skip(1).step_by(2).collect();
                self.samples = kept;
                self.step *= 2;
            }
        }
    }

    /// How many keys were observed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// At most `shards - 1` increasing boundary keys. Range `i` covers the keys
    /// after boundary `i - 1` up to and including boundary `i`; the first range
    /// starts at the beginning and the last one is open-ended.
    pub fn finish(self) -> Vec<String> {
        let n = self.samples.len();
        if self.shards <= 1 || n == 0 {
            return Vec::new();
        }
        let wanted = (self.shards - 1).min(n);
        let mut bounds: Vec<String> = (1..=wanted)
            .map(|i| {
                // The sample at the i-th of `shards` evenly spaced positions.
                let at = (i * (n + 1)) / (wanted + 1);
                self.samples[at.saturating_sub(1).min(n - 1)].clone()
            })
            .collect();
        bounds.dedup();
        bounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i:06}")).collect()
    }

    fn range_sizes(all: &[String], bounds: &[String]) -> Vec<usize> {
        let mut sizes = vec![0; bounds.len() + 1];
        for key in all {
            let shard = bounds.iter().filter(|b| key > *b).count();
            sizes[shard] += 1;
        }
        sizes
    }

    #[test]
    fn ranges_are_about_equal_and_cover_everything() {
        for (n, shards) in [(10_000, 8), (1_001, 4), (100_000, 16), (37, 5)] {
            let all = keys(n);
            let mut planner = Boundaries::new(shards);
            for key in &all {
                planner.observe(key);
            }
            assert_eq!(planner.seen(), n as u64);
            assert!(planner.samples.len() < 2 * shards, "memory stays bounded");
            let bounds = planner.finish();
            assert_eq!(bounds.len(), shards - 1, "{n} keys, {shards} shards");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
            let sizes = range_sizes(&all, &bounds);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            let ideal = n / shards;
            assert!(sizes.iter().all(|&s| s <= ideal * 2 + 2), "{n} keys into {shards}: {sizes:?}");
        }
    }

    #[test]
    fn few_keys_or_one_shard_give_fewer_ranges() {
        let mut planner = Boundaries::new(8);
        for key in keys(3) {
            planner.observe(&key);
        }
        assert!(planner.finish().len() <= 3);
        let mut planner = Boundaries::new(1);
        planner.observe("a");
        assert!(planner.finish().is_empty());
        assert!(Boundaries::new(4).finish().is_empty());
    }
}
