//! The `proxy` Lua module and the proxy's policy events.

use crate::config::ProxyListenerParams;
use crate::fleet::{Fleet, SharedStateParams};
use http_listener::{HttpListenerParams, HttpListenerSink};
use mlua::{Lua, Value};
use policy::{Bytes, EventDecl, LuaAuthResult, ModuleRegistrar, SerdeArg};
use serde::Serialize;
use std::sync::Arc;

/// `proxy_init()`: called once at start to define listeners.
pub const PROXY_INIT: EventDecl<(), ()> = EventDecl::new("proxy_init");

/// `proxy_server_auth_rfc1929(username, password, conn_meta)`.
pub const PROXY_SERVER_AUTH_RFC1929: EventDecl<(Bytes, Bytes, SerdeArg<ConnMeta>), LuaAuthResult> =
    EventDecl::new("proxy_server_auth_rfc1929");

/// The `conn_meta` table handed to the auth event.
#[derive(Debug, Clone, Serialize)]
pub struct ConnMeta {
    /// The client's `ip:port`.
    pub peer_address: String,
    /// The listener's `ip:port` the client reached.
    pub local_address: String,
}

/// Everything `proxy_init` asked to listen on.
#[derive(Debug, Default)]
pub struct RequestedListeners {
    /// `proxy.start_proxy_listener` calls.
    pub proxy: Vec<ProxyListenerParams>,
    /// `proxy.start_http_listener` calls.
    pub http: Vec<HttpListenerParams>,
    /// `proxy.configure_shared_state`, at most once.
    pub shared_state: Option<Fleet>,
}

/// Collects what `proxy_init` asks for (taken only while `proxy_init`
/// runs, so a policy that calls `start_proxy_listener` at top level, run
/// again for every pooled state, is told so).
pub type ListenerRequests = policy::InitRequests<RequestedListeners>;

/// The functions `proxy_init` calls to define listeners and shared state.
trait RecordListeners {
    fn push(&self, params: ProxyListenerParams) -> mlua::Result<()>;
    fn push_http(&self, params: HttpListenerParams) -> mlua::Result<()>;
    fn set_shared_state(&self, fleet: Fleet) -> mlua::Result<()>;
}

impl RecordListeners for ListenerRequests {
    fn push(&self, params: ProxyListenerParams) -> mlua::Result<()> {
        self.with_open("start_proxy_listener", |requested| {
            requested.proxy.push(params);
            Ok(())
        })
    }

    fn push_http(&self, params: HttpListenerParams) -> mlua::Result<()> {
        self.with_open("start_http_listener", |requested| {
            requested.http.push(params);
            Ok(())
        })
    }

    fn set_shared_state(&self, fleet: Fleet) -> mlua::Result<()> {
        let function = "configure_shared_state";
        self.with_open(function, |requested| match requested.shared_state {
            Some(_) => Err(mlua::Error::RuntimeError(format!(
                "{function} may be called only once"
            ))),
            None => {
                requested.shared_state = Some(fleet);
                Ok(())
            }
        })
    }
}

/// A registrar that adds `proxy.start_proxy_listener` and
/// `proxy.start_http_listener`, with their `kumo.*` aliases, to every new
/// Lua state.
pub fn registrar(requests: Arc<ListenerRequests>) -> ModuleRegistrar {
    Arc::new(move |lua: &Lua| {
        let http_requests = requests.clone();
        let shared_requests = requests.clone();
        let requests = requests.clone();
        let start = lua.create_function(move |lua, params: Value| {
            let params: ProxyListenerParams = policy::from_lua_params(lua, params)
                .map_err(|err| mlua::Error::RuntimeError(format!("start_proxy_listener: {err}")))?;
            params.validate().map_err(|err| {
                mlua::Error::RuntimeError(format!("start_proxy_listener: {err:#}"))
            })?;
            requests.push(params)
        })?;
        policy::get_or_create_module(lua, "proxy")?.set("start_proxy_listener", start.clone())?;
        policy::kumo_module(lua)?.set("start_proxy_listener", start)?;

        let sink: HttpListenerSink = Arc::new(move |params| http_requests.push_http(params));
        let start_http = http_listener::start_http_listener_function(lua, sink)?;
        policy::get_or_create_module(lua, "proxy")?
            .set("start_http_listener", start_http.clone())?;
        policy::kumo_module(lua)?.set("start_http_listener", start_http)?;
        let configure = lua.create_function(move |lua, params: Value| {
            let err = |e: String| mlua::Error::RuntimeError(format!("configure_shared_state: {e}"));
            // Checked first: only proxy_init may configure, and parsing
            // `redis` must not happen (or fail) anywhere else.
            shared_requests.with_open("configure_shared_state", |_| Ok(()))?;
            let params = SharedStateParams::from_lua(lua, params).map_err(err)?;
            shared_requests.set_shared_state(params.open().map_err(err)?)
        })?;
        policy::get_or_create_module(lua, "proxy")?.set("configure_shared_state", configure)?;
        Ok(())
    })
}
