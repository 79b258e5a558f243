/*!
`forcefield run`: a crash-hunting campaign (see [`crate::hunt::campaign`]), then, for a CUDA campaign,
each minimized finding re-run under every compute-sanitizer tool (see
[`crate::hunt::sanitizer_findings::rerun_findings_with`] and [`should_rerun`]).
*/

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use forcefield::Fault;

use crate::case::generate::{GenConfig, DEFAULT_INJECT_RATE};
use crate::case::minimize::MinimizeLimits;
use crate::case::BackendKind;
use crate::client::start;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::exit;
use crate::hunt::campaign::{
    run_campaign_into, Budget, CampaignConfig, Recording, Shard, REPRODUCE_TRIES,
};
use crate::hunt::campaign_dir::{CampaignDir, OutDirError};
use crate::hunt::gpu_share::MpsDaemon;
use crate::hunt::sanitizer_findings::{
    campaign_findings, rerun_findings_with, FindingCase, FindingRerunOptions, RerunEvent,
};
use crate::sanitizers::compute_sanitizer::{find_tool, RerunError, PROGRAM};
use crate::sanitizers::mode::SanitizeMode;
use crate::worker::target_job::TargetSource;

/// Arguments of `forcefield run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Time budget (e.g. 60s, 10m); the default when neither --time nor --cases is given is 60s.
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "cases")]
    pub time: Option<Duration>,
    /// Number of cases instead of a time budget.
    #[arg(long)]
    pub cases: Option<u64>,
    /// Campaign seed: the same seed generates the same cases.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker processes (default: one per core on the CPU backend; on CUDA four when the GPU is
    /// shared through MPS, see --gpu-share, else one, since workers without it time-slice the GPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// With CUDA: one worker per listed GPU, e.g. `--gpus 0,1`.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    /// Planted fault to switch on (repeatable); `forcefield faults` lists them.
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Run only shard I of N (`I/N`), for spreading a campaign over machines.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Directory for summary.json and findings/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Upper bound of the per-case watchdog: each case's limit follows from its predicted cost
    /// and the measured rate (the summary says how), and no case runs longer than this.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub case_timeout: Duration,
    /// Do not minimize findings.
    #[arg(long)]
    pub no_minimize: bool,
    /// Time budget for minimizing each finding (within the campaign's --time: what is not
    /// minimized when that is spent says `"minimized": false`).
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub minimize_time: Duration,
    /// Re-runs of each finding before minimizing it: one that never reproduces is not minimized,
    /// one that reproduces only sometimes is marked flaky (0: no re-runs).
    #[arg(long, default_value_t = REPRODUCE_TRIES)]
    pub reproduce_tries: u32,
    /// Skip the capacity-invariance re-run of each case (about twice as many cases per second).
    #[arg(long)]
    pub no_capacity_check: bool,
    /// Run cases under a sanitizer: `checked` reports invalid memory accesses as `sanitizer`
    /// findings instead of crashes; the others run workers under compute-sanitizer (CUDA).
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Place injected environment faults (failed allocations, copies, launches, lost contexts) in
    /// the generated cases; the engine must tolerate each one.
    #[arg(long)]
    pub inject: bool,
    /// After a CUDA campaign, re-run each finding under every compute-sanitizer tool.
    ///
    /// Each finding's minimized case (its first case when it was not minimized) runs as
    /// `forcefield repro --in-process` under memcheck, racecheck, initcheck and synccheck, one run
    /// at a time: their XML and text output go to `findings/<id>/compute-sanitizer/<tool>.xml` and
    /// `<tool>.txt`, a summary to `findings/<id>/compute-sanitizer.md`, and one line per finding
    /// and tool to stdout. `auto` does this only on the CUDA backend, with --out, when there are
    /// findings and the campaign was not interrupted; when compute-sanitizer is not installed it
    /// says so on stderr and the exit code stays the campaign's. `off` never does.
    #[arg(long, value_enum, default_value_t = SanitizerRerun::Auto)]
    pub sanitizer_rerun: SanitizerRerun,
    /// Time limit of each compute-sanitizer tool on each finding in the re-run of
    /// --sanitizer-rerun (tools slow kernels down 10-100 times).
    #[arg(long, value_parser = super::parse_duration, default_value = "10m")]
    pub sanitizer_timeout: Duration,
    /// Hunt another engine: a program speaking `forcefield-target/1`, its command line as one
    /// argument ("python3 my_target.py --flag"). Each worker keeps one such process; the generic
    /// checks its declared capabilities allow run after every op (printed before the campaign,
    /// and written to target.json with --out).
    #[arg(long)]
    pub target: Option<String>,
    /// Cases each worker runs side by side, each on its own thread and engine, in one request
    /// (default: 1 on the CPU backend, where workers already fill the cores; 8 on CUDA, where the
    /// cases of one worker share its context and overlap on the device). When a worker dies (a
    /// crash, an abort, a hang, a lost context) with cases of its batch unanswered, each of them
    /// is re-run alone, and only that run decides its outcome and signature.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub cases_per_worker: Option<u64>,
    /// How CUDA workers share the GPU. `auto`: through MPS when the machine has it (a daemon of
    /// this campaign's own, started and quit with it), --jobs is not 1 and the campaign has
    /// neither --fault nor --inject (whose cases end contexts often), with 4 workers unless --jobs
    /// says otherwise; else one worker. `mps`: MPS or exit 3. `off`: each worker its own context,
    /// time-sliced. MPS does not contain faults (one worker's illegal address ends every worker's
    /// context), so under it a case counts as passed only when it passed in its shared worker;
    /// every other outcome is re-run alone in a private worker, with the shared workers paused,
    /// and that run's verdict is the case's.
    #[arg(long, value_enum, default_value_t = GpuShare::Auto)]
    pub gpu_share: GpuShare,
}

/// `--gpu-share`: how a CUDA campaign's workers share the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuShare {
    /// MPS when the machine has it and several workers run; otherwise off.
    Auto,
    /// MPS, or exit 3.
    Mps,
    /// Each worker its own context.
    Off,
}

/// Workers of a campaign whose workers share the GPU through MPS, unless --jobs says otherwise:
/// four measured ~200 cases/s on an H100 (one: ~75, two: ~115).
pub const MPS_JOBS: usize = 4;

/// The case generator of a campaign against a target: smaller graphs than for Forcefield's own
/// engine (at most 1,000 nodes at first, 1,500 live, 3,000 edges), since another engine's step may
/// cost the square of its nodes (the NumPy example's does) and a case must stay far below the
/// watchdog's limit to be a case rather than a false hang.
pub fn target_generator(inject_rate: f64) -> GenConfig {
    GenConfig {
        max_large_nodes: 1000,
        max_live_nodes: 1500,
        max_live_edges: 3000,
        inject_rate,
        ..GenConfig::default()
    }
}

/// Whether `forcefield run` re-runs its findings under compute-sanitizer (`--sanitizer-rerun`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SanitizerRerun {
    /// After a CUDA campaign written with --out that found something and was not interrupted.
    Auto,
    /// Never.
    Off,
}

/// Whether a finished campaign's findings are re-run under compute-sanitizer: with
/// [`SanitizerRerun::Auto`], only on CUDA (the tools see nothing of the CPU backend), when there
/// are findings, when they were written (`--out`: the re-run reads their case files and writes
/// next to them) and when the user did not stop the campaign with Ctrl-C.
pub fn should_rerun(
    backend: BackendKind,
    mode: SanitizerRerun,
    interrupted: bool,
    has_findings: bool,
    has_out: bool,
) -> bool {
    mode == SanitizerRerun::Auto
        && backend == BackendKind::Cuda
        && !interrupted
        && has_findings
        && has_out
}

impl RunArgs {
    fn config(&self) -> Result<CampaignConfig, CliError> {
        let budget = match (self.time, self.cases) {
            (_, Some(n)) => Budget::Cases(n),
            (Some(t), None) => Budget::Time(t),
            (None, None) => Budget::Time(Duration::from_secs(60)),
        };
        let backend = super::backend_kind(self.backend)?;
        let jobs = super::jobs(self.jobs, backend)?;
        self.sanitize.validate(backend)?;
        if backend == BackendKind::Cuda {
            super::check_gpus(&self.gpus, forcefield::CudaBackend::device_count())?;
        }
        Ok(CampaignConfig {
            backend,
            budget,
            seed: self.seed,
            jobs,
            gpus: self.gpus.clone(),
            faults: self.faults.clone(),
            shard: self.shard,
            case_deadline: self.case_timeout,
            capacity_invariance: !self.no_capacity_check,
            minimize: (!self.no_minimize).then_some(MinimizeLimits {
                max_runs: 5000,
                max_time: self.minimize_time,
            }),
            worker: start::sanitized_worker_command(1, self.sanitize)?,
            sanitize: self.sanitize,
            generator: GenConfig {
                inject_rate: if self.inject {
                    DEFAULT_INJECT_RATE
                } else {
                    0.0
                },
                ..GenConfig::default()
            },
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            cases_per_worker: super::cases_per_worker(self.cases_per_worker, backend),
            idle_check: true,
            target: None,
            shared_gpu: None,
        })
    }

    /// The campaign's configuration against `--target` (or the embedded engine): the same
    /// campaign, its workers hosting the target, its cases from [`target_generator`].
    fn target_config(&self, source: &TargetSource) -> Result<CampaignConfig, CliError> {
        let refuse = |what: &str| {
            Err(CliError::input(anyhow::anyhow!(
                "{what} is about Forcefield's own engine and does not apply with --target"
            )))
        };
        // Forcefield's own engine behind the trait takes planted faults (from the cases).
        if !self.faults.is_empty() && !matches!(source, TargetSource::Builtin) {
            return refuse("--fault");
        }
        if self.sanitize != SanitizeMode::Off {
            return refuse("--sanitize");
        }
        if self.backend != BackendChoice::Cpu || !self.gpus.is_empty() {
            return refuse("--backend/--gpus");
        }
        if self.cases_per_worker.is_some_and(|k| k > 1) {
            // A worker keeps one target process, which answers one request at a time.
            return refuse("--cases-per-worker above 1");
        }
        let mut config = self.config()?;
        config.worker = super::target_worker_command(source)?;
        config.generator = target_generator(config.generator.inject_rate);
        // A target has no growth policy of ours to compare; ours behind the trait has (its
        // worker runs the capacity re-run on a second engine growing otherwise).
        if !matches!(source, TargetSource::Builtin) {
            config.capacity_invariance = false;
        }
        // The worker sleeps while its target computes: its CPU time says nothing.
        config.idle_check = false;
        Ok(config)
    }
}

/// The exit code's error for an output directory that cannot be used: input when the path cannot
/// be a directory, environment otherwise (permissions, a full disk, another campaign).
pub fn out_dir_error(e: OutDirError) -> CliError {
    if e.is_input() {
        CliError::input(e)
    } else {
        CliError::environment(e)
    }
}

/// Runs the campaign (its output directory opened and locked before the first case, and written
/// as it goes), prints the summary, re-runs the findings under compute-sanitizer
/// ([`should_rerun`]). Findings give exit code 1, a stop signal `128 + signal`, a write error 3.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let (config, plan) = match TargetSource::resolve(args.target.as_deref()) {
        Some(source) => {
            // The flags are refused before the target is started for its handshake.
            let mut config = args.target_config(&source)?;
            let plan = super::target::plan_target(&source)?;
            config.target = Some(plan.totals());
            for line in plan.lines() {
                eprintln!("{line}");
            }
            (config, Some(plan))
        }
        None => (args.config()?, None),
    };
    // Started before the workers and quit after them (dropped at the end of this function).
    let (config, _mps) = share_gpu(args, config)?;
    // Fail before the work: the directory is created, probed and locked first.
    let mut out = match &args.out {
        Some(dir) => Some(CampaignDir::open(dir, &super::invocation()).map_err(out_dir_error)?),
        None => None,
    };
    if let (Some(plan), Some(out)) = (&plan, &out) {
        let path = out.root().join("target.json");
        crate::artifacts::write_json(&path, plan).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?;
    }
    let interrupt = crate::interrupt::campaign_flag();
    let end = run_campaign_into(
        &config,
        Arc::clone(&interrupt),
        Recording {
            out: out.as_mut(),
            reproduce_tries: args.reproduce_tries,
        },
    );
    let summary = end.summary;
    print!("{}", summary.markdown());
    if let Some(plan) = &plan {
        // The summary's own lines speak of Forcefield's backend; these say what ran on the target.
        for line in plan.lines() {
            println!("{line}");
        }
    }
    if let Some(e) = end.write_error {
        return Err(CliError::environment(anyhow::anyhow!(
            "{e} (the campaign stopped after {} cases; the files written before are whole)",
            summary.cases
        )));
    }
    let interrupted = summary.interrupted || crate::interrupt::requested();
    let rerun = should_rerun(
        summary.backend,
        args.sanitizer_rerun,
        interrupted,
        !summary.findings.is_empty(),
        args.out.is_some(),
    );
    if let (true, Some(dir)) = (rerun, args.out.as_deref()) {
        let mut options = FindingRerunOptions::new(args.sanitizer_timeout);
        options.stop = Some(interrupt);
        rerun_findings(
            &campaign_findings(dir, &summary),
            summary.backend,
            &options,
            locate_programs(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
    }
    drop(out);
    let written = args
        .out
        .as_ref()
        .map(|d| format!("; see {}", d.display()))
        .unwrap_or_default();
    if interrupted {
        return Err(CliError::Interrupted {
            message: format!(
                "stopped after {} cases with {} distinct finding(s){written}",
                summary.cases,
                summary.findings.len()
            ),
            code: crate::interrupt::exit_code()
                .unwrap_or(exit::interrupted(nix::sys::signal::Signal::SIGINT as i32)),
        });
    }
    if summary.cases == summary.environment_errors && summary.cases > 0
        || summary.cases == 0 && summary.environment_message.is_some()
    {
        return Err(CliError::environment(anyhow::anyhow!(
            "{}",
            summary
                .environment_message
                .clone()
                .unwrap_or_else(|| "no case could run".into())
        )));
    }
    if !summary.findings.is_empty() {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} distinct finding(s){}",
            summary.findings.len(),
            args.out
                .as_ref()
                .map(|d| format!("; see {}", d.join("findings").display()))
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// Decides `--gpu-share` for `config`: starts the campaign's MPS daemon when the workers will
/// share the GPU through it (and sets the default number of workers, [`MPS_JOBS`]), and says on
/// stderr what was decided and why. Only a CUDA campaign on one GPU, under no compute-sanitizer
/// tool (they do not run MPS clients), with more than one worker, shares.
fn share_gpu(
    args: &RunArgs,
    mut config: CampaignConfig,
) -> Result<(CampaignConfig, Option<MpsDaemon>), CliError> {
    let why_not = if config.backend != BackendKind::Cuda {
        Some("not a CUDA campaign")
    } else if !config.gpus.is_empty() {
        Some("--gpus gives each worker a GPU of its own")
    } else if config.sanitize.compute_sanitizer_tool().is_some() {
        Some("compute-sanitizer does not run MPS clients")
    } else if args.jobs == Some(1) {
        Some("--jobs 1")
    } else if args.target.is_some() {
        Some("--target")
    } else {
        None
    };
    // Where most cases end a context, sharing costs more than it gives: each such case is re-run
    // alone with the shared workers paused (measured on an H100: 160 cases of a planted crash in
    // 1.1 s with one worker, 5.2 s shared; a 15 s `--inject` campaign 5.6 cases/s alone, 2.9 shared).
    let not_worth_it = if !config.faults.is_empty() {
        Some("planted faults crash most cases")
    } else if config.generator.inject_rate > 0.0 {
        Some("--inject loses contexts on purpose")
    } else {
        None
    };
    match (args.gpu_share, why_not) {
        (GpuShare::Off, _) => return Ok((config, None)),
        (GpuShare::Auto, None) if not_worth_it.is_some() => return Ok((config, None)),
        (GpuShare::Mps, Some(why)) => {
            return Err(CliError::input(anyhow::anyhow!(
                "--gpu-share mps does not apply here: {why}"
            )))
        }
        (GpuShare::Auto, Some(_)) => return Ok((config, None)),
        (_, None) => {}
    }
    let daemon = match MpsDaemon::start() {
        Ok(daemon) => daemon,
        Err(e) if args.gpu_share == GpuShare::Mps => {
            return Err(CliError::environment(anyhow::anyhow!(
                "--gpu-share mps: {e}"
            )))
        }
        Err(e) => {
            eprintln!(
                "gpu share: off ({e}); {} worker(s), each with a context of its own",
                config.jobs
            );
            return Ok((config, None));
        }
    };
    if args.jobs.is_none() {
        config.jobs = MPS_JOBS;
    }
    eprintln!(
        "gpu share: MPS, {} workers (a daemon of this campaign's own); a case that does not pass \
         in a shared worker is re-run alone in a private one",
        config.jobs
    );
    config.shared_gpu = Some(daemon.shared_gpu());
    Ok((config, Some(daemon)))
}

/// compute-sanitizer ([`find_tool`]) and this program, which it runs as `forcefield repro`.
fn locate_programs() -> Result<(PathBuf, PathBuf), RerunError> {
    let sanitizer = find_tool()?;
    let program = std::env::current_exe().map_err(RerunError::CurrentExe)?;
    Ok((sanitizer, program))
}

/// Re-runs `findings` under every tool of `options` with the `located` compute-sanitizer and
/// program: progress on `err`, one line per finding and tool on `out`, each as soon as it is
/// known. Never fails the command: the campaign's findings are already written, and what the
/// tools say adds to them; when compute-sanitizer was not found, one line on `err` says so.
fn rerun_findings(
    findings: &[FindingCase],
    backend: BackendKind,
    options: &FindingRerunOptions,
    located: Result<(PathBuf, PathBuf), RerunError>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) {
    // Write errors are ignored: a closed stdout or stderr must not stop the runs, whose files
    // are the record.
    let (sanitizer, program) = match located {
        Ok(found) => found,
        Err(RerunError::ToolMissing(missing)) => {
            let _ = writeln!(
                err,
                "{PROGRAM} not found (looked in {}): the {} minimized finding(s) were not re-run \
                 under its tools (install the CUDA toolkit or put its bin directory on PATH)",
                missing.searched.join(", "),
                findings.len()
            );
            return;
        }
        Err(error) => {
            let _ = writeln!(
                err,
                "the minimized findings were not re-run under {PROGRAM}: {}",
                crate::commands::error::one_line(&anyhow::Error::from(error))
            );
            return;
        }
    };
    let mut on_event = |event: RerunEvent<'_>| match event {
        RerunEvent::ToolStarted {
            index,
            total,
            finding,
            tool,
        } => {
            let _ = writeln!(
                err,
                "re-running finding {index}/{total} ({}) under {tool} ...",
                finding.signature
            );
        }
        RerunEvent::ToolFinished {
            finding, report, ..
        } => {
            let _ = writeln!(
                out,
                "{PROGRAM} {} on {}: {}",
                report.tool,
                finding.signature,
                report.verdict()
            );
            let _ = out.flush();
        }
    };
    let reruns = rerun_findings_with(
        &sanitizer,
        &program,
        backend,
        findings,
        options,
        &mut on_event,
    );
    for rerun in reruns {
        if let Some(markdown) = &rerun.markdown {
            let _ = writeln!(err, "wrote {}", markdown.display());
        }
        if let Some(error) = rerun.error {
            let _ = writeln!(
                out,
                "{PROGRAM} on {}: {}",
                rerun.finding.signature,
                crate::commands::error::one_line(&anyhow::Error::from(error))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::sanitizers::compute_sanitizer::{Tool, ToolMissing, DEFAULT_CUDA_BIN};

    /// A finding directory under `root` with a case file, and one without.
    fn findings_in(root: &Path) -> Vec<FindingCase> {
        let with_case = root.join("findings/signal-SIGSEGV-sort_pairs");
        std::fs::create_dir_all(&with_case).unwrap();
        std::fs::write(with_case.join("minimized.json"), "{}").unwrap();
        vec![
            FindingCase {
                signature: "signal:SIGSEGV:sort_pairs".into(),
                case: Some(with_case.join("minimized.json")),
                dir: with_case,
            },
            FindingCase {
                signature: "panic:gone".into(),
                dir: root.join("findings/panic-gone"),
                case: None,
            },
        ]
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_missing_compute_sanitizer_is_one_line_on_stderr_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let findings = findings_in(dir.path());
        let missing = ToolMissing {
            searched: vec![
                "PATH".into(),
                "$CUDA_HOME/bin".into(),
                DEFAULT_CUDA_BIN.into(),
            ],
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        rerun_findings(
            &findings,
            BackendKind::Cuda,
            &FindingRerunOptions::new(Duration::from_secs(60)),
            Err(RerunError::ToolMissing(missing)),
            &mut out,
            &mut err,
        );
        assert_eq!(text(out), "");
        assert_eq!(
            text(err),
            format!(
                "compute-sanitizer not found (looked in PATH, $CUDA_HOME/bin, {DEFAULT_CUDA_BIN}): \
                 the 2 minimized finding(s) were not re-run under its tools (install the CUDA \
                 toolkit or put its bin directory on PATH)\n"
            )
        );
        assert!(!findings[0].dir.join("compute-sanitizer").exists());
    }

    #[test]
    fn each_tool_gives_one_line_per_finding_as_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let findings = findings_in(dir.path());
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/compute-sanitizer"
        );
        // memcheck answers as on the planted fault; racecheck leaves no XML.
        let sanitizer = dir.path().join(PROGRAM);
        std::fs::write(
            &sanitizer,
            format!(
                "#!/bin/sh\ntool=\"$2\"\nwhile [ \"$1\" != --save ]; do shift; done\n\
                 if [ \"$tool\" = memcheck ]; then cp '{fixtures}/memcheck-sort-grow.xml' \"$2\"; \
                 cat '{fixtures}/memcheck-sort-grow.txt'; exit 86; fi\nexit 0\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&sanitizer, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut options = FindingRerunOptions::new(Duration::from_secs(60));
        options.tools = vec![Tool::Memcheck, Tool::Racecheck];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        rerun_findings(
            &findings,
            BackendKind::Cuda,
            &options,
            Ok((sanitizer, PathBuf::from("forcefield"))),
            &mut out,
            &mut err,
        );
        let tool_dir = findings[0].dir.join("compute-sanitizer");
        assert_eq!(
            text(out),
            format!(
                "compute-sanitizer memcheck on signal:SIGSEGV:sort_pairs: 67 errors (Invalid \
                 __global__ write of size 4 bytes is out of bounds in sort_scatter at \
                 layout.cu:196)\n\
                 compute-sanitizer racecheck on signal:SIGSEGV:sort_pairs: no verdict: exit 0; \
                 {}: no compute-sanitizer XML was written\n\
                 compute-sanitizer on panic:gone: {}: neither minimized.json nor case.json is \
                 there\n",
                tool_dir.join("racecheck.xml").display(),
                findings[1].dir.display(),
            )
        );
        assert_eq!(
            text(err),
            format!(
                "re-running finding 1/2 (signal:SIGSEGV:sort_pairs) under memcheck ...\n\
                 re-running finding 1/2 (signal:SIGSEGV:sort_pairs) under racecheck ...\n\
                 wrote {}\n",
                findings[0].dir.join("compute-sanitizer.md").display()
            )
        );
    }

    #[test]
    fn only_a_finished_cuda_campaign_with_written_findings_is_rerun() {
        use BackendKind::{Cpu, Cuda};
        use SanitizerRerun::{Auto, Off};
        // (backend, mode, interrupted, has findings, has --out)
        assert!(should_rerun(Cuda, Auto, false, true, true));
        assert!(
            !should_rerun(Cpu, Auto, false, true, true),
            "never on the CPU"
        );
        assert!(!should_rerun(Cuda, Off, false, true, true), "off is off");
        assert!(
            !should_rerun(Cuda, Auto, true, true, true),
            "not after Ctrl-C"
        );
        assert!(
            !should_rerun(Cuda, Auto, false, false, true),
            "nothing to re-run"
        );
        assert!(
            !should_rerun(Cuda, Auto, false, true, false),
            "nothing written"
        );
        for backend in [Cpu, Cuda] {
            for interrupted in [false, true] {
                for findings in [false, true] {
                    for out in [false, true] {
                        assert!(!should_rerun(backend, Off, interrupted, findings, out));
                    }
                }
            }
        }
    }

    #[test]
    fn the_flags_parse_with_their_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            run: RunArgs,
        }
        let defaults = Wrapper::try_parse_from(["run"]).unwrap().run;
        assert_eq!(defaults.sanitizer_rerun, SanitizerRerun::Auto);
        assert_eq!(defaults.sanitizer_timeout, Duration::from_secs(600));
        let set = Wrapper::try_parse_from([
            "run",
            "--sanitizer-rerun",
            "off",
            "--sanitizer-timeout",
            "90s",
        ])
        .unwrap()
        .run;
        assert_eq!(set.sanitizer_rerun, SanitizerRerun::Off);
        assert_eq!(set.sanitizer_timeout, Duration::from_secs(90));
        assert!(Wrapper::try_parse_from(["run", "--sanitizer-rerun", "always"]).is_err());
        assert!(Wrapper::try_parse_from(["run", "--sanitizer-timeout", "soon"]).is_err());
    }
}
