//! The files `provision` writes (`plan --out`, `apply --log`) and reads (plans, roster
//! files, policy, approval, key and allowed-signers files): regular files only, writes
//! opened owner-only, reads bounded. Checked before any request is sent, so a FIFO, a
//! device or a directory at the path is refused rather than blocked on, read without end,
//! replaced or written into.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// `path` may be written: it does not exist yet, or it is a regular file (symbolic links
/// followed). Otherwise the reason, e.g. "is a FIFO".
pub fn check(path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(format!("is {}, not a regular file", kind(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot be checked: {e}")),
    }
}

/// The most a plan or roster file may hold: well above a plan of the 10 million users
/// a listing may report (about 150 bytes per user), and far below what would exhaust
/// memory on a CI runner.
pub const MAX_INPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Read a whole regular file of at most `max` bytes; the reason in words otherwise.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    // Looked at before opening: opening a FIFO for reading would block.
    let before = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !before.is_file() {
        return Err("not a regular file".into());
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

/// A plan or roster file, whole: `read_bounded` at `MAX_INPUT_BYTES`, as `ReadFile`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, crate::error::Error> {
    read_bounded(path, MAX_INPUT_BYTES).map_err(|reason| crate::error::Error::ReadFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Whether `a` and `b` name the same existing file (through any path or link).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Options that create a file readable and writable by its owner only (plans and logs
/// hold emails).
pub fn owner_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    "not a regular file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_or_new_paths_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.json");
        assert_eq!(check(&file), Ok(()), "a new path");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(check(&file), Ok(()), "a regular file");
        assert_eq!(
            check(dir.path()),
            Err("is a directory, not a regular file".into())
        );
        #[cfg(unix)]
        {
            assert_eq!(
                check(Path::new("/dev/null")),
                Err("is a character device, not a regular file".into())
            );
            let link = dir.path().join("null-link");
            std::os::unix::fs::symlink("/dev/null", &link).unwrap();
            assert_eq!(
                check(&link),
                Err("is a character device, not a regular file".into())
            );
            let sock = dir.path().join("sock");
            let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            assert_eq!(check(&sock), Err("is a socket, not a regular file".into()));
        }
    }

    #[test]
    fn same_file_sees_through_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roster.yaml");
        std::fs::write(&file, "[]").unwrap();
        let roundabout = dir.path().join(".").join("roster.yaml");
        assert!(same_file(&file, &roundabout));
        assert!(!same_file(&file, &dir.path().join("other.yaml")));
    }
}
