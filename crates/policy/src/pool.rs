use crate::kumo_module;
use crate::loader::lua_error_to_anyhow;
use crate::{EventDecl, PolicyLoader};
use mlua::{FromLuaMulti, HookTriggers, IntoLuaMulti, Lua, VmState};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many VM instructions run between two checks of a call's deadline.
const DEADLINE_CHECK_INSTRUCTIONS: u32 = 10_000;

/// Why a policy call produced no usable answer. Callers that decide access
/// treat every variant as a denial.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A fresh state could not be built (the policy file no longer loads).
    #[error("policy could not be loaded: {0:#}")]
    Load(anyhow::Error),
    /// The handler raised an error or returned a value of the wrong type.
    #[error("event '{event}' handler failed: {message}")]
    Handler {
        event: &'static str,
        message: String,
    },
    /// The handler ran past the call timeout.
    #[error("event '{event}' handler did not return within {timeout:?}")]
    Timeout {
        event: &'static str,
        timeout: Duration,
    },
}

struct IdleState {
    lua: Lua,
    epoch: u64,
}

struct PoolInner {
    loader: PolicyLoader,
    idle: Mutex<Vec<IdleState>>,
    epoch: AtomicU64,
    max_idle: usize,
    call_timeout: Duration,
}

/// A pool of loaded Lua states. Each concurrent call takes its own state, so
/// callers never queue behind one another; states return to the pool after
/// the call. Bumping the config epoch retires old states lazily: they are
/// dropped instead of being returned.
#[derive(Clone)]
pub struct PolicyPool {
    inner: Arc<PoolInner>,
}

impl PolicyPool {
    /// A pool for `loader`. Loads one state now so a broken policy is
    /// reported at start, and keeps up to `max_idle` idle states.
    pub fn new(
        loader: PolicyLoader,
        max_idle: usize,
        call_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let first = loader.load()?;
        let pool = PolicyPool {
            inner: Arc::new(PoolInner {
                loader,
                idle: Mutex::new(Vec::with_capacity(max_idle)),
                epoch: AtomicU64::new(0),
                max_idle: max_idle.max(1),
                call_timeout,
            }),
        };
        pool.give_back(first, 0);
        Ok(pool)
    }

    /// A pool size matched to the machine: two idle states per core.
    pub fn default_max_idle() -> usize {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .max(4)
    }

    /// The loader this pool builds states with.
    pub fn loader(&self) -> &PolicyLoader {
        &self.inner.loader
    }

    /// The current config epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Reload the policy: build a state from the file as it is now and, only
    /// if that works, start a new epoch so older states are retired. A
    /// policy that no longer loads leaves the running one in place.
    pub fn bump_epoch(&self) -> anyhow::Result<u64> {
        let fresh = self.inner.loader.load()?;
        let epoch = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let mut idle = self.inner.idle.lock();
        idle.clear();
        idle.push(IdleState { lua: fresh, epoch });
        Ok(epoch)
    }

    /// Take a state of the current epoch, building one if none is idle.
    fn take(&self) -> Result<(Lua, u64), PolicyError> {
        let epoch = self.epoch();
        {
            let mut idle = self.inner.idle.lock();
            while let Some(state) = idle.pop() {
                if state.epoch == epoch {
                    return Ok((state.lua, epoch));
                }
            }
        }
        let lua = self.inner.loader.load().map_err(PolicyError::Load)?;
        Ok((lua, epoch))
    }

    fn give_back(&self, lua: Lua, epoch: u64) {
        if epoch != self.epoch() {
            return;
        }
        let mut idle = self.inner.idle.lock();
        if idle.len() < self.inner.max_idle {
            idle.push(IdleState { lua, epoch });
        }
    }

    /// Run `f` with a state of the current epoch (synchronous work, such as
    /// calling `proxy_init`). The state goes back to the pool afterwards.
    pub fn with_state<T>(&self, f: impl FnOnce(&Lua) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let (lua, epoch) = self.take()?;
        let result = f(&lua);
        self.give_back(lua, epoch);
        result
    }

    /// Whether the policy registered a handler for `event`.
    pub fn has_handler(&self, event: &str) -> anyhow::Result<bool> {
        self.with_state(|lua| {
            Ok(kumo_module::handler(lua, event)
                .map_err(lua_error_to_anyhow)?
                .is_some())
        })
    }

    /// Call the handler for `event`. `Ok(None)` means no handler is
    /// registered. The call is bounded by the pool's call timeout, both as a
    /// wall-clock timeout and as a VM deadline that stops runaway loops.
    pub async fn call<A, R>(
        &self,
        event: &EventDecl<A, R>,
        args: A,
    ) -> Result<Option<R>, PolicyError>
    where
        A: IntoLuaMulti,
        R: FromLuaMulti,
    {
        let (lua, epoch) = self.take()?;
        let handler_error = |err: mlua::Error| PolicyError::Handler {
            event: event.name,
            message: err.to_string(),
        };
        let Some(handler) = kumo_module::handler(&lua, event.name).map_err(handler_error)? else {
            self.give_back(lua, epoch);
            return Ok(None);
        };
        let timeout = self.inner.call_timeout;
        let thread = lua.create_thread(handler).map_err(handler_error)?;
        // Hooks are per Lua thread; a pure-Lua loop never yields to tokio,
        // so only a VM hook can stop it.
        let deadline = Instant::now() + timeout;
        thread.set_hook(
            HookTriggers::new().every_nth_instruction(DEADLINE_CHECK_INSTRUCTIONS),
            move |_lua, _debug| {
                if Instant::now() > deadline {
                    Err(mlua::Error::RuntimeError(
                        "policy call exceeded its time limit".into(),
                    ))
                } else {
                    Ok(VmState::Continue)
                }
            },
        );
        let outcome = tokio::time::timeout(timeout, thread.into_async::<R>(args)).await;
        match outcome {
            Ok(Ok(value)) => {
                self.give_back(lua, epoch);
                Ok(Some(value))
            }
            // A raised error is an ordinary outcome (`kumo.reject`, a
            // refused login): the coroutine that raised is finished and the
            // state is as reusable as after a success, so it goes back
            // rather than costing the next caller a policy reload.
            Ok(Err(err)) => {
                self.give_back(lua, epoch);
                Err(handler_error(err))
            }
            // A call cut off mid-await may leave its coroutine suspended:
            // that state is not reused.
            Err(_) => Err(PolicyError::Timeout {
                event: event.name,
                timeout,
            }),
        }
    }
}
