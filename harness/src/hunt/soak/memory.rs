//! Memory measurements of a soak: worker RSS and device bytes over a series of replies, and the
//! verdict on whether they stayed flat.

use serde::{Deserialize, Serialize};

/// First, last and largest value of a quantity over a series of replies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// At the first reply.
    pub first: u64,
    /// At the last reply.
    pub last: u64,
    /// The largest.
    pub max: u64,
}

impl Series {
    pub(super) fn push(&mut self, value: u64, first: bool) {
        if first {
            *self = Series {
                first: value,
                last: value,
                max: value,
            };
        } else {
            self.last = value;
            self.max = self.max.max(value);
        }
    }
}

/// Resident memory of one worker process over every request it answered (across engine lives: a
/// worker survives failed oracles and planned restarts, so a leak past an engine's drop shows here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMemory {
    /// Replies it sent.
    pub replies: u64,
    /// Engines it served.
    pub engines: u64,
    /// Resident bytes, by reply.
    pub rss_bytes: Series,
    /// Resident bytes when each engine had just started (a small graph): what creeps up here
    /// across engines was not given back when the engine before was dropped.
    pub rss_at_engine_start: Series,
    /// Resident bytes of every reply, in order, for [`MemoryTrend`].
    #[serde(skip)]
    pub(super) rss_samples: Vec<u64>,
}

/// Least growth of resident memory that counts as memory not flat: allocators and caches settle
/// by a few MiB in a process's first minutes, a leak keeps growing.
pub(super) const MEMORY_SLACK_BYTES: u64 = 8 << 20;
/// ... or this fraction of the resident memory, when larger.
pub(super) const MEMORY_SLACK_FRACTION: f64 = 0.10;

/// Whether memory stayed flat in the worker process that answered the most requests: its mean
/// resident memory over the last tenth of its replies against the second tenth (the first tenth is
/// warm-up: the allocator's arenas and the backend's first buffers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryTrend {
    /// Replies of that worker.
    pub replies: u64,
    /// Replies in each window.
    pub window: u64,
    /// Mean resident bytes, second tenth of the replies.
    pub early_rss_bytes: u64,
    /// Mean resident bytes, last tenth.
    pub late_rss_bytes: u64,
    /// Growth allowed before memory counts as not flat.
    pub allowed_growth_bytes: u64,
    /// Whether the growth stayed within it.
    pub flat: bool,
}

impl MemoryTrend {
    /// The trend of one worker's resident memory over its replies; `None` under 20 replies (too
    /// few to tell warm-up from growth).
    pub fn of(rss: &[u64]) -> Option<MemoryTrend> {
        if rss.len() < 20 {
            return None;
        }
        let window = rss.len() / 10;
        let mean = |w: &[u64]| w.iter().sum::<u64>() / w.len().max(1) as u64;
        let early = mean(&rss[window..2 * window]);
        let late = mean(&rss[rss.len() - window..]);
        let allowed = MEMORY_SLACK_BYTES.max((early as f64 * MEMORY_SLACK_FRACTION) as u64);
        Some(MemoryTrend {
            replies: rss.len() as u64,
            window: window as u64,
            early_rss_bytes: early,
            late_rss_bytes: late,
            allowed_growth_bytes: allowed,
            flat: late <= early.saturating_add(allowed),
        })
    }
}
