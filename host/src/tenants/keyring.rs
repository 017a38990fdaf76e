//! The live keys of a serving process: loaded from the ledger's `api_keys` at start, re-read
//! whenever another process (`ember keys …`, another `ember up`) changed them — checked on every
//! request: a `stat` of the ledger's key stamp, and a read of the keys' generation counter when the
//! stamp grew (or is missing) — and matched by the digest of what a request presents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};

use rusqlite::{Connection, OpenFlags};

use super::limits::{month_start_us, RateLimit, Spend};
use super::secret::SecretDigest;
use super::store::{self, KeyRecord};
use crate::metering::ledger;
use crate::metering::meter::Arrival;

/// A live key's tenant: its name, scope, rate bucket and this month's spend.
pub struct Tenant {
    record: KeyRecord,
    rate: Option<RateLimit>,
    spend: Arc<Spend>,
}

impl Tenant {
    /// The key's name, as usage and metrics carry it.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Whether the key may call `model`.
    pub fn may_use(&self, model: &str) -> bool {
        self.record
            .models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// The models it may call (`None`: all).
    pub fn models(&self) -> Option<&[String]> {
        self.record.models.as_deref()
    }

    /// Its request rate, if limited.
    pub fn rate(&self) -> Option<&RateLimit> {
        self.rate.as_ref()
    }

    /// Its monthly budget, if any.
    pub fn budget(&self) -> Option<f64> {
        self.record.limits.budget
    }

    /// Its spend this month.
    pub fn spend(&self) -> &Spend {
        &self.spend
    }
}

/// The keys as last read from the ledger.
#[derive(Default)]
struct Loaded {
    generation: i64,
    by_digest: HashMap<SecretDigest, Arc<Tenant>>,
    /// Spend per key name, kept across reloads and rotations.
    spend: HashMap<String, Arc<Spend>>,
}

/// The live API keys of the ledger at one path.
pub struct KeyRing {
    conn: Mutex<Connection>,
    loaded: RwLock<Loaded>,
    /// The ledger's key stamp ([`store::stamp_path`]).
    stamp: PathBuf,
    /// Its length when the keys were last compared with the ledger, plus one (0: not yet).
    stamp_seen: AtomicU64,
}

impl KeyRing {
    /// Opens the keys of the ledger at `path` (which the meter has created and migrated).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = ledger::open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let ring = Self {
            conn: Mutex::new(conn),
            loaded: RwLock::new(Loaded {
                generation: -1,
                ..Loaded::default()
            }),
            stamp: store::stamp_path(path),
            stamp_seen: AtomicU64::new(0),
        };
        ring.refresh()?;
        Ok(ring)
    }

    /// How many keys are live.
    pub fn live(&self) -> usize {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_digest
            .len()
    }

    /// The tenant whose live key is `presented`, after catching up with changes to the keys. A
    /// ledger that cannot be read keeps the keys last read (and logs why).
    pub fn find(&self, presented: &str) -> Option<Arc<Tenant>> {
        // One check at a time: a request that arrives while another request's check is running
        // is concurrent with it and takes what it finds, instead of parking a worker thread on
        // the connection.
        // Every change appends to the stamp after it commits: while its length is the one seen
        // at the last comparison, the keys are those read then.
        let stamp = std::fs::metadata(&self.stamp).map(|m| m.len() + 1).ok();
        let unchanged = stamp.is_some_and(|len| len == self.stamp_seen.load(Ordering::Acquire));
        let checked = if unchanged {
            Ok(())
        } else {
            match self.conn.try_lock() {
                Ok(conn) => self.refresh_with(&conn).map(|()| self.saw(stamp)),
                Err(TryLockError::WouldBlock) => Ok(()),
                Err(TryLockError::Poisoned(conn)) => self
                    .refresh_with(&conn.into_inner())
                    .map(|()| self.saw(stamp)),
            }
        };
        if let Err(error) = checked {
            tracing::error!(
                error = format!("{error:#}"),
                "could not re-read the API keys: serving with those read last"
            );
        }
        let digest = SecretDigest::of(presented);
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded
            .by_digest
            .get(&digest)
            .filter(|tenant| tenant.record.digest.matches(&digest))
            .cloned()
    }

    /// Notes the stamp's length (plus one) of a comparison that succeeded.
    fn saw(&self, stamp: Option<u64>) {
        self.stamp_seen.store(stamp.unwrap_or(0), Ordering::Release);
    }

    /// Re-reads the keys if their generation moved since the last read.
    fn refresh(&self) -> anyhow::Result<()> {
        self.refresh_with(&self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// [`KeyRing::refresh`] on the ring's connection, already locked.
    fn refresh_with(&self, conn: &Connection) -> anyhow::Result<()> {
        let generation = store::generation(conn)?;
        if generation
            == self
                .loaded
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .generation
        {
            return Ok(());
        }
        let records = store::list(conn)?;
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        let previous: HashMap<&str, &Arc<Tenant>> =
            loaded.by_digest.values().map(|t| (t.name(), t)).collect();
        let month = month_start_us(Arrival::now_us());
        let mut by_digest = HashMap::new();
        let mut spend = loaded.spend.clone();
        for record in records.into_iter().filter(|r| r.revoked_at_us.is_none()) {
            // An unchanged key keeps its bucket: a reload does not refill anyone's burst.
            let tenant = match previous.get(record.name.as_str()) {
                Some(same) if same.record == record => Arc::clone(same),
                _ => {
                    let spent = match spend.get(&record.name) {
                        Some(known) => known.clone(),
                        None => {
                            let billed = store::spent_since(conn, &record.name, month)?;
                            let known = Arc::new(Spend::new(month, billed));
                            spend.insert(record.name.clone(), known.clone());
                            known
                        }
                    };
                    Arc::new(Tenant {
                        rate: record
                            .limits
                            .rate
                            .map(|r| RateLimit::new(r, record.limits.burst)),
                        spend: spent,
                        record,
                    })
                }
            };
            by_digest.insert(tenant.record.digest, tenant);
        }
        *loaded = Loaded {
            generation,
            by_digest,
            spend,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::Limits;
    use super::*;

    #[test]
    fn changes_by_another_connection_apply_on_the_next_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let admin = store::open(&path).unwrap();
        let first = store::create(&admin, "a", None, &Limits::default()).unwrap();
        let ring = KeyRing::open(&path).unwrap();
        assert_eq!(
            ring.find(&first.secret).map(|t| t.name().to_string()),
            Some("a".into())
        );
        assert!(ring.find("ek_not-a-key").is_none());

        let second =
            store::create(&admin, "b", Some(&["digits".into()]), &Limits::default()).unwrap();
        let b = ring.find(&second.secret).expect("a new key works at once");
        assert!(b.may_use("digits") && !b.may_use("credit-risk"));

        let rotated = store::rotate(&admin, "a").unwrap();
        assert!(ring.find(&first.secret).is_none(), "the old secret is dead");
        assert!(ring.find(&rotated.secret).is_some());
        store::revoke(&admin, "a").unwrap();
        assert!(ring.find(&rotated.secret).is_none());
        assert_eq!(ring.live(), 1);
        // Four changes, four lines in the stamp: each one grew it.
        let stamp = std::fs::read_to_string(store::stamp_path(&path)).unwrap();
        assert_eq!(stamp.lines().count(), 4, "{stamp}");
    }

    #[test]
    fn without_a_stamp_every_lookup_compares_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let admin = store::open(&path).unwrap();
        let key = store::create(&admin, "a", None, &Limits::default()).unwrap();
        let ring = KeyRing::open(&path).unwrap();
        assert!(ring.find(&key.secret).is_some());
        // A change the stamp does not tell of (its file gone) still applies on the next lookup.
        std::fs::remove_file(store::stamp_path(&path)).unwrap();
        admin
            .execute("UPDATE api_keys SET revoked_at_us = 1 WHERE name = 'a'", [])
            .unwrap();
        assert!(ring.find(&key.secret).is_none());
    }
}
