//! Changing a model's routing policy (`models/<name>/routing.json`): read, change, and replace
//! the file atomically, so every request sees the old policy or the new one, never a mix. Changes
//! are made under an advisory lock beside the file (`.routing.lock`), so `ember models` commands
//! and the rollouts `ember up` drives never lose each other's changes.

use std::fs::{File, OpenOptions};

use anyhow::Context as _;
use ember_function::catalog::{Catalog as _, DirCatalog};
use ember_function::routing::Routing;

/// The name of the lock file beside a model's `routing.json`.
const LOCK_FILE: &str = ".routing.lock";

/// A model's routing policy, held exclusively until dropped.
pub struct RoutingLock<'a> {
    catalog: &'a DirCatalog,
    name: String,
    _held: File,
}

/// Waits for and takes `name`'s routing lock.
pub fn lock<'a>(catalog: &'a DirCatalog, name: &str) -> anyhow::Result<RoutingLock<'a>> {
    let path = catalog.routing_path(name).with_file_name(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(RoutingLock {
        catalog,
        name: name.to_string(),
        _held: file,
    })
}

impl RoutingLock<'_> {
    /// Reads the routing, applies `change` and atomically replaces the file.
    pub fn update(&self, change: impl FnOnce(&mut Routing)) -> anyhow::Result<()> {
        let path = self.catalog.routing_path(&self.name);
        let mut routing = self.catalog.routing(&self.name);
        change(&mut routing);
        // Every request sees the old routing or the new one, never a mix.
        crate::atomic_file::replace(&path, &serde_json::to_vec(&routing)?)
    }
}

/// Reads `name`'s routing, applies `change` and atomically replaces the file, under its lock.
pub fn update(
    catalog: &DirCatalog,
    name: &str,
    change: impl FnOnce(&mut Routing),
) -> anyhow::Result<()> {
    lock(catalog, name)?.update(change)
}
