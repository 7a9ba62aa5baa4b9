//! The layers in front of every route of a server: the guard (`Host`, same origin, JSON; see
//! [`crate::guard`]), then the body size limit, then authentication (a bearer token, or the
//! login cookie of a browser). Each refuses a request
//! before it reaches a handler, so a refused request changes nothing (rule 21 of
//! docs/design.md).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::api::ApiError;
use crate::config::{Auth, ServerConfig};
use crate::guard::guarded;
use crate::login;

/// Puts `config`'s guard, authentication and body limit in front of `routes`.
///
/// Browsers sign in at `/login` (a page that sets a cookie derived from the token): the only
/// routes open without the token.
pub fn secure(routes: Router, config: &ServerConfig) -> Router {
    let limit = config.body_limit;
    let auth = Arc::new(config.auth.clone());
    let routes = routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(auth.clone(), authenticate))
        .merge(login::routes(auth))
        .layer(axum::middleware::from_fn_with_state(limit, declared_length));
    guarded(routes, config.hosts.clone())
}

/// Refuses a request without the token. The presented value is never logged or echoed.
async fn authenticate(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let Auth::Token(token) = auth.as_ref() else {
        return next.run(req).await;
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let problem = match (values.next(), values.next()) {
        (None, _) => match login::session_of(req.headers()) {
            Some(session) if token.matches_session(session) => None,
            _ if wants_page(&req) => return Redirect::to("/login").into_response(),
            Some(_) => Some("the login has expired or is not this server's; sign in again at /login"),
            None => Some("this server needs `Authorization: Bearer <token>` (browsers: sign in at /login)"),
        },
        (Some(_), Some(_)) => Some("more than one Authorization header"),
        (Some(value), None) => {
            let bytes = value.as_bytes();
            let presented = bytes.strip_prefix(b"Bearer ").or_else(|| bytes.strip_prefix(b"bearer "));
            match presented {
                Some(p) if token.matches(p) => None,
                Some(_) => Some("the bearer token is wrong"),
                None => Some("the Authorization header is not `Bearer <token>`"),
            }
        }
    };
    match problem {
        None => next.run(req).await,
        Some(problem) => {
            tracing::warn!(method = %req.method(), path = req.uri().path(), problem, "refused an unauthenticated request");
            let mut res = ApiError::new(StatusCode::UNAUTHORIZED, problem).into_response();
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
    }
}

/// A browser navigating to a page (not a script calling the API): sent to the login page.
fn wants_page(req: &Request) -> bool {
    req.method() == axum::http::Method::GET
        && !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

/// Refuses a body declared larger than the limit before any of it is read; a body sent without
/// a length is cut at the limit by [`DefaultBodyLimit`] in the extractors.
async fn declared_length(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => ApiError::too_large(limit).into_response(),
        _ => next.run(req).await,
    }
}
