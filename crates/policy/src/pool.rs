use crate::kumo_module;
use crate::loader::lua_error_to_anyhow;
use crate::pool_settings::PoolSettings;
use crate::{EventDecl, PolicyLoader};
use mlua::{FromLuaMulti, HookTriggers, IntoLuaMulti, Lua, VmState};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

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
    /// The handler ran past the call timeout (or waited that long for a
    /// free call slot).
    #[error("event '{event}' handler did not return within {timeout:?}")]
    Timeout {
        event: &'static str,
        timeout: Duration,
    },
}

/// A loaded state and what the pool knows about it.
struct PooledState {
    lua: Lua,
    epoch: u64,
    /// Bytes in use right after loading: growth past this (plus
    /// [`PoolSettings::collect_after_growth`]) is collected before reuse.
    baseline_memory: usize,
}

struct PoolInner {
    loader: PolicyLoader,
    idle: Mutex<Vec<PooledState>>,
    epoch: AtomicU64,
    call_timeout: Duration,
    /// Calls running at once; each holds a blocking thread.
    call_slots: Arc<Semaphore>,
    /// Run after each epoch bump (caches that must start afresh).
    epoch_hooks: Mutex<Vec<EpochHook>>,
}

/// Something to do after the config epoch was bumped.
pub type EpochHook = Arc<dyn Fn(u64) + Send + Sync>;

/// A pool of loaded Lua states. Each concurrent call takes its own state, so
/// callers never queue behind one another; states return to the pool after
/// the call. Bumping the config epoch retires old states lazily: they are
/// dropped instead of being returned.
///
/// Calls never run Lua on an async worker: each runs on a thread of tokio's
/// blocking pool (at most [`PoolSettings::max_concurrent_calls`] at once),
/// which drives the handler's async functions with the runtime's handle. A
/// handler that spins, sleeps in C or allocates without bound therefore
/// cannot stall relays or other logins; its caller gets a refusal at the
/// deadline whatever the handler does, and the state it used is discarded.
#[derive(Clone)]
pub struct PolicyPool {
    inner: Arc<PoolInner>,
}

impl PolicyPool {
    /// A pool for `loader`, whose calls are bounded by `call_timeout`. Loads
    /// one state now so a broken policy is reported at start. How many idle
    /// states are kept and how much memory each may use come from the
    /// loader's [`PoolSettings`] (which the policy may change).
    pub fn new(loader: PolicyLoader, call_timeout: Duration) -> anyhow::Result<Self> {
        let slots = loader.settings().max_concurrent_calls();
        let pool = PolicyPool {
            inner: Arc::new(PoolInner {
                loader,
                idle: Mutex::new(Vec::new()),
                epoch: AtomicU64::new(0),
                call_timeout,
                call_slots: Arc::new(Semaphore::new(slots)),
                epoch_hooks: Mutex::new(Vec::new()),
            }),
        };
        let first = pool.load_state(0).map_err(|err| match err {
            PolicyError::Load(err) => err,
            other => anyhow::anyhow!("{other}"),
        })?;
        pool.give_back(first);
        Ok(pool)
    }

    /// The settings shared with the loader and the policy.
    pub fn settings(&self) -> &Arc<PoolSettings> {
        self.inner.loader.settings()
    }

    /// The current config epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// How many loaded states are idle now.
    pub fn idle_states(&self) -> usize {
        self.inner.idle.lock().len()
    }

    /// Reload the policy: build a state from the file as it is now and, only
    /// if that works, start a new epoch so older states are retired. A
    /// policy that no longer loads leaves the running one in place. Blocks
    /// while loading: async callers run it with `spawn_blocking`.
    pub fn bump_epoch(&self) -> anyhow::Result<u64> {
        let fresh = self.inner.loader.load()?;
        let epoch = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let baseline_memory = fresh.used_memory();
        {
            let mut idle = self.inner.idle.lock();
            idle.clear();
            idle.push(PooledState {
                lua: fresh,
                epoch,
                baseline_memory,
            });
        }
        let hooks = self.inner.epoch_hooks.lock().clone();
        for hook in hooks {
            hook(epoch);
        }
        Ok(epoch)
    }

    /// Run `hook` after every successful epoch bump (a reload that failed
    /// changes nothing and runs no hook).
    pub fn on_epoch_bump(&self, hook: EpochHook) {
        self.inner.epoch_hooks.lock().push(hook);
    }

    fn load_state(&self, epoch: u64) -> Result<PooledState, PolicyError> {
        let lua = self.inner.loader.load().map_err(PolicyError::Load)?;
        let baseline_memory = lua.used_memory();
        Ok(PooledState {
            lua,
            epoch,
            baseline_memory,
        })
    }

    /// Take a state of the current epoch, loading one if none is idle.
    /// Blocking: never called on an async worker once serving.
    fn take(&self) -> Result<PooledState, PolicyError> {
        let epoch = self.epoch();
        {
            let mut idle = self.inner.idle.lock();
            while let Some(state) = idle.pop() {
                if state.epoch == epoch {
                    return Ok(state);
                }
            }
        }
        self.load_state(epoch)
    }

    /// Return a state after a call: dropped when its epoch is over or the
    /// pool holds enough spares; collected first when the call left it
    /// noticeably larger than it was after loading.
    fn give_back(&self, state: PooledState) {
        if state.epoch != self.epoch() {
            return;
        }
        let settings = self.settings();
        if state.lua.used_memory() > state.baseline_memory + settings.collect_after_growth() {
            // A failed collection leaves a state we do not trust.
            if state.lua.gc_collect().is_err() {
                return;
            }
        }
        let mut idle = self.inner.idle.lock();
        if idle.len() < settings.max_spare_states() {
            idle.push(state);
        }
    }

    /// Run `f` with a state of the current epoch (synchronous work at
    /// start-up, such as calling `proxy_init`). The state goes back to the
    /// pool afterwards.
    pub fn with_state<T>(&self, f: impl FnOnce(&Lua) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let state = self.take().map_err(|err| anyhow::anyhow!("{err}"))?;
        let result = f(&state.lua);
        self.give_back(state);
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
    /// registered. The whole call, including the wait for a free call slot,
    /// ends by the pool's call timeout: a result that would arrive later is
    /// refused ([`PolicyError::Timeout`]) and its state discarded.
    pub async fn call<A, R>(
        &self,
        event: &EventDecl<A, R>,
        args: A,
    ) -> Result<Option<R>, PolicyError>
    where
        A: IntoLuaMulti + Send + 'static,
        R: FromLuaMulti + Send + 'static,
    {
        let event = event.name;
        let timeout = self.inner.call_timeout;
        let timed_out = || PolicyError::Timeout { event, timeout };
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let slot = tokio::time::timeout_at(deadline, self.inner.call_slots.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .expect("the call semaphore is never closed");
        let (sender, receiver) = oneshot::channel();
        let pool = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let wall_now = Instant::now();
        let remaining = deadline.duration_since(tokio::time::Instant::now());
        let wall_deadline = wall_now.checked_add(remaining).unwrap_or(wall_now);
        tokio::task::spawn_blocking(move || {
            let outcome = pool.call_blocking::<A, R>(&runtime, event, args, wall_deadline);
            drop(slot);
            let _ = sender.send(outcome);
        });
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(outcome)) => outcome,
            // The sender is dropped only if the blocking task panicked.
            Ok(Err(_)) => Err(PolicyError::Handler {
                event,
                message: "policy call aborted".into(),
            }),
            Err(_) => Err(timed_out()),
        }
    }

    /// The body of [`PolicyPool::call`], on a blocking thread.
    fn call_blocking<A, R>(
        &self,
        runtime: &tokio::runtime::Handle,
        event: &'static str,
        args: A,
        deadline: Instant,
    ) -> Result<Option<R>, PolicyError>
    where
        A: IntoLuaMulti,
        R: FromLuaMulti,
    {
        let state = self.take()?;
        let handler_error = |err: mlua::Error| PolicyError::Handler {
            event,
            message: err.to_string(),
        };
        let Some(handler) = kumo_module::handler(&state.lua, event).map_err(handler_error)? else {
            self.give_back(state);
            return Ok(None);
        };
        let thread = state.lua.create_thread(handler).map_err(handler_error)?;
        // Hooks are per Lua thread; a pure-Lua loop never returns to us, so
        // only a VM hook can stop it.
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
        let outcome = runtime.block_on(thread.into_async::<R>(args));
        if Instant::now() > deadline {
            // The caller has already answered; whatever the handler did to
            // this state (a C call that blocked, a half-run coroutine) is
            // not carried into the next call.
            return Err(PolicyError::Timeout {
                event,
                timeout: self.inner.call_timeout,
            });
        }
        match outcome {
            Ok(value) => {
                self.give_back(state);
                Ok(Some(value))
            }
            // A raised error is an ordinary outcome (`kumo.reject`, a
            // refused login): the coroutine that raised is finished and the
            // state is as reusable as after a success, so it goes back
            // rather than costing the next caller a policy reload. Running
            // out of memory is not: that state is dropped whole.
            Err(err) => {
                if !is_memory_error(&err) {
                    self.give_back(state);
                }
                Err(handler_error(err))
            }
        }
    }
}

/// Whether `err` (or what it wraps) is Lua's out-of-memory error.
fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}
