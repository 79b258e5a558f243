/*!
Exit codes of every `forcefield` command, in one place.
*/

/// Success: the layout was written, the campaign found nothing.
pub(crate) const OK: i32 = 0;
/// Findings, a broken expectation, a failing case.
pub(crate) const FINDINGS: i32 = 1;
/// Bad usage or input: flags, files, parameters, case logs.
pub const BAD_INPUT: i32 = 2;
/// The environment lacks something: a backend (no usable CUDA device) or a tool.
pub(crate) const ENVIRONMENT: i32 = 3;
/// Stopped by a signal: `128 + signal` (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as a shell reports a
/// process killed by it; the campaign's report was written first.
pub(crate) const fn interrupted(signal: i32) -> i32 {
    128 + signal
}
