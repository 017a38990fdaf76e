//! Finding model versions: `<root>/<name>/<version>/model.json` (the request-time twin of
//! `model.toml`), read from a (preopened) directory.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::routing::{Pick, Routing};
use crate::spec::ModelSpec;
use crate::text::TextEncoder;
use ember_contract::names::{ROUTING_FILE, SPEC_FILE};
use ember_contract::{ApiError, Code};

/// A model, the versions it has on disk (oldest first) and its aliases.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelVersions {
    /// Model name.
    pub name: String,
    /// Versions, ascending.
    pub versions: Vec<String>,
    /// Alias → version (`stable`, `canary`, …).
    pub aliases: std::collections::BTreeMap<String, String>,
}

/// Where the function looks up model specs.
pub trait Catalog {
    /// The spec of `name` at `version` — a number or an alias such as `stable` — or, when
    /// `version` is `None`, at the version `routing` picks (split, else `stable`, else the newest).
    fn spec_routed(
        &self,
        name: &str,
        version: Option<&str>,
        routing: &Routing,
        pick: Pick,
    ) -> Result<ModelSpec, ApiError>;

    /// [`Catalog::spec_routed`] with the model's own routing, read only when the version is not
    /// a plain number.
    fn spec(&self, name: &str, version: Option<&str>, pick: Pick) -> Result<ModelSpec, ApiError> {
        match version {
            Some(v) if is_valid_version(v) => {
                self.spec_routed(name, version, &Routing::default(), pick)
            }
            _ => self.spec_routed(name, version, &self.routing(name), pick),
        }
    }
    /// Every model with its versions, sorted by name.
    fn models(&self) -> Vec<ModelVersions>;
    /// A model's routing (aliases, split, shadow, fallback); the default when it has none.
    fn routing(&self, name: &str) -> Routing;
    /// The tokenizer of a text model's version (`[text] tokenizer`, beside its graph).
    fn text_encoder(&self, spec: &ModelSpec) -> Result<Arc<TextEncoder>, ApiError>;
}

/// A catalog over a models directory laid out as `<name>/<version>/model.{toml,json}`.
#[derive(Debug, Clone)]
pub struct DirCatalog {
    root: PathBuf,
}

impl DirCatalog {
    /// A catalog rooted at `root` (the guest sees the models directory at `/models`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder holding one version's files (`model.toml`, `model.json`, `model.onnx`).
    pub fn version_path(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(name).join(version)
    }

    /// The root this catalog reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a model's routing lives.
    pub fn routing_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join(ROUTING_FILE)
    }

    fn versions_of(&self, name: &str) -> Vec<String> {
        let mut versions: Vec<u64> = std::fs::read_dir(self.root.join(name))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(SPEC_FILE).is_file())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        versions.sort_unstable();
        versions.iter().map(u64::to_string).collect()
    }
}

/// Model names are lowercase ASCII words with `-`, `_` or `.`; they never form a path.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Versions are positive integers without leading zeros.
pub fn is_valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 12
        && !version.starts_with('0')
        && version.bytes().all(|b| b.is_ascii_digit())
}

impl DirCatalog {
    /// The version `name` is asked at — a number or an alias — or, when `version` is `None`, the
    /// one `routing` picks (split, else `stable`, else the newest); its spec is not read.
    pub fn resolve_version(
        &self,
        name: &str,
        version: Option<&str>,
        routing: &Routing,
        pick: Pick,
    ) -> Result<String, ApiError> {
        if !is_valid_name(name) {
            return Err(unknown_model(name));
        }
        Ok(match version {
            Some(v) if is_valid_version(v) => v.to_string(),
            Some(alias) if is_valid_name(alias) => routing
                .aliases
                .get(alias)
                .cloned()
                .ok_or_else(|| unknown_version(name, alias))?,
            Some(v) => return Err(unknown_version(name, v)),
            None => match routing.choose(pick) {
                Some(v) => v.to_string(),
                None => self
                    .versions_of(name)
                    .pop()
                    .ok_or_else(|| unknown_model(name))?,
            },
        })
    }

    /// Reads and parses the spec of `name` at a resolved `version`.
    pub fn read_spec(&self, name: &str, version: &str) -> Result<ModelSpec, ApiError> {
        let path = self.root.join(name).join(version).join(SPEC_FILE);
        let text = std::fs::read(&path).map_err(|_| {
            if self.root.join(name).is_dir() {
                unknown_version(name, version)
            } else {
                unknown_model(name)
            }
        })?;
        ModelSpec::from_json(&text).map_err(|_| {
            ApiError::new(
                Code::ModelNotReady,
                format!("model '{name}' version {version} is misconfigured"),
            )
        })
    }
}

impl DirCatalog {
    /// Reads and parses `spec`'s tokenizer; a text model without a readable one is not ready.
    pub fn read_text_encoder(&self, spec: &ModelSpec) -> Result<TextEncoder, ApiError> {
        let not_ready = || {
            ApiError::new(
                Code::ModelNotReady,
                format!(
                    "model '{}' version {} has no usable tokenizer",
                    spec.name, spec.version
                ),
            )
        };
        let text = spec.text.as_ref().ok_or_else(not_ready)?;
        if !is_valid_name(&text.tokenizer) {
            return Err(not_ready());
        }
        let path = self
            .version_path(&spec.name, &spec.version)
            .join(&text.tokenizer);
        let bytes = std::fs::read(path).map_err(|_| not_ready())?;
        TextEncoder::from_bytes(&bytes, text).map_err(|_| not_ready())
    }
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::new(Code::UnknownModel, format!("no model named '{name}'")).with_field("model")
}

fn unknown_version(name: &str, version: &str) -> ApiError {
    ApiError::new(
        Code::UnknownVersion,
        format!("model '{name}' has no version or alias '{version}'"),
    )
    .with_field("version")
}

impl Catalog for DirCatalog {
    fn spec_routed(
        &self,
        name: &str,
        version: Option<&str>,
        routing: &Routing,
        pick: Pick,
    ) -> Result<ModelSpec, ApiError> {
        let version = self.resolve_version(name, version, routing, pick)?;
        self.read_spec(name, &version)
    }

    fn routing(&self, name: &str) -> Routing {
        if !is_valid_name(name) {
            return Routing::default();
        }
        std::fs::read(self.routing_path(name))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn text_encoder(&self, spec: &ModelSpec) -> Result<Arc<TextEncoder>, ApiError> {
        self.read_text_encoder(spec).map(Arc::new)
    }

    fn models(&self) -> Vec<ModelVersions> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_valid_name(n))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| ModelVersions {
                versions: self.versions_of(&name),
                aliases: self.routing(&name).aliases,
                name,
            })
            .filter(|m| !m.versions.is_empty())
            .collect()
    }
}
