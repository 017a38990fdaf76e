//! The ledger's write-ahead journal: usage records appended, one JSON line each, to segment files
//! in a directory beside the database (`usage.db` → `usage.db-pending/`), before their reply
//! leaves. A segment's blocks are reserved when it is created and it is mapped into memory, so
//! a reply's append is a copy into the page cache — no system call, and a lock held for
//! no longer than that copy. The ingest thread copies the records into SQLite in batches and
//! deletes a segment once all of it is committed. What was copied into the shared mapping is in
//! the kernel, so it survives the process being killed — the same promise as SQLite's WAL with
//! `synchronous = NORMAL` — and whatever was not ingested yet is replayed by the next process that
//! opens the ledger. A segment's unwritten rest reads as NUL bytes, which no JSON line contains.
//!
//! A live writer holds an exclusive advisory lock on each of its segments, so another process
//! (a second `ember up` on the same ledger, or `ember usage`) can read them but only deletes the
//! segments of a writer that is gone, after ingesting them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use memmap2::MmapMut;

use super::UsageRecord;

/// File extension of a segment; a segment being created has `.new` after it until it is locked.
const SEGMENT_EXTENSION: &str = "jsonl";

/// Bytes reserved for a segment; a line that does not fit in what is left starts the next one.
pub const SEGMENT_BYTES: usize = 4 << 20;

/// The journal directory of the ledger at `ledger`.
pub fn dir_of(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push("-pending");
    PathBuf::from(name)
}

/// One segment this process writes, mapped and locked for as long as it is held.
#[derive(Debug)]
pub struct Segment {
    /// Position among this process's segments (the ingest thread retires them in this order).
    pub seq: u64,
    path: PathBuf,
    map: MmapMut,
    /// Holds the lock.
    _file: File,
    len: usize,
}

impl Segment {
    /// Creates, reserves `capacity` bytes of disk for, maps and locks a new, empty segment in
    /// `dir`. It is locked before it gets the name other processes look for, so none of them ever
    /// takes it for a dead writer's; its blocks are reserved, so filling the mapping never meets
    /// a full disk.
    pub fn create(dir: &Path, seq: u64, capacity: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.{SEGMENT_EXTENSION}", uuid::Uuid::now_v7()));
        let creating = path.with_extension(format!("{SEGMENT_EXTENSION}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&creating)
            .with_context(|| format!("creating {}", creating.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", creating.display()))?;
        let reserved = reserve(&file, capacity)
            .and_then(|()| {
                // SAFETY: the file is this process's own, locked against other writers, and
                // never truncated while mapped; other processes only read it.
                unsafe { MmapMut::map_mut(&file) }
            })
            .with_context(|| format!("reserving {capacity} bytes for {}", creating.display()));
        let map = match reserved {
            Ok(map) => map,
            Err(error) => {
                let _ = std::fs::remove_file(&creating);
                return Err(error);
            }
        };
        std::fs::rename(&creating, &path).with_context(|| format!("naming {}", path.display()))?;
        Ok(Self {
            seq,
            path,
            map,
            _file: file,
            len: 0,
        })
    }

    /// Appends one record's line, or returns `false` when it does not fit in what is left. A
    /// reader may see part of a line still being copied, and a process killed inside the copy
    /// (before its reply could leave) leaves part of one: either way the fragment ends at a NUL
    /// byte or has no newline yet, and readers skip it.
    pub fn append(&mut self, line: &[u8]) -> bool {
        let Some(to) = self.map.get_mut(self.len..self.len + line.len()) else {
            return false;
        };
        to.copy_from_slice(line);
        self.len += line.len();
        true
    }

    /// Deletes the segment: every record in it is committed to the database.
    pub fn remove(self) {
        let Self { path, map, .. } = self;
        drop(map);
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(%error, segment = %path.display(), "could not delete an ingested journal segment");
        }
    }
}

/// Gives `file` `bytes` of allocated, zeroed blocks.
fn reserve(file: &File, bytes: usize) -> std::io::Result<()> {
    let bytes = libc::off_t::try_from(bytes).map_err(std::io::Error::other)?;
    // SAFETY: a valid, open file descriptor and a non-negative range.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, bytes) } {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
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

/// The records of a segment. Its unwritten rest (from the first NUL byte) and a fragment after
/// the last newline are a line still being written (or whose writer died writing it, before
/// replying) and are left out; any other line that does not read is an error, so that no replied
/// record is ever dropped unnoticed.
fn read_records(mut file: &File) -> anyhow::Result<Vec<UsageRecord>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let written = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let complete = bytes[..written]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |last| last + 1);
    bytes[..complete]
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_slice(line)
                .with_context(|| format!("line {} does not read", index + 1))
        })
        .collect()
}
