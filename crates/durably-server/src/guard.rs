//! The guard against the browser a server is reached from, shared by the HTTP API and the
//! dashboard (rule 21 of docs/design.md). A web page on any site can make a browser send
//! requests to `http://127.0.0.1:8080`, and these servers can approve payouts, so every request
//! passes three rules before it is routed:
//!
//! 1. **Host** (DNS rebinding): the `Host` header must name the server: the address it is
//!    bound to, `localhost` when that is a loopback address, or a name given with
//!    [`AllowedHosts::allow`] (`--allowed-host`). A page on `evil.example` whose name was
//!    rebound to 127.0.0.1 sends `Host: evil.example` and is refused, reads included.
//! 2. **Same origin**: a request that is not GET or HEAD is refused when the browser marks it
//!    as not `Sec-Fetch-Site: same-origin`, or when its `Origin` is not `http://` + its `Host`
//!    (or `https://` + an allowed name, for a TLS proxy in front). Browsers set both headers
//!    themselves; a page cannot forge them.
//! 3. **JSON**: a request that is not GET or HEAD must send `Content-Type: application/json`.
//!    A cross-site page can send that type only after a CORS preflight, which the server never
//!    grants (it sends no CORS headers and refuses OPTIONS), and an HTML form cannot send it at
//!    all (no `text/plain` or form posts). Scripts and curl, which send no `Origin`, are held
//!    to this rule alone; it needs no secret to distribute, unlike a CSRF token.
//!
//! A refused request gets 403 with a one-line plain-text reason and reaches no handler, so it
//! changes nothing. Every response, refusals included, carries a strict Content-Security-Policy
//! (scripts and styles only from the server's own files, no framing, no form posts) and the
//! headers that stop framing, MIME sniffing, referrers and cross-origin reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ServerError;
use crate::text::preview;

/// Scripts, styles and fetches from the server itself only; nothing inline, no framing, no
/// form submissions, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The names a request's `Host` header may carry for the server to answer it.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// The port the server is bound to.
    port: u16,
    names: Vec<Name>,
}

/// One admitted `Host`: a lower-case host name or address (IPv6 in brackets) and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    host: String,
    port: Port,
    /// Given with `--allowed-host`: the server may be behind a TLS proxy there, so its pages'
    /// origin may be `https://`; on the bound address it serves plain HTTP only.
    configured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// This port; a `Host` without one too when it is 80, which browsers leave out.
    Exactly(u16),
    /// A name given without a port: with no port (behind a proxy on 80 or 443) or the
    /// server's own.
    NoneOr(u16),
}

impl AllowedHosts {
    /// The address the server is bound to, as `ip:port`; with `localhost:port` when it is a
    /// loopback address, and the loopback names when it is the unspecified address (0.0.0.0 or
    /// `[::]` accept connections on loopback too). Other names need [`AllowedHosts::allow`].
    pub fn new(bound: SocketAddr) -> Self {
        let port = bound.port();
        let exactly = |host: String| Name { host, port: Port::Exactly(port), configured: false };
        let mut names = vec![exactly(ip_host(bound.ip()))];
        if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            names.push(exactly("localhost".to_owned()));
        }
        if bound.ip().is_unspecified() {
            names.push(exactly(ip_host(IpAddr::V4(Ipv4Addr::LOCALHOST))));
            names.push(exactly(ip_host(IpAddr::V6(Ipv6Addr::LOCALHOST))));
        }
        AllowedHosts { port, names }
    }

    /// Also admits `name`: a host name or address (`dash.example`, `10.0.0.5`, `[fd00::5]`),
    /// matched without a port or with the server's own, or `name:port`, matched with exactly
    /// that port. Case does not matter. Fails with [`ServerError::AllowedHost`] for anything else
    /// (a scheme, a path, an empty name, a port that is not a number).
    pub fn allow(mut self, name: &str) -> Result<Self, ServerError> {
        let Some((host, port)) = split_authority(name) else {
            return Err(ServerError::AllowedHost { name: name.to_owned() });
        };
        let port = port.map_or(Port::NoneOr(self.port), Port::Exactly);
        self.names.push(Name { host, port, configured: true });
        Ok(self)
    }

    /// The admitted name `authority` (a `Host` header) matches.
    fn matching(&self, authority: &str) -> Option<&Name> {
        let (host, port) = split_authority(authority)?;
        self.names.iter().find(|n| {
            n.host == host
                && match (n.port, port) {
                    (Port::Exactly(p), Some(q)) | (Port::NoneOr(p), Some(q)) => p == q,
                    (Port::Exactly(p), None) => p == 80,
                    (Port::NoneOr(_), None) => true,
                }
        })
    }

    /// Why the request must be refused, if it must.
    fn check(&self, method: &Method, headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
        let host = host_of(headers, uri)?;
        let Some(name) = self.matching(host) else {
            return Err(format!(
                "Host `{}` is not this server's address (start it with --allowed-host NAME to admit a name)",
                preview(host, 80)
            ));
        };
        if matches!(*method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        for site in headers.get_all("sec-fetch-site") {
            if site.as_bytes() != b"same-origin" {
                return Err(format!(
                    "a request marked `Sec-Fetch-Site: {}` may not change runs; only this server's own pages may",
                    preview(&String::from_utf8_lossy(site.as_bytes()), 40)
                ));
            }
        }
        for origin in headers.get_all(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes());
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://").filter(|_| name.configured));
            if !authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
                return Err(format!(
                    "Origin `{}` is not this server's; only its own pages may change runs",
                    preview(&origin, 80)
                ));
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(format!("a {method} request must send `Content-Type: application/json`"));
        }
        Ok(())
    }
}

/// How an IP address is written in a `Host` header.
fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host[:port]` as (lower-case host, port), or `None` when it is not one (a scheme, a path,
/// an empty host, a port that is not a number).
fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                return None;
            }
            let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
            (format!("[{inside}]"), port)
        }
        None => {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return None;
            }
            (host.to_owned(), port)
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The one `Host` header (or, in HTTP/2, the request's authority).
fn host_of<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Result<&'a str, String> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().map_err(|_| "the Host header is not text".to_owned()),
        (Some(_), Some(_)) => Err("more than one Host header".to_owned()),
        (None, _) => uri.authority().map(|a| a.as_str()).ok_or_else(|| "no Host header".to_owned()),
    }
}

/// Puts the guard in front of `router`: every request passes [`AllowedHosts`]' rules before it
/// is routed, and every response carries the security headers.
pub fn guarded(router: axum::Router, hosts: AllowedHosts) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(hosts), guard))
}

/// The middleware: refuses what [`AllowedHosts::check`] refuses, before routing, and puts the
/// security headers on every response.
async fn guard(State(hosts): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let mut res = match hosts.check(req.method(), req.headers(), req.uri()) {
        Ok(()) => next.run(req).await,
        Err(reason) => {
            tracing::warn!(method = %req.method(), path = req.uri().path(), %reason, "refused a request");
            let body = format!("refused: {reason}\n");
            (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
                .into_response()
        }
    };
    security_headers(&mut res);
    res
}

/// The headers every response carries: the Content-Security-Policy, no framing, no sniffing,
/// no referrer, no cross-origin reads.
pub(crate) fn security_headers(res: &mut Response) {
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hosts(bound: &str) -> AllowedHosts {
        AllowedHosts::new(bound.parse().unwrap())
    }

    impl AllowedHosts {
        fn admits(&self, authority: &str) -> bool {
            self.matching(authority).is_some()
        }
    }

    #[test]
    fn the_bound_address_and_localhost_on_loopback() {
        let h = hosts("127.0.0.1:8080");
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(h.admits(ok), "{ok}");
        }
        for no in ["127.0.0.1", "127.0.0.1:8081", "localhost", "evil.example:8080", "127.0.0.1:+8080", ""] {
            assert!(!h.admits(no), "{no}");
        }
        let h = hosts("10.0.0.5:8080");
        assert!(h.admits("10.0.0.5:8080") && !h.admits("localhost:8080"));
        let h = hosts("[::1]:80");
        assert!(h.admits("[::1]:80") && h.admits("[::1]") && h.admits("localhost"));
        let h = hosts("0.0.0.0:8080");
        assert!(h.admits("127.0.0.1:8080") && h.admits("[::1]:8080") && h.admits("localhost:8080"));
        assert!(!h.admits("10.0.0.5:8080"), "a public name must be allowed explicitly");
    }

    #[test]
    fn allowed_names_with_and_without_a_port() {
        let h = hosts("0.0.0.0:8080").allow("Dash.Example").unwrap().allow("[fd00::5]:9000").unwrap();
        for ok in ["dash.example", "dash.example:8080", "DASH.EXAMPLE", "[fd00::5]:9000"] {
            assert!(h.admits(ok), "{ok}");
        }
        for no in ["dash.example:9000", "[fd00::5]", "[fd00::5]:8080", "x.dash.example"] {
            assert!(!h.admits(no), "{no}");
        }
        for bad in
            ["", "http://dash.example", "dash.example/", "dash.example:", "dash.example:x", "[]", "a b"]
        {
            let err = hosts("127.0.0.1:1").allow(bad).unwrap_err().to_string();
            assert!(err.contains("--allowed-host") && err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
