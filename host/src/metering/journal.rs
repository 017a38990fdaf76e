//! The ledger's write-ahead journal: usage records appended, one JSON line each, to segment files
//! in a directory beside the database (`usage.db` → `usage.db-pending/`), before their reply
//! leaves. A reply then costs one `write` to the page cache instead of an SQLite transaction; the
//! ledger's ingest thread copies the records into SQLite in batches and deletes a segment once all
//! of it is committed. A write that returned is in the kernel, so it survives the process being
//! killed — the same promise as SQLite's WAL with `synchronous = NORMAL` — and whatever was not
//! ingested yet is replayed by the next process that opens the ledger.
//!
//! A live writer holds an exclusive advisory lock on each of its segments, so another process
//! (a second `ember up` on the same ledger, or `ember usage`) can read them but only deletes the
//! segments of a writer that is gone, after ingesting them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::UsageRecord;

/// File extension of a segment; a segment being created has `.new` after it until it is locked.
const SEGMENT_EXTENSION: &str = "jsonl";

/// The journal directory of the ledger at `ledger`.
pub fn dir_of(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push("-pending");
    PathBuf::from(name)
}

/// One segment this process writes, locked for as long as it is held.
#[derive(Debug)]
pub struct Segment {
    /// Position among this process's segments (the ingest thread retires them in this order).
    pub seq: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

impl Segment {
    /// Creates and locks a new, empty segment in `dir`. It is locked before it gets the name other
    /// processes look for, so none of them ever takes it for a dead writer's.
    pub fn create(dir: &Path, seq: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.{SEGMENT_EXTENSION}", uuid::Uuid::now_v7()));
        let creating = path.with_extension(format!("{SEGMENT_EXTENSION}.new"));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&creating)
            .with_context(|| format!("creating {}", creating.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", creating.display()))?;
        std::fs::rename(&creating, &path).with_context(|| format!("naming {}", path.display()))?;
        Ok(Self {
            seq,
            path,
            file,
            len: 0,
        })
    }

    /// Appends one record's line. A reader may see part of a line still being written, and a
    /// process killed inside the call (before its reply could leave) leaves part of one: either way
    /// the fragment has no newline yet, and readers skip it. A failed write is cut back off, so
    /// the next line starts clean.
    pub fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Err(error) = self.file.write_all(line) {
            self.file.set_len(self.len)?;
            return Err(error);
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Deletes the segment: every record in it is committed to the database.
    pub fn remove(self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(%error, segment = %self.path.display(), "could not delete an ingested journal segment");
        }
    }
}

/// The journal line of `record`.
pub fn line(record: &UsageRecord) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).expect("a usage record serializes");
    line.push(b'\n');
    line
}

/// A segment found in the journal directory.
pub struct Found {
    /// Its records, in the order they were written (a torn last line left out).
    pub records: Vec<UsageRecord>,
    /// The segment and its lock, when its writer is gone: delete it once its records are committed.
    pub orphan: Option<(PathBuf, File)>,
}

/// Every segment in the journal of the ledger at `ledger`, live writers' and dead ones'.
pub fn scan(ledger: &Path) -> anyhow::Result<Vec<Found>> {
    let dir = dir_of(ledger);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    let (mut paths, creating): (Vec<PathBuf>, Vec<PathBuf>) = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == SEGMENT_EXTENSION || e == "new")
        })
        .partition(|path| path.extension().is_some_and(|e| e == SEGMENT_EXTENSION));
    // A writer killed between creating a segment and naming it leaves it empty and unlocked.
    for path in creating {
        if File::open(&path).is_ok_and(|file| file.try_lock().is_ok()) {
            let _ = std::fs::remove_file(&path);
        }
    }
    paths.sort();
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        let file = match File::open(&path) {
            Ok(file) => file,
            // Ingested and deleted by its writer since the directory was listed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
        };
        let orphan = match file.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()))
            }
        };
        let records = read_records(&file).with_context(|| {
            format!(
                "reading {} (kept for inspection: it is not deleted until it reads)",
                path.display()
            )
        })?;
        found.push(Found {
            records,
            orphan: orphan.then_some((path, file)),
        });
    }
    Ok(found)
}

/// The records of a segment. A fragment after the last newline is a line still being written (or
/// whose writer died writing it, before replying) and is left out; any other line that does not
/// read is an error, so that no replied record is ever dropped unnoticed.
fn read_records(file: &File) -> anyhow::Result<Vec<UsageRecord>> {
    let mut records = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        records.push(
            serde_json::from_slice(&line)
                .with_context(|| format!("line {number} does not read"))?,
        );
    }
    Ok(records)
}
