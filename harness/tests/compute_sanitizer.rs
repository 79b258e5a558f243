/*!
compute-sanitizer support, tested on real output saved from the GPU machine (see
`tests/fixtures/compute-sanitizer/README.md`) and, for the runner, on a stand-in script: this
machine needs neither a GPU nor compute-sanitizer.
*/

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use forcefield_harness::case::BackendKind;
use forcefield_harness::client::signature::Signature;
use forcefield_harness::isolate::WorkerCommand;
use forcefield_harness::sanitizers::compute_sanitizer::{
    find_tool_in, parse_text, parse_xml, read_report, read_xml, render_markdown, rerun_with,
    signature_for, worker_xml_path, worker_xml_pattern, wrap_command, NearestAllocation,
    ParseError, ReadError, RecordKind, RerunOptions, RunStatus, SanitizerReport, Side, Tool,
    PROGRAM, SANITIZER_EXIT_CODE,
};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compute-sanitizer")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_dir().join(name)).unwrap()
}

/// The XML of `tool` on `case`, with the nearest allocations of its text attached.
fn report(tool: Tool, case: &str) -> SanitizerReport {
    let mut report = parse_xml(tool, &fixture(&format!("{tool}-{case}.xml"))).unwrap();
    report.attach_text(&parse_text(&fixture(&format!("{tool}-{case}.txt"))));
    report
}

#[test]
fn memcheck_finds_the_planted_out_of_bounds_writes_in_sort_scatter() {
    let report = report(Tool::Memcheck, "sort-grow");
    assert_eq!(report.count(&RecordKind::Precise), 20);
    assert_eq!(report.count(&RecordKind::Api), 5);
    // Trimmed to 3 of the 42 leak records; the text's summary keeps the real totals.
    assert_eq!(report.count(&RecordKind::Leak), 3);
    let counts = report.counts();
    assert_eq!(counts.get("Precise"), Some(&20));
    assert_eq!(counts.values().sum::<usize>(), 28);

    let first = &report.records[0];
    assert_eq!(first.tool, Tool::Memcheck);
    assert_eq!(first.kind, RecordKind::Precise);
    assert_eq!(first.level.as_deref(), Some("Error"));
    assert_eq!(first.kernel.as_deref(), Some("sort_scatter"));
    assert_eq!(first.file.as_deref(), Some("/srv/forcefield/layout.cu"));
    assert_eq!(first.line, Some(196));
    assert_eq!(first.pc, Some(0x15e0));
    assert_eq!(first.thread, Some([225, 0, 0]));
    assert_eq!(first.block, Some([0, 0, 0]));
    assert_eq!(first.direction.as_deref(), Some("write"));
    assert_eq!(first.space.as_deref(), Some("__global__"));
    assert_eq!(first.error.as_deref(), Some("out of bounds"));
    assert_eq!(first.size, Some(4));
    assert_eq!(first.address, Some(0x7f5d_c0c0_2d90));
    // The access starts exactly at the end of a 400-byte allocation; compute-sanitizer counts
    // that as 1 byte after it.
    assert_eq!(
        first.nearest_allocation,
        Some(NearestAllocation {
            base: 0x7f5d_c0c0_2c00,
            size: 400,
            distance: 1,
            side: Side::After,
        })
    );
    let near = first.nearest_allocation.unwrap();
    assert_eq!(Some(near.base + near.size), first.address);
    assert_eq!(
        first.host_stack_saved_at.as_deref(),
        Some("kernel launch time")
    );
    assert_eq!(first.host_frames.len(), 18);
    assert_eq!(first.host_frames[0].func.as_deref(), Some("cuLaunchKernel"));
    assert_eq!(first.host_frames[0].pc, Some(0x39fb94));
    assert!(first.host_frames[0]
        .module
        .as_deref()
        .unwrap()
        .ends_with("libcuda.so.1"));
    assert_eq!(first.host_frames[1].func, None);

    // Further along, the writes come closer to the next allocation than to the end of theirs.
    let before = report
        .records
        .iter()
        .find(|r| r.thread == Some([246, 0, 0]))
        .unwrap();
    assert_eq!(before.address, Some(0x7f5d_c0c0_2dc8));
    assert_eq!(
        before.nearest_allocation,
        Some(NearestAllocation {
            base: 0x7f5d_c0c0_2e00,
            size: 400,
            distance: 56,
            side: Side::Before,
        })
    );
    // Every out-of-bounds write got its allocation from the text.
    assert!(report
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Precise)
        .all(|r| r.nearest_allocation.is_some()));

    let api = report
        .records
        .iter()
        .find(|r| r.kind == RecordKind::Api)
        .unwrap();
    assert_eq!(api.api.as_deref(), Some("cuEventSynchronize"));
    assert_eq!(api.error.as_deref(), Some("CUDA_ERROR_LAUNCH_FAILED"));
    assert_eq!(api.message.as_deref(), Some("unspecified launch failure"));
    assert!(api.kernel.is_none() && api.thread.is_none());

    let leak = report
        .records
        .iter()
        .find(|r| r.kind == RecordKind::Leak)
        .unwrap();
    assert_eq!(leak.text, "Leaked 2048 bytes");
    assert_eq!(
        (leak.address, leak.size),
        (Some(0x7f5d_c0c0_0000), Some(2048))
    );
    assert_eq!(leak.host_api(), Some("cuMemAlloc_v2"));
    assert_eq!(leak.host_stack_saved_at.as_deref(), Some("allocation time"));

    let signature = report.signature().unwrap();
    assert_eq!(
        signature,
        "sanitizer:memcheck-out-of-bounds-write:sort_scatter"
    );
    let parsed: Signature = signature.parse().unwrap();
    assert_eq!(
        (
            parsed.class.as_str(),
            parsed.detail.as_str(),
            parsed.site.as_str()
        ),
        ("sanitizer", "memcheck-out-of-bounds-write", "sort_scatter")
    );
}

#[test]
fn memcheck_text_keeps_the_totals_and_the_programs_own_signature() {
    let text = parse_text(&fixture("memcheck-sort-grow.txt"));
    assert_eq!(text.errors, Some(67));
    assert_eq!(text.errors_not_printed, None);
    assert_eq!(text.leaked, Some((132_048, 42)));
    assert!(text.target_failed);
    assert_eq!(
        text.program_signature.as_deref(),
        Some("engine-error:sticky:step")
    );
    assert_eq!(text.nearest_allocations.len(), 20);

    // A worker's XML and captured output, read together.
    let (report, text) = read_report(
        Tool::Memcheck,
        &fixture_dir().join("memcheck-sort-grow.xml"),
        &fixture("memcheck-sort-grow.txt"),
    )
    .unwrap();
    assert_eq!(text.errors, Some(67));
    assert_eq!(
        report.records[0].nearest_allocation.map(|n| n.distance),
        Some(1)
    );

    let clean = parse_text(&fixture("memcheck-clean.txt"));
    assert_eq!(clean.errors, Some(0));
    assert_eq!(clean.leaked, Some((0, 0)));
    assert!(!clean.target_failed);
    assert_eq!(clean.program_signature, None);
    assert!(clean.nearest_allocations.is_empty());
}

#[test]
fn empty_outputs_are_empty_reports() {
    for (tool, case) in [
        (Tool::Memcheck, "clean"),
        (Tool::Racecheck, "clean"),
        (Tool::Racecheck, "sort-grow"),
        (Tool::Synccheck, "clean"),
        (Tool::Synccheck, "sort-grow"),
    ] {
        let path = fixture_dir().join(format!("{tool}-{case}.xml"));
        let report = read_xml(tool, &path).unwrap();
        assert!(report.is_empty(), "{tool} {case}");
        assert!(report.counts().is_empty());
        assert_eq!(report.signature(), None);
    }
    let racecheck = parse_text(&fixture("racecheck-sort-grow.txt"));
    assert_eq!(racecheck.hazards, Some((0, 0, 0)));
    assert!(racecheck.target_failed);
    assert_eq!(
        racecheck.program_signature.as_deref(),
        Some("engine-error:step")
    );
    let synccheck = parse_text(&fixture("synccheck-clean.txt"));
    assert_eq!(synccheck.errors, Some(0));
    assert_eq!(synccheck.hazards, None);
    assert_eq!(
        parse_text(&fixture("racecheck-clean.txt")).hazards,
        Some((0, 0, 0))
    );
    assert_eq!(
        parse_text(&fixture("synccheck-sort-grow.txt")).errors,
        Some(0)
    );
}

#[test]
fn initcheck_records_are_parsed_api_and_kernel_alike() {
    let report = report(Tool::Initcheck, "sort-grow");
    assert_eq!(report.count(&RecordKind::InitcheckApiError), 3);
    assert_eq!(report.count(&RecordKind::Initcheck), 3);

    let api = &report.records[0];
    assert_eq!(api.kind, RecordKind::InitcheckApiError);
    assert_eq!(api.text, "Host API uninitialized memory access");
    // initcheck writes these addresses in decimal.
    assert_eq!(api.address, Some(140_385_682_733_056));
    assert_eq!(api.address, Some(0x7fae_16c0_3800));
    assert_eq!(api.size, Some(400));
    assert_eq!(api.kernel, None);
    assert_eq!(api.host_api(), Some("cuMemcpyDtoDAsync_v2"));
    assert_eq!(api.nearest_allocation, None);

    let read = report
        .records
        .iter()
        .find(|r| r.kind == RecordKind::Initcheck)
        .unwrap();
    assert_eq!(
        read.text,
        "Uninitialized __global__ memory read of size 4 bytes"
    );
    assert_eq!(read.kernel.as_deref(), Some("integrate"));
    assert_eq!(read.line, Some(419));
    assert_eq!(read.thread, Some([106, 0, 0]));
    assert_eq!(read.address, Some(0x7fae_16c1_25a8));
    assert_eq!(read.size, Some(4));
    // A kernel's read outranks the API records printed before it.
    assert_eq!(
        report.signature().as_deref(),
        Some("sanitizer:initcheck-uninitialized-read:integrate")
    );

    let text = parse_text(&fixture("initcheck-sort-grow.txt"));
    assert_eq!(text.errors, Some(1570));
    assert_eq!(text.errors_not_printed, Some(1470));

    // The clean engine of the time copied never-written scratch buffers on resize.
    let clean = report_of_clean_initcheck();
    assert_eq!(clean.count(&RecordKind::InitcheckApiError), 2);
    assert_eq!(
        clean.signature().as_deref(),
        Some("sanitizer:initcheck-uninitialized-api-access:cuMemcpyDtoDAsync_v2")
    );
}

#[test]
fn unused_memory_records_name_their_allocation() {
    // Made with --track-unused-memory, which the strict options leave out for this reason: the
    // clean engine reserves capacity ahead of use, and every such allocation is reported.
    let report = report(Tool::Initcheck, "unused-clean");
    assert_eq!(report.count(&RecordKind::UnusedMemory), 2);
    let first = &report.records[0];
    assert_eq!(first.text, "Unused memory in allocation 0x7f9686c04400");
    assert_eq!(
        (first.address, first.size),
        (Some(0x7f96_86c0_4400), Some(4))
    );
    assert_eq!(report.records[1].size, Some(400));
    assert_eq!(first.host_api(), Some("cuMemAlloc_v2"));
    assert_eq!(
        first.host_stack_saved_at.as_deref(),
        Some("allocation time")
    );
    assert_eq!(
        report.signature().as_deref(),
        Some("sanitizer:initcheck-unused-memory:cuMemAlloc_v2")
    );
    let text = parse_text(&fixture("initcheck-unused-clean.txt"));
    assert_eq!(
        (text.errors, text.errors_not_printed),
        (Some(459), Some(359))
    );
    assert!(!text.target_failed);
}

fn report_of_clean_initcheck() -> SanitizerReport {
    report(Tool::Initcheck, "clean")
}

#[test]
fn malformed_missing_and_empty_xml_are_typed_errors() {
    let truncated = &fixture("memcheck-sort-grow.xml")[..4000];
    assert!(matches!(
        parse_xml(Tool::Memcheck, truncated),
        Err(ParseError::Xml(_))
    ));
    assert!(matches!(
        parse_xml(Tool::Memcheck, "<html><body/></html>"),
        Err(ParseError::WrongRoot { found }) if found == "html"
    ));
    assert!(matches!(
        parse_xml(Tool::Memcheck, "<ComputeSanitizerOutput><record><level>Error</level></record></ComputeSanitizerOutput>"),
        Err(ParseError::MissingKind { index: 0 })
    ));
    let bad_line = "<ComputeSanitizerOutput><record><kind>Precise</kind>\
        <where><func>k</func><line>twelve</line></where></record></ComputeSanitizerOutput>";
    assert!(matches!(
        parse_xml(Tool::Memcheck, bad_line),
        Err(ParseError::BadNumber { index: 0, field, value }) if field == "line" && value == "twelve"
    ));
    let bad_thread = "<ComputeSanitizerOutput><record><kind>Precise</kind><who><threadIdx>\
        <x>1</x><y>-2</y><z>0</z></threadIdx></who></record></ComputeSanitizerOutput>";
    assert!(matches!(
        parse_xml(Tool::Memcheck, bad_thread),
        Err(ParseError::BadNumber { field, .. }) if field == "threadIdx.y"
    ));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.xml");
    assert!(matches!(
        read_xml(Tool::Memcheck, &missing),
        Err(ReadError::Missing { .. })
    ));
    let empty = dir.path().join("empty.xml");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        read_xml(Tool::Memcheck, &empty),
        Err(ReadError::Empty { .. })
    ));
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, truncated).unwrap();
    let error = read_xml(Tool::Memcheck, &broken).unwrap_err();
    assert!(matches!(
        &error,
        ReadError::Parse {
            source: ParseError::Xml(_),
            ..
        }
    ));
    assert!(error.to_string().contains("broken.xml"));
    // The empty report of a clean run is not an error.
    let clean = dir.path().join("clean.xml");
    std::fs::write(
        &clean,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ComputeSanitizerOutput/>\n",
    )
    .unwrap();
    assert!(read_xml(Tool::Memcheck, &clean).unwrap().is_empty());
}

#[test]
fn signatures_name_tool_error_and_site() {
    let api_only = parse_xml(
        Tool::Memcheck,
        "<ComputeSanitizerOutput><record><kind>Api</kind><what>\
         <text>Program hit CUDA_ERROR_INVALID_VALUE</text><api>cuMemcpyDtoH_v2</api>\
         <error>CUDA_ERROR_INVALID_VALUE</error></what></record>\
         <record><kind>Leak</kind><what><text>Leaked 8 bytes</text><size>8</size></what>\
         <hostStack><frame><func>cuMemAlloc_v2</func></frame></hostStack></record>\
         </ComputeSanitizerOutput>",
    )
    .unwrap();
    assert_eq!(
        signature_for(&api_only.records).as_deref(),
        Some("sanitizer:memcheck-cuda-error-invalid-value:cuMemcpyDtoH_v2")
    );
    assert_eq!(
        signature_for(&api_only.records[1..]).as_deref(),
        Some("sanitizer:memcheck-leak:cuMemAlloc_v2")
    );
    // An unknown kind (a racecheck hazard, say) is named from its sentence without numbers, and a
    // C++ kernel name loses the `:` a signature's site may not hold.
    let hazard = parse_xml(
        Tool::Racecheck,
        "<ComputeSanitizerOutput><record><kind>Hazard</kind><level>Error</level><what>\
         <text>Race reported between Write access at 0x460 and Read access at 0x7a0</text></what>\
         <where><func>ns::reduce(float*, int)</func><line>41</line></where></record>\
         </ComputeSanitizerOutput>",
    )
    .unwrap();
    assert_eq!(
        hazard.records[0].kind,
        RecordKind::Other("Hazard".to_string())
    );
    let signature = signature_for(&hazard.records).unwrap();
    assert_eq!(
        signature,
        "sanitizer:racecheck-race-reported-between-write-access-at:ns.reduce"
    );
    assert_eq!(signature.parse::<Signature>().unwrap().site, "ns.reduce");
    assert_eq!(signature_for(&[]), None);
}

#[test]
fn wrap_puts_tool_and_options_before_the_program() {
    let worker = WorkerCommand::new("/opt/forcefield/bin/forcefield")
        .arg("worker")
        .arg("--threads")
        .arg("0")
        .env("CUDA_VISIBLE_DEVICES", "1");
    let xml = Path::new("/var/findings/w1.xml");
    let wrapped = wrap_command(
        Path::new("/opt/cuda/bin/compute-sanitizer"),
        worker.clone(),
        Tool::Memcheck,
        xml,
    );
    assert_eq!(
        wrapped.program,
        PathBuf::from("/opt/cuda/bin/compute-sanitizer")
    );
    let args: Vec<String> = wrapped
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--tool",
            "memcheck",
            "--leak-check",
            "full",
            "--padding",
            "32",
            "--check-device-heap",
            "yes",
            "--report-api-errors",
            "all",
            "--check-cache-control",
            "--track-stream-ordered-races",
            "all",
            "--detect-missing-module-unload",
            "--error-exitcode",
            "86",
            "--xml",
            "--save",
            "/var/findings/w1.xml",
            "/opt/forcefield/bin/forcefield",
            "worker",
            "--threads",
            "0",
        ]
    );
    assert_eq!(wrapped.env, worker.env);

    for tool in Tool::ALL {
        let wrapped = wrap_command(Path::new("cs"), worker.clone(), tool, xml);
        let args: Vec<String> = wrapped
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..2], ["--tool".to_string(), tool.to_string()]);
        let options = &args[2..2 + tool.strict_options().len()];
        assert_eq!(options, tool.strict_options());
        let program_at = args
            .iter()
            .position(|a| a == "/opt/forcefield/bin/forcefield")
            .unwrap();
        assert_eq!(
            args[program_at - 5..program_at],
            [
                "--error-exitcode",
                "86",
                "--xml",
                "--save",
                "/var/findings/w1.xml"
            ]
        );
        assert_eq!(args[program_at + 1..], ["worker", "--threads", "0"]);
        assert_eq!(tool.name().parse::<Tool>().unwrap(), tool);
    }
    assert!("asan".parse::<Tool>().is_err());

    // Workers: one file per process, named by the pid compute-sanitizer substitutes for `%p`.
    let dir = Path::new("/var/findings");
    let pattern = worker_xml_pattern(dir, Tool::Racecheck);
    assert_eq!(pattern, dir.join("racecheck-worker-%p.xml"));
    assert_eq!(
        worker_xml_path(dir, Tool::Racecheck, 767),
        dir.join("racecheck-worker-767.xml")
    );
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_missing_tool_is_one_clear_line() {
    let empty = tempfile::tempdir().unwrap();
    let nowhere = empty.path().join("no-cuda-here");
    let error = find_tool_in(Some(empty.path().as_os_str()), None, &[&nowhere]).unwrap_err();
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.starts_with("compute-sanitizer not found"),
        "{message}"
    );
    assert!(message.contains("PATH"), "{message}");
    assert!(message.contains("no-cuda-here"), "{message}");
    assert!(!message.contains("CUDA_HOME"), "{message}");
    // With CUDA_HOME set it is searched, and says so.
    let home = tempfile::tempdir().unwrap();
    let error = find_tool_in(None, Some(home.path().as_os_str()), &[]).unwrap_err();
    assert!(error.to_string().contains("$CUDA_HOME/bin"));

    // A file that is not executable does not count; an executable one on PATH does, before
    // CUDA_HOME.
    let on_path = tempfile::tempdir().unwrap();
    std::fs::write(on_path.path().join(PROGRAM), "").unwrap();
    assert!(find_tool_in(Some(on_path.path().as_os_str()), None, &[]).is_err());
    std::fs::create_dir(home.path().join("bin")).unwrap();
    write_executable(&home.path().join("bin").join(PROGRAM), "#!/bin/sh\n");
    let found = find_tool_in(
        Some(on_path.path().as_os_str()),
        Some(home.path().as_os_str()),
        &[],
    )
    .unwrap();
    assert_eq!(found, home.path().join("bin").join(PROGRAM));
    write_executable(&on_path.path().join(PROGRAM), "#!/bin/sh\n");
    let found = find_tool_in(
        Some(on_path.path().as_os_str()),
        Some(home.path().as_os_str()),
        &[],
    )
    .unwrap();
    assert_eq!(found, on_path.path().join(PROGRAM));
}

/// A stand-in for compute-sanitizer: records its arguments, copies the real saved output of the
/// tool it was asked for to the `--save` file and its text to stdout, and exits as the real one
/// did (86 when the XML has records, else the program's 1).
fn fake_sanitizer(dir: &Path) -> PathBuf {
    let path = dir.join(PROGRAM);
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$@" > "{dir}/argv-$2"
tool="$2"
while [ "$1" != "--save" ]; do shift; done
cp "{fixtures}/$tool-sort-grow.xml" "$2"
cat "{fixtures}/$tool-sort-grow.txt"
if grep -q '<record>' "$2"; then exit 86; fi
exit 1
"#,
        dir = dir.display(),
        fixtures = fixture_dir().display(),
    );
    write_executable(&path, &script);
    path
}

#[test]
fn rerun_reports_what_each_tool_said() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = fake_sanitizer(dir.path());
    let case = dir.path().join("case.json");
    std::fs::write(&case, "{}").unwrap();
    let out = dir.path().join("sanitizer");
    let options = RerunOptions::new(&out);
    let reports = rerun_with(
        &sanitizer,
        Path::new("/opt/forcefield/bin/forcefield"),
        &case,
        BackendKind::Cuda,
        &[Tool::Memcheck, Tool::Racecheck, Tool::Initcheck],
        &options,
    )
    .unwrap();
    assert_eq!(reports.len(), 3);

    let argv = std::fs::read_to_string(dir.path().join("argv-memcheck")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    let program_at = argv
        .iter()
        .position(|a| *a == "/opt/forcefield/bin/forcefield")
        .unwrap();
    assert_eq!(
        argv[program_at + 1..],
        [
            "repro",
            "--in-process",
            "--backend",
            "cuda",
            case.to_str().unwrap()
        ]
    );
    assert_eq!(
        argv[program_at - 1],
        out.join("memcheck.xml").to_str().unwrap()
    );

    let memcheck = &reports[0];
    assert_eq!(memcheck.tool, Tool::Memcheck);
    assert_eq!(memcheck.case, case);
    assert_eq!(
        memcheck.status,
        RunStatus::Exited {
            code: SANITIZER_EXIT_CODE
        }
    );
    assert!(memcheck.flagged());
    assert_eq!(memcheck.errors, Some(67));
    assert_eq!(memcheck.counts.get("Precise"), Some(&20));
    assert_eq!(memcheck.counts.get("Leak"), Some(&3));
    assert_eq!(
        memcheck.signature.as_deref(),
        Some("sanitizer:memcheck-out-of-bounds-write:sort_scatter")
    );
    assert_eq!(
        memcheck.program_signature.as_deref(),
        Some("engine-error:sticky:step")
    );
    assert_eq!(memcheck.findings.len(), options.max_findings);
    assert_eq!(
        memcheck.findings[0],
        "Invalid __global__ write of size 4 bytes is out of bounds in sort_scatter at \
         layout.cu:196, thread (225,0,0) block (0,0,0), address 0x7f5dc0c02d90, 1 bytes after \
         the 400-byte allocation at 0x7f5dc0c02c00"
    );
    assert_eq!(memcheck.problem, None);
    assert_eq!(memcheck.xml, out.join("memcheck.xml"));
    assert!(std::fs::read_to_string(&memcheck.log)
        .unwrap()
        .contains("ERROR SUMMARY: 67 errors"));

    let racecheck = &reports[1];
    assert_eq!(racecheck.status, RunStatus::Exited { code: 1 });
    assert!(!racecheck.flagged());
    assert!(racecheck.counts.is_empty() && racecheck.findings.is_empty());
    assert_eq!(racecheck.signature, None);
    assert_eq!(
        racecheck.program_signature.as_deref(),
        Some("engine-error:step")
    );

    let initcheck = &reports[2];
    assert_eq!(
        initcheck.signature.as_deref(),
        Some("sanitizer:initcheck-uninitialized-read:integrate")
    );
    // Kernel reads first, then the API records.
    assert!(initcheck.findings[0].contains("in integrate at layout.cu:419"));
    assert!(initcheck.findings[3].contains("(host: cuMemcpyDtoDAsync_v2)"));

    let markdown = render_markdown(&reports);
    assert!(markdown.contains(
        "| memcheck | exit 86 (errors reported) | 67 | 5 Api, 3 Leak, 20 Precise | \
         `sanitizer:memcheck-out-of-bounds-write:sort_scatter` |"
    ));
    assert!(markdown.contains("| racecheck | exit 1 | 0 | none | - |"));
    assert!(
        markdown.contains("**memcheck** (the case's own signature: `engine-error:sticky:step`)")
    );
    assert!(markdown.contains("- ... 23 more records in"));
}

#[test]
fn a_run_without_xml_is_never_reported_clean() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = dir.path().join(PROGRAM);
    write_executable(&sanitizer, "#!/bin/sh\necho 'cannot attach' >&2\nexit 9\n");
    let out = dir.path().join("out");
    // A stale file from an earlier run must not pass for this run's output.
    std::fs::create_dir(&out).unwrap();
    std::fs::copy(
        fixture_dir().join("memcheck-clean.xml"),
        out.join("memcheck.xml"),
    )
    .unwrap();
    let reports = rerun_with(
        &sanitizer,
        Path::new("forcefield"),
        Path::new("case.json"),
        BackendKind::Cuda,
        &[Tool::Memcheck],
        &RerunOptions::new(&out),
    )
    .unwrap();
    let report = &reports[0];
    assert_eq!(report.status, RunStatus::Exited { code: 9 });
    assert!(report
        .problem
        .as_deref()
        .unwrap()
        .contains("no compute-sanitizer XML was written"));
    assert!(render_markdown(&reports).contains("| memcheck | exit 9 | ? | no XML | - |"));

    let missing = rerun_with(
        &dir.path().join("not-there"),
        Path::new("forcefield"),
        Path::new("case.json"),
        BackendKind::Cuda,
        &[Tool::Synccheck],
        &RerunOptions::new(&out),
    )
    .unwrap();
    assert!(
        matches!(&missing[0].status, RunStatus::NotStarted { message } if message.contains("not-there"))
    );
}

/// The state letter of process `pid` in /proc, or `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

#[test]
fn a_run_past_its_timeout_is_killed_with_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let sanitizer = dir.path().join(PROGRAM);
    let pid_file = dir.path().join("sleeper.pid");
    write_executable(
        &sanitizer,
        &format!(
            "#!/bin/sh\ntrap '' TERM\nsleep 600 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    );
    let mut options = RerunOptions::new(dir.path().join("out"));
    options.timeout = Duration::from_secs(1);
    let reports = rerun_with(
        &sanitizer,
        Path::new("forcefield"),
        Path::new("case.json"),
        BackendKind::Cuda,
        &[Tool::Racecheck],
        &options,
    )
    .unwrap();
    assert_eq!(reports[0].status, RunStatus::TimedOut { after_ms: 1000 });
    assert!(reports[0].problem.is_some());
    // The grandchild got the group's SIGKILL: gone, or a zombie waiting for its reaper.
    let Ok(sleeper) = std::fs::read_to_string(&pid_file) else {
        // The script was killed before it started its child: nothing else to check.
        return;
    };
    let sleeper: u32 = sleeper.trim().parse().unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    while matches!(process_state(sleeper), Some(state) if state != 'Z') && Instant::now() < give_up
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        matches!(process_state(sleeper), None | Some('Z')),
        "the sleeper survived: {:?}",
        process_state(sleeper)
    );
}

/// A case that grows the graph past its capacity and steps, optionally with the planted
/// `sort-count-unclamped` fault (the seed bug: the sort runs over more items than its scratch
/// buffers hold). It grows past one sort tile (4,096 items, which `sort_small` sorts in one
/// block), so that the step after the growth runs the multi-block sort, `sort_scatter`, and every
/// tool sees both sorts on the clean engine.
fn growth_case(faults: &[&str]) -> String {
    serde_json::json!({
        "format": "forcefield-case/1",
        "seed": 1,
        "backend": "cuda",
        "faults": faults,
        "graph": { "num_nodes": 100, "edges": [] },
        "ops": [
            { "op": "step", "count": 1 },
            { "op": "add_nodes", "count": 4900 },
            { "op": "step", "count": 1 }
        ]
    })
    .to_string()
}

/// On a machine with a CUDA device and compute-sanitizer, the real thing: memcheck sees the
/// planted fault's out-of-bounds writes in the sort, and no tool reports anything on the clean
/// engine, whose case runs both sorts (one block up to 4,096 items, `sort_scatter` after the growth).
/// `FORCEFIELD_BIN` names the `forcefield` program to run (default: this build's). Elsewhere it
/// prints a skip line and passes.
#[test]
fn memcheck_on_the_device_sees_the_planted_fault_and_nothing_else() {
    let Ok(sanitizer) = forcefield_harness::sanitizers::compute_sanitizer::find_tool() else {
        println!("skipped: no compute-sanitizer");
        return;
    };
    if !forcefield::CudaBackend::is_available() {
        println!("skipped: no CUDA device");
        return;
    }
    let program = std::env::var_os("FORCEFIELD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_forcefield")));
    let dir = tempfile::tempdir().unwrap();
    let mut markdown = String::new();
    for (name, faults) in [
        ("sort-grow", &["sort-count-unclamped"][..]),
        ("clean", &[][..]),
    ] {
        let case = dir.path().join(format!("{name}.json"));
        std::fs::write(&case, growth_case(faults)).unwrap();
        let mut options = RerunOptions::new(dir.path().join(name));
        options.timeout = Duration::from_secs(240);
        let reports = rerun_with(
            &sanitizer,
            &program,
            &case,
            BackendKind::Cuda,
            &Tool::ALL,
            &options,
        )
        .unwrap();
        markdown.push_str(&format!("## {name}\n\n{}\n", render_markdown(&reports)));
        let memcheck = &reports[0];
        assert!(memcheck.problem.is_none(), "{markdown}");
        if faults.is_empty() {
            // Every tool, with every strict option, is silent on the clean engine.
            for report in &reports {
                assert_eq!(report.status, RunStatus::Exited { code: 0 }, "{markdown}");
                assert!(report.problem.is_none(), "{markdown}");
                assert!(report.counts.is_empty(), "{markdown}");
            }
        } else {
            assert_eq!(
                memcheck.status,
                RunStatus::Exited {
                    code: SANITIZER_EXIT_CODE
                },
                "{markdown}"
            );
            // The first out-of-bounds write is the sort's: a small sort of the case (one block,
            // `sort_small`, whose scatter is the inlined `scatter_tile` the report names) or the
            // multi-block one (`sort_scatter`), whichever meets the stale buffers first.
            let signature = memcheck.signature.as_deref().unwrap_or_default();
            assert!(
                [
                    "sanitizer:memcheck-out-of-bounds-write:scatter_tile",
                    "sanitizer:memcheck-out-of-bounds-write:sort_small",
                    "sanitizer:memcheck-out-of-bounds-write:sort_scatter",
                ]
                .contains(&signature),
                "{markdown}"
            );
        }
    }
    if let Some(out) = std::env::var_os("FORCEFIELD_SANITIZER_REPORT") {
        std::fs::write(out, &markdown).unwrap();
    }
    println!("{markdown}");
}
