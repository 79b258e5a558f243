//! The campaign's progress bar on stderr.

use std::time::Duration;

use super::config::{Budget, CampaignConfig};

pub(super) fn progress_bar(config: &CampaignConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match config.budget {
        Budget::Cases(n) => indicatif::ProgressBar::new(n),
        Budget::Time(_) => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {pos} cases ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
