//! `trace_headers`: the `Received:` header added before
//! `http_message_generated`, and the supplemental header (`X-KumoRef` by
//! default) added after it, once the policy has set the message's meta.

use super::request::TraceHeaders;
use base64::Engine;
use mail_builder::headers::date::Date;
use message::Message;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// The marker key and value that tell a supplemental trace header from any
/// other base64 header (KumoMTA's ARF parser looks for them).
const MARKER: (&str, &str) = ("_@_", "\\_/");

/// Lines of a folded header are at most this long (RFC 5322's soft limit).
const LINE_WIDTH: usize = 78;

/// The host name written in `Received:`, read once.
fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// Put already folded header text before the existing headers.
fn prepend_raw(message: &mut Message, text: &str) {
    let mut data = Vec::with_capacity(text.len() + message.data().len());
    data.extend_from_slice(text.as_bytes());
    data.extend_from_slice(message.data());
    message.set_data(data);
}

/// Prepend `Received: from DOMAIN (PEER) by HOST (nephele) with HTTP id ID
/// for <RCPT>; DATE` when `received_header` is set.
pub fn add_received(trace: &TraceHeaders, message: &mut Message, peer: IpAddr) {
    if !trace.received_header {
        return;
    }
    let text = format!(
        "Received: from {domain} ({peer})\r\n  by {host} (nephele)\r\n  with HTTP id {id} for <{rcpt}>;\r\n  {date}\r\n",
        domain = message.sender().domain(),
        host = hostname(),
        id = message.id().as_str(),
        rcpt = message.recipient().email(),
        date = Date::now().to_rfc822(),
    );
    prepend_raw(message, &text);
}

/// The supplemental header's JSON: the marker, the recipient and each
/// listed meta value the message has.
pub fn supplemental_payload(trace: &TraceHeaders, message: &Message) -> Value {
    let mut object = Map::new();
    object.insert(MARKER.0.into(), MARKER.1.into());
    object.insert("recipient".into(), message.recipient().email().into());
    for name in &trace.include_meta_names {
        if let Some(value) = message.get_meta(name) {
            object.insert(name.clone(), value.clone());
        }
    }
    Value::Object(object)
}

/// Prepend the supplemental header (base64 of [`supplemental_payload`],
/// folded at 78 columns) when `supplemental_header` is set.
pub fn add_supplemental(trace: &TraceHeaders, message: &mut Message) {
    if !trace.supplemental_header {
        return;
    }
    let json = supplemental_payload(trace, message).to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    prepend_raw(message, &fold(&trace.header_name, &encoded));
}

/// `NAME: VALUE\r\n`, VALUE (one token without spaces) broken into pieces
/// of at most [`LINE_WIDTH`] characters (the name not counted, as
/// upstream), continuation lines starting with a tab.
fn fold(name: &str, value: &str) -> String {
    let mut text = format!("{name}: ");
    let mut rest = value;
    while rest.len() > LINE_WIDTH {
        text.push_str(&rest[..LINE_WIDTH]);
        text.push_str("\r\n\t");
        rest = &rest[LINE_WIDTH..];
    }
    text.push_str(rest);
    text.push_str("\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_header_is_reproduced() {
        let address = |text| message::EnvelopeAddress::parse(text).unwrap();
        let mut message = Message::new(
            address("s@example.com"),
            address("test@example.com"),
            b"Subject: x\r\n\r\nbody".to_vec(),
        );
        message.set_meta("tenant", "acme".into());
        add_supplemental(&TraceHeaders::default(), &mut message);
        // The example of upstream's trace_headers documentation.
        assert_eq!(
            String::from_utf8_lossy(message.data()),
            "X-KumoRef: eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoidGVzdEBleGFtcGxlLmNvbSJ9\r\nSubject: x\r\n\r\nbody"
        );
        let trace = TraceHeaders {
            include_meta_names: vec!["tenant".into(), "missing".into()],
            ..TraceHeaders::default()
        };
        assert_eq!(
            supplemental_payload(&trace, &message).to_string(),
            r#"{"_@_":"\\_/","recipient":"test@example.com","tenant":"acme"}"#
        );
    }

    #[test]
    fn folds_long_values_at_78_columns() {
        let value = "A".repeat(200);
        let folded = fold("X-KumoRef", &value);
        let lines: Vec<&str> = folded.trim_end().split("\r\n").collect();
        assert!(lines.len() > 2, "{folded}");
        assert!(
            lines
                .iter()
                .all(|line| line.len() <= LINE_WIDTH + "X-KumoRef: ".len()),
            "{folded}"
        );
        assert_eq!(lines[1].len(), LINE_WIDTH + 1, "{folded}");
        assert_eq!(
            lines.concat().replace("X-KumoRef: ", "").replace('\t', ""),
            value
        );
        assert_eq!(fold("X", "abc"), "X: abc\r\n");
    }
}
