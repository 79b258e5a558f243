/*!
Hunting, on top of the client: campaigns ([`campaign`], written into a [`campaign_dir`]), the
per-case time limit ([`watchdog`]), deduplication ([`dedup`]), the regression corpus ([`corpus`])
and its reports ([`report`]), several CUDA workers on one GPU ([`gpu_share`]), the soak driver ([`soak`]), the self-test ([`selftest`]), where a
campaign's time went ([`time_split`]) and the compute-sanitizer re-run of a campaign's findings
([`sanitizer_findings`]).

**Architecture Invariant:** this layer may import `client` and everything below it; it never
imports `commands` (no clap, no `CliError`) or `bench`.
*/

pub mod campaign;
pub(crate) mod campaign_dir;
pub mod corpus;
pub(crate) mod dedup;
pub mod gpu_share;
pub(crate) mod report;
pub mod sanitizer_findings;
pub(crate) mod selftest;
pub(crate) mod soak;
pub mod target_totals;
pub(crate) mod time_split;
pub mod watchdog;
