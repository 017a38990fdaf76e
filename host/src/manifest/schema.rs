//! The shapes of `spin.toml` (manifest version 2) as Spin's schema defines them; unknown fields
//! are rejected as Spin rejects them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// A parsed and checked `spin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 2.
    pub spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`: application variables, by `lower_snake_case` name.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// `[[trigger.<type>]]` entries by trigger type.
    #[serde(default)]
    pub trigger: BTreeMap<String, Vec<toml::Table>>,
    /// `[component.<id>]` by kebab-case id.
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
    /// Where the manifest was read from (paths in it are relative to this directory).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Application name.
    pub name: String,
    /// Semver version.
    #[serde(default)]
    pub version: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Authors.
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub authors: Vec<String>,
    /// Target environments (`spin-up:3.2`, …).
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub targets: Vec<toml::Value>,
    /// Application-level trigger settings.
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub trigger: BTreeMap<String, toml::Table>,
    /// Settings for tools; Spin ignores them.
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub tool: BTreeMap<String, toml::Table>,
}

/// An application variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Value when none is provided.
    pub default: Option<String>,
    /// Must be provided (no default).
    #[serde(default)]
    pub required: bool,
    /// Not to be logged.
    #[serde(default)]
    pub secret: bool,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The `.wasm` file (Ember runs local files only).
    pub source: toml::Value,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Component variables, values may use `{{ app_variable }}`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Files mounted for the guest: a glob, or `{ source, destination }`.
    #[serde(default)]
    pub files: Vec<toml::Value>,
    /// Files excluded from `files`.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Deprecated form of `allowed_outbound_hosts`.
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    /// Network destinations the component may reach.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value stores (Spin API).
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// SQLite databases (Spin API).
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    /// Serverless AI models (Spin API).
    #[serde(default)]
    pub ai_models: Vec<String>,
    /// `[component.<id>.build]`.
    pub build: Option<Build>,
    /// Tool settings; Ember reads `tool.ember`.
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
    /// Whether dependencies share the component's permissions.
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub dependencies_inherit_configuration: bool,
    /// Component dependencies.
    #[serde(default)]
    pub dependencies: toml::Table,
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Command (or commands) that produce `source`.
    pub command: toml::Value,
    /// Working directory, relative to the manifest.
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub workdir: Option<String>,
    /// Globs `spin watch` rebuilds on.
    #[serde(default)]
    #[allow(dead_code, reason = "checked against Spin's schema; Spin-only")]
    pub watch: Vec<String>,
}

/// Ember's settings for a component (`[component.<id>.tool.ember]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmberTool {
    /// The variant that infers through the host's wasi:nn (Ember's default where it exists).
    pub wasi_nn_source: Option<String>,
    /// Who may call the function on Ember's host (`ember up --auth` overrides it).
    pub auth: Option<crate::tenants::AuthMode>,
}
