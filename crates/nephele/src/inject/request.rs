//! The body of `POST /api/inject/v1` and its validation.

use base64::Engine;
use message::EnvelopeAddress;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Why a request is refused as a whole (nothing is spooled). The text names
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON at all: `400`.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// JSON of the wrong shape (missing field, wrong type, unknown field):
    /// `422`.
    #[error("invalid request: {0}")]
    Shape(String),
    /// A value that does not make sense (bad address, bad template,
    /// undecodable attachment): `422`.
    #[error("{field}: {message}")]
    Field {
        /// Where, e.g. `recipients[1].email`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl RequestError {
    /// A field error.
    pub fn field(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        RequestError::Field {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// The injection request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectV1Request {
    /// The envelope sender (`MAIL FROM`).
    pub envelope_sender: String,
    /// One message is generated per recipient.
    pub recipients: Vec<Recipient>,
    /// Template variables for every recipient.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub substitutions: Map<String, Value>,
    /// A full RFC 5322 message (a template), or a builder description.
    pub content: Content,
    /// Upstream queues the request and generates its messages later.
    /// nephele has no generator queue: the messages are generated and
    /// spooled before the answer, as without the flag (see docs/inject-api.md).
    #[serde(default)]
    pub deferred_generation: bool,
    /// Upstream may skip the spool until a first transient failure.
    /// nephele always spools before answering (the flag is accepted; no
    /// message is ever acknowledged without being durable).
    #[serde(default)]
    pub deferred_spool: bool,
    /// `Jinja` (the default) or `Static` (no template expansion); another
    /// dialect is refused with `422`.
    #[serde(default)]
    pub template_dialect: TemplateDialect,
    /// Which trace headers to add (default: only the supplemental
    /// `X-KumoRef` header).
    #[serde(default)]
    pub trace_headers: TraceHeaders,
}

/// `template_dialect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
pub enum TemplateDialect {
    /// MiniJinja templates.
    #[default]
    Jinja,
    /// Every text is used as is.
    Static,
}

// By hand, so a dialect nephele does not implement (upstream also has
// `Handlebars`) gets an error saying so rather than "unknown variant".
impl<'de> Deserialize<'de> for TemplateDialect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "Jinja" => Ok(TemplateDialect::Jinja),
            "Static" => Ok(TemplateDialect::Static),
            other => Err(serde::de::Error::custom(format!(
                "the template dialect {other:?} is not implemented by nephele (use \"Jinja\" or \"Static\")"
            ))),
        }
    }
}

/// `trace_headers`: the `Received:` header (added before
/// `http_message_generated`) and the supplemental header (added after it,
/// base64 of a JSON object with the recipient and the chosen meta values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TraceHeaders {
    /// Add a `Received:` header (default false: it would reveal the
    /// injecting client's address).
    pub received_header: bool,
    /// Add the supplemental trace header (default true).
    pub supplemental_header: bool,
    /// Its name (default `X-KumoRef`).
    pub header_name: String,
    /// Meta keys whose values the supplemental header also carries
    /// (base64, not encrypted: they are public).
    pub include_meta_names: Vec<String>,
}

impl Default for TraceHeaders {
    fn default() -> Self {
        TraceHeaders {
            received_header: false,
            supplemental_header: true,
            header_name: "X-KumoRef".to_owned(),
            include_meta_names: Vec::new(),
        }
    }
}

/// One recipient.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// The envelope recipient (`RCPT TO`).
    pub email: String,
    /// The display name; also the template variable `name`.
    #[serde(default)]
    pub name: Option<String>,
    /// Template variables for this recipient, overlaying the global ones
    /// and the predefined `email`, `name` and `to_header`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub substitutions: Map<String, Value>,
    /// Stored, when not empty, as the message's meta value `extra`
    /// (`msg:get_meta('extra')`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// `content`: a string, or a builder object.
#[derive(Debug, Clone, ToSchema)]
pub enum Content {
    /// A complete message (headers and body), rendered as a template.
    Rfc5322(String),
    /// Parts to assemble into a MIME message (boxed: far larger than a
    /// string).
    Builder(Box<Builder>),
}

// By hand rather than `untagged`, so an error inside the builder names its
// field instead of "did not match any variant".
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a message string or a builder object")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Content, E> {
                Ok(Content::Rfc5322(text.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Content, E> {
                Ok(Content::Rfc5322(text))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Content, M::Error> {
                Builder::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|builder| Content::Builder(Box::new(builder)))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// A MIME message description. Subject, bodies and header values are
/// templates.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    /// `Subject:`.
    #[serde(default)]
    pub subject: Option<String>,
    /// The `text/plain` part.
    #[serde(default)]
    pub text_body: Option<String>,
    /// The `text/html` part.
    #[serde(default)]
    pub html_body: Option<String>,
    /// The `text/x-amp-html` part (placed between the text and the HTML
    /// parts of the `multipart/alternative`).
    #[serde(default)]
    pub amp_html_body: Option<String>,
    /// `From:`; the envelope sender when absent.
    #[serde(default)]
    pub from: Option<NamedAddress>,
    /// `Reply-To:`.
    #[serde(default)]
    pub reply_to: Option<NamedAddress>,
    /// More headers, `name: value`. With a `To` header here no `To:` is
    /// generated from the recipient.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// An address with an optional display name.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedAddress {
    /// `user@domain`.
    pub email: String,
    /// The display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One attachment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The content: text, or base64 when `base64` is true.
    pub data: String,
    /// e.g. `application/pdf`.
    pub content_type: String,
    /// The file name offered to the reader.
    #[serde(default)]
    pub file_name: Option<String>,
    /// A `Content-ID`: the part is inline, in a `multipart/related` with
    /// the text parts (refer to it as `cid:ID` in the HTML).
    #[serde(default)]
    pub content_id: Option<String>,
    /// Whether `data` is base64.
    #[serde(default)]
    pub base64: bool,
}

impl Attachment {
    /// The attachment's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        if self.base64 {
            let compact: String = self.data.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(compact)
        } else {
            Ok(self.data.as_bytes().to_vec())
        }
    }
}

/// A request whose addresses and attachments were checked.
#[derive(Debug)]
pub struct ValidRequest {
    /// The request as sent.
    pub request: InjectV1Request,
    /// The parsed envelope sender.
    pub sender: EnvelopeAddress,
    /// The parsed recipients, in order; a recipient whose address or name
    /// is unusable fails alone, with this text.
    pub recipients: Vec<Result<EnvelopeAddress, String>>,
    /// Decoded attachments, in order.
    pub attachments: Vec<Vec<u8>>,
}

/// Parse and check a request body.
pub fn parse(body: &[u8]) -> Result<ValidRequest, RequestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request: InjectV1Request =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                RequestError::Syntax(inner.to_string())
            } else if path == "." || path.is_empty() {
                RequestError::Shape(inner.to_string())
            } else {
                RequestError::Shape(format!("{path}: {inner}"))
            }
        })?;
    deserializer
        .end()
        .map_err(|err| RequestError::Syntax(err.to_string()))?;
    validate(request)
}

/// Text that ends up in a header must not contain line breaks or other
/// control characters (header injection).
fn no_control(field: &str, text: &str) -> Result<(), RequestError> {
    if text.chars().any(char::is_control) {
        return Err(RequestError::field(field, "contains control characters"));
    }
    Ok(())
}

fn validate(request: InjectV1Request) -> Result<ValidRequest, RequestError> {
    let sender = EnvelopeAddress::parse(&request.envelope_sender)
        .map_err(|err| RequestError::field("envelope_sender", err))?;
    if request.recipients.is_empty() {
        return Err(RequestError::field("recipients", "must not be empty"));
    }
    let recipients = request
        .recipients
        .iter()
        .map(|r| {
            if r.email.chars().any(char::is_control) {
                return Err("the address contains control characters".to_owned());
            }
            if let Some(name) = &r.name {
                no_control("name", name).map_err(|err| err.to_string())?;
            }
            EnvelopeAddress::parse(&r.email).map_err(|err| err.to_string())
        })
        .collect();
    let mut attachments = Vec::new();
    if let Content::Builder(builder) = &request.content {
        for (field, address) in [("from", &builder.from), ("reply_to", &builder.reply_to)] {
            if let Some(address) = address {
                EnvelopeAddress::parse(&address.email)
                    .map_err(|err| RequestError::field(format!("content.{field}.email"), err))?;
                if let Some(name) = &address.name {
                    no_control(&format!("content.{field}.name"), name)?;
                }
            }
        }
        for (i, attachment) in builder.attachments.iter().enumerate() {
            let field = format!("content.attachments[{i}]");
            no_control(&format!("{field}.content_type"), &attachment.content_type)?;
            if let Some(content_id) = &attachment.content_id {
                no_control(&format!("{field}.content_id"), content_id)?;
                if content_id.is_empty() || content_id.contains(['<', '>', ' ']) {
                    return Err(RequestError::field(
                        format!("{field}.content_id"),
                        "expected an id without <, > or spaces",
                    ));
                }
            }
            if !attachment.content_type.contains('/') {
                return Err(RequestError::field(
                    format!("{field}.content_type"),
                    "expected type/subtype",
                ));
            }
            if let Some(file_name) = &attachment.file_name {
                no_control(&format!("{field}.file_name"), file_name)?;
            }
            attachments.push(attachment.bytes().map_err(|err| {
                RequestError::field(
                    format!("content.attachments[{i}].data"),
                    format!("invalid base64: {err}"),
                )
            })?);
        }
    }
    Ok(ValidRequest {
        request,
        sender,
        recipients,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> RequestError {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn accepts_both_content_forms() {
        let ok = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"r@example.com"}],
                "content":"Subject: hi\r\n\r\nbody"}"#,
        )
        .unwrap();
        assert!(matches!(ok.request.content, Content::Rfc5322(_)));
        let ok = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"r@example.com","name":"R"}],
                "content":{"subject":"s","text_body":"t","from":{"email":"f@example.com"},
                "attachments":[{"data":"aGVsbG8=","content_type":"text/plain","base64":true}]}}"#,
        )
        .unwrap();
        assert_eq!(ok.attachments, [b"hello".to_vec()]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(err("{not json"), RequestError::Syntax(_)));
        let missing = err(r#"{"envelope_sender":"s@example.com","content":"x"}"#).to_string();
        assert!(missing.contains("recipients"), "{missing}");
        let empty =
            err(r#"{"envelope_sender":"s@example.com","recipients":[],"content":"x"}"#).to_string();
        assert!(empty.contains("recipients: must not be empty"), "{empty}");
        // A bad recipient fails alone; the request stands.
        let mixed = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"ok@x.com"},{"email":"nope"}],"content":"x"}"#,
        )
        .unwrap();
        assert!(mixed.recipients[0].is_ok());
        let bad = mixed.recipients[1].clone().unwrap_err();
        assert!(bad.contains("nope"), "{bad}");
        let dialect = err(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@x.com"}],"content":"x","template_dialect":"Handlebars"}"#,
        )
        .to_string();
        assert!(
            dialect.contains("template_dialect")
                && dialect.contains("\"Handlebars\" is not implemented"),
            "{dialect}"
        );
        let builder = err(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@x.com"}],"content":{"subjet":"x"}}"#,
        )
        .to_string();
        assert!(
            builder.contains("content") && builder.contains("subjet"),
            "{builder}"
        );
        let b64 = err(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@x.com"}],
               "content":{"attachments":[{"data":"!!","content_type":"a/b","base64":true}]}}"#,
        )
        .to_string();
        assert!(b64.contains("content.attachments[0].data"), "{b64}");
        let sender =
            err(r#"{"envelope_sender":"","recipients":[{"email":"a@x.com"}],"content":"x"}"#)
                .to_string();
        assert!(sender.contains("envelope_sender"), "{sender}");
        let injected = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@x.com","name":"A\r\nBcc: e@x.com"},{"email":"b@x.com\r\n"}],"content":"x"}"#,
        )
        .unwrap();
        for recipient in &injected.recipients {
            let text = recipient.clone().unwrap_err();
            assert!(text.contains("control characters"), "{text}");
        }
        let content_type = err(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@x.com"}],
               "content":{"attachments":[{"data":"x","content_type":"text\nX: y"}]}}"#,
        )
        .to_string();
        assert!(
            content_type.contains("content.attachments[0].content_type"),
            "{content_type}"
        );
    }
}
