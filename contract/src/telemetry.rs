//! The record a prediction leaves for the host — the audit trail, drift monitoring and shadow and
//! fallback accounting read it. The function sends it as JSON in one private header
//! ([`headers::TELEMETRY`](crate::headers::TELEMETRY)), which Ember's host strips.

use serde::{Deserialize, Serialize};

/// What the host records about one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// The inputs as the model saw them (tabular row; mean intensity for images), for drift.
    pub features: Vec<f64>,
    /// The predicted class; `None` when a declared default answer names none.
    pub prediction: Option<usize>,
    /// The shadow version's answer, compared with the returned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// Set when another version (or the declared default answer) answered for a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// A shadow version's answer to the same request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    /// Shadow version.
    pub version: String,
    /// Its predicted class.
    pub prediction: usize,
    /// Whether it agrees with the returned prediction.
    pub agrees: bool,
}

/// The version that failed when a fallback answered, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    /// The version that failed.
    pub from_version: String,
    /// Its error code.
    pub reason: String,
}

impl Telemetry {
    /// The record as a header value (JSON; only ASCII, as header values must be).
    pub fn to_header(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        // Versions and codes are ASCII names, so this is the usual case: no copy.
        if json.is_ascii() {
            return json;
        }
        // Escape anything else (it can only sit inside JSON strings) rather than drop the record.
        let mut ascii = String::with_capacity(json.len() + 16);
        for c in json.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        ascii
    }

    /// Parses a header value written by [`Telemetry::to_header`].
    pub fn from_header(value: &str) -> Option<Self> {
        serde_json::from_str(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_through_its_header() {
        let telemetry = Telemetry {
            features: vec![24.0, 80600.5, f64::MIN_POSITIVE],
            prediction: Some(1),
            shadow: Some(Shadow {
                version: "2".into(),
                prediction: 0,
                agrees: false,
            }),
            fallback: Some(Fallback {
                from_version: "ü3".into(),
                reason: "inference_failed".into(),
            }),
        };
        let header = telemetry.to_header();
        assert!(header.is_ascii(), "{header}");
        assert_eq!(Telemetry::from_header(&header), Some(telemetry));
        assert_eq!(Telemetry::from_header("0:1"), None);
    }
}
