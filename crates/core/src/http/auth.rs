//! Access control: trusted networks need no key; everyone else presents a bearer key.
//! Gateway routes take an API or admin key, control routes only an admin key.

use super::error::ApiError;
use crate::app::SharedState;
use crate::config::{parse_network, ServerConfig};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// LLM/media gateway, status, metrics, events: an API key or an admin key.
    Gateway,
    /// Control routes (start/stop/restart, mode switches): an admin key.
    Admin,
}

/// Who is calling; handlers read it from the request extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: SocketAddr,
    /// From a trusted network (no key needed).
    pub trusted: bool,
    /// A short, non-reversible id of the key used (first 12 hex of its SHA-256), never the key.
    pub key_id: Option<String>,
    pub admin: bool,
}

impl Caller {
    /// Who asked, as the usage log records it.
    pub fn requester(&self) -> crate::gateway::Requester {
        crate::gateway::Requester {
            client: self.addr.ip().to_string(),
            key_id: self.key_id.clone(),
        }
    }

    /// "admin from 100.64.1.2" style description for the event log.
    pub fn describe(&self) -> String {
        match &self.key_id {
            Some(id) => format!("{} (key {id})", self.addr.ip()),
            None => self.addr.ip().to_string(),
        }
    }
}

/// Keys are kept only as SHA-256 digests and compared in constant time, so neither
/// their content nor their length leaks through timing.
#[derive(Clone)]
pub struct Auth {
    trusted: Vec<ipnet::IpNet>,
    api_keys: Vec<[u8; 32]>,
    admin_keys: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn key_id(d: &[u8; 32]) -> String {
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether this digest is in the list, touching every entry whatever the answer.
fn contains(list: &[[u8; 32]], d: &[u8; 32]) -> bool {
    let mut found = subtle::Choice::from(0);
    for k in list {
        found |= k.ct_eq(d);
    }
    found.into()
}

impl Auth {
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            trusted: server
                .trusted_networks
                .iter()
                .filter_map(|n| parse_network(n))
                .collect(),
            api_keys: server.api_keys.iter().map(|k| digest(k.trim())).collect(),
            admin_keys: server.admin_keys.iter().map(|k| digest(k.trim())).collect(),
        }
    }

    /// Also accept `key` as an API key (the app's own calls to itself, e.g. the e2e check).
    pub fn with_internal_key(mut self, key: &str) -> Self {
        self.api_keys.push(digest(key));
        self
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Decide a request: `Ok(caller)` or the 401/403 to answer.
    pub fn check(
        &self,
        addr: SocketAddr,
        bearer: Option<&str>,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let trusted = self.is_trusted(addr.ip());
        let presented = bearer.map(|k| digest(k.trim()));
        let admin = presented
            .as_ref()
            .is_some_and(|d| contains(&self.admin_keys, d));
        let api = presented
            .as_ref()
            .is_some_and(|d| contains(&self.api_keys, d));
        let caller = Caller {
            addr,
            trusted,
            key_id: presented.as_ref().filter(|_| admin || api).map(key_id),
            admin,
        };
        if trusted {
            return Ok(caller);
        }
        match (scope, bearer, admin, api) {
            (_, None, _, _) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "this client is not on a trusted network: send Authorization: Bearer <key>",
            )),
            (_, Some(_), false, false) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "the bearer key is not valid",
            )),
            (Scope::Admin, Some(_), false, true) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this route needs an admin key (server.admin_keys); an API key only opens the gateway",
            )),
            _ => Ok(caller),
        }
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

async fn require(
    state: SharedState,
    scope: Scope,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .ok_or_else(|| ApiError::internal("server started without peer addresses"))?;
    let caller = state.auth.check(addr, bearer(&req), scope)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Middleware for gateway routes.
pub async fn require_gateway(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(state, Scope::Gateway, req, next).await
}

/// Middleware for control routes.
pub async fn require_admin(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(state, Scope::Admin, req, next).await
}

/// Refuse to serve a non-loopback address without keys, unless explicitly told to.
pub fn check_bind(
    bind: SocketAddr,
    server: &ServerConfig,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if bind.ip().is_loopback() || insecure_no_auth || !server.api_keys.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {bind} without keys: clients on the network could use the gateway. \
         Add at least one key to [server] api_keys in the config file (e.g. api_keys = [\"<openssl rand -hex 24>\"]) \
         or set SPARKLIO_DESK_API_KEYS, and an admin key in admin_keys for the control API; \
         or pass --insecure-no-auth to run without keys anyway"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&ServerConfig {
            trusted_networks: vec!["127.0.0.1/32".into()],
            api_keys: vec!["gateway-key-0123456789".into()],
            admin_keys: vec!["admin-key-0123456789ab".into()],
            ..Default::default()
        })
    }

    fn lan() -> SocketAddr {
        "192.168.1.20:5000".parse().unwrap()
    }

    #[test]
    fn decisions() {
        let a = auth();
        assert!(a
            .check("127.0.0.1:1".parse().unwrap(), None, Scope::Admin)
            .is_ok());
        assert!(a
            .check("[::ffff:127.0.0.1]:1".parse().unwrap(), None, Scope::Admin)
            .is_ok());
        assert_eq!(
            a.check(lan(), None, Scope::Gateway).unwrap_err().status,
            401
        );
        assert_eq!(
            a.check(lan(), Some("wrong-key-000000000"), Scope::Gateway)
                .unwrap_err()
                .status,
            401
        );
        let c = a
            .check(lan(), Some("gateway-key-0123456789"), Scope::Gateway)
            .unwrap();
        assert!(!c.admin && c.key_id.as_deref().unwrap().len() == 12);
        assert_eq!(
            a.check(lan(), Some("gateway-key-0123456789"), Scope::Admin)
                .unwrap_err()
                .status,
            403
        );
        assert!(
            a.check(lan(), Some("admin-key-0123456789ab"), Scope::Admin)
                .unwrap()
                .admin
        );
        assert!(a
            .check(lan(), Some("admin-key-0123456789ab"), Scope::Gateway)
            .is_ok());
    }

    #[test]
    fn bind_refusal_names_api_keys() {
        let s = ServerConfig::default();
        assert!(check_bind("127.0.0.1:11500".parse().unwrap(), &s, false).is_ok());
        let err = check_bind("0.0.0.0:11500".parse().unwrap(), &s, false).unwrap_err();
        assert!(err.contains("api_keys"), "{err}");
        assert!(check_bind("0.0.0.0:11500".parse().unwrap(), &s, true).is_ok());
    }
}
