/*!
Sanitizers as values and as a tool: the `--sanitize` mode ([`mode`]) and NVIDIA compute-sanitizer
([`compute_sanitizer`]: finding it, its strict command lines, reading its XML and text, signing and
summarising what it reports, re-running one case under a tool, in a process group of
[`crate::isolate::run_in_group`]). Neither knows clap: their command-line spelling is in
`commands/flag_values.rs`.

**Architecture Invariant:** this layer imports only `case`, `isolate` and the base files. A worker
reads the mode from here; re-running a campaign's findings is `hunt`'s
([`crate::hunt::sanitizer_findings`]).
*/

pub mod compute_sanitizer;
pub(crate) mod mode;
pub(crate) mod sanitizer_report;
