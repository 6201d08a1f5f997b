use crate::{ParseResult, Parsed, Socks5Error};

/// The version byte of the RFC 1929 sub-negotiation.
pub const USERPASS_VERSION: u8 = 0x01;
/// RFC 1929 status byte for success.
pub const USERPASS_SUCCESS: u8 = 0x00;
/// RFC 1929 status byte for failure (any non-zero value is a failure).
pub const USERPASS_FAILURE: u8 = 0x01;

/// An RFC 1929 request, borrowing the received bytes so nothing is copied
/// until the session decides what to keep. Either field may be empty or hold
/// bytes that are not UTF-8; the server decides what to do with them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPassRequest<'a> {
    pub username: &'a [u8],
    pub password: &'a [u8],
}

impl std::fmt::Debug for UserPassRequest<'_> {
    // Never print the password, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPassRequest")
            .field("username", &String::from_utf8_lossy(self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Server side: parse `VER ULEN UNAME PLEN PASSWD`.
pub fn parse_userpass_request(buf: &[u8]) -> ParseResult<UserPassRequest<'_>> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != USERPASS_VERSION {
        return Err(Socks5Error::UnsupportedAuthVersion(version));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    let user_end = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(user_end) else {
        return Ok(Parsed::Incomplete);
    };
    let pass_start = user_end + 1;
    let pass_end = pass_start + usize::from(plen);
    if buf.len() < pass_end {
        return Ok(Parsed::Incomplete);
    }
    Ok(Parsed::Complete {
        value: UserPassRequest {
            username: &buf[2..user_end],
            password: &buf[pass_start..pass_end],
        },
        consumed: pass_end,
    })
}

/// Client side: append an RFC 1929 request. Each field is at most 255 bytes.
pub fn encode_userpass_request(
    username: &[u8],
    password: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    let ulen = u8::try_from(username.len()).map_err(|_| Socks5Error::FieldTooLong {
        field: "username",
        len: username.len(),
    })?;
    let plen = u8::try_from(password.len()).map_err(|_| Socks5Error::FieldTooLong {
        field: "password",
        len: password.len(),
    })?;
    out.push(USERPASS_VERSION);
    out.push(ulen);
    out.extend_from_slice(username);
    out.push(plen);
    out.extend_from_slice(password);
    Ok(())
}

/// Server side: append the status reply `VER STATUS`.
pub fn encode_userpass_status(success: bool, out: &mut Vec<u8>) {
    let status = if success {
        USERPASS_SUCCESS
    } else {
        USERPASS_FAILURE
    };
    out.extend_from_slice(&[USERPASS_VERSION, status]);
}

/// Client side: parse the status reply; `true` means accepted.
pub fn parse_userpass_status(buf: &[u8]) -> ParseResult<bool> {
    match buf {
        [] | [_] => Ok(Parsed::Incomplete),
        [USERPASS_VERSION, status, ..] => Ok(Parsed::Complete {
            value: *status == USERPASS_SUCCESS,
            consumed: 2,
        }),
        [version, ..] => Err(Socks5Error::UnsupportedAuthVersion(*version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (UserPassRequest<'_>, usize) {
        match parse_userpass_request(buf).unwrap() {
            Parsed::Complete { value, consumed } => (value, consumed),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode_userpass_request(b"proxyuser", b"secretpassword", &mut out).unwrap();
        let (req, consumed) = complete(&out);
        assert_eq!(consumed, out.len());
        assert_eq!(req.username, b"proxyuser");
        assert_eq!(req.password, b"secretpassword");
    }

    #[test]
    fn empty_fields() {
        let (req, consumed) = complete(&[1, 0, 0]);
        assert_eq!(consumed, 3);
        assert!(req.username.is_empty());
        assert!(req.password.is_empty());
    }

    #[test]
    fn max_length_fields() {
        let user = vec![b'u'; 255];
        let pass = vec![b'p'; 255];
        let mut out = Vec::new();
        encode_userpass_request(&user, &pass, &mut out).unwrap();
        assert_eq!(out.len(), 3 + 510);
        let (req, _) = complete(&out);
        assert_eq!(req.username, &user[..]);
        assert_eq!(req.password, &pass[..]);
    }

    #[test]
    fn oversize_fields_refused_by_encoder() {
        let long = vec![b'x'; 256];
        assert!(matches!(
            encode_userpass_request(&long, b"p", &mut Vec::new()),
            Err(Socks5Error::FieldTooLong {
                field: "username",
                len: 256
            })
        ));
        assert!(matches!(
            encode_userpass_request(b"u", &long, &mut Vec::new()),
            Err(Socks5Error::FieldTooLong {
                field: "password",
                len: 256
            })
        ));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut out = Vec::new();
        encode_userpass_request(b"user", b"pw", &mut out).unwrap();
        for len in 0..out.len() {
            assert_eq!(
                parse_userpass_request(&out[..len]),
                Ok(Parsed::Incomplete),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn wrong_version() {
        assert_eq!(
            parse_userpass_request(&[5, 1, b'a', 1, b'b']),
            Err(Socks5Error::UnsupportedAuthVersion(5))
        );
        assert_eq!(
            parse_userpass_status(&[5, 0]),
            Err(Socks5Error::UnsupportedAuthVersion(5))
        );
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let (req, _) = complete(&[1, 2, 0xff, 0xfe, 1, 0x80]);
        assert_eq!(req.username, &[0xff, 0xfe]);
        assert_eq!(req.password, &[0x80]);
    }

    #[test]
    fn debug_hides_password() {
        let (req, _) = complete(&[1, 1, b'u', 6, b's', b'e', b'c', b'r', b'e', b't']);
        let shown = format!("{req:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn status_round_trip() {
        let mut out = Vec::new();
        encode_userpass_status(true, &mut out);
        encode_userpass_status(false, &mut out);
        assert_eq!(out, [1, 0, 1, 1]);
        assert_eq!(
            parse_userpass_status(&out[..2]),
            Ok(Parsed::Complete {
                value: true,
                consumed: 2
            })
        );
        assert_eq!(
            parse_userpass_status(&out[2..]),
            Ok(Parsed::Complete {
                value: false,
                consumed: 2
            })
        );
        assert_eq!(
            parse_userpass_status(&[1, 0x7f]),
            Ok(Parsed::Complete {
                value: false,
                consumed: 2
            })
        );
        assert_eq!(parse_userpass_status(&[1]), Ok(Parsed::Incomplete));
    }
}
