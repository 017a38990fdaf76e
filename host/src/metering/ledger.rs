//! The durable usage ledger: SQLite in WAL mode over one connection. A reply that commits alone
//! writes its record itself; concurrent replies queue for a writer thread that group-commits them.
//! Either way a reply waits until its record has committed, so a client that got a reply has its
//! record on disk, even if the host is killed right after.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context as _;
use rusqlite::{params, Connection, OpenFlags};

use super::{Decision, UsageRecord};
use crate::in_flight::InFlight;

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;

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
];

type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The writer side of the ledger: one connection, used by a reply that commits alone, else by the
/// writer thread, which commits the replies waiting for it in one batch.
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
    committing: AtomicU64,
    sender: Option<mpsc::Sender<(UsageRecord, Ack)>>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

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
    /// Opens the ledger for reading (it must exist).
    pub fn open_read_only(&self) -> anyhow::Result<Connection> {
        open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }
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
    /// Opens the ledger at `path` and starts its writer thread.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let conn = Arc::new(Mutex::new(conn));
        let (sender, receiver) = mpsc::channel();
        let shared = conn.clone();
        let writer = std::thread::Builder::new()
            .name("ember-ledger".into())
            .spawn(move || write_batches(&shared, receiver))?;
        Ok(Self {
            conn,
            committing: AtomicU64::new(0),
            sender: Some(sender),
            writer: Some(writer),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits `record` durably (a reply is sent only after this returns): right here when no
    /// other commit is under way — saving the two thread hand-offs a queued commit costs — else
    /// queued for the writer thread's next batch, which group-commits concurrent replies.
    pub async fn commit(&self, record: UsageRecord) -> anyhow::Result<()> {
        let committing = InFlight::enter(&self.committing);
        if committing.alone() {
            if let Ok(mut conn) = self.conn.try_lock() {
                return insert(&mut conn, std::iter::once(&record)).context("ledger commit failed");
            }
        }
        let (ack, committed) = tokio::sync::oneshot::channel();
        self.sender
            .as_ref()
            .context("ledger closed")?
            .send((record, ack))
            .map_err(|_| anyhow::anyhow!("ledger writer stopped"))?;
        committed
            .await
            .map_err(|_| anyhow::anyhow!("ledger writer stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }
}

impl Drop for Ledger {
    /// Flushes queued records before the process exits.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_batches(conn: &Mutex<Connection>, receiver: mpsc::Receiver<(UsageRecord, Ack)>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = insert(&mut conn, batch.iter().map(|(r, _)| r)).map_err(|e| {
            tracing::error!(error = %e, "ledger commit failed");
            e.to_string()
        });
        drop(conn);
        for (_, ack) in batch {
            let _ = ack.send(result.clone());
        }
    }
}

fn insert<'a>(
    conn: &mut Connection,
    records: impl Iterator<Item = &'a UsageRecord>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO invocations (id, started_at_us, function, model, model_version, method,
                route, status, failure, wall_us, cpu_us, fuel, infer_calls, infer_us, infer_macs,
                peak_memory_bytes, bytes_in, bytes_out, cost)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?;
        let mut decisions = tx.prepare_cached(
            "INSERT INTO decisions (invocation_id, model, model_version, started_at_us,
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
        d.shadow_agrees, d.fallback_from, d.fallback_reason
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
    let mut records = query(
        conn,
        &format!(
            "{SELECT_RECORDS} WHERE d.model = ?1 AND d.model_version = ?2
             ORDER BY d.started_at_us DESC LIMIT ?3"
        ),
        params![model, version, limit as i64],
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
