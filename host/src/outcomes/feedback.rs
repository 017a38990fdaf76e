//! Feedback: the true outcome of a past prediction, named by its invocation id (the reply's
//! `ember-invocation-id`), recorded beside its decision in the ledger. It arrives as JSON at
//! `POST /-/feedback` (one object, or an array for a batch) or from a CSV / JSON Lines file
//! (`ember feedback`). A batch is recorded whole or not at all; an outcome already recorded is
//! never overwritten.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context as _;
use ember_contract::{ApiError, Code};
use ember_function::catalog::{Catalog as _, DirCatalog};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde_json::Value;

/// The true outcome of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The invocation whose decision it judges.
    pub invocation_id: String,
    /// The true class.
    pub label: Label,
}

/// A class, as the sender names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// One of the model's labels.
    Name(String),
    /// A class index.
    Index(u64),
}

/// Reads a JSON body: one feedback object, or an array of them.
pub fn from_json(body: &[u8]) -> Result<Vec<Feedback>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item_from_json(item, &format!("[{i}].")))
            .collect(),
        item => Ok(vec![item_from_json(&item, "")?]),
    }
}

/// Reads a file of feedback: CSV with the header `invocation_id,label` (`.csv`), or one JSON
/// object per line (any other name).
pub fn from_file(path: &Path) -> anyhow::Result<Vec<Feedback>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut items = Vec::new();
        for (i, row) in reader.deserialize::<CsvRow>().enumerate() {
            let row = row.with_context(|| format!("{}: row {}", path.display(), i + 1))?;
            let label = match row.label.parse::<u64>() {
                Ok(index) => Label::Index(index),
                Err(_) => Label::Name(row.label),
            };
            items.push(Feedback {
                invocation_id: row.invocation_id,
                label,
            });
        }
        return Ok(items);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
            item_from_json(&value, "")
                .map_err(|e| anyhow::anyhow!("{}: line {}: {}", path.display(), i + 1, e.message))
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct CsvRow {
    invocation_id: String,
    label: String,
}

fn item_from_json(item: &Value, at: &str) -> Result<Feedback, ApiError> {
    let object = item.as_object().ok_or_else(|| {
        ApiError::new(
            Code::NotAnObject,
            format!("feedback {at}must be an object with invocation_id and label"),
        )
    })?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "invocation_id" | "label"))
    {
        return Err(ApiError::invalid(
            Code::UnknownField,
            format!("{at}{unknown}"),
            format!("'{unknown}' is not a feedback field (invocation_id, label)"),
        ));
    }
    let field = |name: &str| format!("{at}{name}");
    let invocation_id = match object.get("invocation_id") {
        None => {
            return Err(ApiError::invalid(
                Code::MissingField,
                field("invocation_id"),
                "invocation_id is required: the ember-invocation-id of the reply",
            ))
        }
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                Code::WrongType,
                field("invocation_id"),
                "invocation_id must be a non-empty string",
            ))
        }
    };
    let label = match object.get("label") {
        None => {
            return Err(ApiError::invalid(
                Code::MissingField,
                field("label"),
                "label is required: the true class, by name or index",
            ))
        }
        Some(Value::String(name)) => Label::Name(name.clone()),
        Some(Value::Number(n)) if n.as_u64().is_some() => Label::Index(n.as_u64().unwrap_or(0)),
        Some(_) => return Err(ApiError::invalid(
            Code::WrongType,
            field("label"),
            "label must be one of the model's labels (a string) or a class index (an integer ≥ 0)",
        )),
    };
    Ok(Feedback {
        invocation_id,
        label,
    })
}

/// Records `items` in the ledger at `conn`, all or none; returns how many. Each must name a
/// decided invocation without an outcome yet, and a label of the model version that decided it.
pub fn record(
    conn: &mut Connection,
    catalog: &DirCatalog,
    items: &[Feedback],
    now_us: i64,
) -> Result<usize, ApiError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(ledger_error)?;
    let mut seen = HashSet::new();
    let mut labels = Labels::default();
    for (i, item) in items.iter().enumerate() {
        let at = if items.len() > 1 {
            format!("[{i}].")
        } else {
            String::new()
        };
        if !seen.insert(item.invocation_id.as_str()) {
            return Err(duplicate(item, &at, "twice in this batch"));
        }
        let label = resolve(&tx, catalog, &mut labels, item, &at)?;
        tx.execute(
            "INSERT INTO outcomes (invocation_id, label, recorded_at_us) VALUES (?1, ?2, ?3)",
            params![item.invocation_id, label as i64, now_us],
        )
        .map_err(ledger_error)?;
    }
    tx.commit().map_err(ledger_error)?;
    Ok(items.len())
}

/// The labels of each model version a batch names, read once per batch.
type Labels = HashMap<(String, String), Vec<String>>;

/// The class index `item` names, checked against the decision it judges.
fn resolve(
    conn: &Connection,
    catalog: &DirCatalog,
    labels: &mut Labels,
    item: &Feedback,
    at: &str,
) -> Result<usize, ApiError> {
    let id_field = format!("{at}invocation_id");
    let decision = conn
        .query_row(
            "SELECT d.model, d.model_version, d.prediction IS NOT NULL,
                    EXISTS (SELECT 1 FROM outcomes o WHERE o.invocation_id = d.invocation_id)
             FROM decisions d WHERE d.invocation_id = ?1",
            [&item.invocation_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            },
        )
        .optional()
        .map_err(ledger_error)?;
    let Some((model, version, predicted, judged)) = decision else {
        let invoked = conn
            .query_row(
                "SELECT 1 FROM invocations WHERE id = ?1",
                [&item.invocation_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(ledger_error)?
            .is_some();
        return Err(if invoked {
            ApiError::invalid(
                Code::NoDecision,
                id_field,
                format!(
                    "invocation {} made no decision (it failed, or its route predicts nothing)",
                    item.invocation_id
                ),
            )
        } else {
            ApiError::invalid(
                Code::UnknownInvocation,
                id_field,
                format!("no invocation has the id {}", item.invocation_id),
            )
        });
    };
    if !predicted {
        return Err(ApiError::invalid(
            Code::NoDecision,
            id_field,
            format!(
                "invocation {} returned no class prediction to judge",
                item.invocation_id
            ),
        ));
    }
    if judged {
        return Err(duplicate(item, at, "already"));
    }
    let key = (model, version);
    if !labels.contains_key(&key) {
        let spec = catalog
            .spec(&key.0, Some(&key.1), Default::default())
            .map_err(|e| ApiError::new(e.code, format!("{} {}: {}", key.0, key.1, e.message)))?;
        labels.insert(key.clone(), spec.labels);
    }
    let (model, version) = &key;
    let labels = &labels[&key];
    let label_field = format!("{at}label");
    let known = || format!("{model} {version} has the labels {}", labels.join(", "));
    match &item.label {
        Label::Name(name) => labels.iter().position(|l| l == name).ok_or_else(|| {
            ApiError::invalid(
                Code::UnknownLabel,
                label_field,
                format!("'{name}' is not a label of the model: {}", known()),
            )
        }),
        Label::Index(index) => (*index < labels.len() as u64)
            .then_some(*index as usize)
            .ok_or_else(|| {
                ApiError::invalid(
                    Code::UnknownLabel,
                    label_field,
                    format!("class {index} does not exist: {}", known()),
                )
            }),
    }
}

fn duplicate(item: &Feedback, at: &str, how: &str) -> ApiError {
    ApiError::invalid(
        Code::DuplicateOutcome,
        format!("{at}invocation_id"),
        format!(
            "the outcome of invocation {} is recorded {how}; outcomes are never overwritten",
            item.invocation_id
        ),
    )
}

fn ledger_error(error: rusqlite::Error) -> ApiError {
    tracing::error!(%error, "recording feedback failed");
    ApiError::new(
        Code::MeteringUnavailable,
        "the ledger could not record the feedback; retry",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_or_an_array_reads_and_each_item_names_its_fault() {
        let one = from_json(br#"{"invocation_id": "a", "label": "default"}"#).unwrap();
        assert_eq!(one[0].label, Label::Name("default".into()));
        let two = from_json(
            br#"[{"invocation_id": "a", "label": 1}, {"invocation_id": "b", "label": 0}]"#,
        )
        .unwrap();
        assert_eq!(two[1].label, Label::Index(0));
        for (body, code, field) in [
            (
                &br#"[{"invocation_id": "a", "label": 1}, {"label": 0}]"#[..],
                Code::MissingField,
                Some("[1].invocation_id"),
            ),
            (
                br#"{"invocation_id": "a", "label": 1.5}"#,
                Code::WrongType,
                Some("label"),
            ),
            (
                br#"{"invocation_id": "a", "label": -1}"#,
                Code::WrongType,
                Some("label"),
            ),
            (
                br#"{"invocation_id": "a", "label": 1, "value": 2}"#,
                Code::UnknownField,
                Some("value"),
            ),
            (
                br#"{"invocation_id": "", "label": 1}"#,
                Code::WrongType,
                Some("invocation_id"),
            ),
            (br#"[3]"#, Code::NotAnObject, None),
            (br#"{"#, Code::MalformedJson, None),
        ] {
            let error = from_json(body).unwrap_err();
            assert_eq!(
                (error.code, error.field.as_deref()),
                (code, field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn csv_and_json_lines_files_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("f.csv");
        std::fs::write(&csv, "invocation_id,label\na,default\nb,0\n").unwrap();
        let jsonl = dir.path().join("f.jsonl");
        std::fs::write(
            &jsonl,
            "{\"invocation_id\":\"a\",\"label\":\"default\"}\n\n{\"invocation_id\":\"b\",\"label\":0}\n",
        )
        .unwrap();
        assert_eq!(from_file(&csv).unwrap(), from_file(&jsonl).unwrap());
        std::fs::write(&jsonl, "{\"invocation_id\":\"a\"}\n").unwrap();
        let error = format!("{:#}", from_file(&jsonl).unwrap_err());
        assert!(
            error.contains("line 1") && error.contains("label is required"),
            "{error}"
        );
    }
}
