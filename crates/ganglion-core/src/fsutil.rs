//! Atomic, private file writes: a crash leaves either the old file or the new one, never half.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{CoreError, CoreResult};

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync, rename,
/// fsync of the directory) with mode `mode` (e.g. 0o600) from the moment the file exists.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> CoreResult<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|err| CoreError::io("creating directory", dir, err))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp).map_err(|err| CoreError::io("creating", &tmp, err))?;
        file.write_all(contents).map_err(|err| CoreError::io("writing", &tmp, err))?;
        file.sync_all().map_err(|err| CoreError::io("syncing", &tmp, err))?;
        fs::rename(&tmp, path).map_err(|err| CoreError::io("renaming into", path, err))?;
        if let Ok(dir_handle) = fs::File::open(dir) {
            // Persist the rename itself; not every filesystem supports this, so it is best effort.
            let _ = dir_handle.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file of at most `limit` bytes (keyfiles are small; a huge file is not a keyfile).
pub fn read_bounded(path: &Path, limit: u64) -> CoreResult<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|err| CoreError::io("opening", path, err))?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).map_err(|err| CoreError::io("reading", path, err))?;
    if buf.len() as u64 > limit {
        return Err(CoreError::CorruptKeyfile {
            path: path.to_path_buf(),
            reason: format!("it is larger than {limit} bytes, so it is not a keyfile"),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_files_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("key");
        write_atomic(&path, b"one", 0o600).expect("write");
        write_atomic(&path, b"two", 0o600).expect("overwrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn bounded_read_refuses_huge_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        fs::write(&path, vec![b'x'; 100]).expect("write");
        assert!(read_bounded(&path, 99).is_err());
        assert_eq!(read_bounded(&path, 100).expect("fits").len(), 100);
    }
}
