//! Reading and adding header fields on raw RFC 5322 bytes, without parsing
//! (and so without re-encoding) the body.

/// Why a header cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty, or contains a colon, a space or a control character.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// A CR or LF in a value would start a new header (header injection).
    #[error("invalid value for header {0:?}: it contains CR or LF")]
    Value(String),
}

/// Header operations on a message's bytes.
pub struct Headers;

impl Headers {
    /// Where the header block ends: the offset of the blank line's CRLF (or
    /// LF), or the end of the data when there is no body.
    fn block_end(data: &[u8]) -> usize {
        if data.starts_with(b"\r\n") || data.starts_with(b"\n") {
            return 0;
        }
        let crlf = find(data, b"\r\n\r\n").map(|at| at + 2);
        let lf = find(data, b"\n\n").map(|at| at + 1);
        match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => data.len(),
        }
    }

    /// The header fields, unfolded, in order: `(name, value)` with the value
    /// trimmed.
    pub fn fields(data: &[u8]) -> Vec<(String, String)> {
        let block = String::from_utf8_lossy(&data[..Self::block_end(data)]);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        fields
    }

    /// The value of the first header called `name` (any case).
    pub fn first_named(data: &[u8], name: &str) -> Option<String> {
        Self::fields(data)
            .into_iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    fn render(name: &str, value: &str) -> Result<Vec<u8>, HeaderError> {
        if name.is_empty() || name.bytes().any(|b| b == b':' || !(b.is_ascii_graphic())) {
            return Err(HeaderError::Name(name.to_owned()));
        }
        if value.contains(['\r', '\n']) {
            return Err(HeaderError::Value(name.to_owned()));
        }
        Ok(format!("{name}: {value}\r\n").into_bytes())
    }

    /// Add `name: value` as the first header.
    pub fn prepend(data: &mut Vec<u8>, name: &str, value: &str) -> Result<(), HeaderError> {
        let line = Self::render(name, value)?;
        data.splice(0..0, line);
        Ok(())
    }

    /// Add `name: value` after the last header.
    pub fn append(data: &mut Vec<u8>, name: &str, value: &str) -> Result<(), HeaderError> {
        let line = Self::render(name, value)?;
        let mut at = Self::block_end(data);
        if at == data.len() && !data.is_empty() && !data.ends_with(b"\n") {
            // Headers only, last line unterminated: terminate it first.
            data.extend_from_slice(b"\r\n");
            at = data.len();
        }
        data.splice(at..at, line);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Make every line end in CRLF: a bare LF becomes CRLF, a bare CR is kept.
pub fn normalize_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut previous = 0u8;
    for &byte in data {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"Subject: hi\r\nTo: A <a@x.com>,\r\n  b@y.com\r\n\r\nbody: not a header\r\n";

    #[test]
    fn reads_unfolded_fields() {
        assert_eq!(Headers::first_named(MSG, "subject").as_deref(), Some("hi"));
        assert_eq!(
            Headers::first_named(MSG, "TO").as_deref(),
            Some("A <a@x.com>, b@y.com")
        );
        assert_eq!(Headers::first_named(MSG, "body"), None);
    }

    #[test]
    fn adds_fields_in_place() {
        let mut data = MSG.to_vec();
        Headers::append(&mut data, "X-Last", "1").unwrap();
        Headers::prepend(&mut data, "X-First", "0").unwrap();
        let text = String::from_utf8(data).unwrap();
        assert!(text.starts_with("X-First: 0\r\nSubject: hi\r\n"), "{text}");
        assert!(text.contains("b@y.com\r\nX-Last: 1\r\n\r\nbody"), "{text}");

        let mut headers_only = b"Subject: x".to_vec();
        Headers::append(&mut headers_only, "X-A", "b").unwrap();
        assert_eq!(headers_only, b"Subject: x\r\nX-A: b\r\n");
    }

    #[test]
    fn refuses_injection() {
        let mut data = MSG.to_vec();
        assert!(Headers::append(&mut data, "X-A", "1\r\nBcc: evil@x.com").is_err());
        assert!(Headers::append(&mut data, "Bad Name", "1").is_err());
        assert!(Headers::prepend(&mut data, "", "1").is_err());
        assert_eq!(data, MSG);
    }

    #[test]
    fn normalizes_line_endings() {
        assert_eq!(normalize_crlf(b"a\nb\r\nc\rd\n"), b"a\r\nb\r\nc\rd\r\n");
    }
}
