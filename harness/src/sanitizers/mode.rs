/*!
`--sanitize`: which sanitizer a campaign, a replay or a soak runs its cases under.

* [`SanitizeMode`] is the flag's value. `checked` is the engine's own checked mode (the CPU
  backend's bounds-checked accessors, poison and written-marks; see `forcefield::backend::cpu`); the
  other modes are `compute-sanitizer` tools wrapped around the worker process.
* [`crate::client::start::sanitized_worker_command`] starts workers under a mode:
  `forcefield worker --sanitize checked`, or the worker wrapped in a compute-sanitizer tool.

How a finding travels from the backend to the reply is the worker's side:
[`crate::worker::violations`].
*/

use serde::{Deserialize, Serialize};

use crate::case::BackendKind;
use crate::sanitizers::compute_sanitizer::Tool;

/// The sanitizer cases run under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanitizeMode {
    /// No sanitizer: kernels access memory unchecked, as in production.
    #[default]
    Off,
    /// The engine's checked mode: an invalid access is a `sanitizer` finding instead of a crash.
    Checked,
    /// compute-sanitizer's memcheck (CUDA): out-of-bounds and misaligned accesses, leaks.
    Memcheck,
    /// compute-sanitizer's racecheck (CUDA): shared-memory data races.
    Racecheck,
    /// compute-sanitizer's initcheck (CUDA): reads of uninitialized global memory.
    Initcheck,
    /// compute-sanitizer's synccheck (CUDA): invalid synchronization.
    Synccheck,
}

impl SanitizeMode {
    /// Every mode, in the order the command line's help lists them.
    pub const ALL: [SanitizeMode; 6] = [
        SanitizeMode::Off,
        SanitizeMode::Checked,
        SanitizeMode::Memcheck,
        SanitizeMode::Racecheck,
        SanitizeMode::Initcheck,
        SanitizeMode::Synccheck,
    ];

    /// What the mode does, in one line (the command line's help for the value).
    pub const fn description(self) -> &'static str {
        match self {
            SanitizeMode::Off => "No sanitizer: kernels access memory unchecked, as in production",
            SanitizeMode::Checked => {
                "The engine's checked mode: an invalid access is a `sanitizer` finding instead of a crash"
            }
            SanitizeMode::Memcheck => {
                "compute-sanitizer's memcheck (CUDA): out-of-bounds and misaligned accesses, leaks"
            }
            SanitizeMode::Racecheck => {
                "compute-sanitizer's racecheck (CUDA): shared-memory data races"
            }
            SanitizeMode::Initcheck => {
                "compute-sanitizer's initcheck (CUDA): reads of uninitialized global memory"
            }
            SanitizeMode::Synccheck => {
                "compute-sanitizer's synccheck (CUDA): invalid synchronization"
            }
        }
    }

    /// The flag's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            SanitizeMode::Off => "off",
            SanitizeMode::Checked => "checked",
            SanitizeMode::Memcheck => "memcheck",
            SanitizeMode::Racecheck => "racecheck",
            SanitizeMode::Initcheck => "initcheck",
            SanitizeMode::Synccheck => "synccheck",
        }
    }

    /// Whether backends open in their checked mode.
    pub const fn is_checked(self) -> bool {
        matches!(self, SanitizeMode::Checked)
    }

    /// The compute-sanitizer tool of a tool mode.
    pub const fn compute_sanitizer_tool(self) -> Option<Tool> {
        match self {
            SanitizeMode::Off | SanitizeMode::Checked => None,
            SanitizeMode::Memcheck => Some(Tool::Memcheck),
            SanitizeMode::Racecheck => Some(Tool::Racecheck),
            SanitizeMode::Initcheck => Some(Tool::Initcheck),
            SanitizeMode::Synccheck => Some(Tool::Synccheck),
        }
    }

    /// How many times the normal per-case deadline a case gets under this mode, so that a
    /// sanitizer's slowdown is not mistaken for a hang. The checked mode costs little (see the
    /// project's measurements); compute-sanitizer tools instrument every access and often cost
    /// one or two orders of magnitude.
    pub const fn deadline_factor(self) -> u32 {
        match self {
            SanitizeMode::Off => 1,
            SanitizeMode::Checked => 2,
            _ => 20,
        }
    }

    /// Checks that the mode can run cases on `backend`: compute-sanitizer tools watch CUDA kernels
    /// only (exit 2 on the CPU backend).
    pub fn validate(self, backend: BackendKind) -> Result<(), ModeUnsupported> {
        if let (Some(tool), BackendKind::Cpu) = (self.compute_sanitizer_tool(), backend) {
            return Err(ModeUnsupported { tool });
        }
        Ok(())
    }
}

/// A compute-sanitizer mode asked of the CPU backend (an input error: exit 2 at the command line).
#[derive(Debug, thiserror::Error)]
#[error("--sanitize {} runs compute-sanitizer, which watches CUDA kernels: use it with --backend cuda (the CPU backend's sanitizer is --sanitize checked)", tool.name())]
pub struct ModeUnsupported {
    /// The tool that was asked for.
    pub tool: Tool,
}

impl std::fmt::Display for SanitizeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tools() {
        let names: Vec<&str> = SanitizeMode::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "off",
                "checked",
                "memcheck",
                "racecheck",
                "initcheck",
                "synccheck"
            ]
        );
        for m in SanitizeMode::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(SanitizeMode::Checked.compute_sanitizer_tool(), None);
        for m in SanitizeMode::ALL {
            if let Some(tool) = m.compute_sanitizer_tool() {
                assert_eq!(tool.name(), m.name());
            }
        }
        assert!(SanitizeMode::Checked.is_checked() && !SanitizeMode::Off.is_checked());
    }

    #[test]
    fn tools_on_the_cpu_are_an_input_error() {
        let e = crate::commands::error::CliError::from(
            SanitizeMode::Memcheck
                .validate(BackendKind::Cpu)
                .unwrap_err(),
        );
        assert_eq!(e.exit_code(), crate::exit::BAD_INPUT);
        assert!(SanitizeMode::Checked.validate(BackendKind::Cpu).is_ok());
        assert!(SanitizeMode::Memcheck.validate(BackendKind::Cuda).is_ok());
    }
}
