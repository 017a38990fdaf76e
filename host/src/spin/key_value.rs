//! `fermyon:spin/key-value`: every granted store's pairs in one SQLite file
//! (`<state>/key-value.db`, one table keyed by store label and key), durable across restarts and
//! shared by all instances; a write is visible to the next read, from any instance.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use rusqlite::{params, Connection, OptionalExtension as _};
use wasmtime::component::Resource;

use super::bindings::fermyon::spin::key_value::{Error, Host, HostStore};
use super::SpinView;

/// The file under the state directory.
const FILE: &str = "key-value.db";

/// An open store, as the guest holds it.
#[derive(Debug)]
pub struct OpenStore {
    label: String,
}

/// The granted stores and their database, opened on first use.
#[derive(Debug)]
pub struct Stores {
    granted: Vec<String>,
    path: PathBuf,
    connection: OnceLock<Result<Mutex<Connection>, String>>,
}

impl Stores {
    /// Stores with these labels, kept under `state_dir`.
    pub fn new(granted: Vec<String>, state_dir: PathBuf) -> Self {
        Self {
            granted,
            path: state_dir.join(FILE),
            connection: OnceLock::new(),
        }
    }

    /// Runs `f` on the database; an I/O failure is the guest's `other` error.
    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, Error> {
        let connection = self
            .connection
            .get_or_init(|| {
                open(&self.path)
                    .map(Mutex::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| Error::Other(e.clone()))?;
        let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
        f(&connection).map_err(|e| Error::Other(e.to_string()))
    }
}

fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS key_value (
             store TEXT NOT NULL,
             key   TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (store, key)
         );",
    )?;
    Ok(connection)
}

impl SpinView<'_> {
    fn label(&self, store: &Resource<OpenStore>) -> Result<String, Error> {
        self.table
            .get(store)
            .map(|s| s.label.clone())
            .map_err(|e| Error::Other(e.to_string()))
    }
}

impl Host for SpinView<'_> {}

impl HostStore for SpinView<'_> {
    fn open(&mut self, label: String) -> Result<Resource<OpenStore>, Error> {
        if !self.host.stores.granted.contains(&label) {
            return Err(Error::AccessDenied);
        }
        self.table
            .push(OpenStore { label })
            .map_err(|_| Error::StoreTableFull)
    }

    fn get(&mut self, store: Resource<OpenStore>, key: String) -> Result<Option<Vec<u8>>, Error> {
        let label = self.label(&store)?;
        self.host.stores.with(|c| {
            c.query_row(
                "SELECT value FROM key_value WHERE store = ?1 AND key = ?2",
                params![label, key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let label = self.label(&store)?;
        self.host.stores.with(|c| {
            c.execute(
                "INSERT INTO key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                params![label, key, value],
            )
            .map(drop)
        })
    }

    fn delete(&mut self, store: Resource<OpenStore>, key: String) -> Result<(), Error> {
        let label = self.label(&store)?;
        self.host.stores.with(|c| {
            c.execute(
                "DELETE FROM key_value WHERE store = ?1 AND key = ?2",
                params![label, key],
            )
            .map(drop)
        })
    }

    fn exists(&mut self, store: Resource<OpenStore>, key: String) -> Result<bool, Error> {
        Ok(self.get(store, key)?.is_some())
    }

    fn get_keys(&mut self, store: Resource<OpenStore>) -> Result<Vec<String>, Error> {
        let label = self.label(&store)?;
        self.host.stores.with(|c| {
            let mut statement =
                c.prepare("SELECT key FROM key_value WHERE store = ?1 ORDER BY key")?;
            let keys = statement.query_map([label], |row| row.get(0))?;
            keys.collect()
        })
    }

    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::{SpinGrants, SpinHost};
    use wasmtime::component::ResourceTable;

    #[test]
    fn granted_stores_keep_pairs_across_hosts_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let grants = SpinGrants {
            key_value_stores: vec!["default".into()],
            ..Default::default()
        };
        let host = SpinHost::new(grants.clone(), dir.path().into());
        let mut table = ResourceTable::new();
        let mut view = SpinView {
            host: &host,
            table: &mut table,
        };
        assert!(matches!(
            view.open("other".into()),
            Err(Error::AccessDenied)
        ));
        let store = view.open("default".into()).unwrap();
        let rep = store.rep();
        view.set(Resource::new_borrow(rep), "a".into(), b"1".to_vec())
            .unwrap();
        view.set(Resource::new_borrow(rep), "a".into(), b"2".to_vec())
            .unwrap();
        view.set(Resource::new_borrow(rep), "b".into(), b"3".to_vec())
            .unwrap();
        view.delete(Resource::new_borrow(rep), "b".into()).unwrap();
        assert_eq!(
            view.get_keys(Resource::new_borrow(rep)).unwrap(),
            vec!["a".to_string()]
        );
        HostStore::drop(&mut view, store).unwrap();

        // A new host over the same directory (a restart) reads what the first one wrote.
        let again = SpinHost::new(grants, dir.path().into());
        let mut table = ResourceTable::new();
        let mut view = SpinView {
            host: &again,
            table: &mut table,
        };
        let store = view.open("default".into()).unwrap();
        assert_eq!(
            view.get(Resource::new_borrow(store.rep()), "a".into())
                .unwrap(),
            Some(b"2".to_vec())
        );
        assert!(!view
            .exists(Resource::new_borrow(store.rep()), "b".into())
            .unwrap());
    }
}
