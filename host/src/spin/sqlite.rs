//! `fermyon:spin/sqlite`: each granted database is a SQLite file (`<state>/sqlite/<name>.db`,
//! WAL), opened on first use and shared by all instances, which run their statements one at a
//! time on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use wasmtime::component::Resource;

use super::bindings::fermyon::spin::sqlite::{
    Error, Host, HostConnection, QueryResult, RowResult, Value,
};
use super::SpinView;

/// An open database, as the guest holds it.
#[derive(Debug)]
pub struct OpenDatabase {
    connection: Arc<Mutex<Connection>>,
}

/// The granted databases, each opened on first use.
#[derive(Debug)]
pub struct Databases {
    granted: Vec<String>,
    dir: PathBuf,
    open: Mutex<BTreeMap<String, Arc<Mutex<Connection>>>>,
}

impl Databases {
    /// Databases with these names, kept under `state_dir`.
    pub fn new(granted: Vec<String>, state_dir: PathBuf) -> Self {
        Self {
            granted,
            dir: state_dir.join("sqlite"),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn connection(&self, name: &str) -> Result<Arc<Mutex<Connection>>, Error> {
        if !self.granted.iter().any(|g| g == name) {
            return Err(Error::AccessDenied);
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(connection) = open.get(name) {
            return Ok(connection.clone());
        }
        let connection = Arc::new(Mutex::new(
            self.open_file(name)
                .map_err(|e| Error::Io(format!("{e:#}")))?,
        ));
        open.insert(name.to_string(), connection.clone());
        Ok(connection)
    }

    fn open_file(&self, name: &str) -> anyhow::Result<Connection> {
        std::fs::create_dir_all(&self.dir)?;
        // Granted names come from the manifest; the file name is the name, never a path.
        anyhow::ensure!(
            !name.contains(['/', '\\']) && !name.starts_with('.'),
            "database name '{name}' is not a file name"
        );
        let connection = Connection::open(self.dir.join(format!("{name}.db")))?;
        // The guest's statements reach this database only: no ATTACH of another file.
        connection.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        Ok(connection)
    }
}

/// Runs one statement with its parameters, returning the rows it yields (none for a write).
fn execute(
    connection: &Connection,
    statement: &str,
    parameters: &[Value],
) -> rusqlite::Result<QueryResult> {
    let mut prepared = connection.prepare(statement)?;
    let columns: Vec<String> = prepared.column_names().map(str::to_string).collect();
    let count = columns.len();
    let mut rows = prepared.query(rusqlite::params_from_iter(parameters.iter().map(Param)))?;
    let mut results = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..count)
            .map(|i| row.get_ref(i).map(from_sql))
            .collect::<rusqlite::Result<_>>()?;
        results.push(RowResult { values });
    }
    Ok(QueryResult {
        columns,
        rows: results,
    })
}

/// A guest value as a statement parameter.
struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

fn from_sql(value: ValueRef) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Host for SpinView<'_> {}

impl HostConnection for SpinView<'_> {
    fn open(&mut self, database: String) -> Result<Resource<OpenDatabase>, Error> {
        let connection = self.host.databases.connection(&database)?;
        self.table
            .push(OpenDatabase { connection })
            .map_err(|e| Error::Io(e.to_string()))
    }

    fn execute(
        &mut self,
        connection: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<Value>,
    ) -> Result<QueryResult, Error> {
        let database = self
            .table
            .get(&connection)
            .map_err(|_| Error::InvalidConnection)?
            .connection
            .clone();
        let database = database.lock().unwrap_or_else(|p| p.into_inner());
        execute(&database, &statement, &parameters).map_err(|e| Error::Io(e.to_string()))
    }

    fn drop(&mut self, connection: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::{SpinGrants, SpinHost};
    use wasmtime::component::ResourceTable;

    #[test]
    fn statements_run_with_parameters_on_granted_databases_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = SpinHost::new(
            SpinGrants {
                sqlite_databases: vec!["default".into()],
                ..Default::default()
            },
            dir.path().into(),
        );
        let mut table = ResourceTable::new();
        let mut view = SpinView {
            host: &host,
            table: &mut table,
        };
        assert!(matches!(
            view.open("other".into()),
            Err(Error::AccessDenied)
        ));
        let db = view.open("default".into()).unwrap();
        let rep = db.rep();
        let mut run = |sql: &str, params: Vec<Value>| {
            view.execute(Resource::new_borrow(rep), sql.into(), params)
        };
        run("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB)", vec![]).unwrap();
        run(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            vec![
                Value::Integer(7),
                Value::Real(0.5),
                Value::Text("é".into()),
                Value::Blob(vec![0, 1]),
            ],
        )
        .unwrap();
        let result = run(
            "SELECT i, r, s, b, NULL AS n FROM t WHERE i = ?",
            vec![Value::Integer(7)],
        )
        .unwrap();
        assert_eq!(result.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(
            result.rows[0].values,
            vec![
                Value::Integer(7),
                Value::Real(0.5),
                Value::Text("é".into()),
                Value::Blob(vec![0, 1]),
                Value::Null
            ]
        );
        assert!(
            matches!(run("SELECT * FROM missing", vec![]), Err(Error::Io(m)) if m.contains("no such table"))
        );
        assert!(dir.path().join("sqlite/default.db").is_file());
    }
}
