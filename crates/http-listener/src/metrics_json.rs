//! `/metrics.json`: the text exposition of a registry turned into JSON,
//! one object per metric family:
//!
//! ```json
//! {"proxy_connections_accepted": {"type": "counter", "help": "...",
//!   "samples": [{"name": "proxy_connections_accepted_total",
//!                "labels": {"listener": "127.0.0.1:1080"}, "value": 3.0}]}}
//! ```

use serde::Serialize;
use std::collections::BTreeMap;

/// One metric family.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct MetricFamily {
    /// `counter`, `gauge`, `histogram`, ... (empty if never declared).
    #[serde(rename = "type")]
    pub kind: String,
    /// The help text.
    pub help: String,
    /// Every sample of the family.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The sample's name (`..._total`, `..._bucket`, ...).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (non-finite values serialize as `null`).
    pub value: f64,
}

/// Parse a Prometheus/OpenMetrics text exposition. Lines that do not parse
/// are skipped: this is a view of our own encoder's output.
pub fn parse_exposition(text: &str) -> BTreeMap<String, MetricFamily> {
    let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let rest = parts.next().unwrap_or("").to_owned();
            let family = families.entry(name.to_owned()).or_default();
            match keyword {
                "HELP" => family.help = rest,
                "TYPE" => family.kind = rest,
                _ => continue,
            }
            current = Some(name.to_owned());
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        let family = match &current {
            Some(name) if sample.name.starts_with(name.as_str()) => name.clone(),
            _ => sample.name.clone(),
        };
        families.entry(family).or_default().samples.push(sample);
    }
    families
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?;
    let value = value.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parse `k="v",k2="v2"}` (the opening brace already consumed); returns
/// the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_owned();
        let mut chars = text[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        text = &text[eq + 1 + 1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_prometheus_client_writes() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::histogram::Histogram;
        let mut registry = prometheus_client::registry::Registry::default();
        let family = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("requests", "requests served", family.clone());
        family
            .get_or_create(&vec![("listener".into(), "127.0.0.1:1080".into())])
            .inc_by(3);
        let histogram = Histogram::new([0.5, 1.0]);
        histogram.observe(0.7);
        registry.register("latency", "latency seen", histogram);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        let families = parse_exposition(&text);
        let requests = &families["requests"];
        assert_eq!(requests.kind, "counter");
        assert!(requests.help.starts_with("requests served"));
        assert_eq!(requests.samples.len(), 1);
        assert_eq!(requests.samples[0].name, "requests_total");
        assert_eq!(requests.samples[0].labels["listener"], "127.0.0.1:1080");
        assert_eq!(requests.samples[0].value, 3.0);

        let latency = &families["latency"];
        assert_eq!(latency.kind, "histogram");
        let inf = latency
            .samples
            .iter()
            .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 1.0);
        assert!(latency.samples.iter().any(|s| s.name == "latency_sum"));
        // prometheus-client writes label values unescaped; escapes that
        // other encoders write are still understood.
        let escaped = parse_exposition("x{a=\"q\\\"\\\\\",b=\"2\"} 1\n");
        assert_eq!(escaped["x"].samples[0].labels["a"], "q\"\\");
        assert_eq!(escaped["x"].samples[0].labels["b"], "2");
        let json = serde_json::to_value(&families).unwrap();
        assert_eq!(json["requests"]["samples"][0]["value"], 3.0);
    }
}
