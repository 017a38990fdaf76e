//! The durable usage ledger: SQLite in WAL mode, fed through a write-ahead [`journal`]. A reply
//! appends its record to the journal (one `write`) and leaves; the ingest thread commits the
//! journal's records to SQLite in batches. A client that got a reply has its record in the journal
//! at least, even if the host is killed right after, and every process that opens the ledger
//! (`ember up`, or a reader such as `ember usage`) first ingests what the journal still holds.
//!
//! [`journal`]: super::journal

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use ember_contract::manage::{RecordQuery, MAX_RECORDS};
use rusqlite::{params, Connection, OpenFlags};

use super::journal::{self, Segment};
use super::{Decision, UsageRecord};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;

/// How long the ingest thread waits for more records when it has fewer than a full batch: nobody
/// waits for the commit (a flush, or the ledger closing, cuts it short), so waiting a little turns
/// many small transactions into one.
const LINGER: Duration = Duration::from_millis(50);

/// A journal segment is retired (a new one started) once it holds this many bytes.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Wait before retrying a failed commit (the database busy with another process, a full disk).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Tries a failed commit gets once the ledger is shutting down.
const SHUTDOWN_TRIES: u32 = 5;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE invocations (
    id                TEXT PRIMARY KEY,
    started_at_us     INTEGER NOT NULL,
    function          TEXT NOT NULL,
    model             TEXT,
    model_version     TEXT,
    method            TEXT NOT NULL,
    route             TEXT NOT NULL,
    status            INTEGER NOT NULL,
    failure           TEXT,
    wall_us           INTEGER NOT NULL,
    cpu_us            INTEGER NOT NULL,
    fuel              INTEGER NOT NULL,
    infer_calls       INTEGER NOT NULL,
    infer_us          INTEGER NOT NULL,
    infer_macs        INTEGER NOT NULL,
    peak_memory_bytes INTEGER NOT NULL,
    bytes_in          INTEGER NOT NULL,
    bytes_out         INTEGER NOT NULL,
    cost              REAL NOT NULL
);
CREATE INDEX invocations_by_time ON invocations (started_at_us);
"#,
    r#"
CREATE TABLE decisions (
    invocation_id     TEXT PRIMARY KEY REFERENCES invocations (id),
    model             TEXT NOT NULL,
    model_version     TEXT NOT NULL,
    started_at_us     INTEGER NOT NULL,
    input_sha256      TEXT NOT NULL,
    features          TEXT NOT NULL,
    prediction        INTEGER,
    output            TEXT NOT NULL,
    shadow_version    TEXT,
    shadow_prediction INTEGER,
    shadow_agrees     INTEGER,
    fallback_from     TEXT,
    fallback_reason   TEXT
);
CREATE INDEX decisions_by_model ON decisions (model, model_version, started_at_us);
"#,
    // Tenants: who each invocation is billed to, and the API keys (hashes only).
    r#"
ALTER TABLE invocations ADD COLUMN key_name TEXT;
CREATE INDEX invocations_by_key ON invocations (key_name, started_at_us);
CREATE TABLE api_keys (
    name          TEXT PRIMARY KEY,
    sha256        BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    models        TEXT,
    rate          REAL,
    burst         INTEGER,
    budget        REAL,
    created_at_us INTEGER NOT NULL,
    rotated_at_us INTEGER,
    revoked_at_us INTEGER
);
-- Bumped by every change to the keys, so a serving process re-reads them on the next request.
CREATE TABLE api_keys_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 0),
    generation INTEGER NOT NULL
);
INSERT INTO api_keys_generation VALUES (0, 0);
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
    BEGIN UPDATE api_keys_generation SET generation = generation + 1; END;
CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
    BEGIN UPDATE api_keys_generation SET generation = generation + 1; END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    BEGIN UPDATE api_keys_generation SET generation = generation + 1; END;
"#,
    // Outcomes: the true label of past decisions, guarded rollouts and their history, alerts.
    r#"
CREATE TABLE outcomes (
    invocation_id  TEXT PRIMARY KEY REFERENCES decisions (invocation_id),
    label          INTEGER NOT NULL,
    recorded_at_us INTEGER NOT NULL
);
CREATE TABLE rollouts (
    model              TEXT PRIMARY KEY,
    candidate          TEXT NOT NULL,
    baseline           TEXT NOT NULL,
    steps              TEXT NOT NULL,
    every_ms           INTEGER NOT NULL,
    guards             TEXT NOT NULL,
    min_evidence       INTEGER NOT NULL,
    step               INTEGER NOT NULL,
    step_started_at_us INTEGER NOT NULL,
    state              TEXT NOT NULL,
    shadowing          INTEGER NOT NULL,
    updated_at_us      INTEGER NOT NULL
);
CREATE TABLE rollout_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    model     TEXT NOT NULL,
    candidate TEXT NOT NULL,
    at_us     INTEGER NOT NULL,
    percent   INTEGER NOT NULL,
    action    TEXT NOT NULL,
    evidence  TEXT NOT NULL
);
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    model         TEXT NOT NULL,
    version       TEXT NOT NULL,
    rule          TEXT NOT NULL,
    raised_at_us  INTEGER NOT NULL,
    cleared_at_us INTEGER,
    evidence      TEXT NOT NULL
);
"#,
];

/// The writer side of the ledger: the journal segment replies append to, and the ingest thread
/// that commits what they appended.
pub struct Ledger {
    appender: Arc<Mutex<Appender>>,
    ingest: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// The segment being appended to and the way to its ingest thread; both are taken on shutdown.
struct Appender {
    segment: Option<Segment>,
    to_ingest: Option<mpsc::Sender<ToIngest>>,
}

/// What the ingest thread receives, in journal order.
// Records are nearly all the traffic: boxing them for the rare flush would cost every reply an
// allocation.
#[allow(clippy::large_enum_variant)]
enum ToIngest {
    /// A record that is in the journal, on its way to the database.
    Record(Appended),
    /// A request to be told once every record sent before it is committed.
    Flush(mpsc::SyncSender<()>),
}

/// A record that is in the journal, on its way to the database.
struct Appended {
    segment: u64,
    record: UsageRecord,
}

/// How long [`Ledger::flush`] waits for the ingest thread.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `ember up` writes the ledger and the commands that read it look for it.
pub const DEFAULT_LEDGER: &str = ".ember/usage.db";

/// The `--ledger` option of every command that writes or reads the ledger.
#[derive(clap::Args, Debug, Clone)]
pub struct LedgerArg {
    /// The usage ledger (SQLite).
    #[arg(long = "ledger", default_value = DEFAULT_LEDGER)]
    pub path: PathBuf,
}

impl LedgerArg {
    /// Opens the ledger (it must exist) for reading, with everything the journal holds ingested.
    pub fn open_current(&self) -> anyhow::Result<Connection> {
        open_current(&self.path)
    }
}

/// Opens the existing ledger at `path` with every record of its journal ingested: live writers'
/// (their replies have left) and those of writers that are gone (whose segments are then deleted).
pub fn open_current(path: &Path) -> anyhow::Result<Connection> {
    let mut conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    catch_up(&mut conn, path)?;
    Ok(conn)
}

/// Deletes the ledger at `path`: the database, SQLite's files and the key stamp beside it, and
/// the journal.
pub fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-keys"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_dir_all(journal::dir_of(path));
}

/// Ingests every segment of the journal of the ledger at `path` into `conn` (records already there
/// are skipped) and deletes the segments whose writer is gone; returns how many records it read.
fn catch_up(conn: &mut Connection, path: &Path) -> anyhow::Result<usize> {
    let found = journal::scan(path)?;
    let records = found.iter().map(|f| f.records.len()).sum();
    if records > 0 {
        insert(conn, found.iter().flat_map(|f| &f.records))
            .with_context(|| format!("ingesting the journal of {}", path.display()))?;
    }
    for (segment, _lock) in found.into_iter().filter_map(|f| f.orphan) {
        match std::fs::remove_file(&segment) {
            // Its writer (or another reader) deleted it after committing it.
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("deleting {}", segment.display()));
            }
            _ => {}
        }
    }
    Ok(records)
}

/// Opens (creating and migrating if needed) the ledger database.
pub fn open(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("opening ledger {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if flags.contains(OpenFlags::SQLITE_OPEN_READ_WRITE) {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL survives a killed process (the WAL is written before COMMIT
        // returns); only an OS crash can lose the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn)?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl Ledger {
    /// Opens the ledger at `path` — ingesting what an earlier process left in the journal — and
    /// starts a journal segment of its own and the ingest thread.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut conn = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let replayed = catch_up(&mut conn, path)?;
        if replayed > 0 {
            tracing::info!(records = replayed, ledger = %path.display(), "ingested the journal left by an earlier process");
        }
        let dir = journal::dir_of(path);
        let (sender, receiver) = mpsc::channel();
        let appender = Arc::new(Mutex::new(Appender {
            segment: Some(Segment::create(&dir, 0)?),
            to_ingest: Some(sender),
        }));
        let shared = appender.clone();
        let ingest = std::thread::Builder::new()
            .name("ember-ledger".into())
            .spawn(move || ingest(conn, receiver, &shared, &dir))?;
        Ok(Self {
            appender,
            ingest: Some(ingest),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `record` durable before its reply is sent: appends it to the journal (one write to
    /// the page cache) and hands it to the ingest thread.
    pub fn commit(&self, record: UsageRecord) -> anyhow::Result<()> {
        let line = journal::line(&record);
        let mut guard = lock(&self.appender);
        let Appender {
            segment: Some(segment),
            to_ingest: Some(to_ingest),
        } = &mut *guard
        else {
            anyhow::bail!("ledger closed");
        };
        segment
            .append(&line)
            .context("writing the ledger's journal")?;
        // Sent under the lock, so the ingest thread receives records in journal order.
        to_ingest
            .send(ToIngest::Record(Appended {
                segment: segment.seq,
                record,
            }))
            .map_err(|_| anyhow::anyhow!("the ledger's ingest thread stopped"))
    }

    /// Waits until every record committed to the journal before this call is in SQLite, so a
    /// reader of the database (feedback joining a decision) sees it.
    pub fn flush(&self) -> anyhow::Result<()> {
        let (done, committed) = mpsc::sync_channel(1);
        lock(&self.appender)
            .to_ingest
            .as_ref()
            .context("ledger closed")?
            .send(ToIngest::Flush(done))
            .map_err(|_| anyhow::anyhow!("the ledger's ingest thread stopped"))?;
        self.wake_ingest();
        committed
            .recv_timeout(FLUSH_TIMEOUT)
            .context("the ledger's ingest thread did not commit in time")
    }

    /// Ends the ingest thread's linger early (it parks rather than sleeps): someone waits.
    fn wake_ingest(&self) {
        if let Some(ingest) = &self.ingest {
            ingest.thread().unpark();
        }
    }
}

impl Drop for Ledger {
    /// Commits what the journal holds before the process exits.
    fn drop(&mut self) {
        drop(lock(&self.appender).to_ingest.take());
        self.wake_ingest();
        if let Some(ingest) = self.ingest.take() {
            let _ = ingest.join();
        }
    }
}

fn lock(appender: &Mutex<Appender>) -> MutexGuard<'_, Appender> {
    appender.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ingest thread: commits appended records in batches, starts a new segment once the current
/// one is large, and deletes a retired segment once a record of a later one has committed (all of
/// its records came before). A failed commit is retried with the records that arrived since; at
/// shutdown it is given up after a few tries, and the journal keeps the records for the next start.
fn ingest(
    mut conn: Connection,
    receiver: mpsc::Receiver<ToIngest>,
    appender: &Mutex<Appender>,
    dir: &Path,
) {
    let mut retired: Vec<Segment> = Vec::new();
    let mut batch: Vec<Appended> = Vec::new();
    // Flushes waiting for the batch: every record sent before them is in it.
    let mut flushes: Vec<mpsc::SyncSender<()>> = Vec::new();
    let mut open = true;
    let mut failures = 0;
    while open || !batch.is_empty() {
        if batch.is_empty() {
            match receiver.recv() {
                Ok(ToIngest::Record(first)) => batch.push(first),
                // Nothing is pending: everything sent before it is committed.
                Ok(ToIngest::Flush(done)) => {
                    let _ = done.send(());
                    continue;
                }
                Err(_) => break,
            }
        }
        // Take what is queued; only short of a full batch, with nobody waiting, linger once and
        // take what arrived meanwhile. The linger parks the thread rather than waiting on the
        // channel: a receiver waiting in the channel is woken by every send, which cost each reply
        // a futex wake and this thread a context switch per record. Only a flush or the ledger
        // closing unparks it (and a backlog never waits).
        for lingered in [false, true] {
            while open && batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(ToIngest::Record(next)) => batch.push(next),
                    Ok(ToIngest::Flush(done)) => flushes.push(done),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => open = false,
                }
            }
            if lingered || !open || batch.len() >= MAX_BATCH || !flushes.is_empty() {
                break;
            }
            std::thread::park_timeout(LINGER);
        }
        if let Err(error) = insert(&mut conn, batch.iter().map(|a| &a.record)) {
            failures += 1;
            tracing::error!(%error, records = batch.len(), failures, "ledger commit failed: retrying; the journal keeps the records");
            if !open && failures >= SHUTDOWN_TRIES {
                return;
            }
            std::thread::sleep(RETRY_AFTER);
            continue;
        }
        failures = 0;
        let newest = batch.last().map_or(0, |a| a.segment);
        batch.clear();
        flushes.drain(..).for_each(|done| {
            let _ = done.send(());
        });
        let (done, kept) = retired.into_iter().partition(|s| s.seq < newest);
        retired = kept;
        done.into_iter().for_each(Segment::remove);
        let mut appender = lock(appender);
        if let Some(full) = appender.segment.take_if(|s| s.len() >= SEGMENT_BYTES) {
            match Segment::create(dir, full.seq + 1) {
                Ok(next) => {
                    appender.segment = Some(next);
                    retired.push(full);
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "could not start a new journal segment"
                    );
                    appender.segment = Some(full);
                }
            }
        }
    }
    // Every record appended has been received and committed: the journal is all in the database.
    retired.into_iter().for_each(Segment::remove);
    if let Some(segment) = lock(appender).segment.take() {
        segment.remove();
    }
}

fn insert<'a>(
    conn: &mut Connection,
    records: impl Iterator<Item = &'a UsageRecord>,
) -> rusqlite::Result<()> {
    // Immediate: take the write lock up front, so a busy database waits in `busy_timeout`
    // rather than failing the transaction midway.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO invocations (id, started_at_us, function, model, model_version, method,
                route, status, failure, wall_us, cpu_us, fuel, infer_calls, infer_us, infer_macs,
                peak_memory_bytes, bytes_in, bytes_out, cost, key_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )?;
        let mut decisions = tx.prepare_cached(
            "INSERT OR IGNORE INTO decisions (invocation_id, model, model_version, started_at_us,
                input_sha256, features, prediction, output, shadow_version, shadow_prediction,
                shadow_agrees, fallback_from, fallback_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for r in records {
            stmt.execute(params![
                r.id,
                r.started_at_us,
                r.function,
                r.model,
                r.model_version,
                r.method,
                r.route,
                r.status,
                r.failure,
                r.wall_us as i64,
                r.cpu_us as i64,
                r.fuel as i64,
                r.infer_calls as i64,
                r.infer_us as i64,
                r.infer_macs as i64,
                r.peak_memory_bytes as i64,
                r.bytes_in as i64,
                r.bytes_out as i64,
                r.cost,
                r.key,
            ])?;
            // After its invocation: the decision references it.
            if let Some(d) = &r.decision {
                decisions.execute(params![
                    r.id,
                    r.model,
                    r.model_version,
                    r.started_at_us,
                    d.input_sha256,
                    serde_json::to_string(&d.features).unwrap_or_default(),
                    d.prediction,
                    d.output,
                    d.shadow_version,
                    d.shadow_prediction,
                    d.shadow_agrees,
                    d.fallback_from,
                    d.fallback_reason,
                ])?;
            }
        }
    }
    tx.commit()
}

const SELECT_RECORDS: &str = "SELECT i.id, i.started_at_us, i.function, i.model, i.model_version,
        i.method, i.route, i.status, i.failure, i.wall_us, i.cpu_us, i.fuel, i.infer_calls,
        i.infer_us, i.infer_macs, i.peak_memory_bytes, i.bytes_in, i.bytes_out, i.cost,
        d.input_sha256, d.features, d.prediction, d.output, d.shadow_version, d.shadow_prediction,
        d.shadow_agrees, d.fallback_from, d.fallback_reason, i.key_name
    FROM invocations i LEFT JOIN decisions d ON d.invocation_id = i.id";

/// Reads records back, oldest first, within `[since, until)` (µs since the epoch).
pub fn read(conn: &Connection, since_us: i64, until_us: i64) -> rusqlite::Result<Vec<UsageRecord>> {
    query(
        conn,
        &format!("{SELECT_RECORDS} WHERE i.started_at_us >= ?1 AND i.started_at_us < ?2 ORDER BY i.started_at_us"),
        params![since_us, until_us],
    )
}

/// One invocation by id.
pub fn read_one(conn: &Connection, id: &str) -> rusqlite::Result<Option<UsageRecord>> {
    Ok(query(
        conn,
        &format!("{SELECT_RECORDS} WHERE i.id = ?1"),
        params![id],
    )?
    .pop())
}

/// The latest `limit` decided invocations of a model version, oldest first.
pub fn recent_decisions(
    conn: &Connection,
    model: &str,
    version: &str,
    limit: usize,
) -> rusqlite::Result<Vec<UsageRecord>> {
    decided(
        conn,
        &RecordQuery {
            model: Some(model.into()),
            version: Some(version.into()),
            limit: Some(limit),
            ..Default::default()
        },
    )
}

/// The latest decided invocations matching `query` (at most its limit, else
/// [`MAX_RECORDS`]), oldest first.
pub fn decided(conn: &Connection, query: &RecordQuery) -> rusqlite::Result<Vec<UsageRecord>> {
    let mut records = self::query(
        conn,
        &format!(
            "{SELECT_RECORDS} WHERE d.invocation_id IS NOT NULL
               AND (?1 IS NULL OR d.model = ?1) AND (?2 IS NULL OR d.model_version = ?2)
               AND i.started_at_us >= ?3 AND i.started_at_us < ?4
             ORDER BY i.started_at_us DESC LIMIT ?5"
        ),
        params![
            query.model,
            query.version,
            query.since_us.unwrap_or(i64::MIN),
            query.until_us.unwrap_or(i64::MAX),
            query.limit.unwrap_or(MAX_RECORDS).min(MAX_RECORDS) as i64
        ],
    )?;
    records.reverse();
    Ok(records)
}

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<UsageRecord>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |row| {
        Ok(UsageRecord {
            id: row.get(0)?,
            started_at_us: row.get(1)?,
            function: row.get(2)?,
            model: row.get(3)?,
            model_version: row.get(4)?,
            method: row.get(5)?,
            route: row.get(6)?,
            status: row.get(7)?,
            failure: row.get(8)?,
            wall_us: row.get::<_, i64>(9)? as u64,
            cpu_us: row.get::<_, i64>(10)? as u64,
            fuel: row.get::<_, i64>(11)? as u64,
            infer_calls: row.get::<_, i64>(12)? as u64,
            infer_us: row.get::<_, i64>(13)? as u64,
            infer_macs: row.get::<_, i64>(14)? as u64,
            peak_memory_bytes: row.get::<_, i64>(15)? as u64,
            bytes_in: row.get::<_, i64>(16)? as u64,
            bytes_out: row.get::<_, i64>(17)? as u64,
            cost: row.get(18)?,
            key: row.get(28)?,
            decision: match row.get::<_, Option<String>>(19)? {
                None => None,
                Some(input_sha256) => Some(Decision {
                    input_sha256,
                    features: serde_json::from_str(&row.get::<_, String>(20)?).unwrap_or_default(),
                    prediction: row.get(21)?,
                    output: row.get(22)?,
                    shadow_version: row.get(23)?,
                    shadow_prediction: row.get(24)?,
                    shadow_agrees: row.get(25)?,
                    fallback_from: row.get(26)?,
                    fallback_reason: row.get(27)?,
                }),
            },
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: usize, decided: bool) -> UsageRecord {
        UsageRecord {
            id: format!("inv-{id:04}"),
            started_at_us: 1_700_000_000_000_000 + id as i64,
            function: "ember_function".into(),
            model: Some("credit-risk".into()),
            model_version: Some("1".into()),
            method: "POST".into(),
            route: "/predict".into(),
            status: 200,
            failure: None,
            wall_us: 300,
            cpu_us: 250,
            fuel: 61_545,
            infer_calls: 1,
            infer_us: 12,
            infer_macs: 47,
            peak_memory_bytes: 1 << 20,
            bytes_in: 44,
            bytes_out: 210,
            cost: 2.9e-7,
            key: id.is_multiple_of(3).then(|| "team-a".into()),
            decision: decided.then(|| Decision {
                input_sha256: "ab".repeat(32),
                features: vec![42.0, 52_000.0, 710.0],
                prediction: Some(0),
                output: r#"{"label":"repaid"}"#.into(),
                shadow_version: None,
                shadow_prediction: None,
                shadow_agrees: None,
                fallback_from: None,
                fallback_reason: None,
            }),
        }
    }

    fn stored(path: &Path) -> Vec<UsageRecord> {
        let conn = open(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        read(&conn, 0, i64::MAX).unwrap()
    }

    #[test]
    fn a_closed_ledger_has_every_record_in_sqlite_and_an_empty_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path).unwrap();
        let records: Vec<_> = (0..300).map(|i| record(i, i % 2 == 0)).collect();
        for r in &records {
            ledger.commit(r.clone()).unwrap();
        }
        drop(ledger);
        assert_eq!(stored(&path), records);
        assert_eq!(
            std::fs::read_dir(journal::dir_of(&path)).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_flush_returns_once_every_earlier_record_is_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path).unwrap();
        ledger.flush().unwrap();
        let records: Vec<_> = (0..50).map(|i| record(i, true)).collect();
        for r in &records {
            ledger.commit(r.clone()).unwrap();
        }
        ledger.flush().unwrap();
        assert_eq!(stored(&path), records);
    }

    #[test]
    fn a_reader_sees_a_live_writers_journal_and_leaves_its_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path).unwrap();
        ledger.commit(record(1, true)).unwrap();
        // Whether or not the ingest thread got to it, a reader that catches up has it.
        let conn = open_current(&path).unwrap();
        assert_eq!(read_one(&conn, "inv-0001").unwrap(), Some(record(1, true)));
        let segments = journal::scan(&path).unwrap();
        assert_eq!(segments.len(), 1, "the writer's segment is kept");
        assert!(
            segments[0].orphan.is_none(),
            "a live writer's segment is locked"
        );
        drop(segments);
        // The writer's own ingest of the same record is not a conflict.
        ledger.commit(record(2, false)).unwrap();
        drop(ledger);
        assert_eq!(stored(&path), vec![record(1, true), record(2, false)]);
    }

    /// A ledger database in `dir` whose journal holds one segment with `bytes`, left unlocked
    /// as a dead writer leaves it; returns the database and the segment.
    fn dead_writers_journal(dir: &Path, bytes: &[u8]) -> (PathBuf, PathBuf) {
        let path = dir.join("usage.db");
        drop(
            open(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .unwrap(),
        );
        let journal_dir = journal::dir_of(&path);
        std::fs::create_dir_all(&journal_dir).unwrap();
        let segment = journal_dir.join("0190-dead.jsonl");
        std::fs::write(&segment, bytes).unwrap();
        (path, segment)
    }

    #[test]
    fn a_dead_writers_journal_is_ingested_on_open_and_its_torn_last_line_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // What a writer killed inside its third append leaves: two lines and part of a third.
        let mut lines = journal::line(&record(1, true));
        lines.extend(journal::line(&record(2, false)));
        let third = journal::line(&record(3, true));
        lines.extend_from_slice(&third[..third.len() / 2]);
        let (path, segment) = dead_writers_journal(dir.path(), &lines);
        // Neither the database nor the reader's view misses the two replied records.
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(stored(&path), vec![record(1, true), record(2, false)]);
        assert!(!segment.exists());
        ledger.commit(record(4, false)).unwrap();
        drop(ledger);
        assert_eq!(stored(&path).len(), 3);
    }

    #[test]
    fn a_journal_line_that_does_not_read_stops_the_open_and_keeps_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = journal::line(&record(1, true));
        lines.extend_from_slice(b"{\"id\": \"not a record\"}\n");
        lines.extend(journal::line(&record(2, true)));
        let (path, segment) = dead_writers_journal(dir.path(), &lines);
        let error = format!(
            "{:#}",
            Ledger::open(&path)
                .err()
                .expect("a corrupt journal is refused")
        );
        assert!(error.contains("line 2 does not read"), "{error}");
        assert!(segment.exists(), "nothing replied may be dropped unnoticed");
    }

    /// Waits (bounded) until the database holds `count` records.
    fn wait_for(path: &Path, count: usize) {
        for _ in 0..3000 {
            if stored(path).len() == count {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the ingest thread did not commit {count} records in 30 s");
    }

    fn segment_names(path: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(journal::dir_of(path))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_full_segment_is_retired_and_deleted_once_a_later_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path).unwrap();
        let first = segment_names(&path);
        assert_eq!(first.len(), 1);
        let full = SEGMENT_BYTES as usize / journal::line(&record(0, true)).len() + 1;
        for i in 0..full {
            ledger.commit(record(i, true)).unwrap();
        }
        wait_for(&path, full);
        // The ingest thread starts a new segment after the batch that filled the first, and
        // deletes the first once a record of the new one has committed.
        let mut committed = full;
        while segment_names(&path).contains(&first[0]) {
            assert!(committed < full + 100, "the full segment was never retired");
            ledger.commit(record(committed, false)).unwrap();
            committed += 1;
            wait_for(&path, committed);
        }
        assert_eq!(segment_names(&path).len(), 1, "one live segment");
        drop(ledger);
        assert_eq!(stored(&path).len(), committed);
        assert!(segment_names(&path).is_empty());
    }
}
