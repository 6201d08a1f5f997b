//! The Response object of `kumo.http` (`request:send()`'s result): status
//! and headers at once, the body on demand (`text`, `bytes`) and bounded.

use crate::lua_errors::{error_chain, lua_err};
use mlua::{Function, Lua, MetaMethod, UserData, UserDataMethods, Value};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::StatusCode;
use std::sync::Arc;

/// The largest body `text`/`bytes` read; a longer one is an error (the
/// body lands in a Lua string, in memory).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A response; its body can be read once.
#[derive(Clone)]
pub(crate) struct HttpResponse {
    status: StatusCode,
    headers: Arc<HeaderMap>,
    content_length: Option<u64>,
    body: Arc<Mutex<Option<reqwest::Response>>>,
    /// `METHOD URL` for messages.
    target: Arc<str>,
}

impl HttpResponse {
    pub(crate) fn new(response: reqwest::Response, target: Arc<str>) -> Self {
        HttpResponse {
            status: response.status(),
            headers: Arc::new(response.headers().clone()),
            content_length: response.content_length(),
            body: Arc::new(Mutex::new(Some(response))),
            target,
        }
    }

    /// The body, at most [`MAX_BODY_BYTES`].
    async fn read_body(&self, function: &str) -> mlua::Result<Vec<u8>> {
        let mut response = self
            .body
            .lock()
            .take()
            .ok_or_else(|| lua_err(function, "the body was already read"))?;
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|err| {
                let detail = error_chain(&err.without_url());
                lua_err(function, format!("{}: {detail}", self.target))
            })?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(lua_err(
                    function,
                    format!(
                        "{}: the body is longer than {MAX_BODY_BYTES} bytes",
                        self.target
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// The body as text: the `charset` of `Content-Type` (UTF-8 when
    /// absent or unknown), a BOM wins, malformed sequences become U+FFFD.
    async fn text(&self) -> mlua::Result<String> {
        let bytes = self.read_body("kumo.http: text").await?;
        let label = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(charset);
        let encoding = label
            .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        let (text, _, _) = encoding.decode(&bytes);
        Ok(text.into_owned())
    }
}

/// The `charset` parameter of a `Content-Type` value.
fn charset(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

impl UserData for HttpResponse {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("status_code", |_, this, ()| Ok(this.status.as_u16()));
        methods.add_method("status_reason", |_, this, ()| {
            Ok(this.status.canonical_reason())
        });
        methods.add_method("status_is_informational", |_, this, ()| {
            Ok(this.status.is_informational())
        });
        methods.add_method("status_is_success", |_, this, ()| {
            Ok(this.status.is_success())
        });
        methods.add_method("status_is_redirection", |_, this, ()| {
            Ok(this.status.is_redirection())
        });
        methods.add_method("status_is_client_error", |_, this, ()| {
            Ok(this.status.is_client_error())
        });
        methods.add_method("status_is_server_error", |_, this, ()| {
            Ok(this.status.is_server_error())
        });
        methods.add_method("content_length", |_, this, ()| Ok(this.content_length));
        methods.add_method("headers", |_, this, ()| {
            Ok(HeaderMapObject(this.headers.clone()))
        });
        methods.add_async_method("text", |_, this, ()| {
            let this = this.clone();
            async move { this.text().await }
        });
        methods.add_async_method("bytes", |lua, this, ()| {
            let this = this.clone();
            async move {
                let bytes = this.read_body("kumo.http: bytes").await?;
                lua.create_string(bytes)
            }
        });
    }
}

/// `response:headers()`: indexing is case-insensitive (the first value of
/// a repeated header), and `pairs` lists every header once.
struct HeaderMapObject(Arc<HeaderMap>);

impl HeaderMapObject {
    fn value(&self, lua: &Lua, name: &str) -> mlua::Result<Value> {
        match self.0.get(name) {
            Some(value) => lua.create_string(value.as_bytes()).map(Value::String),
            None => Ok(Value::Nil),
        }
    }
}

impl UserData for HeaderMapObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, name: String| {
            this.value(lua, &name)
        });
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let snapshot = lua.create_table()?;
            for name in this.0.keys() {
                snapshot.raw_set(name.as_str(), this.value(lua, name.as_str())?)?;
            }
            let next: Function = lua.globals().get("next")?;
            Ok((next, snapshot, Value::Nil))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::charset;

    #[test]
    fn charset_is_read_from_content_type() {
        assert_eq!(
            charset("text/plain; charset=ISO-8859-1").as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(
            charset("text/html;Charset=\"utf-8\"").as_deref(),
            Some("utf-8")
        );
        assert_eq!(charset("application/json"), None);
    }
}
