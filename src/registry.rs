//! Talking to registries: which scheme to use, credentials, manifests and
//! blob streams. This is the only module that speaks HTTP (through
//! oci-client, and reqwest for the TLS probe).

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{self, MANIFEST_MAX};
use crate::reference::Reference;
use crate::Auth;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Whether a registry host is on loopback, where plain HTTP may be used.
pub(crate) fn is_loopback(domain: &str) -> bool {
    let host = if let Some(rest) = domain.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        domain.rsplit_once(':').map_or(domain, |(h, _)| h)
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Https,
    Http,
}

/// Decides, once per registry host, how to reach it.
pub(crate) struct Endpoints {
    probe: reqwest::Client,
    schemes: Mutex<HashMap<String, Scheme>>,
    connect_timeout: Duration,
}

impl Endpoints {
    pub fn new(connect_timeout: Duration) -> Result<Self> {
        let probe = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(connect_timeout + Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("building HTTP client: {e}")))?;
        Ok(Endpoints { probe, schemes: Mutex::new(HashMap::new()), connect_timeout })
    }

    /// HTTPS with full verification everywhere; on loopback, plain HTTP when
    /// (and only when) the server does not speak TLS at all.
    pub async fn scheme(&self, domain: &str) -> Result<Scheme> {
        if !is_loopback(domain) {
            return Ok(Scheme::Https);
        }
        if let Some(s) = self.schemes.lock().unwrap_or_else(|e| e.into_inner()).get(domain) {
            return Ok(*s);
        }
        let scheme = match self.probe.get(format!("https://{domain}/v2/")).send().await {
            Ok(_) => Scheme::Https,
            Err(err) => match classify_tls_failure(&err) {
                TlsFailure::NotTls => Scheme::Http,
                TlsFailure::Certificate(why) => {
                    return Err(Error::unavailable(format!(
                        "registry {domain}: TLS certificate verification failed ({why}); refusing to fall back to plain HTTP"
                    )))
                }
                TlsFailure::Other => {
                    return Err(Error::unavailable(format!("registry {domain} is unreachable: {}", chain(&err))))
                }
            },
        };
        self.schemes.lock().unwrap_or_else(|e| e.into_inner()).insert(domain.to_string(), scheme);
        Ok(scheme)
    }

    /// An oci-client for one pull: its auth store is keyed by registry only,
    /// so a client must never be shared between different credentials.
    pub fn client(&self, scheme: Scheme, read_timeout: Option<Duration>) -> oci_client::Client {
        let config = ClientConfig {
            protocol: match scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            connect_timeout: Some(self.connect_timeout),
            read_timeout,
            ..Default::default()
        };
        oci_client::Client::new(config)
    }
}

enum TlsFailure {
    NotTls,
    Certificate(String),
    Other,
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn classify_tls_failure(err: &reqwest::Error) -> TlsFailure {
    // io::Error hides the error it wraps from source(); look inside it too.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|b| b as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return match tls {
                    rustls::Error::InvalidCertificate(c) => TlsFailure::Certificate(format!("{c:?}")),
                    rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
                    other => TlsFailure::Certificate(other.to_string()),
                };
            }
        }
        cur = e.source();
    }
    let text = chain(err);
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        TlsFailure::NotTls
    } else if text.contains("certificate") {
        TlsFailure::Certificate(text)
    } else {
        TlsFailure::Other
    }
}

/// Credentials for oci-client from a CRI `AuthConfig`.
pub(crate) fn registry_auth(auth: Option<&Auth>) -> Result<RegistryAuth> {
    let Some(auth) = auth else { return Ok(RegistryAuth::Anonymous) };
    if !auth.registry_token.is_empty() {
        return Ok(RegistryAuth::Bearer(auth.registry_token.clone()));
    }
    if !auth.username.is_empty() {
        return Ok(RegistryAuth::Basic(auth.username.clone(), auth.password.clone()));
    }
    if !auth.auth.is_empty() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|_| Error::invalid("auth: the `auth` field is not valid base64"))?;
        let text =
            String::from_utf8(decoded).map_err(|_| Error::invalid("auth: the decoded `auth` field is not UTF-8"))?;
        let (user, pass) = text.split_once(':').ok_or_else(|| {
            Error::invalid("auth: the decoded `auth` field has no ':' between user name and password")
        })?;
        return Ok(RegistryAuth::Basic(user.to_string(), pass.trim_matches('\0').to_string()));
    }
    if !auth.identity_token.is_empty() {
        return Err(Error::unsupported("auth: identity_token (OAuth2 refresh token) is not supported yet"));
    }
    Ok(RegistryAuth::Anonymous)
}

/// Map an oci-client error to our kinds; `what` names the request.
pub(crate) fn map_error(what: &str, err: OciDistributionError) -> Error {
    use OciDistributionError as E;
    let kind = match &err {
        E::RegistryError { envelope, .. } => envelope
            .errors
            .first()
            .map(|e| match e.code {
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound => ErrorKind::NotFound,
                OciErrorCode::Unauthorized => ErrorKind::Unauthenticated,
                OciErrorCode::Denied => ErrorKind::PermissionDenied,
                OciErrorCode::Toomanyrequests => ErrorKind::Unavailable,
                OciErrorCode::NameInvalid | OciErrorCode::ManifestInvalid => ErrorKind::InvalidArgument,
                _ => ErrorKind::Unavailable,
            })
            .unwrap_or(ErrorKind::Unavailable),
        E::ServerError { code, .. } => match code {
            404 => ErrorKind::NotFound,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            _ => ErrorKind::Unavailable,
        },
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => ErrorKind::Unauthenticated,
        E::DigestError(_) => ErrorKind::Integrity,
        E::UnsupportedSchemaVersionError(_) | E::UnsupportedMediaTypeError(_) => ErrorKind::Unsupported,
        E::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        E::RequestError(e) if e.is_timeout() => ErrorKind::Timeout,
        E::RequestError(_) | E::IoError(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Unavailable,
    };
    let detail = match &err {
        E::RequestError(e) => chain(e),
        other => other.to_string(),
    };
    Error::new(kind, format!("{what}: {detail}"))
}

/// Whether an error is worth retrying (network trouble, 429, 5xx).
pub(crate) fn is_transient(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RequestError(e) => !e.is_builder() && !e.is_redirect(),
        OciDistributionError::IoError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Toomanyrequests))
        }
        _ => false,
    }
}

/// A connection to one repository with one set of credentials.
pub(crate) struct Repo {
    client: oci_client::Client,
    auth: RegistryAuth,
    reference: Reference,
}

impl Repo {
    pub fn new(client: oci_client::Client, auth: RegistryAuth, reference: Reference) -> Self {
        Repo { client, auth, reference }
    }

    fn oci_ref(&self, digest: Option<&str>) -> oci_client::Reference {
        let (registry, repo) = (self.reference.domain().to_string(), self.reference.path().to_string());
        match digest.or(self.reference.digest()) {
            Some(d) => oci_client::Reference::with_digest(registry, repo, d.to_string()),
            None => {
                oci_client::Reference::with_tag(registry, repo, self.reference.tag().unwrap_or("latest").to_string())
            }
        }
    }

    /// Fetch a manifest or index (by the reference, or by `digest`), verified
    /// against the digest it was asked by; returns body and digest.
    pub async fn manifest(&self, digest: Option<&str>) -> Result<(bytes::Bytes, String)> {
        let what = match digest {
            Some(d) => format!("{}@{d}", self.reference.repository()),
            None => self.reference.to_string(),
        };
        let oci_ref = self.oci_ref(digest);
        let mut attempt = 0;
        loop {
            match self.client.pull_manifest_raw(&oci_ref, &self.auth, manifest::ACCEPTED).await {
                Ok((body, got)) => {
                    if body.len() > MANIFEST_MAX {
                        return Err(Error::unsupported(format!(
                            "{what}: manifest is {} bytes, more than the {MANIFEST_MAX}-byte limit",
                            body.len()
                        )));
                    }
                    return Ok((body, got));
                }
                Err(e) if attempt < 3 && is_transient(&e) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(map_error(&format!("fetching manifest {what}"), e)),
            }
        }
    }

    /// Open a blob stream starting at `offset`. `Ok((stream, true))` when the
    /// registry honoured the range, `(stream, false)` when it sent it whole.
    pub async fn blob(
        &self,
        digest: &str,
        size: u64,
        offset: u64,
    ) -> Result<(SizedStream, bool), OciDistributionError> {
        let desc =
            oci_client::manifest::OciDescriptor { digest: digest.to_string(), size: size as i64, ..Default::default() };
        self.client.store_auth_if_needed(self.oci_ref(None).resolve_registry(), &self.auth).await;
        match self.client.pull_blob_stream_partial(&self.oci_ref(None), &desc, offset, None).await? {
            BlobResponse::Partial(s) => Ok((s, true)),
            BlobResponse::Full(s) => Ok((s, false)),
        }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * (1u64 << attempt.min(5)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn loopback() {
        for host in
            ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000", "[::1]"]
        {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["docker.io", "10.0.0.1:5000", "quay.io", "localhost.example.com", "[fe80::1]:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
