//! Rollout guards: `accuracy>=baseline-0.02,error_rate<0.01,agreement>=0.9` — each a metric of
//! the candidate version over the current step, a comparison, and a bound that is a number or the
//! baseline version's value of the same metric (plus or minus an offset).

use std::fmt;

use serde::Serialize;

/// What a guard measures, over the candidate's decisions in the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of its labelled predictions that were right (answers and shadow predictions).
    Accuracy,
    /// ROC AUC of its answers' probabilities.
    Auc,
    /// Brier score of its answers' probabilities (lower is better).
    Brier,
    /// Share of its invocations that failed (5xx, or fell back to another version).
    ErrorRate,
    /// Share of its shadow predictions that agreed with the answer returned.
    Agreement,
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "accuracy" => Metric::Accuracy,
            "auc" => Metric::Auc,
            "brier" => Metric::Brier,
            "error_rate" => Metric::ErrorRate,
            "agreement" => Metric::Agreement,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Auc => "auc",
            Metric::Brier => "brier",
            Metric::ErrorRate => "error_rate",
            Metric::Agreement => "agreement",
        }
    }

    /// Whether the baseline version has a value to compare with (its quality; not its error rate
    /// or agreement, which describe the candidate's traffic alone).
    fn has_baseline(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::Auc | Metric::Brier)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `<=`
    AtMost,
    /// `<`
    Below,
}

impl Op {
    const ALL: [(&'static str, Op); 4] = [
        (">=", Op::AtLeast),
        ("<=", Op::AtMost),
        (">", Op::Above),
        ("<", Op::Below),
    ];

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::AtLeast => value >= bound,
            Op::Above => value > bound,
            Op::AtMost => value <= bound,
            Op::Below => value < bound,
        }
    }

    fn symbol(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map(|(s, _)| *s)
            .unwrap_or_default()
    }
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A fixed number.
    Value(f64),
    /// The baseline version's value of the metric, plus this offset.
    Baseline(f64),
}

/// One guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub op: Op,
    /// With what.
    pub bound: Bound,
}

/// A guard's verdict on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It holds.
    Pass,
    /// It does not: the rollout rolls back.
    Fail,
    /// Too little evidence yet (fewer than the rollout's minimum): the step waits.
    Insufficient,
}

impl Guard {
    /// Parses a comma-separated list of guards.
    pub fn parse_list(text: &str) -> Result<Vec<Guard>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(Guard::parse)
            .collect()
    }

    fn parse(text: &str) -> Result<Guard, String> {
        let (at, symbol, op) = Op::ALL
            .iter()
            .filter_map(|(symbol, op)| text.find(symbol).map(|at| (at, *symbol, *op)))
            .min_by_key(|(at, symbol, _)| (*at, std::cmp::Reverse(symbol.len())))
            .ok_or_else(|| format!("guard '{text}' has no comparison (>=, >, <=, <)"))?;
        let name = text[..at].trim();
        let metric = Metric::parse(name).ok_or_else(|| {
            format!("guard '{text}': unknown metric '{name}' (accuracy, auc, brier, error_rate, agreement)")
        })?;
        let bound_text = text[at + symbol.len()..].trim();
        let bound = match bound_text.strip_prefix("baseline") {
            Some(offset) if metric.has_baseline() => {
                let offset = offset.replace(' ', "");
                Bound::Baseline(if offset.is_empty() {
                    0.0
                } else {
                    offset
                        .parse::<f64>()
                        .map_err(|_| format!("guard '{text}': '{offset}' is not ±number"))?
                })
            }
            Some(_) => {
                return Err(format!(
                    "guard '{text}': {name} has no baseline; compare it with a number"
                ))
            }
            None => Bound::Value(
                bound_text
                    .parse()
                    .map_err(|_| format!("guard '{text}': '{bound_text}' is not a number"))?,
            ),
        };
        Ok(Guard { metric, op, bound })
    }

    /// Judges the guard on the candidate's `value` and the baseline's value of the same metric
    /// (`None`: not enough evidence for either).
    pub fn judge(&self, value: Option<f64>, baseline: Option<f64>) -> (Option<f64>, Verdict) {
        let bound = match self.bound {
            Bound::Value(v) => Some(v),
            Bound::Baseline(offset) => baseline.map(|b| b + offset),
        };
        let verdict = match (value, bound) {
            (Some(value), Some(bound)) if self.op.holds(value, bound) => Verdict::Pass,
            (Some(_), Some(_)) => Verdict::Fail,
            _ => Verdict::Insufficient,
        };
        (bound, verdict)
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.metric.name(), self.op.symbol())?;
        match self.bound {
            Bound::Value(v) => write!(f, "{v}"),
            Bound::Baseline(0.0) => write!(f, "baseline"),
            Bound::Baseline(offset) => write!(f, "baseline{offset:+}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_example_parses_and_prints_back() {
        let text = "accuracy>=baseline-0.02,error_rate<0.01,agreement>=0.9";
        let guards = Guard::parse_list(text).unwrap();
        assert_eq!(
            guards[0],
            Guard {
                metric: Metric::Accuracy,
                op: Op::AtLeast,
                bound: Bound::Baseline(-0.02)
            }
        );
        assert_eq!(guards[1].op, Op::Below);
        let printed: Vec<String> = guards.iter().map(Guard::to_string).collect();
        assert_eq!(printed.join(","), text);
    }

    #[test]
    fn bad_guards_say_what_is_wrong() {
        for (text, says) in [
            ("accuracy=0.9", "no comparison"),
            ("speed>=1", "unknown metric"),
            ("error_rate<baseline", "has no baseline"),
            ("accuracy>=high", "not a number"),
            ("auc>=baseline*2", "not ±number"),
        ] {
            let error = Guard::parse_list(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn verdicts_need_both_sides() {
        let guard = &Guard::parse_list("accuracy>=baseline-0.02").unwrap()[0];
        assert_eq!(guard.judge(Some(0.76), Some(0.79)).1, Verdict::Fail);
        assert_eq!(guard.judge(Some(0.78), Some(0.79)).1, Verdict::Pass);
        assert_eq!(guard.judge(None, Some(0.79)).1, Verdict::Insufficient);
        assert_eq!(guard.judge(Some(0.78), None).1, Verdict::Insufficient);
    }
}
