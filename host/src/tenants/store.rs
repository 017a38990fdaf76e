//! The API keys in the ledger's SQLite (table `api_keys`, created by the ledger's migrations):
//! one row per key name with its digest, scope and limits. Every change bumps
//! `api_keys_generation` (triggers) and then appends a line to the ledger's key stamp
//! (`<ledger>-keys`), whose growth tells serving processes, for the price of a `stat`, that they
//! must compare the generation.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use serde::Serialize;

use super::limits::Limits;
use super::secret::{NewKey, SecretDigest};
use crate::metering::ledger;
use crate::metering::meter::Arrival;

/// One key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRecord {
    /// The key's name: what usage, audit and metrics are attributed to.
    pub name: String,
    /// The SHA-256 of the key.
    #[serde(skip)]
    pub digest: SecretDigest,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// The models it may call; `None`: all.
    pub models: Option<Vec<String>>,
    /// Its rate limit and monthly budget.
    #[serde(flatten)]
    pub limits: Limits,
    /// When it was created, µs since the epoch.
    pub created_at_us: i64,
    /// When its secret was last replaced.
    pub rotated_at_us: Option<i64>,
    /// When it was revoked; a revoked key is refused.
    pub revoked_at_us: Option<i64>,
}

/// Opens the ledger's database for key management (creating and migrating it if needed).
pub fn open(path: &Path) -> anyhow::Result<Connection> {
    ledger::open(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
}

/// Stores a new key named `name`; returns its secret, which is not stored.
pub fn create(
    conn: &Connection,
    name: &str,
    models: Option<&[String]>,
    limits: &Limits,
) -> anyhow::Result<NewKey> {
    let key = NewKey::generate()?;
    let models = models.map(serde_json::to_string).transpose()?;
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO api_keys (name, sha256, prefix, models, rate, burst, budget, created_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            name,
            key.digest().0,
            key.shown(),
            models,
            limits.rate,
            limits.burst,
            limits.budget,
            Arrival::now_us()
        ],
    )?;
    anyhow::ensure!(
        inserted == 1,
        "a key named '{name}' exists already (revoked keys keep their name for the usage history)"
    );
    stamp(conn)?;
    Ok(key)
}

/// The key stamp of the ledger database at `db`.
pub fn stamp_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-keys");
    PathBuf::from(path)
}

/// Appends the current generation to the key stamp of `conn`'s database, after a change has
/// committed: the stamp only ever grows, so its length tells one state of the keys from the next.
fn stamp(conn: &Connection) -> anyhow::Result<()> {
    let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let path = stamp_path(Path::new(db));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{}", generation(conn).unwrap_or_default()));
    if appended.is_err() {
        // A stamp that did not grow would hide the change: without one, serving processes
        // compare the keys' generation on every request instead.
        let _ = std::fs::remove_file(&path);
    }
    appended.with_context(|| format!("updating {}", path.display()))
}

/// Replaces the secret of the live key `name`: the old secret stops working on the next request.
pub fn rotate(conn: &Connection, name: &str) -> anyhow::Result<NewKey> {
    let key = NewKey::generate()?;
    let changed = conn.execute(
        "UPDATE api_keys SET sha256 = ?2, prefix = ?3, rotated_at_us = ?4
         WHERE name = ?1 AND revoked_at_us IS NULL",
        params![name, key.digest().0, key.shown(), Arrival::now_us()],
    )?;
    anyhow::ensure!(changed == 1, "no live key named '{name}'");
    stamp(conn)?;
    Ok(key)
}

/// Revokes the key `name`: refused from the next request on.
pub fn revoke(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let changed = conn.execute(
        "UPDATE api_keys SET revoked_at_us = ?2 WHERE name = ?1 AND revoked_at_us IS NULL",
        params![name, Arrival::now_us()],
    )?;
    anyhow::ensure!(changed == 1, "no live key named '{name}'");
    stamp(conn)
}

/// Every key, by name.
pub fn list(conn: &Connection) -> anyhow::Result<Vec<KeyRecord>> {
    let mut stmt = conn.prepare(
        "SELECT name, sha256, prefix, models, rate, burst, budget, created_at_us, rotated_at_us,
                revoked_at_us
         FROM api_keys ORDER BY name",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(KeyRecord {
            name: row.get(0)?,
            digest: SecretDigest(row.get(1)?),
            prefix: row.get(2)?,
            models: row
                .get::<_, Option<String>>(3)?
                .and_then(|m| serde_json::from_str(&m).ok()),
            limits: Limits {
                rate: row.get(4)?,
                burst: row.get(5)?,
                budget: row.get(6)?,
            },
            created_at_us: row.get(7)?,
            rotated_at_us: row.get(8)?,
            revoked_at_us: row.get(9)?,
        })
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .context("reading the API keys")
}

/// The counter every change to the keys bumps.
pub fn generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT generation FROM api_keys_generation WHERE id = 0")?
        .query_row([], |row| row.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// What `name` has been billed since `since_us` (µs since the epoch), from the ledger's records.
pub fn spent_since(conn: &Connection, name: &str, since_us: i64) -> rusqlite::Result<f64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(cost), 0.0) FROM invocations WHERE key_name = ?1 AND started_at_us >= ?2",
    )?
    .query_row(params![name, since_us], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_rotated_and_revoked_and_each_change_bumps_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("usage.db")).unwrap();
        let start = generation(&conn).unwrap();
        let limits = Limits {
            rate: Some(5.0),
            burst: Some(10),
            budget: Some(2.5),
        };
        let models = ["credit-risk".to_string()];
        let key = create(&conn, "team-a", Some(&models), &limits).unwrap();
        assert!(create(&conn, "team-a", None, &Limits::default()).is_err());
        let listed = list(&conn).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].models.as_deref(), Some(&models[..]));
        assert_eq!(listed[0].limits, limits);
        assert!(listed[0].digest.matches(&key.digest()));
        assert_eq!(generation(&conn).unwrap(), start + 1);

        let rotated = rotate(&conn, "team-a").unwrap();
        let listed = list(&conn).unwrap();
        assert!(listed[0].digest.matches(&rotated.digest()));
        assert!(listed[0].rotated_at_us.is_some());
        revoke(&conn, "team-a").unwrap();
        assert!(revoke(&conn, "team-a").is_err(), "revoked once");
        assert!(
            rotate(&conn, "team-a").is_err(),
            "a revoked key stays revoked"
        );
        assert!(list(&conn).unwrap()[0].revoked_at_us.is_some());
        assert_eq!(generation(&conn).unwrap(), start + 3);
        assert_eq!(spent_since(&conn, "team-a", 0).unwrap(), 0.0);
    }
}
