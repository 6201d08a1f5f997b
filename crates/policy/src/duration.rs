use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parse a human-readable duration: `'60 seconds'`, `'5 minutes'`, `'30s'`,
/// `'1min'`, `'2h'`, `'1h 30m'`, or a plain number of seconds (`'10'`, `'0.5'`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return seconds_to_duration(seconds);
    }
    humantime::parse_duration(trimmed)
        .or_else(|_| humantime::parse_duration(&join_number_and_unit(trimmed)))
        .map_err(|err| format!("invalid duration {text:?}: {err}"))
        .and_then(within_bound)
}

/// Parse a rate `"N/period"`: `period` is a unit (`s`, `sec`, `second`,
/// `m`, `min`, `minute`, `h`, `hour`, `d`, `day`) or a duration
/// (`"100/5 minutes"`, `"3/5m"`). The error says what is wrong, without
/// naming the key (the caller does).
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = |why: &str| format!("{why} (expected \"N/period\", e.g. \"10/minute\")");
    let (count, period) = text.split_once('/').ok_or_else(|| bad("no '/'"))?;
    let count: u32 = count
        .trim()
        .replace(['_', ','], "")
        .parse()
        .map_err(|_| bad("the count is not a whole number"))?;
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(period)
    } else {
        parse_duration(&format!("1{period}"))
    }
    .map_err(|err| bad(&err))?;
    if period.as_millis() == 0 {
        return Err(bad("the period must be at least a millisecond"));
    }
    Ok((count, period))
}

/// The longest duration a policy may give: longer ones are surely typos,
/// and added to a clock they could overflow it.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

fn within_bound(duration: Duration) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        return Err(format!(
            "duration {} is longer than the maximum of 10 years",
            humantime::format_duration(duration)
        ));
    }
    Ok(duration)
}

/// `'60 seconds'` → `'60seconds'`: humantime wants the unit glued to its number.
fn join_number_and_unit(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|next| next.is_whitespace()) {
                chars.next();
            }
        }
    }
    out
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| {
            format!("invalid duration {seconds}: must be a non-negative number of seconds")
        })
        .and_then(within_bound)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Seconds(f64),
    Text(String),
}

/// serde `deserialize_with` for a `Duration` given as text or seconds.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    match DurationRepr::deserialize(deserializer)? {
        DurationRepr::Seconds(seconds) => seconds_to_duration(seconds),
        DurationRepr::Text(text) => parse_duration(&text),
    }
    .map_err(serde::de::Error::custom)
}

/// serde `deserialize_with` for an `Option<Duration>`.
pub fn deserialize_optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_past_ten_years_are_refused() {
        for text in ["11 years", "400000000", "100000000000000000000000 seconds"] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.contains("10 years") || err.contains("invalid"),
                "{text}: {err}"
            );
        }
        assert!(parse_duration("9 years").is_ok());
    }

    #[test]
    fn rates_parse_units_and_durations() {
        assert_eq!(parse_rate("3/5m"), Ok((3, Duration::from_secs(300))));
        assert_eq!(parse_rate("10/minute"), Ok((10, Duration::from_secs(60))));
        assert_eq!(
            parse_rate("1,000 / h"),
            Ok((1000, Duration::from_secs(3600)))
        );
        for bad in ["10", "x/minute", "10/fortnights", "-1/s", "10/0s"] {
            let err = parse_rate(bad).unwrap_err();
            assert!(err.contains("N/period"), "{bad}: {err}");
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("60 seconds", 60),
            ("5 minutes", 300),
            ("30s", 30),
            ("1min", 60),
            ("2h", 7200),
            ("10", 10),
            ("1 hour 30 minutes", 5400),
            ("0s", 0),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_nonsense() {
        for text in ["", "soon", "-5", "5 parsecs", "NaN"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("invalid duration"), "{text}: {err}");
        }
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        #[derive(Deserialize)]
        struct P {
            #[serde(deserialize_with = "deserialize_duration")]
            t: Duration,
        }
        let p: P = serde_json::from_str(r#"{"t": 2.5}"#).unwrap();
        assert_eq!(p.t, Duration::from_millis(2500));
        let p: P = serde_json::from_str(r#"{"t": "5 minutes"}"#).unwrap();
        assert_eq!(p.t, Duration::from_secs(300));
        assert!(serde_json::from_str::<P>(r#"{"t": "later"}"#).is_err());
    }
}
