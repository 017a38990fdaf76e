//! Header names of the contract. Names under [`PRIVATE_PREFIX`] travel from the function to the
//! host only: Ember's host strips them before a reply leaves.

/// Request: the caller's identity, for sticky traffic splits.
pub const CALLER_KEY: &str = "ember-caller-key";

/// Request: an API key, for clients that cannot send `Authorization: Bearer` (the key as the
/// whole value).
pub const API_KEY: &str = "x-api-key";

/// Reply (IETF RateLimit fields): the request quota of the caller's key, i.e. its burst.
pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";

/// Reply: requests the caller's key may still make at once.
pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";

/// Reply: seconds until the caller's quota is whole again.
pub const RATELIMIT_RESET: &str = "ratelimit-reset";

/// Request and reply (KServe v2 binary tensor data extension): the length of the JSON header that
/// the raw tensor bytes follow.
pub const INFERENCE_HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// Reply: the model that answered (also on errors, once a model was resolved).
pub const MODEL: &str = "ember-model";

/// Reply: the model version that answered.
pub const MODEL_VERSION: &str = "ember-model-version";

/// Reply, host-set: the invocation's id in the usage ledger.
pub const INVOCATION_ID: &str = "ember-invocation-id";

/// Reply, host-set: the invocation's price, `<amount> <currency>`.
pub const COST: &str = "ember-cost";

/// Reply, host-set: the invocation's wall time in µs.
pub const DURATION_US: &str = "ember-duration-us";

/// Prefix of function→host headers that never reach a client.
pub const PRIVATE_PREFIX: &str = "ember-x-";

/// Reply, function→host: the prediction's [`Telemetry`](crate::Telemetry) record as JSON.
pub const TELEMETRY: &str = "ember-x-telemetry";

/// Request header Ember's host sets for a caller whose API key is limited to some models: the
/// models, comma-separated. The function enforces it where the model is named in the body
/// (`/v1/embeddings`); the host removes any a client sends (every [`PRIVATE_PREFIX`] header).
pub const ALLOWED_MODELS: &str = "ember-x-allowed-models";

/// Request header Ember's host sets to the invocation id it will record the request under, so a
/// function that keeps its own records (the Spin build) files them under the same id; the host
/// removes any a client sends (every [`PRIVATE_PREFIX`] header).
pub const INVOCATION_ID_HINT: &str = "ember-x-invocation-id";

/// Reply of the management API's routing endpoint: the policy's revision.
pub const ETAG: &str = "etag";

/// Request to the management API's routing endpoint: change only the revision named (else 412).
pub const IF_MATCH: &str = "if-match";
