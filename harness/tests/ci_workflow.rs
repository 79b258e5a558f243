/*!
The CI examples in `.github/workflows/` stay true: every workflow file there parses as YAML with
jobs and steps, and every `forcefield <subcommand> --flag ...` its `run:` steps name is a
subcommand of this build's `forcefield --help`, with flags its `forcefield <subcommand> --help`
lists. The workflows are not run here; this is what keeps them from rotting when the CLI changes.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows")
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_forcefield"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run forcefield");
    assert!(out.status.success(), "forcefield {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands `forcefield --help` lists under `Commands:`.
fn subcommands() -> Vec<String> {
    let text = help(&[]);
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Whether `help` names `flag` as a whole word.
fn names_flag(help: &str, flag: &str) -> bool {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|word| word == flag)
}

/// Every `run:` script of every step of every job, with the job's name.
fn run_scripts(workflow: &Value) -> Vec<(String, String)> {
    let jobs = workflow
        .get("jobs")
        .and_then(Value::as_mapping)
        .expect("a workflow has a `jobs` mapping");
    assert!(!jobs.is_empty(), "a workflow has jobs");
    let mut scripts = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or("?").to_string();
        assert!(job.get("runs-on").is_some(), "job {name} has no runs-on");
        let steps = job
            .get("steps")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("job {name} has no steps"));
        for step in steps {
            assert!(
                step.get("run").is_some() || step.get("uses").is_some(),
                "a step of job {name} neither runs nor uses anything"
            );
            if let Some(script) = step.get("run").and_then(Value::as_str) {
                scripts.push((name.clone(), script.to_string()));
            }
        }
    }
    scripts
}

/// Each `forcefield` command in a script: its subcommand and the flags after it, up to the end of
/// the shell command (a line end, `;`, `&&`, `||` or `|`).
fn forcefield_commands(script: &str) -> Vec<(String, Vec<String>)> {
    let mut commands = Vec::new();
    for line in script.lines() {
        for part in line.split(['|', ';', '&']) {
            let words: Vec<&str> = part.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "forcefield") else {
                continue;
            };
            let Some(sub) = words.get(at + 1) else {
                continue;
            };
            let flags = words[at + 2..]
                .iter()
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split('=').next().unwrap_or(w).to_string())
                .collect();
            commands.push((sub.to_string(), flags));
        }
    }
    commands
}

#[test]
fn every_workflow_parses_and_names_only_real_commands_and_flags() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workflows_dir())
        .expect("the .github/workflows folder")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow files");
    let known = subcommands();
    assert!(known.contains(&"ci".to_string()), "parsed {known:?}");
    let mut checked = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let workflow: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        for (job, script) in run_scripts(&workflow) {
            for (sub, flags) in forcefield_commands(&script) {
                let at = format!("{} job {job}", file.display());
                assert!(
                    known.contains(&sub),
                    "{at}: `forcefield {sub}` is not a subcommand ({known:?})"
                );
                let sub_help = help(&[&sub]);
                for flag in &flags {
                    assert!(
                        names_flag(&sub_help, flag),
                        "{at}: `forcefield {sub}` has no flag {flag}"
                    );
                }
                checked.push(sub);
            }
        }
    }
    // The example in this repository runs the gate, a sharded campaign and the merge.
    for needed in ["ci", "run", "merge"] {
        assert!(
            checked.iter().any(|s| s == needed),
            "no `forcefield {needed}` in {files:?}"
        );
    }
}

#[test]
fn the_command_scanner_finds_commands_and_flags() {
    let found = forcefield_commands("cargo install --path harness\nforcefield run --seed 1 --shard=0/4 && forcefield merge a b --out m.json");
    assert_eq!(
        found,
        vec![
            (
                "run".to_string(),
                vec!["--seed".to_string(), "--shard".to_string()]
            ),
            ("merge".to_string(), vec!["--out".to_string()]),
        ]
    );
    assert!(names_flag("  --shard <SHARD>  Run only", "--shard"));
    assert!(!names_flag("  --shards <N>", "--shard"));
}
