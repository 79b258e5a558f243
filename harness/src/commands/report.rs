/*!
`forcefield report D`: the summary of the campaign written in `D`, rebuilt from its journal
(`findings.jsonl`), printed as markdown and written back to `D/summary.json`. This is how a campaign
killed with SIGKILL (or by a power cut) gets its summary: every finding was journalled as it was
found. While a campaign still holds `D`, the summary is printed and `summary.json` is left to it.
Exit 1 when the campaign has findings, as `run` would have.
*/

use std::path::PathBuf;

use crate::commands::error::CliError;
use crate::hunt::campaign_dir::{read_campaign, try_lock, OutDirError, JOURNAL_FILE, SUMMARY_FILE};

/// Arguments of `forcefield report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The campaign's output directory (`forcefield run --out D`).
    pub dir: PathBuf,
}

/// Rebuilds, writes (when no campaign holds the directory) and prints the summary.
pub fn run(args: &ReportArgs) -> Result<(), CliError> {
    let dir = &args.dir;
    let summary = read_campaign(dir)
        .map_err(super::run::out_dir_error)?
        .ok_or_else(|| {
            CliError::input(anyhow::anyhow!(
                "{}: no campaign journal ({JOURNAL_FILE}) there",
                dir.display()
            ))
        })?;
    match try_lock(dir) {
        Ok(_lock) => {
            let path = dir.join(SUMMARY_FILE);
            crate::artifacts::write_json(&path, &summary)
                .map_err(|source| CliError::environment(OutDirError::Write { path, source }))?;
        }
        Err(OutDirError::Locked { holder, .. }) => eprintln!(
            "{} is held by a running campaign ({holder}): {SUMMARY_FILE} left to it",
            dir.display()
        ),
        Err(e) => return Err(super::run::out_dir_error(e)),
    }
    print!("{}", summary.markdown());
    if !summary.findings.is_empty() {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} distinct finding(s); see {}",
            summary.findings.len(),
            dir.join("findings").display()
        )));
    }
    Ok(())
}
