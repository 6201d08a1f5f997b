use crate::{AuthInfo, IpOrCidr};
use serde::{Deserialize, Serialize};

/// Who a rule is about, by identity (`Identity = { ... }` in an ACL).
/// Unit-like variants are written as empty tables (`Any = {}`), as in
/// KumoMTA's ACL files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityCriterion {
    /// A peer holding the identity with this name.
    Individual(String),
    /// A peer in this group.
    Group(String),
    /// A peer holding at least one identity.
    Authenticated {},
    /// A peer holding no identity.
    Unauthenticated {},
    /// Every peer.
    Any {},
    /// A peer whose address lies in this IP or CIDR block (upstream's
    /// `identity.Machine`). A peer with no known address never matches.
    Machine(IpOrCidr),
    /// A peer whose address lies in any of these blocks
    /// (`identity.MachineSet = ["10.0.0.1", "192.0.2.0/24"]`).
    MachineSet(Vec<IpOrCidr>),
}

impl IdentityCriterion {
    /// Whether `auth` satisfies this criterion.
    pub fn matches(&self, auth: &AuthInfo) -> bool {
        match self {
            IdentityCriterion::Individual(name) => {
                auth.identities.iter().any(|id| &id.identity == name)
            }
            IdentityCriterion::Group(group) => auth.has_group(group),
            IdentityCriterion::Authenticated {} => auth.is_authenticated(),
            IdentityCriterion::Unauthenticated {} => !auth.is_authenticated(),
            IdentityCriterion::Any {} => true,
            IdentityCriterion::Machine(block) => {
                auth.peer_address.is_some_and(|ip| block.contains(ip))
            }
            IdentityCriterion::MachineSet(blocks) => auth
                .peer_address
                .is_some_and(|ip| blocks.iter().any(|block| block.contains(ip))),
        }
    }
}

/// The condition of an ACL rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCriteria {
    /// A condition on the peer's identities or groups.
    Identity(IdentityCriterion),
    /// The peer's address lies in this IP or CIDR block. A peer with no
    /// known address never matches.
    Machine(IpOrCidr),
    /// Every sub-criterion matches (an empty list matches).
    AllOf(Vec<AclCriteria>),
    /// At least one sub-criterion matches (an empty list does not).
    AnyOf(Vec<AclCriteria>),
    /// The sub-criterion does not match.
    Not(Box<AclCriteria>),
}

impl AclCriteria {
    /// Whether `auth` satisfies these criteria.
    pub fn matches(&self, auth: &AuthInfo) -> bool {
        match self {
            AclCriteria::Identity(identity) => identity.matches(auth),
            AclCriteria::Machine(block) => auth.peer_address.is_some_and(|ip| block.contains(ip)),
            AclCriteria::AllOf(all) => all.iter().all(|c| c.matches(auth)),
            AclCriteria::AnyOf(any) => any.iter().any(|c| c.matches(auth)),
            AclCriteria::Not(inner) => !inner.matches(auth),
        }
    }
}

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

/// One rule: when the privilege asked for is `privilege` and `criteria`
/// match the peer, `access` decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessControlRule {
    /// Who the rule is about.
    pub criteria: AclCriteria,
    /// The privilege it governs: an HTTP method (`GET`, `POST`), or a proxy
    /// privilege (`connect`, `bind`). Compared exactly.
    pub privilege: String,
    /// Allow or deny.
    pub access: Access,
}

impl AccessControlRule {
    /// Whether this rule decides a request for `privilege` by `auth`.
    pub fn matches(&self, auth: &AuthInfo, privilege: &str) -> bool {
        self.privilege == privilege && self.criteria.matches(auth)
    }
}

/// The ordered rules of one resource name; the first matching rule decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessControlList {
    rules: Vec<AccessControlRule>,
}

impl AccessControlList {
    /// A list of `rules`, in the order they are tried.
    pub fn new(rules: Vec<AccessControlRule>) -> Self {
        AccessControlList { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[AccessControlRule] {
        &self.rules
    }

    /// The first rule that decides a request for `privilege` by `auth`.
    pub fn first_match(&self, auth: &AuthInfo, privilege: &str) -> Option<&AccessControlRule> {
        self.rules.iter().find(|rule| rule.matches(auth, privilege))
    }
}

impl AsRef<AccessControlList> for AccessControlList {
    fn as_ref(&self) -> &AccessControlList {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityContext;

    fn anonymous(peer: &str) -> AuthInfo {
        AuthInfo {
            peer_address: Some(peer.parse().unwrap()),
            ..AuthInfo::default()
        }
    }

    fn user(name: &str, groups: &[&str]) -> AuthInfo {
        let mut auth = AuthInfo::from_identity(name, IdentityContext::HttpBasicAuth);
        auth.peer_address = Some("10.1.2.3".parse().unwrap());
        for group in groups {
            auth.add_group(*group);
        }
        auth
    }

    fn criteria(json: &str) -> AclCriteria {
        serde_json::from_str(json).unwrap_or_else(|err| panic!("{json}: {err}"))
    }

    #[test]
    fn identity_criteria() {
        let alice = user("alice", &["ops"]);
        let nobody = anonymous("127.0.0.1");
        let cases = [
            (r#"{"Identity":{"Individual":"alice"}}"#, true, false),
            (r#"{"Identity":{"Individual":"bob"}}"#, false, false),
            (r#"{"Identity":{"Group":"ops"}}"#, true, false),
            (r#"{"Identity":{"Authenticated":{}}}"#, true, false),
            (r#"{"Identity":{"Unauthenticated":{}}}"#, false, true),
            (r#"{"Identity":{"Any":{}}}"#, true, true),
        ];
        for (json, for_alice, for_nobody) in cases {
            let c = criteria(json);
            assert_eq!(c.matches(&alice), for_alice, "{json} alice");
            assert_eq!(c.matches(&nobody), for_nobody, "{json} nobody");
        }
    }

    #[test]
    fn machine_and_combinators() {
        let alice = user("alice", &[]);
        let local = anonymous("127.0.0.1");
        let no_address = AuthInfo::default();
        let machine = criteria(r#"{"Machine":"10.0.0.0/8"}"#);
        assert!(machine.matches(&alice));
        assert!(!machine.matches(&local));
        assert!(!machine.matches(&no_address));
        assert!(criteria(r#"{"Machine":"127.0.0.1"}"#).matches(&local));

        let all =
            criteria(r#"{"AllOf":[{"Identity":{"Authenticated":{}}},{"Machine":"10.0.0.0/8"}]}"#);
        assert!(all.matches(&alice));
        assert!(!all.matches(&local));
        let any =
            criteria(r#"{"AnyOf":[{"Identity":{"Authenticated":{}}},{"Machine":"127.0.0.0/8"}]}"#);
        assert!(any.matches(&alice));
        assert!(any.matches(&local));
        assert!(!any.matches(&no_address));
        let not = criteria(r#"{"Not":{"Machine":"127.0.0.0/8"}}"#);
        assert!(not.matches(&alice));
        assert!(!not.matches(&local));
        assert!(criteria(r#"{"AllOf":[]}"#).matches(&no_address));
        assert!(!criteria(r#"{"AnyOf":[]}"#).matches(&no_address));
    }

    #[test]
    fn bad_criteria_are_errors_naming_the_problem() {
        for (json, needle) in [
            (r#"{"Identity":{"Everyone":{}}}"#, "Everyone"),
            (r#"{"Machine":"not-an-ip"}"#, "not-an-ip"),
            (r#"{"Somebody":"x"}"#, "Somebody"),
        ] {
            let err = serde_json::from_str::<AclCriteria>(json).unwrap_err();
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let acl: AccessControlList = serde_json::from_str(
            r#"[
              {"criteria":{"Identity":{"Individual":"mallory"}},"privilege":"GET","access":"Deny"},
              {"criteria":{"Identity":{"Authenticated":{}}},"privilege":"GET","access":"Allow"},
              {"criteria":{"Identity":{"Any":{}}},"privilege":"POST","access":"Deny"}
            ]"#,
        )
        .unwrap();
        let decide =
            |auth: &AuthInfo, privilege| acl.first_match(auth, privilege).map(|r| r.access);
        assert_eq!(decide(&user("mallory", &[]), "GET"), Some(Access::Deny));
        assert_eq!(decide(&user("alice", &[]), "GET"), Some(Access::Allow));
        assert_eq!(decide(&user("alice", &[]), "POST"), Some(Access::Deny));
        assert_eq!(decide(&user("alice", &[]), "DELETE"), None);
        assert_eq!(decide(&anonymous("10.0.0.1"), "GET"), None);
        // Privileges are compared exactly.
        assert_eq!(decide(&user("alice", &[]), "get"), None);
    }
}
