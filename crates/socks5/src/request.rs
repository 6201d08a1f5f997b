use crate::{ParseResult, Parsed, Socks5Error, TargetAddr, SOCKS_VERSION};

/// The command of a request (RFC 1928 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
}

impl Command {
    /// The wire value of the command.
    pub fn code(self) -> u8 {
        match self {
            Command::Connect => 0x01,
            Command::Bind => 0x02,
            Command::UdpAssociate => 0x03,
        }
    }
}

/// A client request: `VER CMD RSV ATYP DST.ADDR DST.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub address: TargetAddr,
}

/// Server side: parse a request.
///
/// An unknown command is reported only once the whole request (address
/// included) has arrived, so the error consumes exactly one message; an
/// unknown address type is reported at once, since its length is unknowable.
pub fn parse_request(buf: &[u8]) -> ParseResult<Request> {
    let [version, command, reserved, rest @ ..] = buf else {
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
    let (address, consumed) = match TargetAddr::parse(rest)? {
        Parsed::Incomplete => return Ok(Parsed::Incomplete),
        Parsed::Complete { value, consumed } => (value, consumed + 3),
    };
    let command = match command {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        0x03 => Command::UdpAssociate,
        other => return Err(Socks5Error::UnsupportedCommand(*other)),
    };
    if *reserved != 0 {
        return Err(Socks5Error::NonZeroReserved(*reserved));
    }
    Ok(Parsed::Complete {
        value: Request { command, address },
        consumed,
    })
}

/// Client side: append a request.
pub fn encode_request(
    command: Command,
    address: &TargetAddr,
    out: &mut Vec<u8>,
) -> Result<(), Socks5Error> {
    out.extend_from_slice(&[SOCKS_VERSION, command.code(), 0]);
    address.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn parse_ok(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf).unwrap() {
            Parsed::Complete { value, consumed } => (value, consumed),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn connect_ipv4() {
        let (req, consumed) = parse_ok(&[5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
        assert_eq!(consumed, 10);
        assert_eq!(req.command, Command::Connect);
        assert_eq!(
            req.address,
            TargetAddr::Ip("127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn connect_ipv6() {
        let mut buf = vec![5, 1, 0, 4];
        buf.extend_from_slice(&[0; 15]);
        buf.push(1);
        buf.extend_from_slice(&443u16.to_be_bytes());
        let (req, consumed) = parse_ok(&buf);
        assert_eq!(consumed, 22);
        assert_eq!(req.address, TargetAddr::Ip("[::1]:443".parse().unwrap()));
    }

    #[test]
    fn connect_domain() {
        let mut buf = vec![5, 1, 0, 3, 9];
        buf.extend_from_slice(b"localhost");
        buf.extend_from_slice(&25u16.to_be_bytes());
        let (req, consumed) = parse_ok(&buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(req.address, TargetAddr::Domain("localhost".into(), 25));
        assert_eq!(req.address.to_string(), "localhost:25");
        assert_eq!(req.address.host(), "localhost");
    }

    #[test]
    fn bind_and_udp_associate() {
        let (req, _) = parse_ok(&[5, 2, 0, 1, 127, 0, 0, 2, 0, 0]);
        assert_eq!(req.command, Command::Bind);
        let (req, _) = parse_ok(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(req.command, Command::UdpAssociate);
    }

    #[test]
    fn round_trip_all_forms() {
        let addrs = [
            TargetAddr::Ip("10.1.2.3:1".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::7]:65535".parse().unwrap()),
            TargetAddr::Domain("mx.example.com".into(), 587),
            TargetAddr::Domain("a".repeat(255), 80),
        ];
        for address in addrs {
            for command in [Command::Connect, Command::Bind, Command::UdpAssociate] {
                let mut out = Vec::new();
                encode_request(command, &address, &mut out).unwrap();
                let (req, consumed) = parse_ok(&out);
                assert_eq!(consumed, out.len());
                assert_eq!(
                    req,
                    Request {
                        command,
                        address: address.clone()
                    }
                );
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut out = Vec::new();
        encode_request(
            Command::Connect,
            &TargetAddr::Domain("example.org".into(), 80),
            &mut out,
        )
        .unwrap();
        for len in 0..out.len() {
            assert_eq!(
                parse_request(&out[..len]),
                Ok(Parsed::Incomplete),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn wrong_version_detected_from_first_byte() {
        assert_eq!(parse_request(&[4]), Err(Socks5Error::UnsupportedVersion(4)));
        assert_eq!(
            parse_request(&[4, 1, 0, 1, 1, 2, 3, 4, 0, 80]),
            Err(Socks5Error::UnsupportedVersion(4))
        );
    }

    #[test]
    fn unknown_command_after_whole_request() {
        assert_eq!(parse_request(&[5, 9, 0, 1, 1, 2]), Ok(Parsed::Incomplete));
        let err = parse_request(&[5, 9, 0, 1, 1, 2, 3, 4, 0, 80]).unwrap_err();
        assert_eq!(err, Socks5Error::UnsupportedCommand(9));
        assert_eq!(
            err.reply_code(),
            Some(crate::ReplyCode::CommandNotSupported)
        );
    }

    #[test]
    fn unknown_address_type() {
        let err = parse_request(&[5, 1, 0, 7]).unwrap_err();
        assert_eq!(err, Socks5Error::UnsupportedAddressType(7));
        assert_eq!(
            err.reply_code(),
            Some(crate::ReplyCode::AddressTypeNotSupported)
        );
    }

    #[test]
    fn bad_domains() {
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(Socks5Error::EmptyDomain)
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 2, 0xc3, 0x28, 0, 80]),
            Err(Socks5Error::DomainNotUtf8)
        );
        let mut out = Vec::new();
        assert!(matches!(
            encode_request(
                Command::Connect,
                &TargetAddr::Domain("a".repeat(256), 1),
                &mut out
            ),
            Err(Socks5Error::FieldTooLong { len: 256, .. })
        ));
        assert_eq!(
            encode_request(
                Command::Connect,
                &TargetAddr::Domain(String::new(), 1),
                &mut Vec::new()
            ),
            Err(Socks5Error::EmptyDomain)
        );
    }

    #[test]
    fn reserved_byte_must_be_zero() {
        let err = parse_request(&[5, 1, 7, 1, 1, 2, 3, 4, 0, 80]).unwrap_err();
        assert_eq!(err, Socks5Error::NonZeroReserved(7));
        assert_eq!(err.reply_code(), Some(crate::ReplyCode::GeneralFailure));
    }

    #[test]
    fn pipelined_requests_consume_one_at_a_time() {
        let mut out = Vec::new();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        encode_request(Command::Bind, &bind.into(), &mut out).unwrap();
        encode_request(
            Command::Connect,
            &TargetAddr::Domain("h".into(), 1),
            &mut out,
        )
        .unwrap();
        let (first, consumed) = parse_ok(&out);
        assert_eq!(first.command, Command::Bind);
        let (second, rest) = parse_ok(&out[consumed..]);
        assert_eq!(second.command, Command::Connect);
        assert_eq!(consumed + rest, out.len());
    }
}
