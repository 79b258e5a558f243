/*!
Run-time compilation of the kernels in `kernels/` with NVRTC, cached per option set.

The sources are embedded in the binary. They are compiled as one program: `common.cuh` first, then
each `.cu` file with its `#include "common.cuh"` line blanked (NVRTC is given no include path) and a
`#line` directive in front, so that `-lineinfo` and compiler messages name the original file and
line. The PTX of each option set is compiled once per process, and kept on disk between processes
(see [`cache_dir`]): NVRTC takes about a second, which every new worker process would otherwise pay
(on CUDA a lost context costs a worker, so injected campaigns start many).
*/

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{CompileError, CompileOptions};

use super::driver::{guarded, nvrtc_present};
use crate::error::{BackendError, BackendOp};

/// The kernel sources, by file name, in compilation order.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("layout.cu", include_str!("../../../kernels/layout.cu")),
    ("sssp.cu", include_str!("../../../kernels/sssp.cu")),
    ("inject.cu", include_str!("../../../kernels/inject.cu")),
    ("checked.cu", include_str!("../../../kernels/checked.cu")),
];

/// The options every build uses: line tables for compute-sanitizer and profilers; no fused
/// multiply-add, so that each `a * b + c` rounds twice as in Rust and results match the CPU backend
/// (IEEE division and square root are NVRTC's defaults, fast math is off); every function a device
/// function, so that a kernel may hold a lambda (the force pass's scan, compiled once a stencil).
pub fn default_options(compute_capability: (i32, i32)) -> Vec<String> {
    let (major, minor) = compute_capability;
    vec![
        "-lineinfo".to_string(),
        "--fmad=false".to_string(),
        "-default-device".to_string(),
        format!("--gpu-architecture=compute_{major}{minor}"),
    ]
}

/// The options of the checked mode's build: the default ones and `FF_CHECKED`, which makes the
/// kernels' `LD`/`ST` accesses bounds-checked and compiles `verify_canaries` (see `checked.rs`).
pub fn checked_options(compute_capability: (i32, i32)) -> Vec<String> {
    let mut options = default_options(compute_capability);
    options.push("-DFF_CHECKED".to_string());
    options
}

/// One translation unit of all sources.
pub fn program_source() -> String {
    let mut out = String::new();
    for (name, text) in SOURCES {
        out.push_str(&format!("#line 1 \"{name}\"\n"));
        for line in text.lines() {
            if line.trim_start().starts_with("#include \"common.cuh\"") {
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// NUL-terminated PTX.
pub type Ptx = Arc<Vec<u8>>;

/// The PTX of the kernels compiled with `options`, compiled on first use.
pub fn compiled_ptx(options: &[String]) -> Result<Ptx, BackendError> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<String>, Ptx>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A panic while compiling cannot leave the map half-updated, so a poisoned lock is usable.
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ptx) = map.get(options) {
        return Ok(ptx.clone());
    }
    // Compiling under the lock keeps two threads from compiling the same set; nothing in the
    // compiler takes this lock again.
    let source = program_source();
    let key = cache_key(&source, options, &nvrtc_version());
    let ptx = cached_or_compiled(cache_dir().as_deref(), &key, || {
        compile_source(&source, options)
    })?;
    map.insert(options.to_vec(), ptx.clone());
    Ok(ptx)
}

/// Where compiled PTX is kept between processes: `$FORCEFIELD_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/forcefield`, else `$HOME/.cache/forcefield`; `None` (compile every time) when
/// none is set or `FORCEFIELD_CACHE_DIR` is empty.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = std::env::var_os("FORCEFIELD_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    var("XDG_CACHE_HOME")
        .map(|d| PathBuf::from(d).join("forcefield"))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache").join("forcefield")))
}

/// The NVRTC version as `major.minor` ("?" when it cannot be asked), part of the cache key.
fn nvrtc_version() -> String {
    if !nvrtc_present() {
        return "?".to_string();
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; the call writes two ints.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        format!("{major}.{minor}")
    } else {
        "?".to_string()
    }
}

/// The cache file name of PTX built from `source` with `options` by NVRTC `version`: an FNV-1a
/// hash of all three (stable across builds and Rust versions, unlike `std`'s hasher), so that a
/// changed kernel, option or compiler never reads another's PTX.
pub fn cache_key(source: &str, options: &[String], version: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [source.as_bytes(), version.as_bytes()]
        .into_iter()
        .chain(options.iter().map(|o| o.as_bytes()));
    for part in parts {
        // The length first, so that moving bytes between parts changes the key.
        for b in (part.len() as u64).to_le_bytes().iter().chain(part) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("kernels-{h:016x}.ptx")
}

/// The PTX in `dir/key` when it is there and whole (NUL-terminated, as written), else what
/// `compile` gives, written there for the next process. The cache never makes a build fail: an
/// unreadable or unwritable cache is the same as none.
pub fn cached_or_compiled(
    dir: Option<&Path>,
    key: &str,
    compile: impl FnOnce() -> Result<Ptx, BackendError>,
) -> Result<Ptx, BackendError> {
    let Some(dir) = dir else {
        return compile();
    };
    let file = dir.join(key);
    if let Ok(bytes) = std::fs::read(&file) {
        if bytes.len() > 1 && bytes.last() == Some(&0) && !bytes[..bytes.len() - 1].contains(&0) {
            return Ok(Arc::new(bytes));
        }
    }
    let ptx = compile()?;
    let _ = write_atomically(dir, &file, &ptx);
    Ok(ptx)
}

/// Writes `bytes` to `file` through a temporary file in `dir` and a rename, so that a process
/// reading the cache sees the whole PTX or none (processes compile at the same time).
fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("ptx"),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Compiles `source` (uncached).
fn compile_source(source: &str, options: &[String]) -> Result<Ptx, BackendError> {
    if !nvrtc_present() {
        return Err(BackendError::new(
            BackendOp::Init,
            "the NVRTC library (libnvrtc) was not found",
        ));
    }
    guarded("compiling the kernels", || {
        let opts = CompileOptions {
            options: options.to_vec(),
            name: Some("forcefield_kernels.cu".to_string()),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, opts)
            .map_err(|e| BackendError::new(BackendOp::Init, compile_error_message(&e, options)))?;
        let mut bytes = ptx
            .as_bytes()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::new(BackendOp::Init, "NVRTC returned no PTX image"))?;
        if bytes.last() != Some(&0) {
            bytes.push(0);
        }
        Ok(Arc::new(bytes))
    })
}

fn compile_error_message(e: &CompileError, options: &[String]) -> String {
    match e {
        CompileError::CompileError { nvrtc, log, .. } => format!(
            "NVRTC failed to compile the kernels ({nvrtc:?}) with options {options:?}; compiler log:\n{}",
            log.to_string_lossy()
        ),
        other => format!("NVRTC failed ({other:?}) with options {options:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_source_keeps_line_numbers_and_drops_includes() {
        let src = program_source();
        assert!(!src.contains("#include \"common.cuh\""));
        for (name, _) in SOURCES {
            assert!(src.contains(&format!("#line 1 \"{name}\"")), "{name}");
        }
        // Every line of every file is present, blanked includes counted, so `#line` stays true.
        let expected: usize = SOURCES.iter().map(|(_, t)| t.lines().count() + 1).sum();
        assert_eq!(src.lines().count(), expected);
    }

    #[test]
    fn every_launched_kernel_is_defined_with_c_linkage() {
        let src = program_source();
        for name in super::super::launch::KERNEL_NAMES
            .iter()
            .chain(super::super::checked::CHECKED_KERNEL_NAMES)
        {
            let decl = format!("extern \"C\" __global__ void {name}(");
            assert!(
                src.contains(&decl),
                "kernel `{name}` is not defined as {decl}"
            );
        }
    }

    fn fake_ptx(text: &str) -> Ptx {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        Arc::new(bytes)
    }

    #[test]
    fn the_disk_cache_serves_the_second_process_and_recompiles_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = cache_key("src", &["-a".to_string()], "13.0");
        let mut compiled = 0;
        let mut get = |dir: Option<&Path>| {
            cached_or_compiled(dir, &key, || {
                compiled += 1;
                Ok(fake_ptx(".entry k"))
            })
            .unwrap()
        };
        let first = get(Some(dir.path()));
        let second = get(Some(dir.path()));
        assert_eq!(first, second);
        // A cut-short file (no NUL at the end) is compiled again and replaced.
        std::fs::write(dir.path().join(&key), b".entry").unwrap();
        let third = get(Some(dir.path()));
        assert_eq!(third, first);
        // No cache directory: compile every time; an unwritable one: compile, still succeed.
        get(None);
        let blocked = dir.path().join("file-not-dir");
        std::fs::write(&blocked, b"x").unwrap();
        assert_eq!(get(Some(&blocked)), first);
        assert_eq!(compiled, 4);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn the_cache_key_changes_with_source_options_and_compiler() {
        let o = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = cache_key("src", &o(&["-a", "-b"]), "13.0");
        assert_eq!(base, cache_key("src", &o(&["-a", "-b"]), "13.0"));
        assert_ne!(base, cache_key("src2", &o(&["-a", "-b"]), "13.0"));
        assert_ne!(base, cache_key("src", &o(&["-a"]), "13.0"));
        assert_ne!(base, cache_key("src", &o(&["-ab"]), "13.0"));
        assert_ne!(base, cache_key("src", &o(&["-a", "-b"]), "13.1"));
    }

    #[test]
    fn a_compile_error_carries_the_compiler_log() {
        if !nvrtc_present() {
            println!("skipped: no NVRTC");
            return;
        }
        let src =
            "#line 1 \"broken.cu\"\nextern \"C\" __global__ void k() { undeclared_name = 1; }\n";
        let e = compile_source(src, &["-lineinfo".to_string()]).unwrap_err();
        assert_eq!(e.op, BackendOp::Init);
        assert!(e.message.contains("compiler log"), "{}", e.message);
        assert!(e.message.contains("undeclared_name"), "{}", e.message);
        assert!(e.message.contains("broken.cu"), "{}", e.message);
    }

    #[test]
    fn the_kernels_compile_when_nvrtc_is_present() {
        if !nvrtc_present() {
            println!("skipped: no NVRTC");
            return;
        }
        let ptx = compiled_ptx(&default_options((9, 0))).unwrap();
        let text = String::from_utf8_lossy(&ptx);
        for name in super::super::launch::KERNEL_NAMES {
            assert!(
                text.contains(&format!(".entry {name}(")),
                "{name} missing from the PTX"
            );
        }
        // Contraction is off: no fused multiply-add in the arithmetic kernels.
        assert!(
            !text.contains("fma.rn.f32"),
            "fused multiply-add in the PTX"
        );
        // The second request is served from the cache: the very same allocation.
        let again = compiled_ptx(&default_options((9, 0))).unwrap();
        assert!(Arc::ptr_eq(&ptx, &again));
        assert!(
            !text.contains("verify_canaries"),
            "checked code in the default build"
        );

        // The checked build: every kernel, the canary check, the span table in constant memory.
        let checked = compiled_ptx(&checked_options((9, 0))).unwrap();
        let text = String::from_utf8_lossy(&checked);
        for name in super::super::launch::KERNEL_NAMES
            .iter()
            .chain(super::super::checked::CHECKED_KERNEL_NAMES)
        {
            assert!(
                text.contains(&format!(".entry {name}(")),
                "{name} missing from the checked PTX"
            );
        }
        assert!(
            text.contains(".const .align 8 .b8 ff_spans[1536]"),
            "ff_spans"
        );
        assert!(
            !text.contains("fma.rn.f32"),
            "fused multiply-add in the checked PTX"
        );
    }

    #[test]
    fn default_options_disable_contraction() {
        let o = default_options((9, 0));
        assert!(o.contains(&"--fmad=false".to_string()));
        assert!(o.contains(&"-lineinfo".to_string()));
        assert!(o.contains(&"--gpu-architecture=compute_90".to_string()));
        assert!(!o.iter().any(|s| s.contains("fast")));
        let c = checked_options((9, 0));
        assert_eq!(c[..o.len()], o[..]);
        assert_eq!(c.last().map(String::as_str), Some("-DFF_CHECKED"));
    }
}
