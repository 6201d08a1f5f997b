//! What a daemon's init event (`init`, `proxy_init`) asks for: listeners,
//! spools, logs. The policy's top level runs again for every pooled Lua
//! state, so requests are taken only while the init event runs; outside
//! it the defining functions raise an error naming the event.

use parking_lot::Mutex;

/// Collects the requests of type `T` made while the init event runs.
pub struct InitRequests<T> {
    event: &'static str,
    open: Mutex<Option<T>>,
}

impl<T: Default> InitRequests<T> {
    /// Closed until [`InitRequests::open`]; `event` names the init event
    /// in the error raised outside it.
    pub fn new(event: &'static str) -> Self {
        InitRequests {
            event,
            open: Mutex::new(None),
        }
    }

    /// Start accepting requests (just before calling the init event).
    pub fn open(&self) {
        *self.open.lock() = Some(T::default());
    }

    /// Stop accepting requests and return what was asked for.
    pub fn close(&self) -> T {
        self.open.lock().take().unwrap_or_default()
    }

    /// Record a request of `function` with `f`, or raise an error when the
    /// init event is not running.
    pub fn with_open<R>(
        &self,
        function: &str,
        f: impl FnOnce(&mut T) -> mlua::Result<R>,
    ) -> mlua::Result<R> {
        match self.open.lock().as_mut() {
            Some(requested) => f(requested),
            None => Err(mlua::Error::RuntimeError(format!(
                "{function} may only be called from the {} event",
                self.event
            ))),
        }
    }
}
