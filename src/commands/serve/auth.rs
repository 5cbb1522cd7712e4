//! Who may read the dashboard. On loopback without `--token`, anyone on this machine;
//! any other address refuses to start without a token. With a token, every request
//! carries it: `Authorization: Bearer T`, or `?token=T` once, which answers with a
//! redirect that sets an HttpOnly cookie (so the page's own requests carry it) and drops
//! the token from the address bar. Tokens are compared as blake3 digests, in constant
//! time, so neither the comparison's duration nor the cookie gives the token away.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use histodiff_engine::hash::hash_bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// The cookie `?token=` sets.
const COOKIE: &str = "histodiff_token";

/// The required token, kept as its digest (64 hex digits).
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// The token to require, if any, after the rule that off loopback there must be one.
    pub fn checked(bind: SocketAddr, token: Option<String>) -> anyhow::Result<Option<Token>> {
        match token {
            Some(t) if t.trim().is_empty() => {
                anyhow::bail!("--token (or HISTODIFF_SERVE_TOKEN) is empty")
            }
            Some(t) => Ok(Some(Token(digest(&t).into()))),
            None if bind.ip().is_loopback() => Ok(None),
            None => anyhow::bail!(
                "refusing to serve on {bind} without a token: any address other than \
                 loopback (127.0.0.1, ::1) needs --token T (or HISTODIFF_SERVE_TOKEN)"
            ),
        }
    }

    fn is(&self, offered_digest: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), offered_digest.as_bytes())
    }
}

fn digest(token: &str) -> String {
    hash_bytes(token.as_bytes()).0
}

/// Equal lengths are compared without an early exit; digests always have equal lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: passes a request that carries the token, redirects one that offers
/// it in the query (setting the cookie), and answers 401 to the rest.
pub async fn require(State(token): State<Option<Token>>, req: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let carried = bearer(headers).map(digest).or_else(|| cookie(headers));
    if carried.is_some_and(|d| token.is(&d)) {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    if query_token(query).is_some_and(|t| token.is(&digest(&t))) {
        return welcome(req.uri().path(), query, &token);
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"histodiff\"")],
        "401: this dashboard needs its token: `Authorization: Bearer T`, or open it once \
         with ?token=T\n",
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string)
}

/// `token=…` of a query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// 303 to the same address without `token=`, setting the cookie.
fn welcome(path: &str, query: &str, token: &Token) -> Response {
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("token="))
        .collect();
    let location = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", token.0);
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_a_token_is_required() {
        let lan: SocketAddr = "0.0.0.0:8050".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8050".parse().unwrap();
        let v6: SocketAddr = "[::1]:8050".parse().unwrap();
        assert!(Token::checked(lan, None).is_err());
        assert!(Token::checked(lan, Some("s3cret".into()))
            .unwrap()
            .is_some());
        assert!(Token::checked(local, None).unwrap().is_none());
        assert!(Token::checked(v6, None).unwrap().is_none());
        assert!(Token::checked(local, Some(" ".into())).is_err());
    }

    #[test]
    fn tokens_compare_by_digest() {
        let t = Token::checked("127.0.0.1:1".parse().unwrap(), Some("abc".into()))
            .unwrap()
            .unwrap();
        assert!(t.is(&digest("abc")));
        assert!(!t.is(&digest("abd")));
        assert!(!t.is("abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn the_query_token_is_decoded_and_dropped_from_the_redirect() {
        assert_eq!(query_token("a=1&token=x%20y").as_deref(), Some("x y"));
        assert_eq!(query_token("a=1"), None);
        let t = Token(digest("x").into());
        let r = welcome("/runs", "a=1&token=x", &t);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/runs?a=1");
        let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains(&digest("x")),
            "{set}"
        );
    }
}
