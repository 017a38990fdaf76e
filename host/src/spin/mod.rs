//! Spin's APIs, provided by Ember's host so the Spin build of the function (spin-sdk) runs here
//! exactly as on Spin: `fermyon:spin/key-value`, `fermyon:spin/sqlite` and
//! `fermyon:spin/variables` at 2.0.0, from the WIT spin-sdk ships (`host/wit/spin`). Like Spin's
//! factor crates, each interface is a unit owning its state: [`key_value`] and [`sqlite`] keep
//! their data in SQLite files under the state directory (`--spin-state`), [`variables`] answers
//! from the manifest's resolved variables. A component gets what its manifest grants
//! (`key_value_stores`, `sqlite_databases`, `variables`) and is refused anything else, as on Spin.

pub mod key_value;
pub mod sqlite;
pub mod variables;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

/// The generated host side of the WIT.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "fermyon:spin/ember-host",
        with: {
            "fermyon:spin/key-value.store": super::key_value::OpenStore,
            "fermyon:spin/sqlite.connection": super::sqlite::OpenDatabase,
        },
        additional_derives: [PartialEq],
    });
}

/// Where the Spin APIs keep their data unless `--spin-state` says otherwise.
pub const DEFAULT_STATE_DIR: &str = ".ember/spin";

/// What a function is granted, from its manifest component, and where the data lives.
#[derive(Debug, Clone, Default)]
pub struct SpinGrants {
    /// Key-value store labels it may open.
    pub key_value_stores: Vec<String>,
    /// SQLite database names it may open.
    pub sqlite_databases: Vec<String>,
    /// Its variables, resolved (`SPIN_VARIABLE_<NAME>` or the application default).
    pub variables: BTreeMap<String, String>,
}

/// The Spin APIs' shared state: one per served function, shared by all its instances.
#[derive(Debug)]
pub struct SpinHost {
    stores: key_value::Stores,
    databases: sqlite::Databases,
    variables: variables::Variables,
}

impl SpinHost {
    /// Spin's APIs with `grants`, keeping data under `state_dir` (made when a store is used).
    pub fn new(grants: SpinGrants, state_dir: PathBuf) -> Self {
        Self {
            stores: key_value::Stores::new(grants.key_value_stores, state_dir.clone()),
            databases: sqlite::Databases::new(grants.sqlite_databases, state_dir),
            variables: variables::Variables::new(grants.variables),
        }
    }

    /// The APIs with nothing granted: every open is refused, every variable undefined (for
    /// pre-initialization, and for functions whose manifest grants none).
    pub fn none() -> Arc<Self> {
        Arc::new(Self::new(SpinGrants::default(), PathBuf::new()))
    }
}

/// One instance's view of the Spin APIs: the shared state and its resource table.
pub struct SpinView<'a> {
    /// The shared state.
    pub host: &'a SpinHost,
    /// The instance's resources (open stores and connections).
    pub table: &'a mut ResourceTable,
}

struct HasSpinView;

impl HasData for HasSpinView {
    type Data<'a> = SpinView<'a>;
}

/// Adds the three interfaces to `linker`, each reached through `view`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> SpinView<'_>,
) -> wasmtime::Result<()> {
    use bindings::fermyon::spin;
    spin::key_value::add_to_linker::<_, HasSpinView>(linker, view)?;
    spin::sqlite::add_to_linker::<_, HasSpinView>(linker, view)?;
    spin::variables::add_to_linker::<_, HasSpinView>(linker, view)?;
    Ok(())
}
