//! Turning a valid request into one message per recipient: MiniJinja
//! templates (compiled once per request) and MIME assembly with
//! mail-builder.

use super::request::{Builder, Content, InjectV1Request, RequestError, ValidRequest};
use mail_builder::headers::address::Address;
use mail_builder::headers::text::Text;
use mail_builder::MessageBuilder;
use minijinja::Environment;
use serde_json::{Map, Value};

const CONTENT: &str = "content";
const SUBJECT: &str = "subject";
const TEXT_BODY: &str = "text_body";
const HTML_BODY: &str = "html_body";

/// Bound on the work of one template rendering (MiniJinja instructions):
/// generous for any real message, but a template that loops without end
/// fails its recipient instead of holding a runtime thread.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// The request's templates, compiled. A syntax error is found here, before
/// any message is generated.
pub struct Templates {
    env: Environment<'static>,
}

fn header_template(name: &str) -> String {
    format!("headers.{name}")
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

impl Templates {
    /// Compile every template of `request`.
    pub fn compile(request: &InjectV1Request) -> Result<Self, RequestError> {
        let mut env = Environment::new();
        // A message's final line break is part of the message.
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        let mut add = |name: String, source: &str, field: String| {
            env.add_template_owned(name, source.to_owned())
                .map_err(|err| RequestError::field(field, format!("template error: {err}")))
        };
        match &request.content {
            Content::Rfc5322(text) => add(CONTENT.into(), text, CONTENT.into())?,
            Content::Builder(builder) => {
                for (name, source) in [
                    (SUBJECT, &builder.subject),
                    (TEXT_BODY, &builder.text_body),
                    (HTML_BODY, &builder.html_body),
                ] {
                    if let Some(source) = source {
                        add(name.into(), source, format!("content.{name}"))?;
                    }
                }
                for (header, source) in &builder.headers {
                    let field = format!("content.headers.{header}");
                    if !valid_header_name(header) {
                        return Err(RequestError::field(field, "invalid header name"));
                    }
                    add(header_template(header), source, field)?;
                }
            }
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, context: &Map<String, Value>) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|template| template.render(context))
            .map_err(|err| format!("template {name}: {err}"))
    }

    /// The variables for recipient `index`: global substitutions, overlaid
    /// by the recipient's, plus `name` and `email`.
    fn context(valid: &ValidRequest, index: usize) -> Map<String, Value> {
        let recipient = &valid.request.recipients[index];
        let mut context = valid.request.substitutions.clone();
        context.extend(recipient.substitutions.clone());
        context.insert("email".into(), Value::String(recipient.email.clone()));
        // No name: `name` stays undefined (renders empty) unless the
        // substitutions define it.
        if let Some(name) = &recipient.name {
            context.insert("name".into(), Value::String(name.clone()));
        }
        context
    }

    /// The message bytes for recipient `index`, lines ending in CRLF. An
    /// error fails only this recipient.
    pub fn render_message(&self, valid: &ValidRequest, index: usize) -> Result<Vec<u8>, String> {
        let context = Self::context(valid, index);
        let data = match &valid.request.content {
            Content::Rfc5322(_) => self.render(CONTENT, &context)?.into_bytes(),
            Content::Builder(builder) => self.build(valid, builder, index, &context)?,
        };
        Ok(message::normalize_crlf(&data))
    }

    fn build(
        &self,
        valid: &ValidRequest,
        builder: &Builder,
        index: usize,
        context: &Map<String, Value>,
    ) -> Result<Vec<u8>, String> {
        let recipient = &valid.request.recipients[index];
        let render = |name: &str, present: bool| -> Result<Option<String>, String> {
            present.then(|| self.render(name, context)).transpose()
        };
        let subject = render(SUBJECT, builder.subject.is_some())?;
        if subject.as_deref().is_some_and(|s| s.contains(['\r', '\n'])) {
            return Err("subject: rendered value contains a line break".to_owned());
        }
        let text = render(TEXT_BODY, builder.text_body.is_some())?;
        let html = render(HTML_BODY, builder.html_body.is_some())?;
        let mut headers = Vec::with_capacity(builder.headers.len());
        for name in builder.headers.keys() {
            let value = self.render(&header_template(name), context)?;
            if value.contains(['\r', '\n']) {
                return Err(format!(
                    "header {name}: rendered value contains a line break"
                ));
            }
            headers.push((name.clone(), value));
        }

        let sender = valid.sender.email();
        let from = match &builder.from {
            Some(from) => Address::new_address(from.name.clone(), from.email.clone()),
            None => Address::new_address(None::<String>, sender),
        };
        let mut mail = MessageBuilder::new().from(from).to(Address::new_address(
            recipient.name.clone(),
            recipient.email.clone(),
        ));
        if let Some(reply_to) = &builder.reply_to {
            mail = mail.reply_to(Address::new_address(
                reply_to.name.clone(),
                reply_to.email.clone(),
            ));
        }
        if let Some(subject) = subject {
            mail = mail.subject(subject);
        }
        for (name, value) in headers {
            mail = mail.header(name, Text::new(value));
        }
        let has_body = text.is_some() || html.is_some();
        if let Some(text) = text {
            mail = mail.text_body(text);
        }
        if let Some(html) = html {
            mail = mail.html_body(html);
        }
        if !has_body && builder.attachments.is_empty() {
            mail = mail.text_body(String::new());
        }
        for (attachment, bytes) in builder.attachments.iter().zip(&valid.attachments) {
            let file_name = attachment
                .file_name
                .clone()
                .unwrap_or_else(|| "attachment".to_owned());
            mail = mail.attachment(attachment.content_type.clone(), file_name, bytes.clone());
        }
        mail.write_to_vec()
            .map_err(|err| format!("building the MIME message: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::parse;
    use super::*;

    fn valid(body: &str) -> ValidRequest {
        parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn per_recipient_substitutions() {
        let valid = valid(
            r#"{"envelope_sender":"s@example.com",
                "recipients":[{"email":"a@example.com","name":"A","substitutions":{"k":"mine"}},
                              {"email":"b@example.com"}],
                "substitutions":{"k":"global"},
                "content":"Subject: hi {{ name }}\n\n{{ k }} for {{ email }}\n"}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let a = String::from_utf8(templates.render_message(&valid, 0).unwrap()).unwrap();
        assert_eq!(a, "Subject: hi A\r\n\r\nmine for a@example.com\r\n");
        let b = String::from_utf8(templates.render_message(&valid, 1).unwrap()).unwrap();
        assert_eq!(b, "Subject: hi \r\n\r\nglobal for b@example.com\r\n");
    }

    #[test]
    fn syntax_errors_are_found_before_rendering() {
        let valid = valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":"Subject: {{ oops\n\nx"}"#,
        );
        let err = Templates::compile(&valid.request)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("content: template error"), "{err}");
        let valid = self::valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":{"subject":"{% if %}"}}"#,
        );
        let err = Templates::compile(&valid.request)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("content.subject: template error"), "{err}");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let valid = valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let err = templates.render_message(&valid, 0).unwrap_err();
        assert!(err.contains("fuel"), "{err}");
    }

    #[test]
    fn builds_mime_with_attachment() {
        let valid = valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","name":"Ann"}],
                "content":{"subject":"Hi {{ name }}","text_body":"text {{ email }}","html_body":"<b>html</b>",
                  "from":{"email":"news@example.com","name":"News"},"reply_to":{"email":"r@example.com"},
                  "headers":{"X-Campaign":"c-{{ name }}"},
                  "attachments":[{"data":"aGVsbG8=","content_type":"text/plain","file_name":"h.txt","base64":true}]}}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let text = String::from_utf8(templates.render_message(&valid, 0).unwrap()).unwrap();
        for needle in [
            "Subject: Hi Ann",
            "X-Campaign: c-Ann",
            "News",
            "<news@example.com>",
            "Reply-To: <r@example.com>",
            "multipart/mixed",
            "multipart/alternative",
            "h.txt",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in\n{text}"
        );
    }
}
