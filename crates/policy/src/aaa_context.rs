//! The process's access-control state shared by `kumo.aaa` and the servers:
//! where ACLs come from (the policy's `get_acl_definition` event, with
//! fall-back to a map), short-lived caches of definitions and decisions,
//! and the accounting log. One [`AaaContext`] per process, handed to the
//! `kumo.aaa` registrar and found again by the servers through
//! [`AaaContext::of`].

use crate::aaa_lua::AclDefinition;
use crate::credential_files::CredentialFiles;
use crate::{EpochCache, EventDecl, PolicyPool};
use aaa::{
    query_resource_access, AccessControlList, AccessDecision, AccountingConfig, AccountingLog,
    AclMap, AuthInfo, Identity, Resource,
};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::error;

/// `get_acl_definition(resource_name)` → an ACL, or nil to fall back.
pub const GET_ACL_DEFINITION: EventDecl<String, AclDefinition> =
    EventDecl::new("get_acl_definition");

/// How long the policy's answer for one resource name is reused.
pub const ACL_DEFINITION_TTL: Duration = Duration::from_secs(30);
/// How long an authorization decision is reused for the same peer,
/// resource and privilege.
pub const ACCESS_DECISION_TTL: Duration = Duration::from_secs(10);
/// Entries each cache holds at most (the least useful go first).
pub const AAA_CACHE_MAX_ENTRIES: u64 = 16_384;

#[derive(PartialEq, Eq, Hash)]
struct DecisionKey {
    target: String,
    privilege: String,
    auth: AuthInfo,
}

/// The access-control state of one process (see the module docs). All of
/// it lives in fields, so tests build fresh ones.
pub struct AaaContext {
    fall_back_to_acl_map: AtomicBool,
    /// `get_acl_definition` answers (TTL: `kumo.aaa.set_acl_cache_ttl`).
    /// `None` in a name's entry: the policy returned nil (or has no
    /// handler), so the fall-back map decides.
    definitions: EpochCache<String, Option<Arc<AccessControlList>>>,
    /// Decisions (TTL: `kumo.aaa.set_check_cache_ttl`).
    decisions: EpochCache<DecisionKey, AccessDecision>,
    accounting: RwLock<Option<Arc<AccountingLog>>>,
    credentials: CredentialFiles,
}

impl Default for AaaContext {
    fn default() -> Self {
        AaaContext {
            fall_back_to_acl_map: AtomicBool::new(true),
            definitions: EpochCache::new(AAA_CACHE_MAX_ENTRIES, ACL_DEFINITION_TTL),
            decisions: EpochCache::new(AAA_CACHE_MAX_ENTRIES, ACCESS_DECISION_TTL),
            accounting: RwLock::new(None),
            credentials: CredentialFiles::default(),
        }
    }
}

impl AaaContext {
    /// A fresh context: fall-back on, default TTLs, no accounting log.
    pub fn new() -> Arc<Self> {
        Arc::new(AaaContext::default())
    }

    /// The context `kumo.aaa` was installed with in `policy`'s states, if
    /// any (see [`crate::aaa_registrar`]).
    pub fn of(policy: &PolicyPool) -> Option<Arc<AaaContext>> {
        policy
            .with_state(|lua| Ok(lua.app_data_ref::<Arc<AaaContext>>().map(|ctx| ctx.clone())))
            .ok()
            .flatten()
    }

    /// The credential files `kumo.aaa.load_credentials` loaded, shared by
    /// every Lua state of the process.
    pub fn credentials(&self) -> &CredentialFiles {
        &self.credentials
    }

    /// `kumo.aaa.set_acl_cache_ttl`: how long `get_acl_definition`
    /// answers are reused from now on.
    pub fn set_definition_ttl(&self, ttl: Duration) {
        self.definitions.set_ttl(ttl);
    }

    /// How long `get_acl_definition` answers are reused.
    pub fn definition_ttl(&self) -> Duration {
        self.definitions.ttl()
    }

    /// How long decisions are reused.
    pub fn decision_ttl(&self) -> Duration {
        self.decisions.ttl()
    }

    /// `kumo.aaa.set_check_cache_ttl`: how long decisions are reused from
    /// now on.
    pub fn set_decision_ttl(&self, ttl: Duration) {
        self.decisions.set_ttl(ttl);
    }

    /// Whether a nil from `get_acl_definition` falls back to the map.
    pub fn fall_back_to_acl_map(&self) -> bool {
        self.fall_back_to_acl_map.load(Ordering::Relaxed)
    }

    /// `kumo.aaa.set_fall_back_to_acl_map(bool)`.
    pub fn set_fall_back_to_acl_map(&self, enabled: bool) {
        if self.fall_back_to_acl_map.swap(enabled, Ordering::Relaxed) != enabled {
            self.definitions.clear();
            self.decisions.clear();
        }
    }

    /// Start the accounting log, or keep the running one when `config` is
    /// the same (every pooled Lua state runs the policy's top level).
    pub fn configure_accounting(&self, config: AccountingConfig) -> std::io::Result<()> {
        let mut current = self.accounting.write();
        if current.as_ref().is_some_and(|log| *log.config() == config) {
            return Ok(());
        }
        let log = AccountingLog::start(config)?;
        if let Some(old) = current.replace(Arc::new(log)) {
            old.close();
        }
        Ok(())
    }

    /// The accounting log, when configured.
    pub fn accounting(&self) -> Option<Arc<AccountingLog>> {
        self.accounting.read().clone()
    }

    /// Finish the accounting log's open segment (at shutdown).
    pub fn close_accounting(&self) {
        if let Some(log) = self.accounting.write().take() {
            log.close();
        }
    }

    /// Record a login attempt in the accounting log, if configured.
    pub fn log_authentication(&self, attempted: &Identity, success: bool, auth_info: &AuthInfo) {
        if let Some(log) = self.accounting.read().as_ref() {
            log.log_authentication(attempted, success, auth_info);
        }
    }

    /// Record a finished (or refused) proxy tunnel, if the log is
    /// configured; `record` is made only then (its timestamps and
    /// addresses are spelled out as text).
    pub fn log_session(&self, record: impl FnOnce() -> aaa::SessionRecord) {
        if let Some(log) = self.accounting.read().as_ref() {
            log.log_session(record());
        }
    }

    /// Decide a request for `privilege` on `resource` by `auth`: ACLs from
    /// `get_acl_definition`, else (when fall-back is on) from `fallback`;
    /// first match from most to least specific name; deny by default. A
    /// policy error denies (fail closed). Decisions are cached for
    /// the decision TTL and every one is accounted.
    pub async fn authorize(
        &self,
        policy: &PolicyPool,
        fallback: &AclMap,
        resource: &Resource,
        auth: &AuthInfo,
        privilege: &str,
    ) -> AccessDecision {
        let epoch = policy.epoch();
        let key = DecisionKey {
            target: resource.target().to_owned(),
            privilege: privilege.to_owned(),
            auth: auth.clone(),
        };
        let decision = match self.decisions.get(&key, epoch).await {
            Some(decision) => decision,
            // Boxed: the policy calls' state is kilobytes that a cached
            // decision (most requests) should not carry.
            None => {
                let asked = Request {
                    fallback,
                    resource,
                    auth,
                    privilege,
                };
                Box::pin(self.decide_and_store(policy, epoch, key, asked)).await
            }
        };
        if let Some(log) = self.accounting.read().as_ref() {
            log.log_authorization(&decision, auth);
        }
        decision
    }

    /// A decision not in the cache: ask the policy for the definitions,
    /// decide and remember the decision (fail closed on a policy error).
    async fn decide_and_store(
        &self,
        policy: &PolicyPool,
        epoch: u64,
        key: DecisionKey,
        asked: Request<'_>,
    ) -> AccessDecision {
        let Request {
            fallback,
            resource,
            auth,
            privilege,
        } = asked;
        match self.resolve(policy, epoch, resource).await {
            Ok(definitions) => {
                let decision = self.decide(fallback, &definitions, resource, auth, privilege);
                self.decisions.insert(key, decision.clone(), epoch).await;
                decision
            }
            Err(message) => {
                error!(resource = %resource.target(), error = %message, "get_acl_definition failed; denying");
                denied_by_default(resource, privilege)
            }
        }
    }

    /// The policy's answer for every name of `resource`, cached.
    async fn resolve(
        &self,
        policy: &PolicyPool,
        epoch: u64,
        resource: &Resource,
    ) -> Result<Vec<Option<Arc<AccessControlList>>>, String> {
        let mut answers = Vec::with_capacity(resource.names().len());
        for name in resource.names() {
            if let Some(answer) = self.definitions.get(name, epoch).await {
                answers.push(answer);
                continue;
            }
            let acl = match policy.call(&GET_ACL_DEFINITION, name.clone()).await {
                Ok(Some(AclDefinition(acl))) => acl,
                Ok(None) => None,
                Err(err) => return Err(err.to_string()),
            };
            self.definitions
                .insert(name.clone(), acl.clone(), epoch)
                .await;
            answers.push(acl);
        }
        Ok(answers)
    }

    /// First-match evaluation over the policy's answers (`definitions[i]`
    /// for `resource.names()[i]`) with fall-back to `fallback`.
    pub(crate) fn decide(
        &self,
        fallback: &AclMap,
        definitions: &[Option<Arc<AccessControlList>>],
        resource: &Resource,
        auth: &AuthInfo,
        privilege: &str,
    ) -> AccessDecision {
        let fall_back = self.fall_back_to_acl_map();
        let lookup = |name: &str| -> Option<AclRef<'_>> {
            let index = resource.names().iter().position(|n| n == name)?;
            match &definitions[index] {
                Some(acl) => Some(AclRef::Policy(acl.clone())),
                None if fall_back => fallback.get(name).map(AclRef::Map),
                None => None,
            }
        };
        query_resource_access(resource, auth, privilege, lookup)
    }
}

/// What [`AaaContext::authorize`] was asked, besides the policy.
struct Request<'a> {
    fallback: &'a AclMap,
    resource: &'a Resource,
    auth: &'a AuthInfo,
    privilege: &'a str,
}

/// An ACL from the policy or borrowed from the fall-back map.
enum AclRef<'a> {
    Policy(Arc<AccessControlList>),
    Map(&'a AccessControlList),
}

impl AsRef<AccessControlList> for AclRef<'_> {
    fn as_ref(&self) -> &AccessControlList {
        match self {
            AclRef::Policy(acl) => acl,
            AclRef::Map(acl) => acl,
        }
    }
}

fn denied_by_default(resource: &Resource, privilege: &str) -> AccessDecision {
    AccessDecision {
        allow: false,
        target_resource: resource.target().to_owned(),
        privilege: privilege.to_owned(),
        matching_resource: None,
        rule: None,
        considered_resources: Vec::new(),
    }
}
