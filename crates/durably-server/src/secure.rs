//! The layers in front of every route of a server: the guard (`Host`, same origin, JSON; see
//! [`crate::guard`]), then authentication, then the body size limit. Each refuses a request
//! before it reaches a handler, so a refused request changes nothing (rule 21 of
//! docs/design.md).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::config::{Auth, ServerConfig};
use crate::guard::guarded;

/// Puts `config`'s guard, authentication and body limit in front of `routes`.
pub fn secure(routes: Router, config: &ServerConfig) -> Router {
    let limit = config.body_limit;
    let auth = Arc::new(config.auth.clone());
    let routes = routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, declared_length))
        .layer(axum::middleware::from_fn_with_state(auth, authenticate));
    guarded(routes, config.hosts.clone())
}

/// Refuses a request without the token. The presented value is never logged or echoed.
async fn authenticate(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let Auth::Token(token) = auth.as_ref() else {
        return next.run(req).await;
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let problem = match (values.next(), values.next()) {
        (None, _) => Some("this server needs `Authorization: Bearer <token>`"),
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
