/*!
A campaign's findings re-run under each compute-sanitizer tool: on the findings directories of a
real CPU campaign (`forcefield run --fault sort-count-unclamped`), with a stand-in script for
compute-sanitizer that answers with real saved output (`tests/fixtures/compute-sanitizer/`), since
this machine needs neither a GPU nor the tool. Also the `forcefield run` policy: never for the CPU
backend, even with compute-sanitizer on `PATH`.
*/

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forcefield_harness::case::{BackendKind, Case};
use forcefield_harness::hunt::campaign::Summary;
use forcefield_harness::hunt::sanitizer_findings::{
    campaign_findings, rerun_findings_with, FindingCase, FindingRerunError, FindingRerunOptions,
    RerunEvent, FINDING_MARKDOWN, FINDING_TOOL_DIR,
};
use forcefield_harness::sanitizers::compute_sanitizer::{
    RunStatus, Tool, ToolVerdict, PROGRAM, SANITIZER_EXIT_CODE,
};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compute-sanitizer")
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What the stand-in's synccheck does.
#[derive(Clone, Copy)]
enum Synccheck {
    /// Writes the clean run's XML and text, exits 0.
    Clean,
    /// Says it started (a `synccheck-started` file), then sleeps for a minute.
    Sleeps,
}

/// A stand-in for compute-sanitizer in `dir`. Each call appends `TOOL BACKEND CASE` to
/// `dir/calls.log`, then answers as real runs did: memcheck with the planted fault's 67 errors
/// (exit 86), racecheck clean, initcheck with no XML at all (as when the program never initialized
/// CUDA), synccheck as `synccheck` says.
fn fake_sanitizer(dir: &Path, synccheck: Synccheck) -> PathBuf {
    let path = dir.join(PROGRAM);
    let synccheck = match synccheck {
        Synccheck::Clean => format!(
            "cp '{f}/synccheck-clean.xml' \"$xml\"; cat '{f}/synccheck-clean.txt'; exit 0",
            f = fixture_dir().display()
        ),
        Synccheck::Sleeps => format!("touch '{}/synccheck-started'; exec sleep 60", dir.display()),
    };
    let script = format!(
        r#"#!/bin/sh
tool="$2"
prev=""
for a; do
  if [ "$prev" = "--backend" ]; then backend="$a"; fi
  prev="$a"
  last="$a"
done
printf '%s %s %s\n' "$tool" "$backend" "$last" >> '{dir}/calls.log'
while [ "$1" != "--save" ]; do shift; done
xml="$2"
case "$tool" in
  memcheck) cp '{f}/memcheck-sort-grow.xml' "$xml"; cat '{f}/memcheck-sort-grow.txt'; exit 86 ;;
  racecheck) cp '{f}/racecheck-clean.xml' "$xml"; cat '{f}/racecheck-clean.txt'; exit 0 ;;
  initcheck) echo '========= Error: Target application terminated before first instrumented API call'; exit 0 ;;
  synccheck) {synccheck} ;;
esac
exit 99
"#,
        dir = dir.display(),
        f = fixture_dir().display(),
    );
    write_executable(&path, &script);
    path
}

/// The calls the stand-in in `dir` received, one `TOOL BACKEND CASE` line each.
fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The output of one CPU campaign with the planted sort fault, made once for every test here.
struct Campaign {
    /// Its `--out` directory.
    out: PathBuf,
    /// The directory of the compute-sanitizer stand-in that was first on its `PATH`.
    sanitizer_dir: PathBuf,
    code: i32,
    stdout: String,
    stderr: String,
}

fn campaign() -> &'static Campaign {
    static CAMPAIGN: OnceLock<Campaign> = OnceLock::new();
    CAMPAIGN.get_or_init(|| {
        // Under the target directory, for the whole test run (every test copies from it), and
        // replaced by the next run.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sanitizer_rerun-campaign");
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", root.display()),
        }
        std::fs::create_dir_all(&root).unwrap();
        let sanitizer_dir = root.join("bin");
        std::fs::create_dir(&sanitizer_dir).unwrap();
        fake_sanitizer(&sanitizer_dir, Synccheck::Clean);
        let path = std::env::join_paths(std::iter::once(sanitizer_dir.clone()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let out = root.join("campaign");
        let output = Command::new(BIN)
            .args([
                "run",
                "--backend",
                "cpu",
                "--fault",
                "sort-count-unclamped",
                "--cases",
                "5",
                "--jobs",
                "1",
                "--minimize-time",
                "5s",
                "--out",
            ])
            .arg(&out)
            .env("PATH", path)
            .output()
            .unwrap();
        Campaign {
            out,
            sanitizer_dir,
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A private copy of the campaign's output in `dir`, and its summary as read back from
/// `summary.json`.
fn campaign_copy(dir: &Path) -> (PathBuf, Summary) {
    let campaign = campaign();
    assert_eq!(
        campaign.code, 1,
        "the campaign finds the planted fault\nstdout:\n{}\nstderr:\n{}",
        campaign.stdout, campaign.stderr
    );
    let out = dir.join("campaign");
    copy_dir(&campaign.out, &out);
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(!summary.findings.is_empty());
    (out, summary)
}

#[test]
fn a_cpu_campaign_never_runs_compute_sanitizer() {
    let campaign = campaign();
    assert_eq!(campaign.code, 1, "{}", campaign.stderr);
    // The stand-in was first on PATH, and was never called.
    assert!(calls(&campaign.sanitizer_dir).is_empty());
    let findings = campaign.out.join("findings");
    let mut dirs = 0;
    for entry in std::fs::read_dir(&findings).unwrap() {
        let dir = entry.unwrap().path();
        dirs += 1;
        assert!(dir.join("case.json").is_file());
        assert!(!dir.join(FINDING_TOOL_DIR).exists(), "{}", dir.display());
        assert!(!dir.join(FINDING_MARKDOWN).exists(), "{}", dir.display());
    }
    assert!(dirs > 0);
    // Not a word about it either.
    assert!(!campaign.stderr.contains(PROGRAM), "{}", campaign.stderr);
    assert!(!campaign.stdout.contains(PROGRAM), "{}", campaign.stdout);
}

#[test]
fn the_flags_are_documented() {
    let output = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("--sanitizer-rerun <SANITIZER_RERUN>"),
        "{help}"
    );
    assert!(help.contains("[default: auto]"), "{help}");
    assert!(
        help.contains("--sanitizer-timeout <SANITIZER_TIMEOUT>"),
        "{help}"
    );
    assert!(help.contains("[default: 10m]"), "{help}");
    assert!(help.contains("compute-sanitizer/<tool>.xml"), "{help}");
    let bad = Command::new(BIN)
        .args(["run", "--sanitizer-rerun", "always"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn each_finding_is_rerun_under_every_tool_into_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = fake_sanitizer(dir.path(), Synccheck::Clean);
    let (out, summary) = campaign_copy(dir.path());
    let findings = campaign_findings(&out, &summary);
    assert_eq!(findings.len(), summary.findings.len());
    for (finding, from_summary) in findings.iter().zip(&summary.findings) {
        assert_eq!(finding.signature, from_summary.signature.to_string());
        assert_eq!(
            finding.dir,
            out.join("findings").join(from_summary.signature.id())
        );
        // The campaign minimized its findings: the minimized case is the one re-run.
        assert!(from_summary.minimization.is_some());
        assert_eq!(
            finding.case.as_deref(),
            Some(finding.dir.join("minimized.json").as_path())
        );
    }

    let mut events = Vec::new();
    let options = FindingRerunOptions::new(Duration::from_secs(120));
    let reruns = rerun_findings_with(
        &sanitizer,
        Path::new(BIN),
        BackendKind::Cuda,
        &findings,
        &options,
        &mut |event| {
            events.push(match event {
                RerunEvent::ToolStarted {
                    index, total, tool, ..
                } => format!("start {index}/{total} {tool}"),
                RerunEvent::ToolFinished {
                    index,
                    total,
                    report,
                    ..
                } => format!("end {index}/{total} {}", report.tool),
            })
        },
    );
    assert_eq!(reruns.len(), findings.len());

    // Every tool on every finding, one at a time, in order, on the minimized case.
    let total = findings.len();
    let expected_events: Vec<String> = (1..=total)
        .flat_map(|index| {
            Tool::ALL.into_iter().flat_map(move |tool| {
                [
                    format!("start {index}/{total} {tool}"),
                    format!("end {index}/{total} {tool}"),
                ]
            })
        })
        .collect();
    assert_eq!(events, expected_events);
    let expected_calls: Vec<String> = findings
        .iter()
        .flat_map(|f| {
            let case = f.dir.join("minimized.json");
            Tool::ALL.map(|tool| format!("{tool} cuda {}", case.display()))
        })
        .collect();
    assert_eq!(calls(dir.path()), expected_calls);

    for rerun in &reruns {
        assert!(rerun.error.is_none(), "{:?}", rerun.error);
        let tool_dir = rerun.finding.dir.join(FINDING_TOOL_DIR);
        for tool in Tool::ALL {
            assert!(tool_dir.join(format!("{tool}.txt")).is_file(), "{tool}");
            // initcheck wrote no XML: nothing stands in for it.
            assert_eq!(
                tool_dir.join(format!("{tool}.xml")).is_file(),
                tool != Tool::Initcheck,
                "{tool}"
            );
        }
        let reports = &rerun.reports;
        assert_eq!(
            reports.iter().map(|r| r.tool).collect::<Vec<_>>(),
            Tool::ALL
        );
        assert_eq!(
            reports[0].status,
            RunStatus::Exited {
                code: SANITIZER_EXIT_CODE
            }
        );
        assert_eq!(
            reports[0].verdict(),
            ToolVerdict::Errors {
                errors: 67,
                headline: Some(
                    "Invalid __global__ write of size 4 bytes is out of bounds in sort_scatter \
                     at layout.cu:196"
                        .to_string()
                ),
            }
        );
        assert_eq!(reports[1].verdict(), ToolVerdict::Clean);
        // Quiet, exit 0, but no XML: never clean.
        assert_eq!(reports[2].status, RunStatus::Exited { code: 0 });
        assert!(
            matches!(&reports[2].verdict(), ToolVerdict::Inconclusive { reason }
                if reason.contains("no compute-sanitizer XML was written")),
            "{:?}",
            reports[2].verdict()
        );
        assert_eq!(reports[3].verdict(), ToolVerdict::Clean);

        let markdown_path = rerun.finding.dir.join(FINDING_MARKDOWN);
        assert_eq!(rerun.markdown.as_deref(), Some(markdown_path.as_path()));
        let markdown = std::fs::read_to_string(&markdown_path).unwrap();
        assert!(markdown.starts_with(&format!(
            "# compute-sanitizer on `{}`\n",
            rerun.finding.signature
        )));
        assert!(markdown
            .contains("`minimized.json` run as `forcefield repro --in-process --backend cuda`"));
        assert!(markdown.contains(
            "- memcheck: 67 errors (Invalid __global__ write of size 4 bytes is out of bounds \
             in sort_scatter at layout.cu:196)\n"
        ));
        assert!(markdown.contains("- racecheck: clean\n"));
        assert!(markdown.contains("- initcheck: no verdict: exit 0; "));
        assert!(markdown.contains("- synccheck: clean\n"));
        assert!(!markdown.contains("initcheck: clean"));
        // The per-tool table, one row each.
        assert!(markdown.contains(
            "| memcheck | exit 86 (errors reported) | 67 | 5 Api, 3 Leak, 20 Precise | \
             `sanitizer:memcheck-out-of-bounds-write:sort_scatter` |"
        ));
        assert!(markdown.contains("| racecheck | exit 0 | 0 | none | - |"));
        assert!(markdown.contains("| initcheck | exit 0 | ? | no XML | - |"));
        assert!(markdown.contains("| synccheck | exit 0 | 0 | none | - |"));
    }
    // No temporary file is left next to the summaries.
    for rerun in &reruns {
        let mut names: Vec<String> = std::fs::read_dir(&rerun.finding.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(
            names.iter().all(|n| [
                "case.json",
                "minimized.json",
                "report.json",
                "stderr.txt",
                FINDING_TOOL_DIR,
                FINDING_MARKDOWN
            ]
            .contains(&n.as_str())),
            "{names:?}"
        );
    }
}

#[test]
fn an_unminimized_finding_reruns_its_first_case() {
    let dir = tempfile::tempdir().unwrap();
    let (out, mut summary) = campaign_copy(dir.path());
    // In memory, as `forcefield run` holds it: a finding with its first case and no minimized
    // one. The minimized.json on disk must not stand in for it.
    let finding = &mut summary.findings[0];
    let fdir = out.join("findings").join(finding.signature.id());
    assert!(fdir.join("minimized.json").is_file());
    let text = std::fs::read_to_string(fdir.join("case.json")).unwrap();
    finding.case = Some(Case::from_json(&text).unwrap());
    finding.minimized = None;
    let findings = campaign_findings(&out, &summary);
    assert_eq!(
        findings[0].case.as_deref(),
        Some(fdir.join("case.json").as_path())
    );
    // Read back from summary.json (no cases in memory), the files decide; with no
    // minimized.json, case.json.
    std::fs::remove_file(fdir.join("minimized.json")).unwrap();
    summary.findings[0].case = None;
    let findings = campaign_findings(&out, &summary);
    assert_eq!(
        findings[0].case.as_deref(),
        Some(fdir.join("case.json").as_path())
    );
}

#[test]
fn a_tool_past_its_timeout_is_killed_and_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = fake_sanitizer(dir.path(), Synccheck::Sleeps);
    let (out, summary) = campaign_copy(dir.path());
    let findings = campaign_findings(&out, &summary);
    let mut options = FindingRerunOptions::new(Duration::from_secs(1));
    options.tools = vec![Tool::Synccheck];
    let reruns = rerun_findings_with(
        &sanitizer,
        Path::new(BIN),
        BackendKind::Cuda,
        &findings[..1],
        &options,
        &mut |_| {},
    );
    let report = &reruns[0].reports[0];
    assert_eq!(report.status, RunStatus::TimedOut { after_ms: 1000 });
    let verdict = report.verdict();
    assert!(
        matches!(&verdict, ToolVerdict::Inconclusive { reason } if reason.starts_with("timed out after 1.0 s")),
        "{verdict:?}"
    );
    assert!(reruns[0].error.is_none());
    let markdown = std::fs::read_to_string(findings[0].dir.join(FINDING_MARKDOWN)).unwrap();
    assert!(
        markdown.contains("- synccheck: no verdict: timed out after 1.0 s"),
        "{markdown}"
    );
    assert!(!markdown.contains("synccheck: clean"));
}

#[test]
fn ctrl_c_stops_the_running_tool_and_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = fake_sanitizer(dir.path(), Synccheck::Sleeps);
    let (out, summary) = campaign_copy(dir.path());
    let mut findings = campaign_findings(&out, &summary);
    // A second finding, which must not be started once stopped.
    findings.push(findings[0].clone());
    let stop = Arc::new(AtomicBool::new(false));
    let mut options = FindingRerunOptions::new(Duration::from_secs(300));
    options.tools = vec![Tool::Synccheck, Tool::Memcheck];
    options.stop = Some(Arc::clone(&stop));
    let started = dir.path().join("synccheck-started");
    let presser = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Pressed once the sleeping tool is running.
            while !started.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let reruns = rerun_findings_with(
        &sanitizer,
        Path::new(BIN),
        BackendKind::Cuda,
        &findings,
        &options,
        &mut |_| {},
    );
    presser.join().unwrap();
    assert_eq!(reruns.len(), 2);
    let first = &reruns[0];
    assert_eq!(first.reports.len(), 1, "memcheck never started");
    assert_eq!(first.reports[0].status, RunStatus::Interrupted);
    assert!(matches!(
        first.reports[0].verdict(),
        ToolVerdict::Inconclusive { .. }
    ));
    assert!(matches!(first.error, Some(FindingRerunError::Interrupted)));
    // What did run is still summarized.
    assert!(first.markdown.is_some());
    assert!(reruns[1].reports.is_empty());
    assert!(matches!(
        reruns[1].error,
        Some(FindingRerunError::Interrupted)
    ));
    assert_eq!(calls(dir.path()).len(), 1);
}

#[test]
fn a_finding_without_a_case_file_is_said_so_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = fake_sanitizer(dir.path(), Synccheck::Clean);
    let (out, summary) = campaign_copy(dir.path());
    let real = campaign_findings(&out, &summary).remove(0);
    let missing = FindingCase {
        signature: "panic:gone".into(),
        dir: dir.path().join("findings/panic-gone"),
        case: None,
    };
    let mut options = FindingRerunOptions::new(Duration::from_secs(120));
    options.tools = vec![Tool::Racecheck];
    let reruns = rerun_findings_with(
        &sanitizer,
        Path::new(BIN),
        BackendKind::Cuda,
        &[missing.clone(), real.clone()],
        &options,
        &mut |_| {},
    );
    assert!(reruns[0].reports.is_empty());
    let error = reruns[0].error.as_ref().unwrap();
    assert!(matches!(error, FindingRerunError::NoCase { .. }));
    assert!(error
        .to_string()
        .contains("neither minimized.json nor case.json"));
    assert!(!missing.dir.exists(), "nothing is written for it");
    assert!(reruns[1].error.is_none());
    assert_eq!(reruns[1].reports[0].verdict(), ToolVerdict::Clean);
    assert_eq!(calls(dir.path()).len(), 1);
}
