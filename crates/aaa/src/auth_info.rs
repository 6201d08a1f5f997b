use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// How an identity was established. Spelled as in KumoMTA so policies and
/// accounting records carry over unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentityContext {
    SmtpAuthPlainAuthorization,
    SmtpAuthPlainAuthentication,
    HttpBasicAuth,
    BearerToken,
    ProxyAuthRfc1929,
    LocalSystem,
    GenericAuth,
}

/// One authenticated identity and how it was established.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub identity: String,
    pub context: IdentityContext,
}

/// What is known about a peer: its address, the identities it proved and
/// the groups they belong to. It is *authenticated* when it holds at least
/// one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<IpAddr>,
    #[serde(default)]
    pub identities: Vec<Identity>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl AuthInfo {
    /// An AuthInfo holding one identity.
    pub fn from_identity(identity: impl Into<String>, context: IdentityContext) -> Self {
        AuthInfo {
            peer_address: None,
            identities: vec![Identity {
                identity: identity.into(),
                context,
            }],
            groups: Vec::new(),
        }
    }

    /// Whether at least one identity was proved.
    pub fn is_authenticated(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Add `other`'s identities and groups to this one, skipping repeats.
    pub fn merge(&mut self, other: AuthInfo) {
        if self.peer_address.is_none() {
            self.peer_address = other.peer_address;
        }
        for identity in other.identities {
            if !self.identities.contains(&identity) {
                self.identities.push(identity);
            }
        }
        for group in other.groups {
            self.add_group(group);
        }
    }

    /// Add a group unless already present.
    pub fn add_group(&mut self, group: impl Into<String>) {
        let group = group.into();
        if !self.groups.contains(&group) {
            self.groups.push(group);
        }
    }

    /// Whether this peer is a member of `group`.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The first identity, if any.
    pub fn first_identity(&self) -> Option<&Identity> {
        self.identities.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_example() {
        let info: AuthInfo = serde_json::from_str(
            r#"{"identities":[{"identity":"proxyuser","context":"ProxyAuthRfc1929"}],
                "groups":["proxy-users","premium-tier"]}"#,
        )
        .unwrap();
        assert!(info.is_authenticated());
        assert!(info.has_group("premium-tier"));
        assert_eq!(
            info.identities[0].context,
            IdentityContext::ProxyAuthRfc1929
        );
    }

    #[test]
    fn missing_lists_are_empty() {
        let info: AuthInfo = serde_json::from_str("{}").unwrap();
        assert!(!info.is_authenticated());
        assert!(info.groups.is_empty());
    }

    #[test]
    fn unknown_keys_and_contexts_are_errors() {
        let err = serde_json::from_str::<AuthInfo>(r#"{"identity":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("identity"), "{err}");
        let err = serde_json::from_str::<AuthInfo>(
            r#"{"identities":[{"identity":"x","context":"Nope"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Nope"), "{err}");
    }

    #[test]
    fn merge_skips_repeats() {
        let mut info = AuthInfo::from_identity("a", IdentityContext::HttpBasicAuth);
        info.add_group("g");
        let mut other = AuthInfo::from_identity("a", IdentityContext::HttpBasicAuth);
        other.groups = vec!["g".into(), "h".into()];
        other.identities.push(Identity {
            identity: "b".into(),
            context: IdentityContext::GenericAuth,
        });
        info.merge(other);
        assert_eq!(info.identities.len(), 2);
        assert_eq!(info.groups, ["g", "h"]);
    }
}
