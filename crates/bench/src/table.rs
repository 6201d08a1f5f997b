//! `table` mode: turn the `--json` lines of many runs into one markdown
//! table of medians per configuration (label), plus ratio rows.

use crate::cli::Goal;
use crate::stats::median;
use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The columns: (mode, JSON field, header, divisor for display).
const COLUMNS: &[(&str, &str, &str, f64)] = &[
    ("conn", "conn_per_sec", "conn/s", 1.0),
    ("conn", "p50_us", "p50 ms", 1000.0),
    ("conn", "p99_us", "p99 ms", 1000.0),
    ("bulk", "gbit_per_sec", "Gbit/s", 1.0),
    ("hold", "kib_per_tunnel", "KiB/tunnel RSS", 1.0),
    ("hold", "pss_kib_per_tunnel", "KiB/tunnel PSS", 1.0),
    ("conn", "proxy_cpu_us_per_conn", "proxy CPU µs/conn", 1.0),
    ("bulk", "proxy_cpu_ms_per_gib", "proxy CPU ms/GiB", 1.0),
];

/// Every sample of one configuration.
#[derive(Debug, Default)]
struct Samples {
    label: String,
    /// One list of values per entry of [`COLUMNS`].
    values: Vec<Vec<f64>>,
    /// Runs per mode; the table shows the largest count as "rounds".
    runs: BTreeMap<String, usize>,
    errors: u64,
}

impl Samples {
    fn rounds(&self) -> usize {
        self.runs.values().copied().max().unwrap_or(0)
    }

    /// The median in display units.
    fn median(&self, column: usize) -> Option<f64> {
        self.raw_median(column).map(|v| v / COLUMNS[column].3)
    }

    /// The median in the JSON field's own units.
    fn raw_median(&self, column: usize) -> Option<f64> {
        median(&self.values[column])
    }
}

/// Group runs by label, in order of first appearance. Lines that are not
/// JSON objects with a `mode` and a `label` are skipped.
fn collect(input: &str) -> Result<Vec<Samples>> {
    let mut groups: Vec<Samples> = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let run: Value =
            serde_json::from_str(line).with_context(|| format!("line {} is not JSON", n + 1))?;
        let (Some(mode), Some(label)) = (run["mode"].as_str(), run["label"].as_str()) else {
            continue;
        };
        let index = match groups.iter().position(|g| g.label == label) {
            Some(index) => index,
            None => {
                groups.push(Samples {
                    label: label.to_string(),
                    values: vec![Vec::new(); COLUMNS.len()],
                    ..Samples::default()
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        *group.runs.entry(mode.to_string()).or_default() += 1;
        group.errors += run["errors"].as_u64().unwrap_or(0);
        for (column, (col_mode, field, _, _)) in COLUMNS.iter().enumerate() {
            if *col_mode == mode {
                if let Some(value) = run[field].as_f64() {
                    group.values[column].push(value);
                }
            }
        }
    }
    Ok(groups)
}

fn cell(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Render the medians table, the `ours/peer` ratio table and the goal
/// checks as markdown.
pub fn render(input: &str, ratios: &[(String, String)], goals: &[Goal]) -> Result<String> {
    let groups = collect(input)?;
    let mut out = String::new();
    let headers: Vec<&str> = COLUMNS.iter().map(|c| c.2).collect();
    writeln!(
        out,
        "| config | rounds | {} | errors |",
        headers.join(" | ")
    )?;
    writeln!(out, "|---|---:|{}---:|", "---:|".repeat(COLUMNS.len()))?;
    for group in &groups {
        let cells: Vec<String> = (0..COLUMNS.len()).map(|c| cell(group.median(c))).collect();
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            group.label,
            group.rounds(),
            cells.join(" | "),
            group.errors
        )?;
    }
    if !ratios.is_empty() {
        render_ratios(&mut out, &groups, ratios)?;
    }
    if !goals.is_empty() {
        render_goals(&mut out, &groups, goals)?;
    }
    Ok(out)
}

fn render_ratios(out: &mut String, groups: &[Samples], ratios: &[(String, String)]) -> Result<()> {
    let headers: Vec<&str> = COLUMNS.iter().map(|c| c.2).collect();
    writeln!(out)?;
    writeln!(out, "| ratio (medians) | {} |", headers.join(" | "))?;
    writeln!(out, "|---|{}", "---:|".repeat(COLUMNS.len()))?;
    for (ours, peer) in ratios {
        let find = |label: &str| groups.iter().find(|g| g.label == label);
        let cells: Vec<String> = (0..COLUMNS.len())
            .map(|c| {
                let ratio = find(ours)
                    .and_then(|g| g.median(c))
                    .zip(find(peer).and_then(|g| g.median(c)))
                    .filter(|(_, p)| *p != 0.0)
                    .map(|(o, p)| o / p);
                match ratio {
                    Some(r) => format!("{r:.2}×"),
                    None => "-".to_string(),
                }
            })
            .collect();
        writeln!(out, "| {ours} / {peer} | {} |", cells.join(" | "))?;
    }
    Ok(())
}

fn render_goals(out: &mut String, groups: &[Samples], goals: &[Goal]) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "| goal | measured | result |")?;
    writeln!(out, "|---|---:|---|")?;
    for goal in goals {
        let column = COLUMNS
            .iter()
            .position(|c| c.1 == goal.field)
            .with_context(|| format!("goal {:?}: no column {:?}", goal.text, goal.field))?;
        let value_of = |label: &str| {
            groups
                .iter()
                .find(|g| g.label == label)
                .and_then(|g| g.raw_median(column))
        };
        let measured = match &goal.peer {
            Some(peer) => value_of(&goal.ours)
                .zip(value_of(peer))
                .filter(|(_, p)| *p != 0.0)
                .map(|(o, p)| o / p),
            None => value_of(&goal.ours),
        };
        let (shown, result) = match measured {
            None => ("-".to_string(), "no data"),
            Some(v) => {
                let shown = match goal.peer {
                    Some(_) => format!("{v:.2}×"),
                    None => cell(Some(v)),
                };
                let met = if goal.at_least {
                    v >= goal.bound
                } else {
                    v <= goal.bound
                };
                (shown, if met { "PASS" } else { "FAIL" })
            }
        };
        writeln!(out, "| `{}` | {shown} | {result} |", goal.text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNS: &str = r#"
not json: a log line
{"mode":"conn","label":"ours","conn_per_sec":3000.0,"p50_us":1000,"p99_us":3000,"errors":0}
{"mode":"conn","label":"peer","conn_per_sec":1000.0,"p50_us":2000,"p99_us":9000,"errors":2}
{"mode":"conn","label":"ours","conn_per_sec":5000.0,"p50_us":1000,"p99_us":5000,"errors":0}
{"mode":"conn","label":"ours","conn_per_sec":4000.0,"p50_us":1000,"p99_us":4000,"errors":0}
{"mode":"bulk","label":"peer","gbit_per_sec":10.0,"errors":0}
{"mode":"hold","label":"ours","kib_per_tunnel":6.5,"pss_kib_per_tunnel":null,"errors":0}
"#;

    #[test]
    fn medians_per_label() {
        let groups = collect(RUNS).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].label, "ours");
        assert_eq!(groups[0].rounds(), 3);
        assert_eq!(groups[0].median(0), Some(4000.0));
        assert_eq!(groups[0].median(2), Some(4.0)); // p99 in ms
        assert_eq!(groups[0].median(4), Some(6.5));
        assert_eq!(groups[0].median(5), None);
        assert_eq!(groups[1].errors, 2);
    }

    #[test]
    fn renders_rows_and_ratios() {
        let goals = [
            crate::cli::parse_goal("conn_per_sec:ours/peer>=3").unwrap(),
            crate::cli::parse_goal("kib_per_tunnel:ours<=6").unwrap(),
            crate::cli::parse_goal("gbit_per_sec:ours/peer>=1").unwrap(),
        ];
        let table = render(RUNS, &[("ours".into(), "peer".into())], &goals).unwrap();
        assert!(
            table.contains("| ours | 3 | 4000 | 1.00 | 4.00 | - | 6.50 | - | - | - | 0 |"),
            "{table}"
        );
        assert!(
            table.contains("| peer | 1 | 1000 | 2.00 | 9.00 | 10.0 | - | - | - | - | 2 |"),
            "{table}"
        );
        assert!(
            table.contains("| ours / peer | 4.00× | 0.50× | 0.44× | - | - | - | - | - |"),
            "{table}"
        );
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(render("{not json", &[], &[]).is_err());
        let unknown = crate::cli::parse_goal("nope:ours<=1").unwrap();
        assert!(render(RUNS, &[], &[unknown]).is_err());
    }
}
