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
    for (i, recipient) in request.recipients.iter().enumerate() {
        check(&format!("recipients[{i}].email"), &recipient.email)?;
        if let Some(name) = &recipient.name {
            check(&format!("recipients[{i}].name"), name)?;
        }
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

/// `413` when the request has more recipients than `max_recipients`.
pub fn refuse_too_many_recipients(
    request: &InjectV1Request,
    limits: &InjectionLimits,
) -> Result<(), LimitExceeded> {
    let count = request.recipients.len();
    if count > limits.max_recipients {
        return Err(LimitExceeded::Recipients {
            count,
            limit: limits.max_recipients,
        });
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
                r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com\r\n\r\n"}],"content":"x"}"#,
                "recipients[0].email",
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
        let err = refuse_too_many_recipients(&valid.request, &limits).unwrap_err();
        assert_eq!(err.to_string(), "2 recipients exceed max_recipients (1)");
        refuse_too_many_recipients(&valid.request, &InjectionLimits::default()).unwrap();
    }
}
