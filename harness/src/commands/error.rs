/*!
Why a command failed, and the one line it prints: [`CliError`] decides the exit code of every
subcommand ([`crate::exit`]). Imports nothing of the other commands, so every subcommand can use it
without a cycle through the dispatcher ([`crate::commands::cli`]).
*/

use crate::client::start::StartError;
use crate::exit;
use crate::sanitizers::mode::ModeUnsupported;

/// Why a command failed, which decides its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command worked and found problems (a crash, a broken invariant, a regression).
    #[error(transparent)]
    Findings(anyhow::Error),
    /// The user's input is wrong: a file, a flag value, parameters.
    #[error(transparent)]
    Input(anyhow::Error),
    /// The environment lacks something: a backend, a device, a tool.
    #[error(transparent)]
    Environment(anyhow::Error),
    /// A signal stopped the command after it wrote its report; the exit code is `128 + signal`.
    #[error("{message}")]
    Interrupted {
        /// What was kept.
        message: String,
        /// The exit code ([`exit::interrupted`]).
        code: i32,
    },
}

impl CliError {
    /// An input error from any error value.
    pub fn input(e: impl Into<anyhow::Error>) -> Self {
        CliError::Input(e.into())
    }

    /// An environment error from any error value.
    pub fn environment(e: impl Into<anyhow::Error>) -> Self {
        CliError::Environment(e.into())
    }

    /// The process exit code of this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Findings(_) => exit::FINDINGS,
            CliError::Input(_) => exit::BAD_INPUT,
            CliError::Environment(_) => exit::ENVIRONMENT,
            CliError::Interrupted { code, .. } => *code,
        }
    }

    /// The line printed on stderr: a prefix, then the error and its causes joined by `: `.
    pub fn report_line(&self) -> String {
        let (prefix, error) = match self {
            CliError::Findings(e) => ("finding", e),
            CliError::Input(e) | CliError::Environment(e) => ("error", e),
            CliError::Interrupted { message, .. } => return format!("interrupted: {message}"),
        };
        format!("{prefix}: {}", one_line(error))
    }
}

/// An error and its causes on one line, joined by `: `. Causes already spelled out at the end of
/// the message before them are not repeated, and line breaks inside messages become spaces, so the
/// result is always exactly one line.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Input(message) => CliError::input(anyhow::anyhow!(message)),
            StartError::Environment(message) => CliError::environment(anyhow::anyhow!(message)),
        }
    }
}

impl From<ModeUnsupported> for CliError {
    fn from(e: ModeUnsupported) -> Self {
        CliError::input(e)
    }
}
