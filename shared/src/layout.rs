//! How an organization's attempts spread over partition keys, over time.
//!
//! A layout is a schedule of steps: from an instant on, attempts created then spread over so
//! many shards. Ids are UUIDv7, so an attempt's creation instant (in its id) picks the step
//! in force, and its shard never changes: growing moves no data, and retrieve stays one read.
//! A new step always starts later than any writer's copy of the layout can be stale, so no
//! writer places an attempt by a layout that does not hold for it.

/// The most shards an organization can have (32,000 changes a second): a list's first round
/// reads a row of every shard, and 64 of the largest rows are its whole read budget.
pub const MAX_SHARDS: u16 = 64;
/// Attempt changes a second one shard takes: DynamoDB's 1,000 write units a second per
/// partition key, at 2 units a change (a transactional write of an item up to 1 KB).
pub const CHANGES_PER_SHARD_PER_SECOND: f64 = 500.0;
/// Past this share of its shards' capacity, sustained, an organization grows.
const GROW_AT: f64 = 0.5;
/// A rate seen over less than this is a burst, not a sustained rate.
const SUSTAINED_MS: i64 = 1_000;

/// From `from_ms` on (milliseconds since the epoch), attempts spread over `shards` shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from_ms: i64,
    pub shards: u16,
}

/// An organization's steps, from the first instant on, each with more shards than the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    steps: Vec<Step>,
}

impl Default for Layout {
    /// A new organization: one shard.
    fn default() -> Self {
        Layout { steps: vec![Step { from_ms: 0, shards: 1 }] }
    }
}

impl Layout {
    /// The layout these steps describe, if they do: in time order, growing, from the start.
    pub fn from_steps(steps: Vec<Step>) -> Option<Self> {
        let starts = steps.first().is_some_and(|s| s.from_ms == 0);
        let grows = steps.windows(2).all(|w| w[0].from_ms < w[1].from_ms && w[0].shards < w[1].shards);
        let bounded = steps.iter().all(|s| (1..=MAX_SHARDS).contains(&s.shards));
        (starts && grows && bounded).then_some(Layout { steps })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Shards in force at `ms`.
    pub fn shards_at(&self, ms: i64) -> u16 {
        self.steps.iter().rev().find(|s| s.from_ms <= ms).map_or(1, |s| s.shards)
    }

    /// The shards in force last: what a writer places new attempts by.
    pub fn latest(&self) -> u16 {
        self.steps.last().map_or(1, |s| s.shards)
    }

    /// Where an attempt created at `created_ms` whose id spreads `spread` lives.
    pub fn shard(&self, created_ms: i64, spread: u8) -> u16 {
        u16::from(spread) % self.shards_at(created_ms)
    }

    /// The shards a list over `[from_ms, to_ms]` reads, each with the first instant of the
    /// range it can hold attempts of: shard `k` exists only while a step has more than `k`.
    pub fn lanes(&self, from_ms: i64, to_ms: i64) -> Vec<(u16, i64)> {
        let in_range = |i: usize| {
            let start = self.steps[i].from_ms;
            let end = self.steps.get(i + 1).map_or(i64::MAX, |next| next.from_ms - 1);
            (start <= to_ms && end >= from_ms).then_some((start.max(from_ms), self.steps[i].shards))
        };
        let overlapping: Vec<(i64, u16)> = (0..self.steps.len()).filter_map(in_range).collect();
        let most = overlapping.iter().map(|(_, shards)| *shards).max().unwrap_or(1);
        (0..most)
            .map(|shard| {
                let first = overlapping.iter().find(|(_, shards)| *shards > shard).map_or(from_ms, |(at, _)| *at);
                (shard, first)
            })
            .collect()
    }

    /// The shards an organization that wrote `changes` attempt changes over `span_ms` should
    /// have, if more than it has: four times as many, until the rate is within half their
    /// capacity.
    pub fn wanted(&self, changes: usize, span_ms: i64) -> Option<u16> {
        if span_ms < SUSTAINED_MS {
            return None;
        }
        let rate = changes as f64 * 1000.0 / span_ms as f64;
        let mut shards = self.latest();
        while rate > GROW_AT * CHANGES_PER_SHARD_PER_SECOND * f64::from(shards) && shards < MAX_SHARDS {
            shards = (shards * 4).min(MAX_SHARDS);
        }
        (shards > self.latest()).then_some(shards)
    }

    /// This layout with `shards` from `from_ms` on, if that grows it.
    pub fn grown(&self, shards: u16, from_ms: i64) -> Option<Layout> {
        let last = self.steps.last()?;
        if shards <= last.shards || shards > MAX_SHARDS || from_ms <= last.from_ms {
            return None;
        }
        let mut steps = self.steps.clone();
        steps.push(Step { from_ms, shards });
        Some(Layout { steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grown() -> Layout {
        Layout::default().grown(16, 1_000).unwrap().grown(64, 2_000).unwrap()
    }

    #[test]
    fn an_instant_picks_the_step_in_force() {
        let layout = grown();
        assert_eq!([layout.shards_at(0), layout.shards_at(999), layout.shards_at(1_000)], [1, 1, 16]);
        assert_eq!([layout.shards_at(1_999), layout.shards_at(2_000), layout.latest()], [16, 64, 64]);
        assert_eq!([layout.shard(500, 200), layout.shard(1_500, 200), layout.shard(2_500, 200)], [0, 8, 8]);
        assert_eq!(layout.shard(2_500, 255), 63);
    }

    #[test]
    fn a_list_reads_only_the_shards_its_range_holds() {
        let layout = grown();
        assert_eq!(layout.lanes(0, 999), vec![(0, 0)]);
        let lanes = layout.lanes(500, 1_500);
        assert_eq!(lanes.len(), 16);
        assert_eq!((lanes[0], lanes[1], lanes[15]), ((0, 500), (1, 1_000), (15, 1_000)));
        let lanes = layout.lanes(0, i64::MAX);
        assert_eq!(lanes.len(), 64);
        assert_eq!((lanes[0], lanes[15], lanes[16], lanes[63]), ((0, 0), (15, 1_000), (16, 2_000), (63, 2_000)));
    }

    #[test]
    fn a_sustained_rate_near_capacity_asks_for_more_shards() {
        let one = Layout::default();
        assert_eq!(one.wanted(200, 1_000), None, "200 changes/s: within half of one shard");
        assert_eq!(one.wanted(300, 1_000), Some(4));
        assert_eq!(one.wanted(3_000, 1_000), Some(16));
        assert_eq!(one.wanted(3_000, 999), None, "a burst, not sustained");
        assert_eq!(one.wanted(1_000_000, 1_000), Some(64), "never past the most shards");
        assert_eq!(grown().wanted(1_000_000, 1_000), None, "at the most shards already");
    }

    #[test]
    fn layouts_only_grow_and_start_at_the_beginning() {
        let layout = grown();
        assert!(layout.grown(64, 3_000).is_none() && layout.grown(128, 2_000).is_none());
        assert!(layout.grown(257, 3_000).is_none());
        assert!(Layout::from_steps(vec![Step { from_ms: 5, shards: 1 }]).is_none());
        assert!(Layout::from_steps(vec![Step { from_ms: 0, shards: 4 }, Step { from_ms: 9, shards: 2 }]).is_none());
        assert_eq!(Layout::from_steps(layout.steps().to_vec()), Some(layout));
    }
}
