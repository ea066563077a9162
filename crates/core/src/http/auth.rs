//! Access control: trusted networks need no key; everyone else presents a bearer key.
//! Gateway routes take a gateway or admin key, control routes only an admin key; a named
//! key may also be limited to some fronts (`sparklio`, `ollama`, `openai`, `comfyui`).

use super::error::ApiError;
use crate::app::SharedState;
use crate::config::{parse_network, KeyRole, ServerConfig};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// LLM/media gateway, status, metrics, events: a gateway or an admin key.
    Gateway,
    /// Control routes (start/stop/restart, mode switches, model pulls): an admin key.
    Admin,
}

/// The API family a route belongs to (a named key may open only some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The Desk's own API (`/api/v1/*`, `/metrics`).
    Sparklio,
    Ollama,
    OpenAi,
    ComfyUi,
}

impl Front {
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Sparklio => "sparklio",
            Front::Ollama => "ollama",
            Front::OpenAi => "openai",
            Front::ComfyUi => "comfyui",
        }
    }
}

/// A configured key, kept only as its digest.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    digest: [u8; 32],
    /// A short, non-reversible id (first 12 hex of the SHA-256), never the key.
    pub id: String,
    /// `[[server.keys]]` name; `None` for the plain lists.
    pub name: Option<String>,
    pub admin: bool,
    /// `None`: every front.
    pub fronts: Option<Vec<String>>,
    pub rate_per_min: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub media_return: Option<String>,
}

impl KeyEntry {
    fn plain(key: &str, admin: bool) -> Self {
        let digest = digest(key.trim());
        Self {
            id: key_id(&digest),
            digest,
            name: None,
            admin,
            fronts: None,
            rate_per_min: None,
            max_concurrent: None,
            media_return: None,
        }
    }

    fn opens(&self, front: Front) -> bool {
        self.fronts
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == front.as_str()))
    }
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
    /// The key that was presented and valid, with its settings.
    pub key: Option<Arc<KeyEntry>>,
}

impl Caller {
    /// Whether this caller passes the control routes (`Scope::Admin`): trusted networks do,
    /// as `Auth::check` decides; else an admin key.
    pub fn may_control(&self) -> bool {
        self.admin || self.trusted
    }

    /// Who asked, as the usage log records it.
    pub fn requester(&self) -> crate::gateway::Requester {
        crate::gateway::Requester {
            client: self.addr.ip().to_string(),
            key_id: self.key_id.clone(),
        }
    }

    /// "100.64.1.2 (key backend)" style description for the event log.
    pub fn describe(&self) -> String {
        match (&self.key, &self.key_id) {
            (Some(k), _) if k.name.is_some() => format!(
                "{} (key {})",
                self.addr.ip(),
                k.name.as_deref().unwrap_or_default()
            ),
            (_, Some(id)) => format!("{} (key {id})", self.addr.ip()),
            _ => self.addr.ip().to_string(),
        }
    }
}

/// Keys are kept only as SHA-256 digests and compared in constant time, so neither
/// their content nor their length leaks through timing.
#[derive(Clone)]
pub struct Auth {
    trusted: Vec<ipnet::IpNet>,
    keys: Vec<Arc<KeyEntry>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn key_id(d: &[u8; 32]) -> String {
    use std::fmt::Write;
    d[..6].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Auth {
    pub fn new(server: &ServerConfig) -> Self {
        let mut keys: Vec<Arc<KeyEntry>> = Vec::new();
        keys.extend(
            server
                .api_keys
                .iter()
                .map(|k| Arc::new(KeyEntry::plain(k, false))),
        );
        keys.extend(
            server
                .admin_keys
                .iter()
                .map(|k| Arc::new(KeyEntry::plain(k, true))),
        );
        keys.extend(server.keys.iter().map(|k| {
            let mut e = KeyEntry::plain(&k.key, k.role == KeyRole::Admin);
            e.name = Some(k.name.clone());
            e.fronts.clone_from(&k.fronts);
            e.rate_per_min = k.rate_per_min;
            e.max_concurrent = k.max_concurrent;
            e.media_return.clone_from(&k.media_return);
            Arc::new(e)
        }));
        Self {
            trusted: server
                .trusted_networks
                .iter()
                .filter_map(|n| parse_network(n))
                .collect(),
            keys,
        }
    }

    /// Also accept `key` as a gateway key (the app's own calls to itself, e.g. the e2e check).
    pub fn with_internal_key(mut self, key: &str) -> Self {
        let mut e = KeyEntry::plain(key, false);
        e.name = Some("internal".into());
        self.keys.push(Arc::new(e));
        self
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The key `bearer` names, touching every entry whatever the answer.
    pub fn lookup(&self, bearer: &str) -> Option<Arc<KeyEntry>> {
        let presented = digest(bearer.trim());
        let mut found: Option<Arc<KeyEntry>> = None;
        for k in &self.keys {
            let hit: bool = k.digest.ct_eq(&presented).into();
            if hit && found.is_none() {
                found = Some(k.clone());
            }
        }
        found
    }

    /// Decide a request: `Ok(caller)` or the 401/403 to answer.
    pub fn check(
        &self,
        addr: SocketAddr,
        bearer: Option<&str>,
        scope: Scope,
        front: Front,
    ) -> Result<Caller, ApiError> {
        let trusted = self.is_trusted(addr.ip());
        let key = bearer.and_then(|b| self.lookup(b));
        let caller = Caller {
            addr,
            trusted,
            key_id: key.as_ref().map(|k| k.id.clone()),
            admin: key.as_ref().is_some_and(|k| k.admin),
            key: key.clone(),
        };
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m);
        let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", m);
        match (trusted, bearer, key.as_deref(), scope) {
            (true, _, _, _) => Ok(caller),
            (false, None, _, _) => Err(unauthorized(
                "this client is not on a trusted network: send Authorization: Bearer <key>",
            )),
            (false, Some(_), None, _) => Err(unauthorized("the bearer key is not valid")),
            (false, Some(_), Some(k), _) if !k.opens(front) => Err(forbidden(format!(
                "this key does not open the {} API (its fronts: {})",
                front.as_str(),
                k.fronts.as_deref().unwrap_or_default().join(", ")
            ))),
            (false, Some(_), Some(k), Scope::Admin) if !k.admin => Err(forbidden(
                "this route needs an admin key (server.admin_keys or a [[server.keys]] with role = \"admin\"); a gateway key only opens the gateway".into(),
            )),
            (false, Some(_), Some(_), _) => Ok(caller),
        }
    }
}

/// The bearer key of a request, if it sends one (`Authorization: Bearer <key>`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

/// The peer address axum's server put on the request.
pub fn peer(req: &Request) -> Result<SocketAddr, ApiError> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .ok_or_else(|| ApiError::internal("server started without peer addresses"))
}

/// Who may call (401/403), then how much (429 with `Retry-After`, see `limits`): one
/// route layer for both, the caller put on the request for the handlers.
pub(crate) async fn require(
    state: SharedState,
    scope: Scope,
    front: Front,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let addr = peer(&req)?;
    let caller = state
        .auth()
        .check(addr, bearer(req.headers()), scope, front)?;
    let slot = state.limiter.admit(&caller)?;
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    Ok(match slot {
        None => resp,
        Some(slot) => super::limits::held_until_sent(resp, slot),
    })
}

/// Middleware for gateway routes (access and limits).
pub async fn require_gateway(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(state, Scope::Gateway, Front::Sparklio, req, next).await
}

/// Middleware for control routes (access and limits).
pub async fn require_admin(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    require(state, Scope::Admin, Front::Sparklio, req, next).await
}

/// Refuse to serve a non-loopback address without keys, unless explicitly told to.
pub fn check_bind(
    bind: SocketAddr,
    server: &ServerConfig,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if bind.ip().is_loopback() || insecure_no_auth || server.has_gateway_keys() {
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
    use crate::config::KeyConfig;

    fn auth() -> Auth {
        Auth::new(&ServerConfig {
            trusted_networks: vec!["127.0.0.1/32".into()],
            api_keys: vec!["gateway-key-0123456789".into()],
            admin_keys: vec!["admin-key-0123456789ab".into()],
            keys: vec![KeyConfig {
                name: "open-webui".into(),
                key: "ollama-only-key-0123456".into(),
                role: KeyRole::Gateway,
                fronts: Some(vec!["ollama".into()]),
                rate_per_min: Some(60),
                max_concurrent: None,
                media_return: None,
            }],
            ..Default::default()
        })
    }

    fn lan() -> SocketAddr {
        "192.168.1.20:5000".parse().unwrap()
    }

    fn status(r: Result<Caller, ApiError>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |_| 200)
    }

    #[test]
    fn decisions() {
        use Front::{Ollama, Sparklio};
        use Scope::{Admin, Gateway};
        let a = auth();
        let loopback: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        // (from, key, scope, front) -> status
        let table: &[(SocketAddr, Option<&str>, Scope, Front, u16)] = &[
            (loopback, None, Admin, Sparklio, 200),
            (mapped, None, Admin, Sparklio, 200),
            (lan(), None, Gateway, Sparklio, 401),
            (lan(), Some("wrong-key-000000000"), Gateway, Sparklio, 401),
            (
                lan(),
                Some("gateway-key-0123456789"),
                Gateway,
                Sparklio,
                200,
            ),
            (lan(), Some("gateway-key-0123456789"), Admin, Sparklio, 403),
            (lan(), Some("admin-key-0123456789ab"), Admin, Sparklio, 200),
            (lan(), Some("admin-key-0123456789ab"), Gateway, Ollama, 200),
            (lan(), Some("ollama-only-key-0123456"), Gateway, Ollama, 200),
            (
                lan(),
                Some("ollama-only-key-0123456"),
                Gateway,
                Sparklio,
                403,
            ),
            (lan(), Some("ollama-only-key-0123456"), Admin, Ollama, 403),
        ];
        for (from, key, scope, front, want) in table {
            assert_eq!(
                status(a.check(*from, *key, *scope, *front)),
                *want,
                "{from} {key:?} {scope:?} {front:?}"
            );
        }
        let c = a
            .check(
                lan(),
                Some("gateway-key-0123456789"),
                Scope::Gateway,
                Front::Sparklio,
            )
            .unwrap();
        assert!(!c.admin && c.key_id.as_deref().unwrap().len() == 12);
        let named = a
            .check(
                lan(),
                Some("ollama-only-key-0123456"),
                Scope::Gateway,
                Front::Ollama,
            )
            .unwrap();
        assert_eq!(named.describe(), "192.168.1.20 (key open-webui)");
        assert_eq!(named.key.unwrap().rate_per_min, Some(60));
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
