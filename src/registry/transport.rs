//! HTTP to one registry endpoint with reqwest: TLS (system roots, certs.d
//! CAs, client certificates), a redirect policy, and the token flow done the
//! way registries expect it: a 401 from any request carries a challenge; we
//! fetch a token for the scope it names, cache it by scope, and retry once.

use super::credentials::Credential;
use crate::error::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// TLS material for one `host:port`, from `certs.d/<host:port>/`.
#[derive(Default)]
pub(crate) struct TlsFiles {
    pub roots: Vec<reqwest::Certificate>,
    pub identity: Option<reqwest::Identity>,
}

impl TlsFiles {
    /// `*.crt` are CA certificates; `X.cert` with `X.key` is a client certificate.
    pub fn load(certs_dir: Option<&Path>, host: &str) -> Result<TlsFiles> {
        let mut out = TlsFiles::default();
        let Some(root) = certs_dir else { return Ok(out) };
        let dir = root.join(host);
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(out) };
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        let bad = |p: &Path, e: reqwest::Error| Error::invalid(format!("{}: {e}", p.display()));
        for p in &paths {
            let read = || super::config::read_config_bytes(p);
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    out.roots.extend(reqwest::Certificate::from_pem_bundle(&read()?).map_err(|e| bad(p, e))?)
                }
                Some("cert") => {
                    let key = p.with_extension("key");
                    let mut pem = read()?;
                    pem.extend(super::config::read_config_bytes(&key).map_err(|e| {
                        Error::invalid(format!(
                            "{}: client certificate without its key {}: {e}",
                            p.display(),
                            key.display()
                        ))
                    })?);
                    out.identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| bad(p, e))?);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Build the HTTP client for one endpoint.
pub(crate) fn client(tls: TlsFiles, insecure: bool, connect_timeout: Duration) -> Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().last().is_some_and(|u| u.scheme() == "https") && attempt.url().scheme() == "http";
        if downgrade {
            attempt.error("refusing a redirect from HTTPS to plain HTTP")
        } else if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else {
            // reqwest drops Authorization when the redirect leaves the origin.
            attempt.follow()
        }
    });
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(policy)
        .user_agent(concat!("imgsvc/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(insecure);
    if !tls.roots.is_empty() {
        b = b.tls_certs_merge(tls.roots);
    }
    if let Some(id) = tls.identity {
        b = b.identity(id);
    }
    b.build().map_err(|e| Error::internal(format!("building HTTP client: {e}")))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parse a `WWW-Authenticate` value: `Bearer realm="...",service="...",scope="..."`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), val);
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

struct Token {
    value: String,
    expires: Instant,
}

/// One endpoint, one set of credentials; shared by a pull's parallel fetches.
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    credential: Credential,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, Token>>,
    /// The registry asked for Basic auth.
    basic: Mutex<bool>,
}

impl Transport {
    pub fn new(http: reqwest::Client, base: String, credential: Credential) -> Self {
        Transport { http, base, credential, tokens: Mutex::new(HashMap::new()), basic: Mutex::new(false) }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        match &self.credential {
            Credential::RegistryToken(t) => return Some(format!("Bearer {t}")),
            Credential::Basic(u, p) if *self.basic.lock().unwrap_or_else(|e| e.into_inner()) => {
                use base64::Engine as _;
                return Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
            }
            _ => {}
        }
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(scope).filter(|t| t.expires > Instant::now()).map(|t| format!("Bearer {}", t.value))
    }

    /// GET `path` (under `/v2/`), authenticating as the registry asks.
    pub async fn get(
        &self,
        path: &str,
        scope: &str,
        accept: Option<&str>,
        range_from: Option<u64>,
    ) -> Result<Response> {
        let url = format!("{}/v2/{path}", self.base);
        let mut retried = false;
        loop {
            let mut headers = HeaderMap::new();
            if let Some(a) = accept {
                headers.insert(ACCEPT, HeaderValue::from_str(a).map_err(|e| Error::internal(e.to_string()))?);
            }
            if let Some(from) = range_from.filter(|f| *f > 0) {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={from}-")).map_err(|e| Error::internal(e.to_string()))?,
                );
            }
            if let Some(auth) = self.authorization(scope) {
                let mut v = HeaderValue::from_str(&auth)
                    .map_err(|_| Error::invalid("credentials contain characters not allowed in HTTP headers"))?;
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            let resp = self.http.get(&url).headers(headers).send().await.map_err(|e| transport_error(&url, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // A cached token may have expired mid-pull: forget it and re-challenge once.
            self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(scope);
            if retried || matches!(self.credential, Credential::RegistryToken(_)) {
                return Err(self.unauthorized(&url));
            }
            retried = true;
            let challenge =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            match challenge {
                Some(c) if c.scheme == "bearer" => {
                    let token = self.fetch_token(&c, scope).await?;
                    self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(scope.to_string(), token);
                }
                Some(c) if c.scheme == "basic" && matches!(self.credential, Credential::Basic(..)) => {
                    *self.basic.lock().unwrap_or_else(|e| e.into_inner()) = true;
                }
                _ => return Err(self.unauthorized(&url)),
            }
        }
    }

    fn unauthorized(&self, url: &str) -> Error {
        let why = match self.credential {
            Credential::Anonymous => "the registry requires credentials and none were given",
            _ => "the registry rejected the credentials",
        };
        Error::new(ErrorKind::Unauthenticated, format!("{}: {why}", strip_query(url)))
    }

    /// Get a token for the challenge's scope (or ours) from its realm.
    async fn fetch_token(&self, c: &Challenge, scope: &str) -> Result<Token> {
        let realm = c
            .params
            .get("realm")
            .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "bearer challenge without a realm"))?;
        let url = reqwest::Url::parse(realm)
            .map_err(|e| Error::new(ErrorKind::Unauthenticated, format!("bad token realm {realm:?}: {e}")))?;
        let service = c.params.get("service").cloned().unwrap_or_default();
        let scope = c.params.get("scope").cloned().unwrap_or_else(|| scope.to_string());
        let req = match &self.credential {
            Credential::IdentityToken(refresh) => {
                // OAuth2 refresh-token grant.
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("service", service.as_str()),
                    ("scope", scope.as_str()),
                    ("client_id", "imgsvc"),
                ];
                self.http.post(url).form(&form)
            }
            cred => {
                let mut req = self.http.get(url).query(&[("service", service.as_str()), ("scope", scope.as_str())]);
                if let Credential::Basic(u, p) = cred {
                    req = req.basic_auth(u, Some(p));
                }
                req
            }
        };
        let resp = req.send().await.map_err(|e| transport_error(realm, &e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let kind =
                if status == StatusCode::FORBIDDEN { ErrorKind::PermissionDenied } else { ErrorKind::Unauthenticated };
            return Err(Error::new(
                kind,
                format!("token server {} refused the credentials ({status})", strip_query(realm)),
            ));
        }
        if !status.is_success() {
            return Err(Error::unavailable(format!("token server {} answered {status}", strip_query(realm))));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let body = resp.bytes().await.map_err(|e| transport_error(realm, &e))?;
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| Error::new(ErrorKind::Unauthenticated, format!("token server answered badly: {e}")))?;
        let value = if t.token.is_empty() { t.access_token } else { t.token };
        if value.is_empty() {
            return Err(Error::new(ErrorKind::Unauthenticated, "token server answered without a token"));
        }
        // Renew a little early; 60 s is the distribution spec's default lifetime.
        let life = t.expires_in.unwrap_or(60).max(1);
        Ok(Token { value, expires: Instant::now() + Duration::from_secs(life).mul_f64(0.9) })
    }
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The whole error chain of a failed request, as an error of the right kind.
pub(crate) fn transport_error(url: &str, e: &reqwest::Error) -> Error {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unavailable };
    Error::new(kind, format!("{}: {text}", strip_query(url)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "Registry Realm"));
        let c = parse_challenge(r#"Bearer realm=unquoted, error="invalid_token", scope="x""#).unwrap();
        assert_eq!(c.params["realm"], "unquoted");
        assert_eq!(c.params["error"], "invalid_token");
    }
}
