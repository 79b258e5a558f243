/*!
Writing what users keep: every artifact (reports, cases, pictures) is written to a temporary file in
the same directory and renamed into place, so a reader sees the old file or the new one, never half,
even when the process is interrupted or the disk fills up.

Files get the permissions of any file the user creates (`0666` less the umask: `0644` by default),
so that a CI artifact uploader running as another user can read them; the rename and the directory
entry are flushed to disk before a write returns, so a finding written is a finding kept, even
through a power cut.
*/

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The mode every artifact is created with, before the umask.
const FILE_MODE: u32 = 0o666;

/// A new temporary file in `dir` with the permissions of an ordinary new file (`0666` less the
/// umask), for writing and then renaming into place. `tempfile` alone creates files `0600`.
pub fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".tmp")
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
}

/// The directory `path` is written into (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Flushes `dir`'s entries (a rename into it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What [`write_atomically`] does when the directory it writes into does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingDirs {
    /// Create it and its parents: artifacts go into directories the tool lays out itself.
    Create,
    /// Fail (`NotFound`, "no directory …"): an output path the user typed whose directory is
    /// missing is a typo, not a request for a new directory.
    Refuse,
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory (so the
/// rename cannot cross file systems), flushed to disk, then renamed over `path`, and the
/// directory flushed. `missing` says what happens when that directory does not exist.
pub fn write_atomically(path: &Path, bytes: &[u8], missing: MissingDirs) -> std::io::Result<()> {
    let dir = parent_dir(path);
    match missing {
        MissingDirs::Create => std::fs::create_dir_all(dir)?,
        MissingDirs::Refuse if !dir.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            ));
        }
        MissingDirs::Refuse => {}
    }
    let mut tmp = temp_file_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomically(path, text.as_bytes(), MissingDirs::Create)
}

/// Checks, before any work, that a file can later be written at `path` by [`write_atomically`]:
/// `path` is not a directory, and a file can be created (and is removed again) next to it.
/// Missing parent directories are created, as the write would.
pub fn check_file_writable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    check_dir_writable(parent_dir(path))
}

/// Checks, before any work, that files can be written in directory `dir` (created if missing):
/// a temporary file is created there and removed.
pub fn check_dir_writable(dir: &Path) -> std::io::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let mut probe = temp_file_in(dir)?;
    probe.write_all(b"probe")?;
    probe.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_creates_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/report.json");
        write_json(&path, &serde_json::json!({"x": 1})).unwrap();
        write_atomically(&path, b"second", MissingDirs::Create).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn files_follow_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        // SAFETY: umask only swaps the process's mask; restored at once. Other tests in this
        // process create files too, and may see 022 or 027 meanwhile: both are harmless to them.
        let old = unsafe { libc::umask(0o027) };
        let written = write_atomically(&path, b"x", MissingDirs::Create);
        unsafe { libc::umask(old) };
        written.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "0666 less the umask 027");
    }

    #[test]
    fn writability_is_checked_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = check_dir_writable(&file).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotADirectory);
        assert!(check_dir_writable(&file.join("sub")).is_err());
        assert!(check_file_writable(&file.join("sub/out.json")).is_err());
        assert!(check_file_writable(dir.path()).is_err(), "a directory");
        check_file_writable(&dir.path().join("new/out.json")).unwrap();
        assert!(dir.path().join("new").is_dir());
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
    }
}
