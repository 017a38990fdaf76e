//! Changing a model's routing policy (`models/<name>/routing.json`): read, change, and replace
//! the file atomically, so every request sees the old policy or the new one, never a mix. Used by
//! `ember models` and by the rollouts `ember up` drives.

use ember_function::catalog::{Catalog as _, DirCatalog};
use ember_function::routing::Routing;

/// Reads `name`'s routing, applies `change` and atomically replaces the file.
pub fn update(
    catalog: &DirCatalog,
    name: &str,
    change: impl FnOnce(&mut Routing),
) -> anyhow::Result<()> {
    let path = catalog.routing_path(name);
    let mut routing = catalog.routing(name);
    change(&mut routing);
    crate::atomic_file::replace(&path, &serde_json::to_vec(&routing)?)
}
