//! The Spin application manifest (`spin.toml`, manifest version 2), as Ember reads it: one file
//! runs the function on Spin and on Ember. The shapes follow Spin's schema, unknown fields
//! rejected as Spin rejects them; what Ember honours is the component's `source`, `files`,
//! `environment`, `variables` (with the application's `[variables]`), `allowed_outbound_hosts` and
//! the HTTP routes. Spin-only capabilities Ember cannot honour (key-value stores, SQLite, AI
//! models, component dependencies, outbound hosts) are refused by name rather than ignored.
//!
//! Ember's own settings live where Spin allows tools theirs: `[component.<id>.tool.ember]`
//! (`wasi_nn_source`: the variant that infers through the host's wasi:nn, which Spin lacks).
//! Components whose source is a static file server ([`STATIC_FILESERVERS`]: the workspace's own,
//! or Spin's, e.g. for the browser demo) are not run: Ember serves their `files` itself
//! ([`StaticSite`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};

mod route;
mod schema;
mod syntax;

pub use self::route::SpinRoute;
pub use self::schema::{Application, Build, Component, EmberTool, Manifest, Variable};
use self::syntax::{expand, is_kebab, is_snake, template_references};
use crate::front::static_files::StaticSite;
use crate::spin::SpinGrants;

/// The manifest file Ember looks for by default.
pub const DEFAULT_MANIFEST: &str = "spin.toml";

/// File names of static file servers: a component whose `source` is one (a local path, or a
/// `{ url, digest }`) only serves its `files`. The workspace's own (`sites/fileserver`, what
/// spin.toml names, so `spin up` needs no network) and Spin's (spinframework/spin-fileserver).
pub const STATIC_FILESERVERS: [&str; 2] = ["ember_fileserver.wasm", "spin_static_fs.wasm"];

/// What Ember serves from a manifest: one HTTP component.
#[derive(Debug, Clone)]
pub struct HttpFunction {
    /// Component id.
    pub id: String,
    /// Its `source`, resolved against the manifest's directory.
    pub source: PathBuf,
    /// `tool.ember.wasi_nn_source`, resolved.
    pub wasi_nn_source: Option<PathBuf>,
    /// Host directory mounted at the guest's models directory.
    pub models: Option<PathBuf>,
    /// Environment for the guest: `environment`, then resolved component variables.
    pub env: Vec<(String, String)>,
    /// HTTP routes to it.
    pub routes: Vec<SpinRoute>,
    /// `tool.ember.auth`: who may call it on Ember's host.
    pub auth: Option<crate::tenants::AuthMode>,
    /// The Spin APIs it is granted: key-value stores, SQLite databases, resolved variables.
    pub spin: SpinGrants,
}

impl Manifest {
    /// Reads and checks a manifest.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        manifest.dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        manifest
            .check()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(manifest)
    }

    /// Spin's rules: version 2, a name, ids in kebab-case, variable names in snake_case,
    /// triggers naming declared components, component variables naming declared app variables.
    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.spin_manifest_version == 2,
            "spin_manifest_version must be 2"
        );
        ensure!(
            !self.application.name.is_empty(),
            "application.name is required"
        );
        for name in self.variables.keys() {
            ensure!(is_snake(name), "variable '{name}' must be lower_snake_case");
        }
        for (name, variable) in &self.variables {
            ensure!(
                !(variable.required && variable.default.is_some()),
                "variable '{name}' cannot be both required and have a default"
            );
        }
        for (id, component) in &self.component {
            ensure!(is_kebab(id), "component id '{id}' must be kebab-case");
            for (name, value) in &component.variables {
                ensure!(
                    is_snake(name),
                    "component '{id}' variable '{name}' must be lower_snake_case"
                );
                for reference in template_references(value)? {
                    ensure!(
                        self.variables.contains_key(&reference),
                        "component '{id}' variable '{name}' uses undeclared variable '{reference}'"
                    );
                }
            }
        }
        for (kind, triggers) in &self.trigger {
            for trigger in triggers {
                let component = trigger
                    .get("component")
                    .and_then(toml::Value::as_str)
                    .with_context(|| format!("a [[trigger.{kind}]] has no component id"))?;
                ensure!(
                    self.component.contains_key(component),
                    "[[trigger.{kind}]] names component '{component}', which is not declared"
                );
                if kind == "http" {
                    let route = trigger
                        .get("route")
                        .and_then(toml::Value::as_str)
                        .with_context(|| {
                            format!("the http trigger of '{component}' has no route")
                        })?;
                    SpinRoute::parse(route)?;
                }
            }
        }
        Ok(())
    }

    /// Every local file the manifest references: each component's `source`, Ember's
    /// `wasi_nn_source`, and the `files` mounts' sources (resolved against the manifest's directory).
    pub fn referenced_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for (id, component) in &self.component {
            if !is_static_fileserver(component) {
                files.push(self.local_source(id, &component.source)?);
            }
            if let Some(source) = ember_tool(component)?.wasi_nn_source {
                files.push(self.dir.join(source));
            }
            for mount in &component.files {
                files.push(self.dir.join(file_mount(mount)?.0));
            }
        }
        Ok(files)
    }

    /// The HTTP triggers as `(component id, route)`, in manifest order.
    fn http_routes(&self) -> anyhow::Result<Vec<(&str, SpinRoute)>> {
        self.trigger
            .get("http")
            .into_iter()
            .flatten()
            .map(|trigger| {
                let id = trigger["component"].as_str().unwrap_or_default();
                Ok((
                    id,
                    SpinRoute::parse(trigger["route"].as_str().unwrap_or_default())?,
                ))
            })
            .collect()
    }

    /// The HTTP component Ember runs (a manifest for Ember routes to exactly one, besides
    /// static file servers).
    pub fn http_function(&self) -> anyhow::Result<HttpFunction> {
        let mut ids: Vec<&str> = Vec::new();
        let mut routes = Vec::new();
        for (id, route) in self.http_routes()? {
            if is_static_fileserver(&self.component[id]) {
                continue;
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
            routes.push(route);
        }
        let [id] = ids[..] else {
            bail!(
                "Ember runs one HTTP component per manifest besides static file servers; this one routes to {}",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            );
        };
        let component = &self.component[id];
        refuse_unsupported(id, component)?;
        let mut models = None;
        for mount in &component.files {
            let (source, destination) = file_mount(mount)?;
            if destination == ember_contract::names::GUEST_MODELS_DIR {
                models = Some(self.dir.join(source));
            } else {
                bail!("component '{id}': Ember mounts only the models directory at /models, not '{destination}'");
            }
        }
        let mut env: Vec<(String, String)> = component
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut variables = BTreeMap::new();
        for (name, template) in &component.variables {
            let value = self.resolve(template)?;
            env.push((name.to_ascii_uppercase(), value.clone()));
            variables.insert(name.clone(), value);
        }
        let tool = ember_tool(component)?;
        Ok(HttpFunction {
            id: id.to_string(),
            source: self.local_source(id, &component.source)?,
            wasi_nn_source: tool.wasi_nn_source.map(|s| self.dir.join(s)),
            models,
            env,
            routes,
            auth: tool.auth,
            spin: SpinGrants {
                key_value_stores: component.key_value_stores.clone(),
                sqlite_databases: component.sqlite_databases.clone(),
                variables,
            },
        })
    }

    /// The static file servers' routes and mounts, which Ember serves natively. A file server
    /// takes no settings here (its `environment` options are refused by name).
    pub fn static_sites(&self) -> anyhow::Result<Vec<StaticSite>> {
        let mut sites = Vec::new();
        for (id, route) in self.http_routes()? {
            let component = &self.component[id];
            if !is_static_fileserver(component) {
                continue;
            }
            refuse_unsupported(id, component)?;
            ensure!(
                component.environment.is_empty() && component.variables.is_empty(),
                "component '{id}': Ember's static file server takes no environment or variables"
            );
            let mounts = component
                .files
                .iter()
                .map(|mount| {
                    let (source, destination) = file_mount(mount)?;
                    Ok((self.dir.join(source), destination))
                })
                .collect::<anyhow::Result<_>>()?;
            sites.push(StaticSite {
                id: id.to_string(),
                route,
                mounts,
            });
        }
        Ok(sites)
    }

    /// Expands `{{ name }}` from application variables: `SPIN_VARIABLE_<NAME>` in Ember's
    /// environment (Spin's environment provider), else the default; a required one must be set.
    fn resolve(&self, template: &str) -> anyhow::Result<String> {
        expand(template, |name| {
            let from_env = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            std::env::var(&from_env)
                .ok()
                .or_else(|| self.variables.get(name)?.default.clone())
                .with_context(|| format!("variable '{name}' is required and not set ({from_env})"))
        })
    }

    /// Whether the guest environment variable `key` carries a secret application variable.
    /// Whether `key` of `component`'s environment comes from a secret variable (never printed).
    pub fn is_secret(&self, component: &Component, key: &str) -> bool {
        component.variables.iter().any(|(name, template)| {
            name.eq_ignore_ascii_case(key)
                && template_references(template)
                    .unwrap_or_default()
                    .iter()
                    .any(|r| self.variables.get(r).is_some_and(|v| v.secret))
        })
    }

    fn local_source(&self, id: &str, source: &toml::Value) -> anyhow::Result<PathBuf> {
        match source.as_str() {
            Some(path) => Ok(self.dir.join(path)),
            None => bail!("component '{id}': Ember runs local sources only (a path to a .wasm)"),
        }
    }
}

/// Whether a component is a static file server, named by its file name.
fn is_static_fileserver(component: &Component) -> bool {
    let source = &component.source;
    source
        .as_str()
        .or_else(|| source.get("url").and_then(toml::Value::as_str))
        .and_then(|path| path.rsplit('/').next())
        .is_some_and(|file| STATIC_FILESERVERS.contains(&file))
}

/// Ember's `[component.<id>.tool.ember]` table.
fn ember_tool(component: &Component) -> anyhow::Result<EmberTool> {
    component
        .tool
        .get("ember")
        .map(|table| table.clone().try_into())
        .transpose()
        .context("[tool.ember]")
        .map(Option::unwrap_or_default)
}

/// Refuses what a Spin component may ask for and Ember does not provide.
fn refuse_unsupported(id: &str, component: &Component) -> anyhow::Result<()> {
    for (field, present) in [
        (
            "allowed_outbound_hosts",
            !component.allowed_outbound_hosts.is_empty()
                || !component.allowed_http_hosts.is_empty(),
        ),
        ("ai_models", !component.ai_models.is_empty()),
        ("dependencies", !component.dependencies.is_empty()),
        ("exclude_files", !component.exclude_files.is_empty()),
    ] {
        ensure!(
            !present,
            "component '{id}' sets {field}, which Ember does not provide (functions get no network, AI models or component dependencies)"
        );
    }
    Ok(())
}

/// A `files` entry as `(host source, guest destination)`; a plain glob mounts at its own path.
fn file_mount(mount: &toml::Value) -> anyhow::Result<(String, String)> {
    if let Some(glob) = mount.as_str() {
        return Ok((glob.to_string(), format!("/{glob}")));
    }
    let field = |name: &str| {
        mount
            .get(name)
            .and_then(toml::Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("a files entry lacks '{name}'"))
    };
    Ok((field("source")?, field("destination")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_manifest_parses_and_routes_everything_to_the_function() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let manifest = Manifest::load(&path).unwrap();
        let function = manifest.http_function().unwrap();
        assert_eq!(function.id, "ember-function");
        assert_eq!(function.routes, vec![SpinRoute::Prefix(String::new())]);
        assert!(function.models.unwrap().ends_with("models"));
        assert!(function.wasi_nn_source.is_some());
        let [demo, docs] = &manifest.static_sites().unwrap()[..] else {
            panic!("two static sites expected: the demo and the API docs");
        };
        assert_eq!(demo.id, "ember-demo");
        assert_eq!(demo.route, SpinRoute::Prefix("/demo".into()));
        let destinations: Vec<&str> = demo.mounts.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(destinations, ["/", "/pkg", "/models"]);
        assert_eq!(docs.id, "ember-docs");
        assert_eq!(docs.route, SpinRoute::Prefix("/docs".into()));
        let destinations: Vec<&str> = docs.mounts.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(destinations, ["/", "/swagger-ui"]);
        // Its URL source is not a local file the build must produce.
        let files = manifest.referenced_files().unwrap();
        assert!(!files
            .iter()
            .any(|f| f.to_string_lossy().contains("spin_static_fs")));
    }

    #[test]
    fn static_file_servers_are_served_not_run_and_take_no_settings() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let path = dir.join("spin.toml");
        let text = |extra: &str| {
            format!(
                "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                 [[trigger.http]]\nroute = \"/...\"\ncomponent = \"f\"\n\
                 [[trigger.http]]\nroute = \"/site/...\"\ncomponent = \"site\"\n\
                 [component.f]\nsource = \"f.wasm\"\n\
                 [component.site]\nsource = {{ url = \"https://example.com/v1/{}\", digest = \"sha256:0\" }}\n\
                 files = [{{ source = \"www\", destination = \"/\" }}]\n{extra}",
                STATIC_FILESERVERS[1]
            )
        };
        std::fs::write(&path, text("")).unwrap();
        let manifest = Manifest::load(&path).unwrap();
        assert_eq!(manifest.http_function().unwrap().id, "f");
        let sites = manifest.static_sites().unwrap();
        assert_eq!(sites[0].mounts, vec![(dir.join("www"), "/".to_string())]);
        std::fs::write(
            &path,
            text("environment = { FALLBACK_PATH = \"index.html\" }\n"),
        )
        .unwrap();
        let error = Manifest::load(&path).unwrap().static_sites().unwrap_err();
        assert!(format!("{error:#}").contains("no environment"), "{error:#}");
    }

    #[test]
    fn unknown_fields_and_unsupported_capabilities_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| -> anyhow::Result<HttpFunction> {
            let path = dir.path().join("spin.toml");
            std::fs::write(&path, text)?;
            Manifest::load(&path)?.http_function()
        };
        let base = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                    [variables]\nmodel = { required = true }\n\
                    [[trigger.http]]\nroute = \"/api/...\"\ncomponent = \"f\"\n\
                    [component.f]\nsource = \"f.wasm\"\n";
        let err = |extra: &str| format!("{:#}", load(&format!("{base}{extra}")).unwrap_err());
        assert!(err("colour = \"red\"\n").contains("colour"));
        assert!(err("ai_models = [\"llama2-chat\"]\n").contains("ai_models"));
        assert!(
            err("allowed_outbound_hosts = [\"https://x\"]\n").contains("allowed_outbound_hosts")
        );
        assert!(err("variables = { m = \"{{ nope }}\" }\n").contains("undeclared"));
        assert!(err("variables = { m = \"{{ model }}\" }\n").contains("SPIN_VARIABLE_MODEL"));
        let function = load(&format!(
            "{base}environment = {{ A = \"1\" }}\n[component.f.tool.ember]\nwasi_nn_source = \"g.wasm\"\nauth = \"keys\"\n"
        ))
        .unwrap();
        assert_eq!(function.env, vec![("A".to_string(), "1".to_string())]);
        assert!(function.wasi_nn_source.unwrap().ends_with("g.wasm"));
        assert_eq!(function.auth, Some(crate::tenants::AuthMode::Keys));
        assert!(format!(
            "{:#}",
            load("spin_manifest_version = 1\n[application]\nname = \"a\"\n").unwrap_err()
        )
        .contains("must be 2"));
    }
}
