use crate::{ParseResult, Parsed, Socks5Error};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub(crate) const ATYP_IPV4: u8 = 0x01;
pub(crate) const ATYP_DOMAIN: u8 = 0x03;
pub(crate) const ATYP_IPV6: u8 = 0x04;

/// The address field of a request or reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A domain name (1..=255 bytes of UTF-8) and port, resolved by the server.
    Domain(String, u16),
}

impl TargetAddr {
    /// The port of either form.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(addr) => addr.port(),
            TargetAddr::Domain(_, port) => *port,
        }
    }

    /// The host part without the port: an IP literal or the domain name.
    pub fn host(&self) -> String {
        match self {
            TargetAddr::Ip(addr) => addr.ip().to_string(),
            TargetAddr::Domain(name, _) => name.clone(),
        }
    }

    /// Parse `ATYP ADDR PORT` at the start of `buf`.
    pub(crate) fn parse(buf: &[u8]) -> ParseResult<TargetAddr> {
        let Some(&atyp) = buf.first() else {
            return Ok(Parsed::Incomplete);
        };
        match atyp {
            ATYP_IPV4 => {
                let Some(bytes) = buf.get(1..7) else {
                    return Ok(Parsed::Incomplete);
                };
                let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
                let port = u16::from_be_bytes([bytes[4], bytes[5]]);
                Ok(Parsed::Complete {
                    value: TargetAddr::Ip(SocketAddr::new(IpAddr::V4(ip), port)),
                    consumed: 7,
                })
            }
            ATYP_IPV6 => {
                let Some(bytes) = buf.get(1..19) else {
                    return Ok(Parsed::Incomplete);
                };
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&bytes[..16]);
                let port = u16::from_be_bytes([bytes[16], bytes[17]]);
                Ok(Parsed::Complete {
                    value: TargetAddr::Ip(SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::from(octets)),
                        port,
                    )),
                    consumed: 19,
                })
            }
            ATYP_DOMAIN => {
                let Some(&len) = buf.get(1) else {
                    return Ok(Parsed::Incomplete);
                };
                let len = usize::from(len);
                let total = 2 + len + 2;
                let Some(bytes) = buf.get(2..total) else {
                    return Ok(Parsed::Incomplete);
                };
                if len == 0 {
                    return Err(Socks5Error::EmptyDomain);
                }
                let name =
                    std::str::from_utf8(&bytes[..len]).map_err(|_| Socks5Error::DomainNotUtf8)?;
                let port = u16::from_be_bytes([bytes[len], bytes[len + 1]]);
                Ok(Parsed::Complete {
                    value: TargetAddr::Domain(name.to_owned(), port),
                    consumed: total,
                })
            }
            other => Err(Socks5Error::UnsupportedAddressType(other)),
        }
    }

    /// Append `ATYP ADDR PORT` to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), Socks5Error> {
        match self {
            TargetAddr::Ip(SocketAddr::V4(addr)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&addr.ip().octets());
                out.extend_from_slice(&addr.port().to_be_bytes());
            }
            TargetAddr::Ip(SocketAddr::V6(addr)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&addr.ip().octets());
                out.extend_from_slice(&addr.port().to_be_bytes());
            }
            TargetAddr::Domain(name, port) => {
                let len = name.len();
                if len == 0 {
                    return Err(Socks5Error::EmptyDomain);
                }
                let len = u8::try_from(len).map_err(|_| Socks5Error::FieldTooLong {
                    field: "domain name",
                    len,
                })?;
                out.push(ATYP_DOMAIN);
                out.push(len);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&port.to_be_bytes());
            }
        }
        Ok(())
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(addr) => write!(f, "{addr}"),
            TargetAddr::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(addr: SocketAddr) -> Self {
        TargetAddr::Ip(addr)
    }
}
