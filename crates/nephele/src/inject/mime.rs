//! The MIME structure of a builder message (text, AMP and HTML bodies,
//! inline and attached parts) and the recipient's `To:` value.

use super::request::Attachment;
use base64::Engine;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;

/// The rendered bodies of one recipient's message.
#[derive(Debug, Default)]
pub struct Bodies {
    /// `text/plain`.
    pub text: Option<String>,
    /// `text/x-amp-html`.
    pub amp_html: Option<String>,
    /// `text/html`.
    pub html: Option<String>,
}

impl Bodies {
    /// Bytes rendered for the bodies.
    pub fn len(&self) -> usize {
        [&self.text, &self.amp_html, &self.html]
            .iter()
            .map(|body| body.as_ref().map_or(0, String::len))
            .sum()
    }

    /// Whether no body was given.
    pub fn is_empty(&self) -> bool {
        self.text.is_none() && self.amp_html.is_none() && self.html.is_none()
    }
}

/// `"Name" <user@domain>`, or `<user@domain>` without a name: the `To:`
/// value and the template variable `to_header`. A non-ASCII name is an
/// RFC 2047 encoded word.
pub fn to_header_value(name: Option<&str>, email: &str) -> String {
    match name {
        None => format!("<{email}>"),
        Some(name) if name.is_ascii() => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{email}>")
        }
        Some(name) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(name);
            format!("=?UTF-8?B?{encoded}?= <{email}>")
        }
    }
}

/// One part, or a `multipart/SUBTYPE` of several.
fn combine<'x>(subtype: &str, mut parts: Vec<MimePart<'x>>) -> Option<MimePart<'x>> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(MimePart::new(format!("multipart/{subtype}"), parts)),
    }
}

/// The body of the message: the bodies in a `multipart/alternative` (text,
/// then AMP, then HTML: a reader shows the last it understands), the
/// attachments with a `content_id` beside it in a `multipart/related`, the
/// other attachments beside that in a `multipart/mixed`. Each level exists
/// only when it has more than one part; no body and no attachment is an
/// empty text part.
pub fn body_tree(
    bodies: Bodies,
    attachments: &[Attachment],
    decoded: &[Vec<u8>],
) -> MimePart<'static> {
    let mut alternative = Vec::new();
    for (content_type, body) in [
        ("text/plain", bodies.text),
        ("text/x-amp-html", bodies.amp_html),
        ("text/html", bodies.html),
    ] {
        if let Some(body) = body {
            alternative.push(MimePart::new(content_type, body));
        }
    }
    let mut related: Vec<MimePart<'static>> =
        combine("alternative", alternative).into_iter().collect();
    let mut mixed = Vec::new();
    for (attachment, bytes) in attachments.iter().zip(decoded) {
        let mut content_type = ContentType::new(attachment.content_type.clone());
        match &attachment.content_id {
            Some(content_id) => {
                if let Some(file_name) = &attachment.file_name {
                    content_type = content_type.attribute("name", file_name.clone());
                }
                let part = MimePart::new(content_type, bytes.clone());
                related.push(part.inline().cid(content_id.clone()));
            }
            None => {
                let file_name = attachment
                    .file_name
                    .clone()
                    .unwrap_or_else(|| "attachment".to_owned());
                let part = MimePart::new(content_type, bytes.clone());
                mixed.push(part.attachment(file_name));
            }
        }
    }
    if let Some(related) = combine("related", related) {
        mixed.insert(0, related);
    }
    combine("mixed", mixed).unwrap_or_else(|| MimePart::new("text/plain", String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_header_quotes_or_encodes_the_name() {
        assert_eq!(
            to_header_value(Some("John Smith"), "j@example.com"),
            "\"John Smith\" <j@example.com>"
        );
        assert_eq!(to_header_value(None, "j@example.com"), "<j@example.com>");
        assert_eq!(
            to_header_value(Some("a\"b"), "j@example.com"),
            "\"a\\\"b\" <j@example.com>"
        );
        assert_eq!(
            to_header_value(Some("Zoë"), "z@example.com"),
            "=?UTF-8?B?Wm/Dqw==?= <z@example.com>"
        );
    }
}
