use crate::ReplyCode;

/// A malformed or unsupported message. Each variant knows the reply a server
/// should send before closing ([`Socks5Error::reply_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// The first byte of a SOCKS message was not 5.
    #[error("unsupported SOCKS version {0} (expected 5)")]
    UnsupportedVersion(u8),
    /// A client greeting that lists no authentication method.
    #[error("client greeting lists no authentication methods")]
    NoMethodsOffered,
    /// The RFC 1929 sub-negotiation version byte was not 1.
    #[error("unsupported username/password sub-negotiation version {0} (expected 1)")]
    UnsupportedAuthVersion(u8),
    /// The request's command byte is not CONNECT, BIND or UDP ASSOCIATE.
    #[error("unsupported command {0:#04x}")]
    UnsupportedCommand(u8),
    /// The address type byte is not IPv4, domain name or IPv6.
    #[error("unsupported address type {0:#04x}")]
    UnsupportedAddressType(u8),
    /// A domain name of zero length.
    #[error("empty domain name")]
    EmptyDomain,
    /// A domain name that is not UTF-8.
    #[error("domain name is not valid UTF-8")]
    DomainNotUtf8,
    /// The reserved byte of a request or reply was not zero.
    #[error("reserved byte is {0:#04x}, expected 0")]
    NonZeroReserved(u8),
    /// A field longer than the 255 bytes its length prefix can express.
    #[error("{field} is {len} bytes, longer than 255")]
    FieldTooLong { field: &'static str, len: usize },
}

impl Socks5Error {
    /// The reply a server sends for this error before closing, or `None`
    /// when the peer is not speaking the request protocol and gets no reply.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        match self {
            Socks5Error::UnsupportedCommand(_) => Some(ReplyCode::CommandNotSupported),
            Socks5Error::UnsupportedAddressType(_) => Some(ReplyCode::AddressTypeNotSupported),
            Socks5Error::EmptyDomain
            | Socks5Error::DomainNotUtf8
            | Socks5Error::NonZeroReserved(_) => Some(ReplyCode::GeneralFailure),
            Socks5Error::UnsupportedVersion(_)
            | Socks5Error::NoMethodsOffered
            | Socks5Error::UnsupportedAuthVersion(_)
            | Socks5Error::FieldTooLong { .. } => None,
        }
    }
}
