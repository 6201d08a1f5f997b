use crate::{ParseResult, Parsed, Socks5Error, TargetAddr, SOCKS_VERSION};

/// The REP field of a reply (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    Succeeded,
    GeneralFailure,
    NotAllowedByRuleset,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    /// A value outside RFC 1928's table, kept as received.
    Other(u8),
}

impl ReplyCode {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            ReplyCode::Succeeded => 0x00,
            ReplyCode::GeneralFailure => 0x01,
            ReplyCode::NotAllowedByRuleset => 0x02,
            ReplyCode::NetworkUnreachable => 0x03,
            ReplyCode::HostUnreachable => 0x04,
            ReplyCode::ConnectionRefused => 0x05,
            ReplyCode::TtlExpired => 0x06,
            ReplyCode::CommandNotSupported => 0x07,
            ReplyCode::AddressTypeNotSupported => 0x08,
            ReplyCode::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => ReplyCode::Succeeded,
            0x01 => ReplyCode::GeneralFailure,
            0x02 => ReplyCode::NotAllowedByRuleset,
            0x03 => ReplyCode::NetworkUnreachable,
            0x04 => ReplyCode::HostUnreachable,
            0x05 => ReplyCode::ConnectionRefused,
            0x06 => ReplyCode::TtlExpired,
            0x07 => ReplyCode::CommandNotSupported,
            0x08 => ReplyCode::AddressTypeNotSupported,
            other => ReplyCode::Other(other),
        }
    }

    /// The reply for an error from connecting or binding an outbound socket.
    pub fn from_io_error(err: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::ConnectionRefused => ReplyCode::ConnectionRefused,
            ErrorKind::TimedOut => ReplyCode::TtlExpired,
            ErrorKind::NetworkUnreachable => ReplyCode::NetworkUnreachable,
            ErrorKind::HostUnreachable => ReplyCode::HostUnreachable,
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// A server reply: `VER REP RSV ATYP BND.ADDR BND.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub bound: TargetAddr,
}

/// Server side: append a reply.
pub fn encode_reply(
    code: ReplyCode,
    bound: &TargetAddr,
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    out.extend_from_slice(&[SOCKS_VERSION, code.code(), 0]);
    bound.encode(out)
}

/// Client side: parse a reply.
pub fn parse_reply(buf: &[u8]) -> ParseResult<Reply> {
    let [version, code, _reserved, rest @ ..] = buf else {
        if let Some(&version) = buf.first() {
            if version != SOCKS_VERSION {
                return Err(Socks5Error::UnsupportedVersion(version));
            }
        }
        return Ok(Parsed::Incomplete);
    };
    if *version != SOCKS_VERSION {
        return Err(Socks5Error::UnsupportedVersion(*version));
    }
    Ok(TargetAddr::parse(rest)?.map(|bound| Reply {
        code: ReplyCode::from_code(*code),
        bound,
    }))
    .map(|parsed| match parsed {
        Parsed::Complete { value, consumed } => Parsed::Complete {
            value,
            consumed: consumed + 3,
        },
        Parsed::Incomplete => Parsed::Incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(ReplyCode::from_code(code).code(), code);
        }
    }

    #[test]
    fn reply_round_trip() {
        for bound in [
            TargetAddr::Ip("127.0.0.1:40000".parse().unwrap()),
            TargetAddr::Ip("[::1]:1".parse().unwrap()),
            TargetAddr::Domain("proxy.local".into(), 1080),
        ] {
            let mut out = Vec::new();
            encode_reply(ReplyCode::ConnectionRefused, &bound, &mut out).unwrap();
            assert_eq!(out[1], 5);
            let Parsed::Complete { value, consumed } = parse_reply(&out).unwrap() else {
                panic!("incomplete")
            };
            assert_eq!(consumed, out.len());
            assert_eq!(
                value,
                Reply {
                    code: ReplyCode::ConnectionRefused,
                    bound
                }
            );
            for len in 0..out.len() {
                assert_eq!(parse_reply(&out[..len]), Ok(Parsed::Incomplete));
            }
        }
    }

    #[test]
    fn reply_errors() {
        assert_eq!(parse_reply(&[4]), Err(Socks5Error::UnsupportedVersion(4)));
        assert_eq!(
            parse_reply(&[5, 0, 0, 9]),
            Err(Socks5Error::UnsupportedAddressType(9))
        );
    }

    #[test]
    fn io_errors_map_to_rfc_codes() {
        let code = |kind| ReplyCode::from_io_error(&Error::from(kind)).code();
        assert_eq!(code(ErrorKind::ConnectionRefused), 5);
        assert_eq!(code(ErrorKind::TimedOut), 6);
        assert_eq!(code(ErrorKind::NetworkUnreachable), 3);
        assert_eq!(code(ErrorKind::HostUnreachable), 4);
        assert_eq!(code(ErrorKind::PermissionDenied), 1);
        assert_eq!(
            ReplyCode::from_io_error(&Error::from_raw_os_error(libc_econnrefused())).code(),
            5
        );
    }

    fn libc_econnrefused() -> i32 {
        111 // ECONNREFUSED on Linux
    }
}
