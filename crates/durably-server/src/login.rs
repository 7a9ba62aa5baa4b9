//! The login of a browser: a page that asks for the token once and keeps a cookie derived from
//! it (`HttpOnly`, `SameSite=Strict`), so that the dashboard served beside the API works
//! under the same token. Scripts present the token itself (`Authorization: Bearer`).
//!
//! The page and its script are the only routes answered without authentication. `POST /login`
//! is a state-changing JSON request like any other, so the guard refuses a cross-site form
//! posting to it; a wrong token is a 401 and sets nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::ApiError;
use crate::config::Auth;

/// The login cookie's name.
pub(crate) const COOKIE: &str = "durably_session";

/// A login request is small.
const LOGIN_BODY_LIMIT: usize = 4096;

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>durably: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>durably</h1>
<p>Paste the server's API token (the value of <code>DURABLY_TOKEN</code> or of the token file).</p>
<p><input id="token" type="password" autocomplete="current-password" size="48"> <button id="login">Sign in</button></p>
<p id="msg"></p>
<script src="/login.js"></script></body></html>
"#;

const SCRIPT: &str = r#"// Sends the token as JSON (a cross-site form cannot), then opens the dashboard.
document.getElementById('login').addEventListener('click', async () => {
  const res = await fetch('/login', {
    method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({token: document.getElementById('token').value})
  });
  if (res.ok) { location.href = '/'; return; }
  const data = await res.json().catch(() => ({error: res.statusText}));
  document.getElementById('msg').textContent = 'error: ' + data.error;
});
"#;

/// The body of `POST /login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `/login`, `/login.js` and `/logout`, unauthenticated.
pub(crate) fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/login", get(page).post(login))
        .route("/login.js", get(script))
        .route("/logout", axum::routing::post(logout))
        .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
        .with_state(auth)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

async fn login(State(auth): State<Arc<Auth>>, body: Result<Bytes, BytesRejection>) -> Response {
    let login: Login = match body.map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(login)) => login,
        Ok(Err(e)) => {
            return ApiError::bad_request(format!("the request body is not a login: {e}")).into_response();
        }
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::too_large(LOGIN_BODY_LIMIT).into_response();
        }
        Err(e) => {
            return ApiError::bad_request(format!("could not read the request body: {e}")).into_response();
        }
    };
    let Auth::Token(token) = auth.as_ref() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if !token.matches(login.token.trim().as_bytes()) {
        tracing::warn!("refused a login with a wrong token");
        return ApiError::new(StatusCode::UNAUTHORIZED, "the token is wrong").into_response();
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.session_value());
    session_cookie(cookie)
}

async fn logout() -> Response {
    session_cookie(format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
}

fn session_cookie(cookie: String) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, value);
    }
    res
}

/// The login cookie's value among a request's `Cookie` headers.
pub(crate) fn session_of(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .find_map(|pair| pair.strip_prefix(COOKIE.as_bytes()).and_then(|rest| rest.strip_prefix(b"=")))
}
