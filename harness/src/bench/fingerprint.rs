/*!
Machine and build fingerprints of a benchmark entry.

A [`Fingerprint`] names the machine a run measured: CPU model and logical cores, the GPU (name,
NVIDIA driver, CUDA driver version) or `none`, and the compiler. Two entries are comparable only
when their fingerprints are equal; [`Fingerprint::differences`] says why they are not. A [`Build`]
names what was measured: the commit, whether the tree was dirty (and a hash of the diff, so two
dirty trees are told apart), the planted faults switched on through `FORCEFIELD_FAULTS`, a free
label, and the benchmark executables with their content hashes. Builds differ between a baseline
and a current entry by design; equal builds are what calibration calls an A/A pair.

Detection never fails: what cannot be found is written as `unknown` (or `none` for an absent GPU),
so a run on a bare machine still records.
*/

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The value of a field that could not be determined.
pub const UNKNOWN: &str = "unknown";
/// The value of the GPU fields on a machine without a usable CUDA device.
pub const NONE: &str = "none";

/// The GPU part of a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuFingerprint {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`; `none` without a device.
    pub name: String,
    /// NVIDIA kernel driver version, e.g. `550.54.15`.
    pub driver: String,
    /// CUDA version the driver supports, e.g. `12.8`.
    pub cuda: String,
    /// The backend's full one-line description (not compared).
    #[serde(default)]
    pub description: String,
}

impl GpuFingerprint {
    /// The fingerprint of a machine without a usable GPU.
    pub fn none() -> Self {
        GpuFingerprint {
            name: NONE.to_string(),
            driver: NONE.to_string(),
            cuda: NONE.to_string(),
            description: String::new(),
        }
    }
}

/// What identifies the machine and toolchain of a run. Entries compare only when equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CPU model name.
    pub cpu_model: String,
    /// Logical cores available to the process.
    pub cpu_cores: usize,
    /// The GPU, or `none`.
    pub gpu: GpuFingerprint,
    /// The compiler that built the benchmarks, e.g. `rustc 1.85.0 (4d91de4e4 2025-02-17)`.
    pub rustc: String,
}

impl Fingerprint {
    /// The reasons `self` and `other` are not comparable; empty when they are.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: &str, b: &str| {
            if a != b {
                out.push(format!("{name} `{a}` vs `{b}`"));
            }
        };
        field("CPU model", &self.cpu_model, &other.cpu_model);
        field(
            "CPU cores",
            &self.cpu_cores.to_string(),
            &other.cpu_cores.to_string(),
        );
        field("GPU", &self.gpu.name, &other.gpu.name);
        field("GPU driver", &self.gpu.driver, &other.gpu.driver);
        field("CUDA", &self.gpu.cuda, &other.gpu.cuda);
        field("rustc", &self.rustc, &other.rustc);
        out
    }

    /// A one-line summary for tables and chart titles.
    pub fn summary(&self) -> String {
        let gpu = if self.gpu.name == NONE {
            "no GPU".to_string()
        } else {
            format!(
                "{} (driver {}, CUDA {})",
                self.gpu.name, self.gpu.driver, self.gpu.cuda
            )
        };
        format!(
            "{} x{}, {gpu}, {}",
            self.cpu_model, self.cpu_cores, self.rustc
        )
    }
}

/// A benchmark executable an entry was measured with, kept so that unsure results can be re-run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executable {
    /// Short name (the bench target, e.g. `step`).
    pub name: String,
    /// Where it was when recorded.
    pub path: String,
    /// Content hash (64-bit FNV-1a, hex).
    pub hash: String,
    /// Path of the kept copy, relative to the history file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
    /// The benchmark ids it runs (from `--list`).
    #[serde(default)]
    pub benchmarks: Vec<String>,
}

/// What was measured: source, faults and executables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// The commit of the working tree (`unknown` outside a repository).
    pub commit: String,
    /// Whether tracked files differed from the commit.
    pub dirty: bool,
    /// Hash of `git diff HEAD` when dirty, so that two dirty trees are told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_hash: Option<String>,
    /// Planted faults named by `FORCEFIELD_FAULTS` when the entry was recorded.
    #[serde(default)]
    pub faults: Vec<String>,
    /// A free label given at record time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The benchmark executables.
    #[serde(default)]
    pub executables: Vec<Executable>,
}

impl Build {
    /// What makes two entries the same build: the planted faults and the executables' contents
    /// when executables were recorded (they are the build; the tree may have moved on since they
    /// were compiled), otherwise the commit and the diff of the tree. The label is a name, not an
    /// identity.
    pub fn identity(&self) -> String {
        let mut exes: Vec<&str> = self.executables.iter().map(|e| e.hash.as_str()).collect();
        exes.sort_unstable();
        let source = if exes.is_empty() {
            format!(
                "{}{}{}",
                self.commit,
                if self.dirty { "+dirty:" } else { "" },
                self.diff_hash.as_deref().unwrap_or("")
            )
        } else {
            format!("exes={}", exes.join(","))
        };
        format!("{source} faults={}", self.faults.join(","))
    }

    /// The commit, shortened, with `+dirty` when the tree was dirty.
    pub fn short_commit(&self) -> String {
        let short: String = self.commit.chars().take(10).collect();
        if self.dirty {
            format!("{short}+dirty")
        } else {
            short
        }
    }
}

/// 64-bit FNV-1a of `bytes`, as 16 hex digits.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Which GPU detection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuProbe {
    /// Open CUDA device 0 when one is usable.
    Auto,
    /// Write `none` without probing.
    Skip,
}

/// Detects the fingerprint of this machine.
pub fn detect(gpu: GpuProbe) -> Fingerprint {
    Fingerprint {
        cpu_model: cpu_model().unwrap_or_else(|| UNKNOWN.to_string()),
        cpu_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        gpu: match gpu {
            GpuProbe::Auto => detect_gpu(),
            GpuProbe::Skip => GpuFingerprint::none(),
        },
        rustc: rustc_version(),
    }
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_model(&text)
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// The GPU through the engine's CUDA backend: its description gives the name and CUDA version, and
/// the kernel module's version file gives the driver.
fn detect_gpu() -> GpuFingerprint {
    if !forcefield::CudaBackend::is_available() {
        return GpuFingerprint::none();
    }
    let description = match forcefield::CudaBackend::new(0) {
        Ok(backend) => forcefield::Backend::device_description(&backend),
        Err(e) => {
            eprintln!("bench: a CUDA device is present but cannot be opened: {e}");
            return GpuFingerprint {
                name: UNKNOWN.to_string(),
                driver: nvidia_driver().unwrap_or_else(|| UNKNOWN.to_string()),
                cuda: UNKNOWN.to_string(),
                description: String::new(),
            };
        }
    };
    let (name, cuda) = parse_cuda_description(&description);
    GpuFingerprint {
        name: name.unwrap_or_else(|| UNKNOWN.to_string()),
        driver: nvidia_driver().unwrap_or_else(|| UNKNOWN.to_string()),
        cuda: cuda.unwrap_or_else(|| UNKNOWN.to_string()),
        description,
    }
}

/// Name and CUDA version from the CUDA backend's description,
/// `cuda device 0: NAME (sm_90, 79.1 GiB, CUDA driver 12.8)`.
pub fn parse_cuda_description(description: &str) -> (Option<String>, Option<String>) {
    let name = description
        .split_once(": ")
        .map(|(_, rest)| {
            rest.split(" (sm_")
                .next()
                .unwrap_or(rest)
                .trim()
                .to_string()
        })
        .filter(|n| !n.is_empty());
    let cuda = description
        .split_once("CUDA driver ")
        .map(|(_, rest)| rest.trim_end_matches(')').trim().to_string())
        .filter(|v| !v.is_empty() && v != "?");
    (name, cuda)
}

/// The NVIDIA driver version: the kernel module's version file, else `nvidia-smi` (containers
/// often lack the file).
fn nvidia_driver() -> Option<String> {
    if let Some(v) = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|text| parse_nvidia_driver(&text))
    {
        return Some(v);
    }
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=driver_version", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.lines().next()?.trim();
    (out.status.success() && v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .then(|| v.to_string())
}

/// The driver version from `/proc/driver/nvidia/version`
/// (`NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 ...`).
pub fn parse_nvidia_driver(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    let after = line.split("Kernel Module").nth(1)?;
    after
        .split_whitespace()
        .next()
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

/// The compiler that built this program, read from the `rustc version` note the toolchain leaves in
/// every binary (the benchmarks are built by the same toolchain), else `rustc --version`.
fn rustc_version() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| std::fs::read(exe).ok())
        .and_then(|bytes| embedded_rustc_version(&bytes))
        .or_else(|| {
            let out = Command::new("rustc").arg("--version").output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| UNKNOWN.to_string())
}

/// `rustc X.Y.Z (hash date)` from the `rustc version X.Y.Z (hash date)` note in a binary.
pub fn embedded_rustc_version(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"rustc version ";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &bytes[at + NEEDLE.len()..];
    let end = rest
        .iter()
        .position(|&b| b == 0 || b == b'\n' || !(0x20..0x7f).contains(&b))
        .unwrap_or(rest.len())
        .min(120);
    let version = std::str::from_utf8(&rest[..end]).ok()?.trim();
    (!version.is_empty()).then(|| format!("rustc {version}"))
}

/// The build of the working tree at `dir` (a repository or inside one), with `faults`, `label` and
/// no executables. Git is only read (`--no-optional-locks`, so not even the index is refreshed).
pub fn detect_build(dir: &Path, faults: Vec<String>, label: Option<String>) -> Build {
    let git = |args: &[&str]| -> Option<Vec<u8>> {
        let out = Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    };
    let commit = git(&["rev-parse", "HEAD"])
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
        .filter(|c| !c.is_empty());
    let (dirty, diff_hash) = match &commit {
        Some(_) => match git(&["diff", "HEAD", "--no-ext-diff", "--binary"]) {
            Some(diff) if !diff.is_empty() => (true, Some(fnv1a_hex(&diff))),
            Some(_) => (false, None),
            None => (true, None),
        },
        None => (false, None),
    };
    Build {
        commit: commit.unwrap_or_else(|| UNKNOWN.to_string()),
        dirty,
        diff_hash,
        faults,
        label,
        executables: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Fingerprint {
        Fingerprint {
            cpu_model: "AMD EPYC 7B13".into(),
            cpu_cores: 2,
            gpu: GpuFingerprint::none(),
            rustc: "rustc 1.85.0".into(),
        }
    }

    #[test]
    fn differences_name_every_field_that_differs() {
        let a = machine();
        assert!(a.differences(&a.clone()).is_empty());
        let mut b = a.clone();
        b.cpu_cores = 4;
        b.gpu.name = "NVIDIA H100".into();
        let d = a.differences(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("CPU cores `2` vs `4`"));
        assert!(d[1].contains("GPU `none` vs `NVIDIA H100`"));
    }

    #[test]
    fn parses_the_sources_it_reads() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  7B13 64-Core Processor\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("AMD EPYC 7B13 64-Core Processor")
        );
        let (name, cuda) = parse_cuda_description(
            "cuda device 0: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, CUDA driver 12.8)",
        );
        assert_eq!(name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(cuda.as_deref(), Some("12.8"));
        assert_eq!(
            parse_nvidia_driver("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 22:23:56 UTC 2024\nGCC version: gcc 12\n").as_deref(),
            Some("550.54.15")
        );
        let binary =
            b"\x00\x01GCC: (Debian 12.2.0)\x00rustc version 1.85.0 (4d91de4e4 2025-02-17)\x00more";
        assert_eq!(
            embedded_rustc_version(binary).as_deref(),
            Some("rustc 1.85.0 (4d91de4e4 2025-02-17)")
        );
        assert_eq!(embedded_rustc_version(b"nothing here"), None);
    }

    #[test]
    fn build_identity_ignores_the_label_and_executable_order() {
        let exe = |hash: &str| Executable {
            name: "step".into(),
            path: "x".into(),
            hash: hash.into(),
            stored: None,
            benchmarks: vec![],
        };
        let a = Build {
            commit: "abc".into(),
            dirty: false,
            diff_hash: None,
            faults: vec![],
            label: Some("one".into()),
            executables: vec![exe("1"), exe("2")],
        };
        let mut b = a.clone();
        b.label = Some("two".into());
        b.executables.reverse();
        assert_eq!(a.identity(), b.identity());
        // With executables recorded, they (not the tree's commit) identify the build.
        b.commit = "def".into();
        assert_eq!(a.identity(), b.identity());
        b.executables[0].hash = "3".into();
        assert_ne!(a.identity(), b.identity());
        b.executables = a.executables.clone();
        b.faults = vec!["slow-force-pass".into()];
        assert_ne!(a.identity(), b.identity());
        let (mut c, mut d) = (a.clone(), a.clone());
        (c.executables, d.executables) = (vec![], vec![]);
        d.commit = "def".into();
        assert_ne!(c.identity(), d.identity());
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
    }
}
