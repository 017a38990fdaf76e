//! `models/<name>/routing.json`: which version answers a request that names none, and what the
//! aliases (`stable`, `canary`, …) point to. Written atomically by `ember models promote |
//! rollback | split | rollout | alerts`; read by the function on every request, so a change applies
//! to the next request without a restart. Its alert thresholds are read by the host only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A model's routing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Routing {
    /// Alias → version, e.g. `stable` → `1`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Weighted split for requests that name no version (canary / A-B); empty means `stable`.
    #[serde(default)]
    pub split: Vec<Weighted>,
    /// Earlier `stable` versions, oldest first: what `rollback` returns to.
    #[serde(default)]
    pub history: Vec<String>,
    /// A version that receives a copy of each request; its answer is recorded, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The version that answers when the chosen one fails (marked as a fallback in the reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// A declared answer (JSON object) for when the chosen version fails and no fallback version
    /// answers, or the function runs past its deadline (the host answers it then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_answer: Option<serde_json::Value>,
    /// When the host raises an alert about one of the model's versions; [`AlertRules::default`]
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertRules>,
}

/// Alert thresholds for a model's versions, checked by the host against live data.
// No `deny_unknown_fields`: the function reads this file too, and a typo here must not cost it the
// whole routing policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AlertRules {
    /// Raise when live accuracy falls more than this below the version's held-out accuracy.
    pub accuracy_drop: f64,
    /// Labelled predictions needed before accuracy is judged.
    pub min_labels: u32,
    /// Raise when an input feature's or the prediction mix's PSI exceeds this.
    pub psi: f64,
    /// Raise when more than this share of the version's recent invocations failed (5xx).
    pub error_rate: f64,
    /// Invocations needed before the error rate is judged.
    pub min_requests: u32,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            accuracy_drop: 0.03,
            min_labels: 200,
            psi: 0.25,
            error_rate: 0.01,
            min_requests: 100,
        }
    }
}

/// One version's share of a split.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Weighted {
    /// Version.
    pub version: String,
    /// Relative weight.
    pub weight: u32,
}

/// What a split decision is made from: the caller's key (sticky) or fresh entropy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pick<'a> {
    /// A stable caller identity (`ember-caller-key` header): the same key gets the same version.
    pub caller_key: Option<&'a str>,
    /// Random bits for callers without a key.
    pub entropy: u64,
}

impl Routing {
    /// The alias `stable`.
    pub fn stable(&self) -> Option<&str> {
        self.aliases.get("stable").map(String::as_str)
    }

    /// The version for a request that names none: by split weight, else `stable`.
    pub fn choose(&self, pick: Pick) -> Option<&str> {
        let total: u64 = self.split.iter().map(|w| w.weight as u64).sum();
        if total == 0 {
            return self.stable();
        }
        let draw = pick.caller_key.map(fnv1a).unwrap_or(pick.entropy) % total;
        let mut acc = 0u64;
        for w in &self.split {
            acc += w.weight as u64;
            if draw < acc {
                return Some(&w.version);
            }
        }
        self.stable()
    }

    /// Makes `version` stable (remembering the previous one) and ends any split.
    pub fn promote(&mut self, version: &str) {
        if let Some(previous) = self.stable().map(str::to_string) {
            if previous != version {
                self.history.push(previous);
            }
        }
        self.aliases.insert("stable".into(), version.into());
        self.split.clear();
    }

    /// The policy's revision, an HTTP entity tag (quoted): equal for equal policies, different
    /// (but for FNV-1a collisions) for any change.
    pub fn revision(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("\"{:016x}\"", fnv1a(&json))
    }

    /// Returns `stable` to the version before it; `None` if there is no earlier version.
    pub fn rollback(&mut self) -> Option<String> {
        let previous = self.history.pop()?;
        self.aliases.insert("stable".into(), previous.clone());
        self.split.clear();
        Some(previous)
    }
}

/// FNV-1a: a stable, dependency-free hash for sticky assignment.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(&str, u32)]) -> Routing {
        Routing {
            aliases: BTreeMap::from([("stable".into(), "1".into())]),
            split: weights
                .iter()
                .map(|(v, w)| Weighted {
                    version: v.to_string(),
                    weight: *w,
                })
                .collect(),
            history: vec![],
            shadow: None,
            fallback: None,
            default_answer: None,
            alerts: None,
        }
    }

    #[test]
    fn without_a_split_stable_answers() {
        assert_eq!(split(&[]).choose(Pick::default()), Some("1"));
    }

    #[test]
    fn a_split_follows_its_weights_and_is_sticky_per_caller() {
        let routing = split(&[("1", 90), ("2", 10)]);
        let canary = (0..10_000u64)
            .filter(|e| {
                routing.choose(Pick {
                    caller_key: None,
                    entropy: e.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                }) == Some("2")
            })
            .count();
        assert!((800..1200).contains(&canary), "{canary}");
        let key = Pick {
            caller_key: Some("customer-42"),
            entropy: 0,
        };
        let first = routing.choose(key);
        for entropy in 0..50 {
            assert_eq!(routing.choose(Pick { entropy, ..key }), first);
        }
    }

    #[test]
    fn promote_then_rollback_returns_to_the_previous_stable() {
        let mut routing = split(&[("1", 50), ("2", 50)]);
        routing.promote("2");
        assert_eq!(routing.stable(), Some("2"));
        assert!(routing.split.is_empty());
        assert_eq!(routing.rollback().as_deref(), Some("1"));
        assert_eq!(routing.stable(), Some("1"));
        assert_eq!(routing.rollback(), None);
    }
}
