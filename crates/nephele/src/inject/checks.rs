//! Checks of a parsed request that refuse it whole before anything is
//! rendered: control characters in anything that ends up in a header or
//! an envelope (`422` naming the field), and the recipient count (`413`).

use super::limits::{InjectionLimits, LimitExceeded};
use super::request::{Content, InjectV1Request, RequestError};

/// The first text of `request` that would reach a header or the envelope
/// with a control character in it (CR, LF, NUL, VT, FF, TAB, ...): the only
/// line breaks in a header block are the ones the builder writes. Template
/// sources are checked here, rendered values when they are rendered.
pub fn refuse_control_characters(request: &InjectV1Request) -> Result<(), RequestError> {
    let check = |field: &str, text: &str| {
        if text.chars().any(char::is_control) {
            return Err(RequestError::field(field, "contains control characters"));
        }
        Ok(())
    };
    check("envelope_sender", &request.envelope_sender)?;
    // A recipient's address and name are checked per recipient (a bad one
    // fails that recipient alone): see `request::validate`.
    let trace = &request.trace_headers;
    check("trace_headers.header_name", &trace.header_name)?;
    if trace.supplemental_header
        && (trace.header_name.is_empty()
            || !trace
                .header_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':'))
    {
        return Err(RequestError::field(
            "trace_headers.header_name",
            "not a valid header name",
        ));
    }
    let Content::Builder(builder) = &request.content else {
        return Ok(());
    };
    for (field, address) in [("from", &builder.from), ("reply_to", &builder.reply_to)] {
        if let Some(address) = address {
            check(&format!("content.{field}.email"), &address.email)?;
            if let Some(name) = &address.name {
                check(&format!("content.{field}.name"), name)?;
            }
        }
    }
    if let Some(subject) = &builder.subject {
        check("content.subject", subject)?;
    }
    for (name, value) in &builder.headers {
        check(&format!("content.headers.{name}"), name)?;
        check(&format!("content.headers.{name}"), value)?;
    }
    Ok(())
}

/// `413` when the request has more recipients than `max_recipients`, or
/// than the identity's `max_recipients_per_request`.
pub fn refuse_too_many_recipients(
    request: &InjectV1Request,
    limits: &InjectionLimits,
    identity_max: Option<usize>,
) -> Result<(), LimitExceeded> {
    let count = request.recipients.len();
    let (key, limit) = match identity_max {
        Some(max) if max < limits.max_recipients => ("max_recipients_per_request", max),
        _ => ("max_recipients", limits.max_recipients),
    };
    if count > limit {
        return Err(LimitExceeded::Recipients { key, count, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::request::parse;
    use super::*;

    fn refused(body: &str) -> String {
        let valid = parse(body.as_bytes()).unwrap();
        refuse_control_characters(&valid.request)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn control_characters_are_refused_by_field() {
        for (body, field) in [
            (
                r#"{"envelope_sender":"s@example.com\r\n","recipients":[{"email":"a@example.com"}],"content":"x"}"#,
                "envelope_sender",
            ),
            (
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":"x","trace_headers":{"header_name":"X-Ref\r\nBcc: e@x.com"}}"#,
                "trace_headers.header_name",
            ),
            (
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":{"from":{"email":"f@example.com\r\n"}}}"#,
                "content.from.email",
            ),
            (
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":{"subject":"a\u0000b"}}"#,
                "content.subject",
            ),
            (
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":{"headers":{"X-A":"1\u000cb"}}}"#,
                "content.headers.X-A",
            ),
            (
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":{"reply_to":{"email":"r@example.com\t"}}}"#,
                "content.reply_to.email",
            ),
        ] {
            let err = refused(body);
            assert!(
                err.starts_with(&format!("{field}: contains control")),
                "{field}: {err}"
            );
        }
        let clean = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","name":"A"}],"content":{"subject":"hi"}}"#,
        )
        .unwrap();
        refuse_control_characters(&clean.request).unwrap();
    }

    #[test]
    fn recipient_count_is_bounded() {
        let valid = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"},{"email":"b@example.com"}],"content":"x"}"#,
        )
        .unwrap();
        let limits = InjectionLimits {
            max_recipients: 1,
            ..InjectionLimits::default()
        };
        let err = refuse_too_many_recipients(&valid.request, &limits, None).unwrap_err();
        assert_eq!(err.to_string(), "2 recipients exceed max_recipients (1)");
        let defaults = InjectionLimits::default();
        refuse_too_many_recipients(&valid.request, &defaults, None).unwrap();
        let err = refuse_too_many_recipients(&valid.request, &defaults, Some(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 recipients exceed max_recipients_per_request (1)"
        );
    }
}
