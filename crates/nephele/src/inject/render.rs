//! Turning a valid request into one message per recipient: MiniJinja
//! templates (compiled once per request) and MIME assembly with
//! mail-builder.

use super::limits::{LimitExceeded, RequestBudget};
use super::mime::{body_tree, to_header_value, Bodies};
use super::request::{
    Builder, Content, InjectV1Request, RequestError, TemplateDialect, ValidRequest,
};
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::MessageBuilder;
use minijinja::Environment;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;

const CONTENT: &str = "content";
const SUBJECT: &str = "subject";
const TEXT_BODY: &str = "text_body";
const HTML_BODY: &str = "html_body";
const AMP_HTML_BODY: &str = "amp_html_body";

/// Bound on the work of one template rendering (MiniJinja instructions):
/// generous for any real message, but a template that loops without end
/// fails its recipient instead of holding a runtime thread.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// The request's templates, compiled. A syntax error is found here, before
/// any message is generated.
pub struct Templates {
    env: Environment<'static>,
    /// With `template_dialect = "Static"`: each text as is, by template name.
    statics: Option<HashMap<String, String>>,
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
        let mut statics = (request.template_dialect == TemplateDialect::Static).then(HashMap::new);
        let mut add = |name: String, source: &str, field: String| match &mut statics {
            Some(statics) => {
                statics.insert(name, source.to_owned());
                Ok(())
            }
            None => env
                .add_template_owned(name, source.to_owned())
                .map_err(|err| RequestError::field(field, format!("template error: {err}"))),
        };
        match &request.content {
            Content::Rfc5322(text) => add(CONTENT.into(), text, CONTENT.into())?,
            Content::Builder(builder) => {
                for (name, source) in [
                    (SUBJECT, &builder.subject),
                    (TEXT_BODY, &builder.text_body),
                    (HTML_BODY, &builder.html_body),
                    (AMP_HTML_BODY, &builder.amp_html_body),
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
        Ok(Templates { env, statics })
    }

    /// Render template `name` into the request's budget, at most
    /// `max_rendered_size` bytes; `what` names it in errors.
    fn render(
        &self,
        name: &str,
        context: &Map<String, Value>,
        budget: &mut RequestBudget,
        what: &str,
    ) -> Result<String, RenderError> {
        let cap = budget.limits().max_rendered_size;
        if let Some(statics) = &self.statics {
            // Static text is counted like rendered text.
            let source = statics.get(name).map_or("", String::as_str);
            let mut writer = budget.writer(cap, "max_rendered_size");
            let _ = writer.write_all(source.as_bytes());
            let bytes = writer.finish(what).map_err(RenderError::Limit)?;
            return Ok(String::from_utf8(bytes).unwrap_or_default());
        }
        let template = self
            .env
            .get_template(name)
            .map_err(|err| RenderError::Recipient(format!("template {name}: {err}")))?;
        let mut writer = budget.writer(cap, "max_rendered_size");
        let result = template.render_captured_to(context, &mut writer);
        let bytes = writer.finish(what).map_err(RenderError::Limit)?;
        if let Err(err) = result {
            budget.refund(bytes.len());
            return Err(RenderError::Recipient(format!("template {name}: {err}")));
        }
        // MiniJinja writes the UTF-8 of a Rust string.
        String::from_utf8(bytes)
            .map_err(|_| RenderError::Recipient(format!("template {name}: not UTF-8")))
    }

    /// The variables for recipient `index` (whose address parsed): the
    /// global substitutions, then `email`, `name` and `to_header`, then the
    /// recipient's substitutions (which may override any of them, as
    /// upstream).
    fn context(valid: &ValidRequest, index: usize, to_header: &str) -> Map<String, Value> {
        let recipient = &valid.request.recipients[index];
        let mut context = valid.request.substitutions.clone();
        context.insert("email".into(), Value::String(recipient.email.clone()));
        // No name: `name` stays undefined (renders empty) unless the
        // substitutions define it.
        if let Some(name) = &recipient.name {
            context.insert("name".into(), Value::String(name.clone()));
        }
        context.insert("to_header".into(), Value::String(to_header.to_owned()));
        context.extend(recipient.substitutions.clone());
        context
    }

    /// The message bytes for recipient `index`, lines ending in CRLF,
    /// counted in `budget`. [`RenderError::Recipient`] fails only this
    /// recipient; the others refuse the whole request.
    pub fn render_message(
        &self,
        valid: &ValidRequest,
        index: usize,
        budget: &mut RequestBudget,
    ) -> Result<Vec<u8>, RenderError> {
        budget.check_time().map_err(RenderError::Limit)?;
        let address = match &valid.recipients[index] {
            Ok(address) => address.email(),
            Err(text) => return Err(RenderError::Recipient(text.clone())),
        };
        let to_header = to_header_value(valid.request.recipients[index].name.as_deref(), &address);
        let context = Self::context(valid, index, &to_header);
        let what = format!("recipients[{index}]");
        let data = match &valid.request.content {
            Content::Rfc5322(_) => self
                .render(CONTENT, &context, budget, &format!("{what}: content"))?
                .into_bytes(),
            Content::Builder(builder) => {
                self.build(valid, builder, index, (&context, &to_header), budget)?
            }
        };
        let normalized = message::normalize_crlf(&data);
        let max = budget.limits().max_message_size;
        if normalized.len() > max {
            return Err(RenderError::Limit(LimitExceeded::Size {
                limit: "max_message_size",
                what: format!("{what}: the message"),
                bytes: max,
            }));
        }
        budget
            .charge(normalized.len() - data.len(), &what)
            .map_err(RenderError::Limit)?;
        Ok(normalized)
    }

    /// A rendered header-like value: no control character at all.
    fn header_value(
        &self,
        template: &str,
        field: &str,
        context: &Map<String, Value>,
        budget: &mut RequestBudget,
        index: usize,
    ) -> Result<String, RenderError> {
        let value = self.render(
            template,
            context,
            budget,
            &format!("recipients[{index}]: {field}"),
        )?;
        if value.chars().any(char::is_control) {
            return Err(RenderError::Field(RequestError::field(
                field,
                format!("the value rendered for recipients[{index}] contains control characters"),
            )));
        }
        Ok(value)
    }

    /// A body template's output, if the builder has that body.
    fn body(
        &self,
        name: &str,
        present: bool,
        context: &Map<String, Value>,
        budget: &mut RequestBudget,
        index: usize,
    ) -> Result<Option<String>, RenderError> {
        if !present {
            return Ok(None);
        }
        let what = format!("recipients[{index}]: content.{name}");
        self.render(name, context, budget, &what).map(Some)
    }

    fn build(
        &self,
        valid: &ValidRequest,
        builder: &Builder,
        index: usize,
        (context, to_header): (&Map<String, Value>, &str),
        budget: &mut RequestBudget,
    ) -> Result<Vec<u8>, RenderError> {
        let subject = match builder.subject {
            Some(_) => {
                Some(self.header_value(SUBJECT, "content.subject", context, budget, index)?)
            }
            None => None,
        };
        let bodies = Bodies {
            text: self.body(
                TEXT_BODY,
                builder.text_body.is_some(),
                context,
                budget,
                index,
            )?,
            amp_html: self.body(
                AMP_HTML_BODY,
                builder.amp_html_body.is_some(),
                context,
                budget,
                index,
            )?,
            html: self.body(
                HTML_BODY,
                builder.html_body.is_some(),
                context,
                budget,
                index,
            )?,
        };
        let mut headers = Vec::with_capacity(builder.headers.len());
        for name in builder.headers.keys() {
            let field = format!("content.headers.{name}");
            let value =
                self.header_value(&header_template(name), &field, context, budget, index)?;
            headers.push((name.clone(), value));
        }
        let rendered = subject.as_ref().map_or(0, String::len)
            + bodies.len()
            + headers.iter().map(|(_, v)| v.len()).sum::<usize>();

        let mut mail = address_headers(valid, builder, to_header)?;
        if let Some(subject) = subject {
            mail = mail.subject(subject);
        }
        for (name, value) in headers {
            mail = mail.header(name, Text::new(value));
        }
        mail = mail.body(body_tree(bodies, &builder.attachments, &valid.attachments));
        write_message(mail, budget, index, rendered)
    }
}

/// The address headers: From (the builder's, else the envelope sender),
/// the generated To unless the request's headers carry one, Reply-To.
fn address_headers<'x>(
    valid: &ValidRequest,
    builder: &Builder,
    to_header: &str,
) -> Result<MessageBuilder<'x>, RenderError> {
    // Only parsed addresses go into headers (validation already parsed
    // them; the raw text may carry whitespace or line breaks).
    let parsed = |text: &str| {
        message::EnvelopeAddress::parse(text)
            .map(|address| address.email())
            .map_err(|err| RenderError::Recipient(err.to_string()))
    };
    let from = match &builder.from {
        Some(from) => Address::new_address(from.name.clone(), parsed(&from.email)?),
        None => Address::new_address(None::<String>, valid.sender.email()),
    };
    let mut mail = MessageBuilder::new().from(from);
    // A `To` among the headers replaces the generated one (upstream
    // since 2026.03).
    if !builder
        .headers
        .keys()
        .any(|name| name.eq_ignore_ascii_case("to"))
    {
        mail = mail.header("To", Raw::new(to_header.to_owned()));
    }
    if let Some(reply_to) = &builder.reply_to {
        mail = mail.reply_to(Address::new_address(
            reply_to.name.clone(),
            parsed(&reply_to.email)?,
        ));
    }
    Ok(mail)
}

/// Serialize `mail` into the request's budget, capped at
/// `max_message_size`; its `rendered` parts leave the budget for it.
fn write_message(
    mail: MessageBuilder<'_>,
    budget: &mut RequestBudget,
    index: usize,
    rendered: usize,
) -> Result<Vec<u8>, RenderError> {
    // The parts are in the builder now; the message replaces them in
    // the request's budget.
    budget.refund(rendered);
    let max = budget.limits().max_message_size;
    let mut writer = budget.writer(max, "max_message_size");
    let result = mail.write_to(&mut writer);
    let bytes = writer
        .finish(&format!("recipients[{index}]: the message"))
        .map_err(RenderError::Limit)?;
    match result {
        Ok(()) => Ok(bytes),
        Err(err) => {
            budget.refund(bytes.len());
            Err(RenderError::Recipient(format!(
                "building the MIME message: {err}"
            )))
        }
    }
}

/// Why a recipient's message could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A limit was reached: the whole request is refused (`413`, or `408`
    /// for the deadline).
    #[error(transparent)]
    Limit(LimitExceeded),
    /// A header value rendered with control characters: the whole request
    /// is refused (`422`).
    #[error(transparent)]
    Field(RequestError),
    /// A template failed at run time: only this recipient fails.
    #[error("{0}")]
    Recipient(String),
}

#[cfg(test)]
mod tests {
    use super::super::limits::InjectionLimits;
    use super::super::request::parse;
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn valid(body: &str) -> ValidRequest {
        parse(body.as_bytes()).unwrap()
    }

    fn budget() -> RequestBudget {
        budget_with(InjectionLimits::default())
    }

    fn budget_with(limits: InjectionLimits) -> RequestBudget {
        RequestBudget::new(&limits, Arc::new(AtomicBool::new(false)))
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
        let a =
            String::from_utf8(templates.render_message(&valid, 0, &mut budget()).unwrap()).unwrap();
        assert_eq!(a, "Subject: hi A\r\n\r\nmine for a@example.com\r\n");
        let b =
            String::from_utf8(templates.render_message(&valid, 1, &mut budget()).unwrap()).unwrap();
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
        let err = templates
            .render_message(&valid, 0, &mut budget())
            .unwrap_err()
            .to_string();
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
        let text =
            String::from_utf8(templates.render_message(&valid, 0, &mut budget()).unwrap()).unwrap();
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

    #[test]
    fn rendering_stops_at_the_limit() {
        // The issue's template: 30 strings of 100 MB. It must stop at the
        // first write past the cap, naming the limit.
        let valid = valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":"{% for i in range(30) %}{{ 'x' * 100000000 }}{% endfor %}"}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let err = templates
            .render_message(&valid, 0, &mut budget())
            .unwrap_err();
        assert!(matches!(err, RenderError::Limit(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "recipients[0]: content exceeds max_rendered_size (10485760 bytes)"
        );
        // Small pieces add up to the request's budget.
        let valid = self::valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"},{"email":"b@example.com"}],
                "content":{"text_body":"{% for i in range(1000) %}0123456789{% endfor %}"}}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let mut budget = budget_with(InjectionLimits {
            max_request_bytes: 15_000,
            ..InjectionLimits::default()
        });
        templates.render_message(&valid, 0, &mut budget).unwrap();
        let err = templates
            .render_message(&valid, 1, &mut budget)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_request_bytes"), "{err}");
        // The built message is bounded too.
        let mut small = budget_with(InjectionLimits {
            max_message_size: 5_000,
            ..InjectionLimits::default()
        });
        let err = templates
            .render_message(&valid, 0, &mut small)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_message_size"), "{err}");
    }

    #[test]
    fn only_parsed_addresses_and_clean_values_reach_headers() {
        let valid = valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":" a@example.com "}],
                "content":{"subject":"hi","from":{"email":"f@example.com\r\n"}}}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let text =
            String::from_utf8(templates.render_message(&valid, 0, &mut budget()).unwrap()).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("To: <a@example.com>"), "{text}");
        assert!(head.contains("From: <f@example.com>"), "{text}");
        assert!(head.contains("Subject: hi"), "{text}");
        let valid = self::valid(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","substitutions":{"v":"a\u000bb"}}],
                "content":{"subject":"{{ v }}"}}"#,
        );
        let templates = Templates::compile(&valid.request).unwrap();
        let err = templates
            .render_message(&valid, 0, &mut budget())
            .unwrap_err();
        assert!(matches!(err, RenderError::Field(_)), "{err}");
        assert!(err.to_string().starts_with("content.subject: "), "{err}");
    }

    fn render_one(body: &str) -> String {
        let valid = valid(body);
        let templates = Templates::compile(&valid.request).unwrap();
        String::from_utf8(templates.render_message(&valid, 0, &mut budget()).unwrap()).unwrap()
    }

    #[test]
    fn static_dialect_and_to_header() {
        let text = render_one(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","name":"Ann"}],
                "template_dialect":"Static","content":"Subject: {{ name }}\n\n{% raw %}"}"#,
        );
        assert_eq!(text, "Subject: {{ name }}\r\n\r\n{% raw %}");
        let text = render_one(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","name":"Ann B"}],
                "content":"To: {{ to_header }}\n\nx"}"#,
        );
        assert_eq!(text, "To: \"Ann B\" <a@example.com>\r\n\r\nx");
        // The recipient's substitutions override the predefined variables.
        let text = render_one(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","substitutions":{"to_header":"X <x@example.com>"}}],
                "content":{"headers":{"To":"{{ to_header }}"},"text_body":"t"}}"#,
        );
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(head.matches("To: ").count(), 1, "{head}");
        assert!(head.contains("To: X <x@example.com>"), "{head}");
    }

    #[test]
    fn amp_and_inline_parts_nest_as_upstream() {
        let text = render_one(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],
                "content":{"text_body":"t","html_body":"<img src=cid:px>","amp_html_body":"<html amp4email>a</html>",
                  "attachments":[{"data":"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7","base64":true,
                                  "content_type":"image/gif","content_id":"px","file_name":"pixel.gif"},
                                 {"data":"doc","content_type":"text/plain","file_name":"d.txt"}]}}"#,
        );
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at("multipart/mixed") < at("multipart/related"));
        assert!(at("multipart/related") < at("multipart/alternative"));
        assert!(at("text/plain") < at("text/x-amp-html"));
        assert!(at("text/x-amp-html") < at("text/html"));
        assert!(at("Content-ID: <px>") > at("text/html"));
        assert!(at("Content-Disposition: inline") < at("d.txt"));
        assert!(text.contains("To: <a@example.com>"), "{text}");
    }
}
