//! Live quality of a model version from the outcomes recorded for its predictions: accuracy with
//! its 95% Wilson interval, precision / recall / F1 per class, ROC AUC and the Brier score where
//! the reply carried probabilities. A version's predictions are the answers it returned and, while
//! it shadows another version, the predictions it made on that version's requests (so a shadow or
//! canary is judged on live traffic before it answers any).

use std::collections::BTreeMap;

use rusqlite::{params, Connection};
use serde::Serialize;

/// Labelled predictions judged per version in the sliding window (`ember models quality
/// --window`, the alerts, `/-/metrics`).
pub const WINDOW: usize = 1000;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_964;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One prediction whose true outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// When the request arrived, µs since the Unix epoch.
    pub at_us: i64,
    /// The predicted class.
    pub predicted: usize,
    /// The true class.
    pub truth: usize,
    /// The class probabilities the reply carried (none for a shadow's prediction).
    pub probabilities: Option<Vec<f64>>,
}

/// Quality of a set of labelled predictions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    /// Labelled predictions judged.
    pub labelled: usize,
    /// Share predicted right.
    pub accuracy: Option<f64>,
    /// 95% Wilson interval of the accuracy.
    pub accuracy_ci95: Option<[f64; 2]>,
    /// Per class, in label order.
    pub classes: Vec<ClassQuality>,
    /// Mean F1 over the classes that were predicted or true.
    pub macro_f1: Option<f64>,
    /// Labelled predictions that carried probabilities (what AUC and Brier are computed over).
    pub scored: usize,
    /// ROC AUC (binary: of the second class; more classes: mean one-vs-rest).
    pub auc: Option<f64>,
    /// Brier score (binary: mean (p − y)² of the second class; more classes: mean Σ (p_k − y_k)²).
    pub brier: Option<f64>,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassQuality {
    /// The class's label.
    pub label: String,
    /// Labelled predictions whose truth is this class.
    pub support: usize,
    /// Of the predictions of this class, the share that were right.
    pub precision: Option<f64>,
    /// Of the truths of this class, the share predicted.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall.
    pub f1: Option<f64>,
}

impl Quality {
    /// Judges `rows` of a model whose classes are `labels`.
    pub fn of(labels: &[String], rows: &[Labelled]) -> Self {
        let n = rows.len();
        let right = rows.iter().filter(|r| r.predicted == r.truth).count();
        let accuracy = (n > 0).then(|| right as f64 / n as f64);
        let classes: Vec<ClassQuality> = labels
            .iter()
            .enumerate()
            .map(|(k, label)| {
                let predicted = rows.iter().filter(|r| r.predicted == k).count();
                let support = rows.iter().filter(|r| r.truth == k).count();
                let hits = rows
                    .iter()
                    .filter(|r| r.truth == k && r.predicted == k)
                    .count();
                let precision = (predicted > 0).then(|| hits as f64 / predicted as f64);
                let recall = (support > 0).then(|| hits as f64 / support as f64);
                // 2PR / (P + R), written so that a class never predicted (or never true) scores
                // 0 rather than nothing.
                let f1 = (predicted + support > 0)
                    .then(|| 2.0 * hits as f64 / (predicted + support) as f64);
                ClassQuality {
                    label: label.clone(),
                    support,
                    precision,
                    recall,
                    f1,
                }
            })
            .collect();
        let f1s: Vec<f64> = classes.iter().filter_map(|c| c.f1).collect();
        let scored: Vec<(&[f64], usize)> = rows
            .iter()
            .filter_map(|r| {
                let p = r.probabilities.as_deref()?;
                (p.len() == labels.len()).then_some((p, r.truth))
            })
            .collect();
        Self {
            labelled: n,
            accuracy,
            accuracy_ci95: accuracy.map(|p| wilson(p, n)),
            macro_f1: (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64),
            classes,
            scored: scored.len(),
            auc: auc(labels.len(), &scored),
            brier: brier(labels.len(), &scored),
        }
    }
}

/// The 95% Wilson score interval of a proportion `p` of `n`.
fn wilson(p: f64, n: usize) -> [f64; 2] {
    let n = n as f64;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// ROC AUC: binary, of the second class's probability; otherwise the mean one-vs-rest AUC over
/// the classes with both positives and negatives.
fn auc(classes: usize, scored: &[(&[f64], usize)]) -> Option<f64> {
    let one_vs_rest = |k: usize| {
        let points: Vec<(f64, bool)> = scored.iter().map(|(p, t)| (p[k], *t == k)).collect();
        rank_auc(&points)
    };
    if classes == 2 {
        return one_vs_rest(1);
    }
    let aucs: Vec<f64> = (0..classes).filter_map(one_vs_rest).collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// Mann–Whitney AUC of `(score, positive)` points, ties counted half.
fn rank_auc(points: &[(f64, bool)]) -> Option<f64> {
    let positives = points.iter().filter(|(_, p)| *p).count();
    let negatives = points.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based), ties sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * sorted[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let (pos, neg) = (positives as f64, negatives as f64);
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

fn brier(classes: usize, scored: &[(&[f64], usize)]) -> Option<f64> {
    if scored.is_empty() {
        return None;
    }
    let indicator = |truth: usize, k: usize| if truth == k { 1.0 } else { 0.0 };
    let total: f64 = scored
        .iter()
        .map(|(p, t)| match classes {
            2 => (p[1] - indicator(*t, 1)).powi(2),
            _ => (0..classes)
                .map(|k| (p[k] - indicator(*t, k)).powi(2))
                .sum(),
        })
        .sum();
    Some(total / scored.len() as f64)
}

/// A time range, µs since the Unix epoch, `[since, until)`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Start, inclusive.
    pub since_us: i64,
    /// End, exclusive.
    pub until_us: i64,
}

impl Span {
    /// All of time.
    pub const ALL: Span = Span {
        since_us: 0,
        until_us: i64::MAX,
    };
}

/// The latest `limit` labelled predictions of `model` `version` within `span`, oldest first: its
/// answers (not a declared default answer standing in for it) and its shadow predictions.
pub fn labelled(
    conn: &Connection,
    model: &str,
    version: &str,
    span: Span,
    limit: usize,
) -> rusqlite::Result<Vec<Labelled>> {
    // The outcomes drive the join (CROSS JOIN keeps SQLite from scanning every decision of the
    // version instead): labelled decisions are a small share of all.
    let mut stmt = conn.prepare_cached(
        "SELECT d.started_at_us, d.prediction, d.output, o.label
         FROM outcomes o CROSS JOIN decisions d ON d.invocation_id = o.invocation_id
         WHERE d.model = ?1 AND d.model_version = ?2 AND d.started_at_us >= ?3
           AND d.started_at_us < ?4 AND d.prediction IS NOT NULL
           AND (d.fallback_from IS NULL OR d.fallback_from != d.model_version)
         UNION ALL
         SELECT d.started_at_us, d.shadow_prediction, NULL, o.label
         FROM outcomes o CROSS JOIN decisions d ON d.invocation_id = o.invocation_id
         WHERE d.model = ?1 AND d.shadow_version = ?2 AND d.started_at_us >= ?3
           AND d.started_at_us < ?4 AND d.shadow_prediction IS NOT NULL
         ORDER BY 1 DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![model, version, span.since_us, span.until_us, limit as i64],
        |row| {
            let output: Option<String> = row.get(2)?;
            Ok(Labelled {
                at_us: row.get(0)?,
                predicted: row.get::<_, i64>(1)? as usize,
                truth: row.get::<_, i64>(3)? as usize,
                probabilities: output.as_deref().and_then(probabilities),
            })
        },
    )?;
    let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// The `probabilities` of a prediction reply.
fn probabilities(reply: &str) -> Option<Vec<f64>> {
    let reply: serde_json::Value = serde_json::from_str(reply).ok()?;
    reply
        .get("probabilities")?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_f64)
        .collect()
}

/// `rows` grouped by UTC day (`YYYY-MM-DD`), oldest first.
pub fn by_day(rows: &[Labelled]) -> BTreeMap<String, Vec<Labelled>> {
    let mut days: BTreeMap<String, Vec<Labelled>> = BTreeMap::new();
    for row in rows {
        let day = chrono::DateTime::from_timestamp_micros(row.at_us - row.at_us % MICROS_PER_DAY)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        days.entry(day).or_default().push(row.clone());
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["repaid".into(), "default".into()]
    }

    fn row(predicted: usize, truth: usize, p1: f64) -> Labelled {
        Labelled {
            at_us: 0,
            predicted,
            truth,
            probabilities: Some(vec![1.0 - p1, p1]),
        }
    }

    #[test]
    fn confusion_counts_give_accuracy_precision_recall_and_f1() {
        // truth 1: predicted 1, 1, 0; truth 0: predicted 0, 0, 1, 0.
        let rows = [
            row(1, 1, 0.9),
            row(1, 1, 0.8),
            row(0, 1, 0.4),
            row(0, 0, 0.1),
            row(0, 0, 0.2),
            row(1, 0, 0.6),
            row(0, 0, 0.3),
        ];
        let q = Quality::of(&labels(), &rows);
        assert_eq!(q.labelled, 7);
        assert_eq!(q.accuracy, Some(5.0 / 7.0));
        let default = &q.classes[1];
        assert_eq!(default.support, 3);
        assert_eq!(default.precision, Some(2.0 / 3.0));
        assert_eq!(default.recall, Some(2.0 / 3.0));
        let repaid = &q.classes[0];
        assert_eq!(repaid.precision, Some(3.0 / 4.0));
        assert_eq!(repaid.recall, Some(3.0 / 4.0));
        // Scores: positives 0.9, 0.8, 0.4; negatives 0.1, 0.2, 0.6, 0.3: 11 of 12 pairs ordered.
        assert!((q.auc.unwrap() - 11.0 / 12.0).abs() < 1e-12);
        let brier = (0.01 + 0.04 + 0.36 + 0.01 + 0.04 + 0.36 + 0.09) / 7.0;
        assert!((q.brier.unwrap() - brier).abs() < 1e-12);
        let [low, high] = q.accuracy_ci95.unwrap();
        assert!(low < 5.0 / 7.0 && 5.0 / 7.0 < high && low > 0.3 && high < 0.95);
    }

    #[test]
    fn a_class_never_predicted_scores_f1_zero_in_the_macro_mean() {
        // Always "repaid": right on the 3 repaid, wrong on the 1 default.
        let rows = [
            row(0, 0, 0.1),
            row(0, 0, 0.2),
            row(0, 0, 0.3),
            row(0, 1, 0.4),
        ];
        let q = Quality::of(&labels(), &rows);
        assert_eq!(q.classes[1].precision, None);
        assert_eq!(q.classes[1].f1, Some(0.0));
        let repaid = 2.0 * 3.0 / (4.0 + 3.0);
        assert_eq!(q.classes[0].f1, Some(repaid));
        assert_eq!(q.macro_f1, Some(repaid / 2.0));
    }

    #[test]
    fn ties_count_half_and_one_sided_sets_have_no_auc() {
        assert_eq!(rank_auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(rank_auc(&[(0.5, true), (0.7, true)]), None);
        let q = Quality::of(&labels(), &[]);
        assert_eq!(
            (q.accuracy, q.auc, q.brier, q.macro_f1),
            (None, None, None, None)
        );
    }

    #[test]
    fn shadow_predictions_count_for_accuracy_but_not_for_scores() {
        let mut shadow = row(1, 1, 0.0);
        shadow.probabilities = None;
        let q = Quality::of(&labels(), &[row(0, 1, 0.3), shadow]);
        assert_eq!((q.labelled, q.scored), (2, 1));
        assert_eq!(q.accuracy, Some(0.5));
    }

    #[test]
    fn wilson_interval_matches_its_closed_form() {
        // 80 of 100: the textbook interval is [0.7112, 0.8666].
        let [low, high] = wilson(0.8, 100);
        assert!((low - 0.7112).abs() < 1e-4 && (high - 0.8666).abs() < 1e-4);
    }
}
