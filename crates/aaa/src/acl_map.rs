use crate::acl::{Access, AccessControlList, AccessControlRule, AclCriteria, IdentityCriterion};
use crate::{AuthInfo, Resource};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The group every peer inside an HTTP listener's `trusted_hosts` gets.
pub const TRUSTED_IP_GROUP: &str = "kumomta:http-listener-trusted-ip";

/// The compiled-in ACL map, in the ACL map file format.
pub const DEFAULT_ACL_MAP_TOML: &str = include_str!("default_acl.toml");

static DEFAULT_ACL_MAP: LazyLock<AclMap> = LazyLock::new(|| {
    AclMap::from_toml(DEFAULT_ACL_MAP_TOML).expect("the compiled-in ACL map parses")
});

/// Why an ACL map file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AclMapError {
    /// Not valid TOML, or not of the ACL map's shape (names the key).
    #[error("invalid ACL map: {0}")]
    Syntax(#[from] toml::de::Error),
    /// A rule breaks a rule of the format.
    #[error("invalid ACL map: resource {resource:?}, rule {index}: {problem}")]
    Rule {
        /// The resource name the rule is listed under.
        resource: String,
        /// The rule's position (from 1) under that name.
        index: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// ACLs by exact resource name, as loaded from an ACL map file:
///
/// ```toml
/// [[acl."http_listener/*/api/inject"]]
/// allow = true
/// privileges = ["POST"]
/// identity.Group = "kumomta:http-listener-trusted-ip"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclMap {
    acls: HashMap<String, AccessControlList>,
}

/// The file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclMapFile {
    #[serde(default)]
    acl: HashMap<String, Vec<AclMapRule>>,
}

/// One `[[acl."name"]]` entry: one rule per privilege listed.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AclMapRule {
    allow: bool,
    privileges: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<IdentityCriterion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    criteria: Option<AclCriteria>,
}

impl AclMap {
    /// Parse an ACL map file. `identity` and `criteria` are mutually
    /// exclusive in one entry, one of them is required, and `privileges`
    /// must not be empty.
    pub fn from_toml(text: &str) -> Result<Self, AclMapError> {
        let file: AclMapFile = toml::from_str(text)?;
        let mut acls = HashMap::with_capacity(file.acl.len());
        for (resource, entries) in file.acl {
            let mut rules = Vec::new();
            for (index, entry) in entries.into_iter().enumerate() {
                let problem = |problem| AclMapError::Rule {
                    resource: resource.clone(),
                    index: index + 1,
                    problem,
                };
                let criteria = match (entry.identity, entry.criteria) {
                    (Some(identity), None) => AclCriteria::Identity(identity),
                    (None, Some(criteria)) => criteria,
                    (Some(_), Some(_)) => {
                        return Err(problem("`identity` and `criteria` are mutually exclusive"))
                    }
                    (None, None) => return Err(problem("needs `identity` or `criteria`")),
                };
                if entry.privileges.is_empty() {
                    return Err(problem("`privileges` is empty"));
                }
                let access = if entry.allow {
                    Access::Allow
                } else {
                    Access::Deny
                };
                rules.extend(
                    entry
                        .privileges
                        .into_iter()
                        .map(|privilege| AccessControlRule {
                            criteria: criteria.clone(),
                            privilege,
                            access,
                        }),
                );
            }
            acls.insert(resource, AccessControlList::new(rules));
        }
        Ok(AclMap { acls })
    }

    /// The map in the ACL map file format, resource names sorted, one entry
    /// per rule; [`AclMap::from_toml`] reads it back to an equal map.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            acl: std::collections::BTreeMap<&'a str, Vec<AclMapRule>>,
        }
        let acl = self
            .acls
            .iter()
            .map(|(name, acl)| {
                let rules = acl
                    .rules()
                    .iter()
                    .map(|rule| {
                        let (identity, criteria) = match &rule.criteria {
                            AclCriteria::Identity(identity) => (Some(identity.clone()), None),
                            other => (None, Some(other.clone())),
                        };
                        AclMapRule {
                            allow: rule.access == Access::Allow,
                            privileges: vec![rule.privilege.clone()],
                            identity,
                            criteria,
                        }
                    })
                    .collect();
                (name.as_str(), rules)
            })
            .collect();
        toml::to_string(&Out { acl })
    }

    /// Resource names that have an ACL.
    pub fn len(&self) -> usize {
        self.acls.len()
    }

    /// Whether no resource name has an ACL.
    pub fn is_empty(&self) -> bool {
        self.acls.is_empty()
    }

    /// The compiled-in map (`default_acl.toml`).
    pub fn default_map() -> &'static AclMap {
        &DEFAULT_ACL_MAP
    }

    /// The ACL for exactly this resource name.
    pub fn get(&self, name: &str) -> Option<&AccessControlList> {
        self.acls.get(name)
    }

    /// Add or replace the ACL of `name`.
    pub fn insert(&mut self, name: impl Into<String>, acl: AccessControlList) {
        self.acls.insert(name.into(), acl);
    }

    /// Decide a request for `privilege` on `resource` by `auth` with this
    /// map (see [`query_resource_access`]).
    pub fn query(&self, resource: &Resource, auth: &AuthInfo, privilege: &str) -> AccessDecision {
        query_resource_access(resource, auth, privilege, |name| self.get(name))
    }
}

/// The outcome of an authorization query, with what it was based on (for
/// deny messages and accounting records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDecision {
    /// Whether the request may proceed.
    pub allow: bool,
    /// The most specific resource name asked about.
    pub target_resource: String,
    /// The privilege asked for.
    pub privilege: String,
    /// The resource name whose ACL held the deciding rule.
    pub matching_resource: Option<String>,
    /// The deciding rule; `None` means denied by default.
    pub rule: Option<AccessControlRule>,
    /// Every name tried, in order, up to the deciding one.
    pub considered_resources: Vec<String>,
}

/// Decide a request for `privilege` on `resource` by `auth`. The names of
/// the resource are tried from most to least specific; for each that
/// `lookup` finds an ACL for, its rules are tried in order and the first
/// whose privilege and criteria match decides. No matching rule on any name
/// means deny.
///
/// `lookup` abstracts where ACLs come from (the default map now; a policy's
/// `get_acl_definition` event with fall-back to a loaded map later).
pub fn query_resource_access<L: AsRef<AccessControlList>>(
    resource: &Resource,
    auth: &AuthInfo,
    privilege: &str,
    mut lookup: impl FnMut(&str) -> Option<L>,
) -> AccessDecision {
    let mut considered = Vec::new();
    for name in resource.names() {
        considered.push(name.clone());
        let Some(acl) = lookup(name) else {
            continue;
        };
        if let Some(rule) = acl.as_ref().first_match(auth, privilege) {
            return AccessDecision {
                allow: rule.access == Access::Allow,
                target_resource: resource.target().to_owned(),
                privilege: privilege.to_owned(),
                matching_resource: Some(name.clone()),
                rule: Some(rule.clone()),
                considered_resources: considered,
            };
        }
    }
    AccessDecision {
        allow: false,
        target_resource: resource.target().to_owned(),
        privilege: privilege.to_owned(),
        matching_resource: None,
        rule: None,
        considered_resources: considered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityContext;
    use std::net::SocketAddr;

    fn local() -> SocketAddr {
        "127.0.0.1:8000".parse().unwrap()
    }

    fn peer(ip: &str, trusted: bool, user: Option<&str>) -> AuthInfo {
        let mut auth = match user {
            Some(name) => AuthInfo::from_identity(name, IdentityContext::HttpBasicAuth),
            None => AuthInfo::default(),
        };
        auth.peer_address = Some(ip.parse().unwrap());
        if trusted {
            auth.add_group(TRUSTED_IP_GROUP);
        }
        auth
    }

    fn allowed(map: &AclMap, path: &str, auth: &AuthInfo, method: &str) -> bool {
        map.query(&Resource::http_listener(local(), path), auth, method)
            .allow
    }

    #[test]
    fn default_map_is_the_spec_table() {
        let map = AclMap::default_map();
        let trusted = peer("127.0.0.1", true, None);
        let stranger = peer("10.9.9.9", false, None);
        let user = peer("10.9.9.9", false, Some("scott"));

        for path in [
            "/api/check-liveness",
            "/api-docs/openapi.json",
            "/proxy/status",
        ] {
            assert!(allowed(map, path, &stranger, "GET"), "{path}");
            assert!(!allowed(map, path, &stranger, "POST"), "{path} POST");
        }
        for path in ["/metrics", "/metrics.json"] {
            assert!(allowed(map, path, &trusted, "GET"), "{path}");
            assert!(!allowed(map, path, &stranger, "GET"), "{path}");
            assert!(!allowed(map, path, &user, "GET"), "{path}");
            assert!(!allowed(map, path, &trusted, "POST"), "{path} POST");
        }
        assert!(allowed(map, "/api/inject/v1", &trusted, "POST"));
        assert!(allowed(map, "/api/inject/v1", &user, "POST"));
        assert!(!allowed(map, "/api/inject/v1", &stranger, "POST"));
        assert!(!allowed(map, "/api/inject/v1", &user, "GET"));
        for method in ["GET", "POST", "DELETE"] {
            assert!(allowed(
                map,
                "/api/admin/bump-config-epoch",
                &trusted,
                method
            ));
            assert!(!allowed(map, "/api/admin/bump-config-epoch", &user, method));
        }
        assert!(!allowed(map, "/api/admin/x", &trusted, "PUT"));
        // Nothing about other paths: denied by default.
        let decision = map.query(
            &Resource::http_listener(local(), "/secret"),
            &trusted,
            "GET",
        );
        assert!(!decision.allow);
        assert_eq!(decision.rule, None);
        assert_eq!(decision.considered_resources.len(), 4);

        let proxy = Resource::from_names(vec![
            "proxy_listener/*/destination/10.0.0.1:25".into(),
            "proxy_listener".into(),
        ]);
        let decision = map.query(&proxy, &stranger, "connect");
        assert!(decision.allow);
        assert_eq!(
            decision.matching_resource.as_deref(),
            Some("proxy_listener")
        );
    }

    #[test]
    fn falls_through_to_less_specific_names_and_first_match_wins() {
        let map = AclMap::from_toml(
            r#"
            [[acl."http_listener/127.0.0.1:8000/metrics"]]
            allow = false
            privileges = ["GET"]
            identity.Individual = "mallory"

            [[acl."http_listener/*/metrics"]]
            allow = true
            privileges = ["GET"]
            identity.Authenticated = {}

            [[acl."http_listener/*/metrics"]]
            allow = false
            privileges = ["GET"]
            identity.Individual = "alice"
            "#,
        )
        .unwrap();
        let mallory = peer("10.0.0.1", false, Some("mallory"));
        let alice = peer("10.0.0.1", false, Some("alice"));
        let decision = map.query(
            &Resource::http_listener(local(), "/metrics"),
            &mallory,
            "GET",
        );
        assert!(!decision.allow);
        assert_eq!(
            decision.matching_resource.as_deref(),
            Some("http_listener/127.0.0.1:8000/metrics")
        );
        // The local-address ACL has no rule for alice: on to `*`, where the
        // earlier allow wins over the later deny.
        let decision = map.query(&Resource::http_listener(local(), "/metrics"), &alice, "GET");
        assert!(decision.allow);
        assert_eq!(
            decision.matching_resource.as_deref(),
            Some("http_listener/*/metrics")
        );
        // Another listener address is unaffected by the L-specific ACL.
        let other: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert!(
            map.query(&Resource::http_listener(other, "/metrics"), &mallory, "GET")
                .allow
        );
    }

    #[test]
    fn the_spec_example_with_criteria() {
        let map = AclMap::from_toml(
            r#"
            [[acl."http_listener/*/api/inject"]]
            allow = true
            privileges = ["POST"]
            criteria.AllOf = [ {Identity = {Authenticated = {}}}, {Machine = "10.0.0.0/8"} ]
            "#,
        )
        .unwrap();
        assert!(allowed(
            &map,
            "/api/inject/v1",
            &peer("10.1.1.1", false, Some("a")),
            "POST"
        ));
        assert!(!allowed(
            &map,
            "/api/inject/v1",
            &peer("11.1.1.1", false, Some("a")),
            "POST"
        ));
        assert!(!allowed(
            &map,
            "/api/inject/v1",
            &peer("10.1.1.1", false, None),
            "POST"
        ));
    }

    /// The upstream page's forms: `identity.Machine`, `identity.MachineSet`
    /// and `{ Identity = { Machine = ... } }` inside `AllOf`/`AnyOf`.
    #[test]
    fn upstream_machine_criteria_load_and_match() {
        let map = AclMap::from_toml(
            r#"
            [[acl."http_listener/*/metrics"]]
            allow = true
            privileges = ["GET"]
            identity.Machine = "10.0.0.1"

            [[acl."http_listener/*/metrics"]]
            allow = true
            privileges = ["GET"]
            identity.MachineSet = ["10.0.0.2", "192.0.2.0/24"]

            [[acl."http_listener/*/api/inject"]]
            allow = true
            privileges = ["POST"]
            criteria.AllOf = [ {Identity = { Group = 'admins' }}, {Identity={Machine = "10.0.0.1"}} ]

            [[acl."http_listener/*/api/admin"]]
            allow = true
            privileges = ["POST"]
            criteria.AnyOf = [ {Identity = { Group = 'admins' }}, {Identity={Machine = "10.0.0.1"}} ]
            "#,
        )
        .unwrap();
        for (ip, expected) in [
            ("10.0.0.1", true),
            ("10.0.0.2", true),
            ("192.0.2.77", true),
            ("10.0.0.3", false),
        ] {
            let who = peer(ip, false, None);
            assert_eq!(allowed(&map, "/metrics", &who, "GET"), expected, "{ip}");
        }
        let mut admin = peer("10.0.0.1", false, Some("a"));
        admin.add_group("admins");
        assert!(allowed(&map, "/api/inject/v1", &admin, "POST"));
        let mut elsewhere = peer("10.0.0.9", false, Some("a"));
        assert!(!allowed(&map, "/api/inject/v1", &elsewhere, "POST"));
        assert!(!allowed(&map, "/api/admin/x", &elsewhere, "POST"));
        elsewhere.add_group("admins");
        assert!(allowed(&map, "/api/admin/x", &elsewhere, "POST"));
        assert!(allowed(
            &map,
            "/api/admin/x",
            &peer("10.0.0.1", false, None),
            "POST"
        ));
    }

    #[test]
    fn spec_examples_round_trip_through_toml() {
        let spec = r#"
            [[acl."http_listener/*/api/inject"]]
            allow = true
            privileges = ["POST"]
            identity.Group = "kumomta:http-listener-trusted-ip"

            [[acl."http_listener/*/api/inject"]]
            allow = true
            privileges = ["POST"]
            criteria.AllOf = [ {Identity = {Authenticated = {}}}, {Machine = "10.0.0.0/8"} ]

            [[acl."proxy_listener/*/destination"]]
            allow = false
            privileges = ["connect"]
            criteria.AnyOf = [ {Not = {Identity = {Any = {}}}}, {Identity = {Individual = "x"}},
                               {Identity = {Unauthenticated = {}}} ]
        "#;
        for text in [spec, DEFAULT_ACL_MAP_TOML] {
            let map = AclMap::from_toml(text).unwrap();
            let written = map.to_toml().unwrap();
            let again =
                AclMap::from_toml(&written).unwrap_or_else(|err| panic!("{written}: {err}"));
            assert_eq!(again, map, "{written}");
        }
        let map = AclMap::from_toml(spec).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(
            map.get("http_listener/*/api/inject").unwrap().rules().len(),
            2
        );
    }

    #[test]
    fn malformed_maps_name_the_problem() {
        let both = r#"
            [[acl."x"]]
            allow = true
            privileges = ["GET"]
            identity.Any = {}
            criteria.Machine = "10.0.0.0/8"
        "#;
        let err = AclMap::from_toml(both).unwrap_err().to_string();
        assert!(
            err.contains("mutually exclusive") && err.contains("\"x\""),
            "{err}"
        );
        let neither = "[[acl.\"x\"]]\nallow = true\nprivileges = [\"GET\"]\n";
        assert!(AclMap::from_toml(neither)
            .unwrap_err()
            .to_string()
            .contains("needs"));
        let empty = "[[acl.\"x\"]]\nallow = true\nprivileges = []\nidentity.Any = {}\n";
        assert!(AclMap::from_toml(empty)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let unknown = "[[acl.\"x\"]]\nallow = true\nprivilege = \"GET\"\nidentity.Any = {}\n";
        let err = AclMap::from_toml(unknown).unwrap_err().to_string();
        assert!(err.contains("privilege"), "{err}");
        let bad_machine =
            "[[acl.\"x\"]]\nallow = true\nprivileges = [\"GET\"]\ncriteria.Machine = \"nope\"\n";
        let err = AclMap::from_toml(bad_machine).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
