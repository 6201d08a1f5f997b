//! Which addresses a CONNECT may reach. The decision is made on the
//! resolved, canonical address the proxy is about to connect to, never on
//! the text the client asked for: `127.100`, `0x7f000064`, `::ffff:127.0.0.1`
//! and any name resolving to a loopback address are all 127.x here.

use ipnet::IpNet;
use parking_lot::RwLock;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Ranges no client may reach unless the operator says otherwise: loopback,
/// unspecified, "this network", link-local (169.254/16 holds cloud metadata
/// services), multicast and broadcast.
pub const DEFAULT_PROHIBITED: &[&str] = &[
    "127.0.0.0/8",
    "0.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "::/128",
    "fe80::/10",
    "ff00::/8",
];

/// The default prohibited ranges, parsed.
pub fn default_prohibited() -> Vec<IpNet> {
    DEFAULT_PROHIBITED
        .iter()
        .map(|net| net.parse().expect("the default ranges parse"))
        .collect()
}

/// The same address as the kernel will use it: an IPv4-mapped IPv6 address
/// becomes the IPv4 address it maps, and IPv6 scope and flow are dropped.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The addresses the process itself listens on (SOCKS and HTTP), filled in
/// once every listener is bound, and the host's own interface addresses,
/// which reach a listener bound to an unspecified address.
#[derive(Default)]
pub struct OwnListeners {
    listening: RwLock<Vec<SocketAddr>>,
    host_addresses: Vec<IpAddr>,
}

impl OwnListeners {
    /// An empty set that knows the host's interface addresses.
    pub fn new() -> Arc<Self> {
        Arc::new(OwnListeners {
            listening: RwLock::new(Vec::new()),
            host_addresses: host_addresses(),
        })
    }

    /// Record the bound addresses of the process's listeners.
    pub fn set(&self, addresses: Vec<SocketAddr>) {
        *self.listening.write() = addresses;
    }

    /// Whether a connection to `dest` would reach one of our listeners.
    pub fn contains(&self, dest: SocketAddr) -> bool {
        self.listening.read().iter().any(|own| {
            own.port() == dest.port()
                && (own.ip().to_canonical() == dest.ip()
                    || (own.ip().is_unspecified()
                        && (dest.ip().is_loopback() || self.host_addresses.contains(&dest.ip()))))
        })
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Prohibited {
    /// In a prohibited range.
    #[error("{dest} is in the prohibited range {range}")]
    Range { dest: SocketAddr, range: IpNet },
    /// One of the proxy's own listeners.
    #[error("{dest} is one of this process's own listeners")]
    OwnListener { dest: SocketAddr },
}

/// The destination rules of one listener.
pub struct DestinationGuard {
    prohibited: Vec<IpNet>,
    exempt: Vec<IpNet>,
    /// `None` when the listener's explicit list replaced the default.
    own_listeners: Option<Arc<OwnListeners>>,
}

impl DestinationGuard {
    /// Rules from the listener's `prohibited_destinations` (`None`: the
    /// default ranges and the own listeners; a list, even empty, replaces
    /// all of that) and ranges exempted from the default (legacy mode's
    /// `--allow-destination`).
    pub fn new(
        explicit: Option<&[IpNet]>,
        exempt: Vec<IpNet>,
        own_listeners: Arc<OwnListeners>,
    ) -> Self {
        match explicit {
            Some(list) => DestinationGuard {
                prohibited: list.to_vec(),
                exempt: Vec::new(),
                own_listeners: None,
            },
            None => DestinationGuard {
                prohibited: default_prohibited(),
                exempt,
                own_listeners: Some(own_listeners),
            },
        }
    }

    /// Whether `dest` (canonical) may be connected to.
    pub fn check(&self, dest: SocketAddr) -> Result<(), Prohibited> {
        if let Some(own) = &self.own_listeners {
            if own.contains(dest) {
                return Err(Prohibited::OwnListener { dest });
            }
        }
        if self.exempt.iter().any(|net| net.contains(&dest.ip())) {
            return Ok(());
        }
        match self.prohibited.iter().find(|net| net.contains(&dest.ip())) {
            Some(range) => Err(Prohibited::Range {
                dest,
                range: *range,
            }),
            None => Ok(()),
        }
    }
}

/// Parse `1.2.3.4`, `10.0.0.0/8`, `::1` or `fe80::/10` (a bare address is
/// the range of that one address).
pub fn parse_ip_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR range"))
}

/// serde `deserialize_with` for `prohibited_destinations`.
pub fn deserialize_ip_ranges<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<IpNet>>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| parse_ip_range(text))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// The host's interface addresses (canonical), for listeners bound to an
/// unspecified address. An error leaves the list empty: loopback is still
/// recognised.
fn host_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read
    // and free with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*entry };
        if let Some(ip) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            addresses.push(ip.to_canonical());
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

/// The IP address of an AF_INET/AF_INET6 sockaddr.
///
/// # Safety
/// `addr` is null or points to a sockaddr of the size its family implies.
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    match i32::from((*addr).sa_family) {
        libc::AF_INET => {
            let v4 = &*(addr as *const libc::sockaddr_in);
            Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            let v6 = &*(addr as *const libc::sockaddr_in6);
            Some(IpAddr::from(v6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        canonical(text.parse().unwrap())
    }

    fn default_guard(own: &Arc<OwnListeners>) -> DestinationGuard {
        DestinationGuard::new(None, Vec::new(), own.clone())
    }

    #[test]
    fn default_refuses_local_and_special_ranges() {
        let guard = default_guard(&OwnListeners::new());
        for dest in [
            "127.0.0.1:25",
            "127.0.0.100:25",
            "[::1]:80",
            "[::ffff:127.0.0.100]:25",
            "0.0.0.0:80",
            "[::]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "255.255.255.255:80",
        ] {
            assert!(guard.check(addr(dest)).is_err(), "{dest} must be refused");
        }
        for dest in ["192.0.2.1:25", "[2001:db8::1]:25", "10.1.2.3:443"] {
            assert_eq!(guard.check(addr(dest)), Ok(()), "{dest}");
        }
    }

    #[test]
    fn v4_mapped_addresses_are_judged_as_ipv4() {
        assert_eq!(
            addr("[::ffff:127.0.0.100]:25"),
            "127.0.0.100:25".parse().unwrap()
        );
    }

    #[test]
    fn own_listeners_are_refused_by_address_and_when_bound_to_any() {
        let own = OwnListeners::new();
        own.set(vec![
            "192.0.2.7:1080".parse().unwrap(),
            "0.0.0.0:8000".parse().unwrap(),
        ]);
        let guard = default_guard(&own);
        assert_eq!(
            guard.check(addr("192.0.2.7:1080")),
            Err(Prohibited::OwnListener {
                dest: addr("192.0.2.7:1080")
            })
        );
        assert_eq!(guard.check(addr("192.0.2.7:1081")), Ok(()));
        // 0.0.0.0:8000 is reached through loopback whatever the exemptions.
        let exempting = DestinationGuard::new(None, vec!["127.0.0.0/8".parse().unwrap()], own);
        assert!(exempting.check(addr("127.0.0.1:8000")).is_err());
        assert_eq!(exempting.check(addr("127.0.0.1:8001")), Ok(()));
    }

    #[test]
    fn an_explicit_list_replaces_the_default() {
        let own = OwnListeners::new();
        own.set(vec!["127.0.0.1:1080".parse().unwrap()]);
        let open = DestinationGuard::new(Some(&[]), Vec::new(), own.clone());
        assert_eq!(open.check(addr("127.0.0.1:1080")), Ok(()));
        let list = [parse_ip_range("192.0.2.0/24").unwrap()];
        let custom = DestinationGuard::new(Some(&list), Vec::new(), own);
        assert!(custom.check(addr("192.0.2.9:25")).is_err());
        assert_eq!(custom.check(addr("127.0.0.1:25")), Ok(()));
    }

    #[test]
    fn ranges_parse_from_addresses_and_cidrs() {
        assert_eq!(
            parse_ip_range("10.1.2.3").unwrap(),
            "10.1.2.3/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_ip_range("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_ip_range("::ffff:10.0.0.1").unwrap(),
            "10.0.0.1/32".parse::<IpNet>().unwrap()
        );
        assert!(parse_ip_range("localhost").is_err());
        assert!(parse_ip_range("10.0.0.0/33").is_err());
    }

    #[test]
    fn the_host_addresses_include_loopback() {
        assert!(host_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
