use crate::{ParseResult, Parsed, Socks5Error, SOCKS_VERSION};

/// An authentication method number (RFC 1928 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthMethod(pub u8);

impl AuthMethod {
    /// `00`: no authentication required.
    pub const NO_AUTH: AuthMethod = AuthMethod(0x00);
    /// `01`: GSSAPI (not supported by this project, but parsed).
    pub const GSSAPI: AuthMethod = AuthMethod(0x01);
    /// `02`: username/password (RFC 1929).
    pub const USERNAME_PASSWORD: AuthMethod = AuthMethod(0x02);
    /// `FF`: no acceptable method; the server closes after sending it.
    pub const NO_ACCEPTABLE: AuthMethod = AuthMethod(0xFF);
}

/// The client's opening message: the set of methods it offers.
///
/// Stored as a 256-bit set so parsing a greeting allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Greeting {
    offered: [u64; 4],
}

impl Greeting {
    /// A greeting offering `methods`.
    pub fn new(methods: &[AuthMethod]) -> Self {
        let mut greeting = Greeting::default();
        for method in methods {
            greeting.offered[usize::from(method.0 >> 6)] |= 1 << (method.0 & 63);
        }
        greeting
    }

    /// Whether the client offered `method`.
    pub fn offers(&self, method: AuthMethod) -> bool {
        self.offered[usize::from(method.0 >> 6)] & (1 << (method.0 & 63)) != 0
    }
}

/// Server side: parse `VER NMETHODS METHODS...`.
pub fn parse_greeting(buf: &[u8]) -> ParseResult<Greeting> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != SOCKS_VERSION {
        return Err(Socks5Error::UnsupportedVersion(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    if count == 0 {
        return Err(Socks5Error::NoMethodsOffered);
    }
    let end = 2 + usize::from(count);
    let Some(methods) = buf.get(2..end) else {
        return Ok(Parsed::Incomplete);
    };
    let mut greeting = Greeting::default();
    for &method in methods {
        greeting.offered[usize::from(method >> 6)] |= 1 << (method & 63);
    }
    Ok(Parsed::Complete {
        value: greeting,
        consumed: end,
    })
}

/// Client side: append a greeting offering `methods` (1..=255 of them).
pub fn encode_greeting(methods: &[AuthMethod], out: &mut Vec<u8>) -> Result<(), Socks5Error> {
    if methods.is_empty() {
        return Err(Socks5Error::NoMethodsOffered);
    }
    let count = u8::try_from(methods.len()).map_err(|_| Socks5Error::FieldTooLong {
        field: "method list",
        len: methods.len(),
    })?;
    out.push(SOCKS_VERSION);
    out.push(count);
    out.extend(methods.iter().map(|m| m.0));
    Ok(())
}

/// Server side: append the method selection `VER METHOD`.
pub fn encode_method_selection(method: AuthMethod, out: &mut Vec<u8>) {
    out.extend_from_slice(&[SOCKS_VERSION, method.0]);
}

/// Client side: parse the server's method selection.
pub fn parse_method_selection(buf: &[u8]) -> ParseResult<AuthMethod> {
    match buf {
        [] | [_] => Ok(Parsed::Incomplete),
        [SOCKS_VERSION, method, ..] => Ok(Parsed::Complete {
            value: AuthMethod(*method),
            consumed: 2,
        }),
        [version, ..] => Err(Socks5Error::UnsupportedVersion(*version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trip() {
        let mut out = Vec::new();
        encode_greeting(
            &[AuthMethod::NO_AUTH, AuthMethod::USERNAME_PASSWORD],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [5, 2, 0, 2]);
        let Parsed::Complete { value, consumed } = parse_greeting(&out).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(consumed, 4);
        assert!(value.offers(AuthMethod::NO_AUTH));
        assert!(value.offers(AuthMethod::USERNAME_PASSWORD));
        assert!(!value.offers(AuthMethod::GSSAPI));
        assert_eq!(
            value,
            Greeting::new(&[AuthMethod::USERNAME_PASSWORD, AuthMethod::NO_AUTH])
        );
    }

    #[test]
    fn greeting_every_prefix_is_incomplete() {
        let msg = [5, 3, 0, 1, 2];
        for len in 0..msg.len() {
            assert_eq!(
                parse_greeting(&msg[..len]),
                Ok(Parsed::Incomplete),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn greeting_leaves_trailing_bytes() {
        let Parsed::Complete { consumed, .. } = parse_greeting(&[5, 1, 0, 5, 1, 0]).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(consumed, 3);
    }

    #[test]
    fn greeting_high_method_numbers() {
        let Parsed::Complete { value, .. } = parse_greeting(&[5, 2, 0xFE, 0x80]).unwrap() else {
            panic!("incomplete")
        };
        assert!(value.offers(AuthMethod(0xFE)));
        assert!(value.offers(AuthMethod(0x80)));
        assert!(!value.offers(AuthMethod::NO_AUTH));
    }

    #[test]
    fn greeting_wrong_version() {
        assert_eq!(
            parse_greeting(&[4, 1, 0]),
            Err(Socks5Error::UnsupportedVersion(4))
        );
        assert_eq!(
            parse_greeting(b"GET / HTTP/1.1"),
            Err(Socks5Error::UnsupportedVersion(b'G'))
        );
    }

    #[test]
    fn greeting_without_methods() {
        assert_eq!(parse_greeting(&[5, 0]), Err(Socks5Error::NoMethodsOffered));
        assert_eq!(
            encode_greeting(&[], &mut Vec::new()),
            Err(Socks5Error::NoMethodsOffered)
        );
    }

    #[test]
    fn greeting_too_many_methods_to_encode() {
        let methods = vec![AuthMethod::NO_AUTH; 256];
        assert!(matches!(
            encode_greeting(&methods, &mut Vec::new()),
            Err(Socks5Error::FieldTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn method_selection_round_trip() {
        let mut out = Vec::new();
        encode_method_selection(AuthMethod::NO_ACCEPTABLE, &mut out);
        assert_eq!(out, [5, 0xFF]);
        assert_eq!(
            parse_method_selection(&out),
            Ok(Parsed::Complete {
                value: AuthMethod::NO_ACCEPTABLE,
                consumed: 2
            })
        );
        assert_eq!(parse_method_selection(&[5]), Ok(Parsed::Incomplete));
        assert_eq!(parse_method_selection(&[]), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_method_selection(&[4, 0]),
            Err(Socks5Error::UnsupportedVersion(4))
        );
    }
}
