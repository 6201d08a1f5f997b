//! Loading a daemon's policy, written once for both daemons: the daemon's
//! own functions, `kumo.aaa` and this library in every Lua state, then
//! `pre_init` and the daemon's init event, whose requests are collected.

use crate::PolicyLibrary;
use policy::{AaaContext, EventDecl, InitRequests, ModuleRegistrar, PolicyLoader, PolicyPool};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Load the policy at `path`; `registrar` makes the daemon's functions,
/// which record their requests in the collector it is given. Runs
/// `pre_init`, then `event` (a policy without that handler is an error),
/// and returns the pool with what the event asked for. The library's
/// caches are emptied when the pool's epoch is bumped.
pub fn load_policy<T: Default>(
    path: &Path,
    event: &EventDecl<(), ()>,
    registrar: impl FnOnce(Arc<InitRequests<T>>) -> ModuleRegistrar,
    library: Arc<PolicyLibrary>,
    call_timeout: Duration,
) -> anyhow::Result<(PolicyPool, T)> {
    let requests = Arc::new(InitRequests::new(event.name));
    let registrars = vec![
        registrar(requests.clone()),
        policy::aaa_registrar(AaaContext::new()),
        crate::registrar(library.clone()),
    ];
    let pool = PolicyPool::new(PolicyLoader::new(path, registrars), call_timeout)?;
    pool.on_epoch_bump(Arc::new(move |_| library.bump_epoch()));
    requests.open();
    let init = pool.with_state(|lua| {
        policy::run_pre_init(lua)?;
        match policy::call_sync(lua, event, ()) {
            Ok(Some(())) => Ok(()),
            Ok(None) => anyhow::bail!("the policy has no {} handler", event.name),
            Err(err) => Err(anyhow::anyhow!("{} failed: {err}", event.name)),
        }
    });
    let requested = requests.close();
    init?;
    Ok((pool, requested))
}
