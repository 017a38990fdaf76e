//! Replacing a file atomically: readers (a request reading `routing.json`, a starting process
//! mapping a cached component) see the old contents or the new, never a partial write.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Writes `contents` to a temporary file beside `path`, then renames it over `path` (rename(2)
/// is atomic within a directory). Creates the parent directory when missing.
pub fn replace(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut partial = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    partial
        .write_all(contents)
        .with_context(|| format!("writing {}", partial.path().display()))?;
    partial
        .persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::replace;

    #[test]
    fn replaces_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/routing.json");
        replace(&path, b"old").unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1, "only the replaced file remains");
    }
}
