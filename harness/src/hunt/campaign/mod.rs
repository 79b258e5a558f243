/*!
Campaigns: many generated cases through a pool of isolated workers, findings deduplicated by
signature and minimized, everything written to an output directory.

Roles, as in a test runner: worker threads each drive one [`WorkerSlot`] (a supervised worker
process) and never talk to the user; the coordinating thread hands out case indices, receives every
classified execution, keeps the findings, draws progress and decides when to stop (budget reached, or
Ctrl-C). Case `k` of a campaign is generated from `(seed, k)` alone, so a campaign is reproducible and
can be split into shards (`--shard i/n` runs the cases with `k % n == i`).

# Files

One concern a file; a file imports its siblings, never this `mod.rs`, which only re-exports them
(so that outside paths stay `crate::hunt::campaign::…`):

* [`config`]: the shard, the budget, [`CampaignConfig`], the seed of each case, the watchdog;
* [`summary`]: findings and their status, slowest cases, the [`Summary`] (`forcefield-summary/1`);
* [`minimizer`]: minimizing a finding through a worker, and the minimizer thread;
* `slots`: the scheduling of case indices over worker slots, one thread per worker;
* `batch`: one case under the watchdog, or a batch side by side and its dead cases alone;
* `tally`: the bookkeeping of cases and findings (one per signature) and what is written;
* `progress`: the progress bar;
* `run`: the coordinating loop ([`run_campaign_into`]) and [`write_outputs`].

`hunt/campaign_dir.rs` and `hunt/dedup.rs` import [`summary`] and [`minimizer`] by their own
paths: the loop imports them, so a path through this `mod.rs` would close a cycle.
*/

mod batch;
pub(crate) mod config;
pub(crate) mod minimizer;
mod progress;
mod run;
mod slots;
pub(crate) mod summary;
mod tally;

pub use batch::{run_shared_watched, run_side_by_side_watched};
pub(crate) use config::campaign_watchdog;
pub use config::case_seed;
pub use config::Shard;
pub(crate) use config::{Budget, CampaignConfig};
pub use minimizer::minimize_isolated;
pub(crate) use minimizer::{minimize_generated, FindingMinimizer};
pub(crate) use run::{run_campaign, run_campaign_into, write_outputs, Recording, REPRODUCE_TRIES};
pub(crate) use slots::{start_case_threads, CaseFeed};
// The summary format (`forcefield-summary/1`) with the types of its fields.
pub(crate) use summary::keep_slowest;
pub use summary::{
    Finding, FindingStatus, Reproduction, SlowCase, Summary, WallClock, SLOWEST_KEPT,
    SUMMARY_FORMAT,
};

// Running one case in a worker is the client's; re-exported because campaigns and their users
// reach it here.
pub use crate::client::run::run_isolated;
