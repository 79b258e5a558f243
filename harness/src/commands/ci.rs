/*!
`forcefield ci`: the regression gate. Replays every entry of the corpus's `regressions/` directory
against its expectation ([`crate::hunt::corpus`]), then runs a seeded, time-boxed campaign
([`crate::hunt::campaign`]) whose findings are judged against the corpus: a signature that an `open` entry
holds is known; any other is new. Exit 1 on a broken expectation or a new finding, 3 when something
could not run here, 0 otherwise.

Outputs, each written atomically: a markdown summary on stdout, JUnit XML (`--junit`), a JSON report
(`--json`) and, with `--out DIR`, the campaign's `summary.json` and `findings/` (as `forcefield run`
writes them) along with the `cp` command that adds each new finding to the corpus. The rendering is
[`crate::hunt::report`]'s; this module only runs things and wires them together.

With `--target "CMD"` (or, in an embedding executable, by default) the gate is the same against
another engine: the corpus entries and the campaign's cases run on workers hosting the target,
with the target generator and checks of `forcefield run --target`.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forcefield::{CudaBackend, Fault};

use crate::artifacts::{write_atomically, write_json, MissingDirs};
use crate::case::generate::GenConfig;
use crate::case::minimize::MinimizeLimits;
use crate::case::BackendKind;
use crate::client::signature::Signature;
use crate::client::start;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::hunt::campaign::{run_campaign, write_outputs, Budget, CampaignConfig, Finding, Shard};
use crate::hunt::corpus::{self, ReplayOptions, ReplayResult};
use crate::hunt::report::{CampaignFinding, CiReport, CiResult};
use crate::sanitizers::mode::SanitizeMode;
use crate::worker::target_job::TargetSource;

/// Arguments of `forcefield ci`.
#[derive(Debug, Clone, clap::Args)]
pub struct CiArgs {
    /// Corpus directory; its `regressions/` subdirectory holds the entries.
    #[arg(long, default_value = "corpora")]
    pub corpus: PathBuf,
    /// Time budget of the campaign (e.g. 120s, 10m).
    #[arg(long, value_parser = super::parse_duration, default_value = "120s")]
    pub time: Duration,
    /// Number of generated cases instead of a time budget (a gate that runs the same cases on
    /// every machine).
    #[arg(long, conflicts_with = "time")]
    pub cases: Option<u64>,
    /// Campaign seed: the same seed generates the same cases.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend of the campaign (corpus entries run on the backend each names).
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Worker processes (default: one per core on the CPU backend, one on CUDA, where workers
    /// contend for the GPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for the campaign's summary.json and findings/ (minimized cases of new findings).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-case watchdog of the corpus replay, and upper bound of the campaign's adaptive one.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    pub case_timeout: Duration,
    /// Time budget for minimizing each finding of the campaign.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub minimize_time: Duration,
    /// Skip the capacity-invariance re-run of each case.
    #[arg(long)]
    pub no_capacity_check: bool,
    /// Planted fault for the campaign (repeatable): for testing the gate itself.
    #[arg(long = "fault", hide = true)]
    pub faults: Vec<Fault>,
    /// Run the campaign's cases under a sanitizer (`checked`: invalid memory accesses are
    /// `sanitizer` findings). Corpus entries replay without one: their expectations were recorded so.
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Gate another engine: a program speaking `forcefield-target/1`, its command line as one
    /// argument (as `forcefield run --target`).
    #[arg(long)]
    pub target: Option<String>,
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':'));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The file `write_outputs` wrote for a finding's case: the minimized one when there is one.
fn written_case_file(out: &Path, f: &Finding) -> Option<PathBuf> {
    let dir = out.join("findings").join(f.signature.id());
    if f.minimized.is_some() {
        Some(dir.join("minimized.json"))
    } else if f.case.is_some() {
        Some(dir.join("case.json"))
    } else {
        None
    }
}

/// Judges the campaign's findings against the corpus's open signatures.
fn judge_findings(
    findings: &[Finding],
    known: &BTreeMap<Signature, String>,
    out: Option<&Path>,
    regressions: &Path,
) -> Vec<CampaignFinding> {
    findings
        .iter()
        .map(|f| {
            let known_in = known.get(&f.signature).cloned();
            let case_file = out.and_then(|dir| written_case_file(dir, f));
            let add_command = match (&known_in, &case_file) {
                (None, Some(file)) => Some(format!(
                    "cp {} {}",
                    shell_quote(file),
                    shell_quote(&corpus::free_entry_path(regressions, &f.signature))
                )),
                _ => None,
            };
            CampaignFinding {
                signature: f.signature.clone(),
                known_in,
                case_file,
                add_command,
            }
        })
        .collect()
}

fn replay_line(r: &ReplayResult) -> String {
    use crate::hunt::corpus::ReplayStatus::*;
    let status = match &r.status {
        Met => "ok".to_string(),
        Broken { reason } => format!("BROKEN: {reason}"),
        Skipped { reason } => format!("skipped: {reason}"),
        Environment { message } => format!("could not run: {message}"),
    };
    format!("corpus {}: {status} ({:.2} s)", r.entry, r.seconds)
}

/// Runs the gate; see the module documentation for what it does and its exit codes.
pub fn run(args: &CiArgs) -> Result<(), CliError> {
    let backend = super::backend_kind(args.backend)?;
    let jobs = super::jobs(args.jobs, backend)?;
    args.sanitize.validate(backend)?;
    let target = TargetSource::resolve(args.target.as_deref());
    let plan = match &target {
        Some(source) => {
            if !args.faults.is_empty() || args.sanitize != SanitizeMode::Off {
                return Err(CliError::input(anyhow::anyhow!(
                    "--fault and --sanitize are about Forcefield's own engine and do not apply \
                     with a target"
                )));
            }
            if backend != BackendKind::Cpu {
                return Err(CliError::input(anyhow::anyhow!(
                    "--backend is about Forcefield's own engine and does not apply with a target"
                )));
            }
            let plan = super::target::plan_target(source)?;
            for line in plan.lines() {
                eprintln!("{line}");
            }
            Some(plan)
        }
        None => None,
    };
    let campaign_worker = match &target {
        Some(source) => super::target_worker_command(source)?,
        None => start::sanitized_worker_command(1, args.sanitize)?,
    };
    // Every output is checked before the replay and the campaign, not after them.
    if let Some(dir) = &args.out {
        super::check_output_dir(dir)?;
    }
    for path in [&args.junit, &args.json].into_iter().flatten() {
        super::check_output_file(path)?;
    }
    let regressions = corpus::regressions_dir(&args.corpus);
    let entries = corpus::load(&regressions).map_err(CliError::input)?;
    let worker = match &target {
        Some(source) => super::target_worker_command(source)?,
        None => super::worker_command(1)?,
    };
    // A target has no growth policy of ours to compare.
    let capacity_invariance = !args.no_capacity_check && target.is_none();
    // Installed before the replay, so that Ctrl-C during it lets the replay finish and stops the
    // campaign at once, with every report still written.
    // A forced stop (SIGTERM from a CI job past its limit) kills the workers and returns here, so
    // every report is still written, saying `interrupted`.
    let interrupt = crate::interrupt::campaign_flag();

    eprintln!(
        "replaying {} corpus entries from {}",
        entries.len(),
        regressions.display()
    );
    let replay = corpus::replay(
        &entries,
        &ReplayOptions {
            worker,
            jobs,
            deadline: args.case_timeout,
            capacity_invariance,
            cuda_available: CudaBackend::is_available(),
        },
        &|r| eprintln!("{}", replay_line(r)),
    );

    let budget = match args.cases {
        Some(n) => Budget::Cases(n),
        None => Budget::Time(args.time),
    };
    let config = CampaignConfig {
        backend,
        budget,
        seed: args.seed,
        jobs,
        gpus: Vec::new(),
        faults: args.faults.clone(),
        shard: Shard::default(),
        case_deadline: args.case_timeout,
        capacity_invariance,
        minimize: Some(MinimizeLimits {
            max_runs: 5000,
            max_time: args.minimize_time,
        }),
        worker: campaign_worker,
        sanitize: args.sanitize,
        generator: match &target {
            Some(_) => super::run::target_generator(0.0),
            None => GenConfig::default(),
        },
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        cases_per_worker: 1,
        // A worker hosting a target process sleeps while it computes.
        idle_check: target.is_none(),
        target: plan.as_ref().map(|p| p.totals()),
        shared_gpu: None,
    };
    eprintln!(
        "campaign: {} on {}, seed {}",
        match budget {
            Budget::Cases(n) => format!("{n} cases"),
            Budget::Time(t) => humantime::format_duration(t).to_string(),
        },
        match &target {
            Some(source) => format!("target {}", source.describe()),
            None => backend.name().to_string(),
        },
        args.seed
    );
    let summary = run_campaign(&config, interrupt);

    let write_err = |path: &Path, e: std::io::Error| {
        CliError::environment(anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    if let Some(dir) = &args.out {
        write_outputs(dir, &summary, &super::invocation()).map_err(|e| write_err(dir, e))?;
    }
    // The first entry (in file order) holding a signature open is the one reports name.
    let mut known: BTreeMap<Signature, String> = BTreeMap::new();
    for e in &entries {
        if let Some(sig) = e.open_signature() {
            known.entry(sig).or_insert_with(|| e.name());
        }
    }
    let findings = judge_findings(&summary.findings, &known, args.out.as_deref(), &regressions);
    let report = CiReport::new(regressions, replay, summary, findings);

    if let Some(path) = &args.junit {
        let xml = report.junit_xml().map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write the JUnit report: {e}"))
        })?;
        write_atomically(path, xml.as_bytes(), MissingDirs::Create)
            .map_err(|e| write_err(path, e))?;
    }
    if let Some(path) = &args.json {
        write_json(path, &report).map_err(|e| write_err(path, e))?;
    }
    print!("{}", report.markdown());
    forced_stop(format!(
        "ci stopped after {} case(s) with {} distinct finding(s)",
        report.campaign.cases,
        report.campaign.findings.len()
    ))?;

    match report.result {
        CiResult::Pass => Ok(()),
        CiResult::Fail => Err(CliError::Findings(anyhow::anyhow!(
            "{} broken expectation(s), {} new finding(s)",
            report.broken().count(),
            report.new_findings().count()
        ))),
        CiResult::Environment => {
            let message = match report.replay_environment_error() {
                Some((entry, message)) => format!("corpus entry {entry} could not run: {message}"),
                None => report
                    .campaign_environment_error()
                    .unwrap_or("something could not run")
                    .to_string(),
            };
            Err(CliError::environment(anyhow::anyhow!("{message}")))
        }
    }
}

/// After a forced stop (SIGTERM, SIGHUP, a second Ctrl-C) whose report is written: the exit
/// `128 + signal`, with `message`. A first Ctrl-C is a clean stop and ends as the work would have.
fn forced_stop(message: String) -> Result<(), CliError> {
    if !crate::interrupt::forced() {
        return Ok(());
    }
    Err(CliError::Interrupted {
        message,
        code: crate::interrupt::exit_code().unwrap_or(crate::exit::interrupted(
            nix::sys::signal::Signal::SIGTERM as i32,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(
            shell_quote(Path::new("out/findings/a.json")),
            "out/findings/a.json"
        );
        assert_eq!(shell_quote(Path::new("my dir/a.json")), "'my dir/a.json'");
        assert_eq!(shell_quote(Path::new("it's")), r"'it'\''s'");
    }

    #[test]
    fn findings_open_in_the_corpus_are_known_and_others_get_a_command() {
        let finding = |sig: &str| Finding {
            signature: sig.parse().unwrap(),
            summary: String::new(),
            count: 1,
            first_case: 0,
            seconds_to_first: 0.0,
            case_size: crate::case::minimize::CaseSize {
                nodes: 1,
                edges: 0,
                ops: 1,
            },
            minimization: None,
            seconds_to_minimized: None,
            aliases: Vec::new(),
            status: Default::default(),
            case: Some(crate::case::Case::new(Default::default())),
            minimized: None,
            execution: None,
        };
        let known: BTreeMap<Signature, String> =
            [("hang:force_pass".parse().unwrap(), "h.json".to_string())].into();
        let judged = judge_findings(
            &[
                finding("hang:force_pass"),
                finding("signal:SIGSEGV:sort_pairs"),
            ],
            &known,
            Some(Path::new("out")),
            Path::new("corpora/regressions"),
        );
        assert_eq!(judged[0].known_in.as_deref(), Some("h.json"));
        assert!(judged[0].add_command.is_none());
        assert!(judged[1].is_new());
        assert_eq!(
            judged[1].add_command.as_deref(),
            Some(
                "cp out/findings/signal-SIGSEGV-sort_pairs/case.json corpora/regressions/signal-SIGSEGV-sort_pairs.json"
            )
        );
    }
}
