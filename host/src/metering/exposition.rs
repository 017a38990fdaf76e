//! The two Prometheus exposition formats `/-/metrics` speaks: OpenMetrics 1.0 (what
//! prometheus_client writes), for scrapers that ask for it as Prometheus does, and the classic
//! text format 0.0.4 otherwise (what `promtool check metrics`, curl and older scrapers read).

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus' classic text format, version 0.0.4.
    Classic,
}

const OPENMETRICS: &str = "application/openmetrics-text";

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it ranks it above plain text
    /// (q-values honoured), else classic.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut classic) = (0.0f32, 0.0f32);
        for entry in accept.unwrap_or_default().split(',') {
            let mut parts = entry.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media_type.as_str() {
                OPENMETRICS => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => classic = classic.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    /// The `content-type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `openmetrics` (prometheus_client's output) in this format.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Classic => to_classic(&openmetrics),
        }
    }
}

/// Rewrites OpenMetrics text as the classic format: a counter's HELP and TYPE name its `_total`
/// sample, and the `# UNIT` and `# EOF` lines go (the classic format has neither). Samples are
/// written the same in both.
fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            if let Some(text) = help.take().and_then(|h| h.split_once(' ')).map(|(_, t)| t) {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_classic_text() {
        assert_eq!(
            Format::negotiate(Some(PROMETHEUS_ACCEPT)),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain, application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;q=0"),
        ] {
            assert_eq!(Format::negotiate(accept), Format::Classic, "{accept:?}");
        }
    }

    #[test]
    fn classic_text_names_counters_by_their_samples_and_has_no_unit_or_eof() {
        let openmetrics = "# HELP ember_cost Cost billed.\n# TYPE ember_cost counter\n\
            ember_cost_total{model=\"a\"} 0.5\n\
            # HELP ember_request_duration_seconds Wall time.\n\
            # TYPE ember_request_duration_seconds histogram\n\
            # UNIT ember_request_duration_seconds seconds\n\
            ember_request_duration_seconds_sum 1.0\n# EOF\n";
        assert_eq!(
            to_classic(openmetrics),
            "# HELP ember_cost_total Cost billed.\n# TYPE ember_cost_total counter\n\
            ember_cost_total{model=\"a\"} 0.5\n\
            # HELP ember_request_duration_seconds Wall time.\n\
            # TYPE ember_request_duration_seconds histogram\n\
            ember_request_duration_seconds_sum 1.0\n"
        );
        assert_eq!(Format::OpenMetrics.render(openmetrics.into()), openmetrics);
    }
}
