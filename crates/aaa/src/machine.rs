use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address or a CIDR block (`'127.0.0.1'`, `'10.0.0.0/8'`, `'::1'`),
/// as used by `trusted_hosts` and the `Machine` ACL criterion. A bare
/// address is the block holding only that address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpOrCidr(IpNet);

/// Why a text is neither an IP address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a CIDR block")]
pub struct InvalidIpOrCidr(pub String);

impl IpOrCidr {
    /// Whether `ip` lies inside this block. IPv4-mapped IPv6 peers
    /// (`::ffff:10.0.0.1`) match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }

    /// The block as an [`IpNet`].
    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl FromStr for IpOrCidr {
    type Err = InvalidIpOrCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(IpOrCidr(IpNet::from(ip)));
        }
        trimmed
            .parse::<IpNet>()
            // `10.1.2.3/8` means the block `10.0.0.0/8`.
            .map(|net| IpOrCidr(net.trunc()))
            .map_err(|_| InvalidIpOrCidr(text.to_owned()))
    }
}

impl TryFrom<String> for IpOrCidr {
    type Error = InvalidIpOrCidr;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<IpOrCidr> for String {
    fn from(value: IpOrCidr) -> Self {
        value.to_string()
    }
}

impl fmt::Display for IpOrCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Debug for IpOrCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpOrCidr({self})")
    }
}

/// A set of [`IpOrCidr`] blocks (`trusted_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpSet(pub Vec<IpOrCidr>);

impl IpSet {
    /// Whether any block contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks() {
        let one: IpOrCidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        assert_eq!(one.to_string(), "127.0.0.1");

        let block: IpOrCidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(block.to_string(), "10.0.0.0/8");
        assert!(block.contains(ip("10.200.0.1")));
        assert!(block.contains(ip("::ffff:10.0.0.1")));
        assert!(!block.contains(ip("11.0.0.1")));

        let v6: IpOrCidr = "::1".parse().unwrap();
        assert!(v6.contains(ip("::1")));
        assert!(!v6.contains(ip("127.0.0.1")));
        let v6_block: IpOrCidr = "fd00::/8".parse().unwrap();
        assert!(v6_block.contains(ip("fd12::3")));
    }

    #[test]
    fn rejects_nonsense_naming_it() {
        for text in ["", "localhost", "10.0.0.0/33", "1.2.3"] {
            let err = text.parse::<IpOrCidr>().unwrap_err();
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn set_from_json() {
        let set: IpSet = serde_json::from_str(r#"["127.0.0.1", "192.168.0.0/16"]"#).unwrap();
        assert!(set.contains(ip("192.168.4.4")));
        assert!(!set.contains(ip("127.0.0.2")));
        assert!(serde_json::from_str::<IpSet>(r#"["nope"]"#).is_err());
    }
}
