//! Rules for requests a web browser could be sending on someone else's behalf.
//!
//! Loopback is not safe by itself: any page the desktop's owner opens can make the
//! browser send requests to 127.0.0.1, and a DNS-rebinding page can even read the
//! answers. A page cannot present a key, so requests **with** a valid key are judged by
//! the key alone; requests **without** one must
//! - name an allowed host in `Host` (rebinding uses the attacker's name) → else 421;
//! - if they change state, not come from another origin (`Origin`, `Sec-Fetch-Site`)
//!   unless that origin is in `server.cors_origins` → else 403;
//! - if they carry `Origin` and a body, send it as `application/json` (a form or
//!   `text/plain` is what a cross-site page can send without asking) → else 415.
//!
//! CORS is answered for the configured origins only, preflights before auth. Every
//! response gets headers that keep the dashboard out of frames and MIME sniffing.

use super::error::ApiError;
use crate::app::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// Which hosts and origins keyless requests may use.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// Host names and addresses (lower case, no port, IPv6 without brackets).
    hosts: BTreeSet<String>,
    cors_origins: BTreeSet<String>,
}

impl BrowserPolicy {
    /// `bound`: the addresses actually listened on; an unspecified one (0.0.0.0, ::)
    /// allows every address of the machine's interfaces.
    pub fn new(bound: &[SocketAddr], allowed_hosts: &[String], cors_origins: &[String]) -> Self {
        let mut hosts: BTreeSet<String> = ["localhost".to_string()].into();
        hosts.extend(allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
        for addr in bound {
            hosts.insert(addr.ip().to_string());
            if addr.ip().is_unspecified() {
                hosts.extend(interface_addresses().iter().map(IpAddr::to_string));
            }
        }
        Self {
            hosts,
            cors_origins: cors_origins
                .iter()
                .map(|o| o.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` (a `Host` header value, port optional) may be used without a key.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if let Ok(ip) = name.parse::<IpAddr>() {
            if ip.to_canonical().is_loopback() {
                return true;
            }
            return self.hosts.contains(&ip.to_canonical().to_string());
        }
        self.hosts.contains(&name) || name.ends_with(".localhost")
    }

    pub fn cors_allowed(&self, origin: &str) -> bool {
        self.cors_origins
            .contains(&origin.trim().to_ascii_lowercase())
    }
}

fn interface_addresses() -> Vec<IpAddr> {
    // Unreadable interfaces (an unusual OS): only the configured names are allowed.
    let Ok(nets) = sysinfo::Networks::new_with_refreshed_list() else {
        return Vec::new();
    };
    nets.values()
        .flat_map(|n| n.ip_networks().iter().map(|ip| ip.addr))
        .collect()
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `::1`; lower case.
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_websocket(h: &HeaderMap) -> bool {
    text(h, header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Routes whose body is not JSON (file uploads); the content-type rule skips them.
fn takes_other_bodies(path: &str) -> bool {
    path.ends_with("/upload/image") || path.ends_with("/upload/mask")
}

/// Why a keyless request is refused, if it is.
fn judge(policy: &BrowserPolicy, method: &Method, path: &str, h: &HeaderMap) -> Option<ApiError> {
    let host = text(h, header::HOST).unwrap_or("");
    if !policy.host_allowed(host) {
        return Some(
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "HOST_NOT_ALLOWED",
                format!(
                    "Host {host:?} is not one this server answers to without a key \
                     (add it to server.allowed_hosts, or send a key)"
                ),
            )
            .with("host", host),
        );
    }
    // A WebSocket upgrade is a GET, but a cross-site page could read and drive it.
    if !changes_state(method) && !is_websocket(h) {
        return None;
    }
    let origin = text(h, header::ORIGIN);
    let same_origin = |o: &str| {
        ["http://", "https://"]
            .iter()
            .any(|scheme| o.eq_ignore_ascii_case(&format!("{scheme}{host}")))
    };
    let cross_site = match origin {
        Some(o) => !same_origin(o) && !policy.cors_allowed(o),
        // No Origin: a fetch-metadata browser still says where it comes from.
        None => text(h, header::HeaderName::from_static("sec-fetch-site"))
            .is_some_and(|s| !matches!(s, "same-origin" | "none")),
    };
    if cross_site {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "CROSS_SITE_REFUSED",
                "a state-changing request from another site needs a key \
                 (or its origin in server.cors_origins)",
            )
            .with("origin", origin),
        );
    }
    if origin.is_some() && !takes_other_bodies(path) {
        let has_body = text(h, header::CONTENT_LENGTH).is_some_and(|l| l != "0")
            || h.contains_key(header::TRANSFER_ENCODING);
        let json = text(h, header::CONTENT_TYPE).is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("application/json") || ct.contains("+json")
        });
        if (has_body || h.contains_key(header::CONTENT_TYPE)) && !json {
            return Some(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "a browser request must send its body as Content-Type: application/json",
            ));
        }
    }
    None
}

const ALLOWED_HEADERS: &str = "authorization, content-type, x-request-id, x-request-timeout";
const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";

fn cors_headers(resp: &mut Response, origin: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id, retry-after, location"),
    );
}

/// What the browser rules say about a request.
pub enum Verdict {
    /// Serve it; an allowed CORS origin is named on the answer.
    Serve(Option<String>),
    /// Answer this instead (a preflight's answer, or a refusal).
    Answer(Response),
}

/// The browser rules (see the module doc) and CORS preflights.
pub fn judge_request(state: &AppState, req: &Request) -> Verdict {
    let origin = text(req.headers(), header::ORIGIN);
    let cors_origin = origin
        .filter(|o| state.browser().cors_allowed(o))
        .map(str::to_string);
    // A preflight carries no credentials: answer it here, before auth.
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let Some(origin) = cors_origin else {
            return Verdict::Answer(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "CROSS_SITE_REFUSED",
                    "this origin is not in server.cors_origins",
                )
                .into_response(),
            );
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        cors_headers(&mut resp, &origin);
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return Verdict::Answer(resp);
    }
    let keyed =
        super::auth::bearer(req.headers()).is_some_and(|b| state.auth().lookup(b).is_some());
    if !keyed {
        if let Some(e) = judge(
            &state.browser(),
            req.method(),
            req.uri().path(),
            req.headers(),
        ) {
            let mut resp = e.into_response();
            if let Some(o) = &cors_origin {
                cors_headers(&mut resp, o);
            }
            return Verdict::Answer(resp);
        }
    }
    Verdict::Serve(cors_origin)
}

/// The CORS headers an allowed origin's answer carries.
pub fn allow_origin(resp: &mut Response, origin: Option<&str>) {
    if let Some(o) = origin {
        cors_headers(resp, o);
    }
}

/// Whether a path is one of the dashboard's pages (they get a content policy).
pub fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// Headers every answer carries: no framing (clickjacking the restart buttons), no MIME
/// sniffing, no referrer leaks; the dashboard's pages also get a content policy.
pub fn security_headers(h: &mut HeaderMap, is_page: bool) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = if is_page {
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    } else {
        "frame-ancestors 'none'"
    };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BrowserPolicy {
        BrowserPolicy::new(
            &[
                "127.0.0.1:11500".parse().unwrap(),
                "100.64.0.7:11500".parse().unwrap(),
            ],
            &["gpu-desktop.tailnet.ts.net".into()],
            &["http://100.64.0.9:3000".into()],
        )
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn code(method: Method, list: &[(&'static str, &str)]) -> Option<&'static str> {
        judge(&policy(), &method, "/api/v1/runtime", &headers(list)).map(|e| e.code)
    }

    #[test]
    fn host_names_parse() {
        assert_eq!(host_name("Example.COM:8080"), "example.com");
        assert_eq!(host_name("[::1]:11500"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
    }

    #[test]
    fn the_rules_as_a_table() {
        let ok_host = ("host", "127.0.0.1:11500");
        #[allow(clippy::type_complexity)] // a table's row type, read once here
        let cases: &[(Method, &[(&'static str, &str)], Option<&str>)] = &[
            (Method::GET, &[ok_host], None),
            (Method::GET, &[("host", "localhost:11500")], None),
            (Method::GET, &[("host", "100.64.0.7:11500")], None),
            (Method::GET, &[("host", "gpu-desktop.tailnet.ts.net")], None),
            (
                Method::GET,
                &[("host", "evil.example:11500")],
                Some("HOST_NOT_ALLOWED"),
            ),
            (
                Method::GET,
                &[("host", "10.0.0.3:11500")],
                Some("HOST_NOT_ALLOWED"),
            ),
            (Method::GET, &[], Some("HOST_NOT_ALLOWED")),
            // Reading cross-site is the browser's business (no CORS, no access).
            (
                Method::GET,
                &[ok_host, ("origin", "http://evil.example")],
                None,
            ),
            (
                Method::POST,
                &[
                    ok_host,
                    ("origin", "http://evil.example"),
                    ("content-type", "text/plain"),
                ],
                Some("CROSS_SITE_REFUSED"),
            ),
            (
                Method::POST,
                &[ok_host, ("sec-fetch-site", "cross-site")],
                Some("CROSS_SITE_REFUSED"),
            ),
            (
                Method::POST,
                &[ok_host, ("sec-fetch-site", "same-site")],
                Some("CROSS_SITE_REFUSED"),
            ),
            (
                Method::POST,
                &[ok_host, ("sec-fetch-site", "same-origin")],
                None,
            ),
            (
                Method::POST,
                &[
                    ok_host,
                    ("origin", "http://127.0.0.1:11500"),
                    ("content-type", "application/json"),
                    ("content-length", "2"),
                ],
                None,
            ),
            (
                Method::POST,
                &[
                    ok_host,
                    ("origin", "http://127.0.0.1:11500"),
                    ("content-type", "text/plain"),
                    ("content-length", "2"),
                ],
                Some("UNSUPPORTED_MEDIA_TYPE"),
            ),
            (
                Method::POST,
                &[
                    ok_host,
                    ("origin", "http://100.64.0.9:3000"),
                    ("content-type", "application/json"),
                ],
                None,
            ),
            (
                Method::POST,
                &[
                    ok_host,
                    ("origin", "http://100.64.0.9:3000"),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Some("UNSUPPORTED_MEDIA_TYPE"),
            ),
            // Curl, SDKs, the CLI: no Origin, no fetch metadata.
            (
                Method::POST,
                &[ok_host, ("content-type", "text/plain")],
                None,
            ),
            (
                Method::DELETE,
                &[ok_host, ("origin", "http://evil.example")],
                Some("CROSS_SITE_REFUSED"),
            ),
        ];
        for (method, list, want) in cases {
            assert_eq!(code(method.clone(), list), *want, "{method} {list:?}");
        }
    }
}
