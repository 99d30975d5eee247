//! Talking to registries: which endpoints to try (registries.conf), which
//! scheme (HTTPS, plain HTTP only for loopback or `insecure`), which
//! credentials (the pull's own, then auth.json / config.json), and the
//! manifest and blob requests themselves. The only module that speaks HTTP.
//!
//! Requests go through reqwest (see `transport`), because oci-client has no
//! client certificates, redirect policy, re-challenge on a 401 or scopes from
//! a challenge; oci-client's types parse the registries' error envelopes.

pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod transport;

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{self, MANIFEST_MAX};
use crate::reference::Reference;
use crate::types::RegistryOptions;
use crate::Auth;
use config::{RegistriesConf, Source};
use credentials::CredentialFiles;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use transport::{TlsFiles, Transport};

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
enum Scheme {
    Https,
    Http,
}

/// Registry configuration and per-host state shared by all pulls.
pub(crate) struct Registries {
    conf: Option<RegistriesConf>,
    credentials: CredentialFiles,
    certs_dir: Option<PathBuf>,
    connect_timeout: Duration,
    schemes: Mutex<HashMap<(String, bool), Scheme>>,
}

impl Registries {
    pub fn new(options: &RegistryOptions, connect_timeout: Duration) -> Result<Self> {
        let dropins = options
            .registries_conf_d
            .clone()
            .or_else(|| options.registries_conf.as_ref().map(|p| PathBuf::from(format!("{}.d", p.display()))));
        let conf = RegistriesConf::load(options.registries_conf.as_deref(), dropins.as_deref())?;
        let files = [options.auth_file.clone(), options.docker_config.clone()].into_iter().flatten().collect();
        Ok(Registries {
            conf,
            credentials: CredentialFiles { files },
            certs_dir: options.certs_dir.clone(),
            connect_timeout,
            schemes: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a registries.conf was read (short names then search it).
    pub fn has_conf(&self) -> bool {
        self.conf.is_some()
    }

    /// What a (possibly short) name stands for, in the order to try.
    pub fn candidates(&self, r: &Reference) -> Result<Vec<Reference>> {
        match &self.conf {
            Some(c) => c.candidates(r),
            None => Ok(vec![r.clone()]),
        }
    }

    /// The endpoints to fetch `r` from: mirrors, then the origin.
    pub fn sources(&self, r: &Reference) -> Result<Vec<Source>> {
        config::sources(self.conf.as_ref(), r)
    }

    /// A connection to the repository of `source`, with the right credentials.
    pub async fn connect(&self, source: &Source, auth: Option<&Auth>) -> Result<Repo> {
        let r = &source.reference;
        let domain = r.domain();
        let tls = TlsFiles::load(self.certs_dir.as_deref(), domain)?;
        let http = transport::client(tls, source.insecure, self.connect_timeout)?;
        let scheme = self.scheme(&http, domain, source.insecure).await?;
        let credential = match credentials::from_cri(auth, domain)? {
            Some(c) => c,
            None => self.credentials.lookup(domain, &r.repository())?,
        };
        let base = match scheme {
            Scheme::Https => format!("https://{}", endpoint_host(domain)),
            Scheme::Http => format!("http://{}", endpoint_host(domain)),
        };
        Ok(Repo { transport: Transport::new(http, base, credential), reference: r.clone() })
    }

    /// HTTPS with verification everywhere; plain HTTP on loopback or for an
    /// `insecure` registry, and only when the server does not speak TLS.
    async fn scheme(&self, http: &reqwest::Client, domain: &str, insecure: bool) -> Result<Scheme> {
        if !is_loopback(domain) && !insecure {
            return Ok(Scheme::Https);
        }
        let key = (domain.to_string(), insecure);
        if let Some(s) = self.schemes.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*s);
        }
        let probe = http
            .get(format!("https://{}/v2/", endpoint_host(domain)))
            .timeout(self.connect_timeout + Duration::from_secs(10));
        let scheme = match probe.send().await {
            Ok(_) => Scheme::Https,
            Err(err) => match classify_tls_failure(&err) {
                TlsFailure::NotTls => Scheme::Http,
                TlsFailure::Certificate(why) => {
                    return Err(Error::unavailable(format!(
                        "registry {domain}: TLS certificate verification failed ({why}); refusing to fall back to plain HTTP"
                    )))
                }
                TlsFailure::Other => return Err(transport::transport_error(&format!("https://{domain}/v2/"), &err)),
            },
        };
        self.schemes.lock().unwrap_or_else(|e| e.into_inner()).insert(key, scheme);
        Ok(scheme)
    }
}

/// `docker.io` is served at `registry-1.docker.io`.
fn endpoint_host(domain: &str) -> &str {
    if domain == crate::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        domain
    }
}

enum TlsFailure {
    NotTls,
    Certificate(String),
    Other,
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
    let text = transport::transport_error("", err).message().to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        TlsFailure::NotTls
    } else if text.contains("certificate") {
        TlsFailure::Certificate(text)
    } else {
        TlsFailure::Other
    }
}

/// The error for a non-success response, from its status and the registry's
/// JSON error envelope.
async fn status_error(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let retry_after =
        resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let envelope: Option<oci_client::errors::OciEnvelope> =
        serde_json::from_slice(&body[..body.len().min(64 << 10)]).ok();
    let detail = envelope
        .as_ref()
        .and_then(|e| e.errors.first())
        .map(|e| format!("{:?}: {}", e.code, e.message))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    use oci_client::errors::OciErrorCode as C;
    let code = envelope.as_ref().and_then(|e| e.errors.first()).map(|e| &e.code);
    let kind = match (status.as_u16(), code) {
        (_, Some(C::Denied)) | (403, _) => ErrorKind::PermissionDenied,
        (401, _) | (_, Some(C::Unauthorized)) => ErrorKind::Unauthenticated,
        (404, _) | (_, Some(C::ManifestUnknown | C::NameUnknown | C::BlobUnknown)) => ErrorKind::NotFound,
        (400, Some(C::NameInvalid | C::TagInvalid)) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Unavailable,
    };
    let mut msg = format!("{what}: registry answered {status} ({detail})");
    if let Some(ra) = retry_after {
        msg.push_str(&format!("; retry after {ra}"));
    }
    Error::new(kind, msg)
}

/// Transient: worth another try after a pause.
pub(crate) fn is_transient(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable) && !e.message().contains("certificate")
}

/// The pause before retry `attempt`, honouring a `Retry-After` in the error.
pub(crate) fn backoff(attempt: u32, err: Option<&Error>) -> Duration {
    if let Some(secs) =
        err.and_then(|e| e.message().split("retry after ").nth(1)).and_then(|s| s.trim().parse::<u64>().ok())
    {
        return Duration::from_secs(secs.min(30));
    }
    Duration::from_millis(200 * (1u64 << attempt.min(5)))
}

/// A connection to one repository at one endpoint.
pub(crate) struct Repo {
    transport: Transport,
    reference: Reference,
}

/// A blob body being received.
pub(crate) struct BlobStream {
    pub stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// The registry honoured our `Range` (so bytes start at the offset asked).
    pub ranged: bool,
}

impl Repo {
    fn scope(&self) -> String {
        format!("repository:{}:pull", self.reference.path())
    }

    /// Fetch a manifest or index by the reference (or by `digest`), at most
    /// 4 MiB, verified against the digest it was asked by; returns the body
    /// and its digest. Transient failures are retried.
    pub async fn manifest(&self, digest: Option<&str>) -> Result<(bytes::Bytes, String)> {
        let r = &self.reference;
        let wanted = digest.or(r.digest());
        let key = wanted.map(str::to_string).or_else(|| r.tag().map(str::to_string)).unwrap_or_else(|| "latest".into());
        let what = match wanted {
            Some(d) => format!("{}@{d}", r.repository()),
            None => r.to_string(),
        };
        let accept = manifest::ACCEPTED.join(", ");
        let mut attempt = 0;
        loop {
            let result = self.manifest_once(&what, &key, &accept, wanted).await;
            match result {
                Err(e) if is_transient(&e) && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, Some(&e))).await;
                }
                other => return other,
            }
        }
    }

    async fn manifest_once(
        &self,
        what: &str,
        key: &str,
        accept: &str,
        wanted: Option<&str>,
    ) -> Result<(bytes::Bytes, String)> {
        let path = format!("{}/manifests/{key}", self.reference.path());
        let resp = self.transport.get(&path, &self.scope(), Some(accept), None).await?;
        if !resp.status().is_success() {
            return Err(status_error(&format!("fetching manifest {what}"), resp).await);
        }
        if resp.content_length().is_some_and(|n| n > MANIFEST_MAX as u64) {
            return Err(Error::unsupported(format!("{what}: manifest is larger than the {MANIFEST_MAX}-byte limit")));
        }
        let header_digest =
            resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport::transport_error(what, &e))?;
            if body.len() + chunk.len() > MANIFEST_MAX {
                return Err(Error::unsupported(format!(
                    "{what}: manifest is larger than the {MANIFEST_MAX}-byte limit"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(w) = wanted {
            if w != digest {
                return Err(Error::integrity(format!("{what}: the registry sent a manifest whose digest is {digest}")));
            }
        } else if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
            if h != digest {
                return Err(Error::integrity(format!(
                    "{what}: manifest digest {digest} does not match the registry's Docker-Content-Digest {h}"
                )));
            }
        }
        Ok((bytes::Bytes::from(body), digest))
    }

    /// Open a blob at `offset`.
    pub async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream> {
        let path = format!("{}/blobs/{digest}", self.reference.path());
        let resp = self.transport.get(&path, &self.scope(), None, Some(offset)).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(&format!("fetching blob {digest}"), resp).await);
        }
        let ranged = status == reqwest::StatusCode::PARTIAL_CONTENT;
        Ok(BlobStream { stream: resp.bytes_stream().boxed(), ranged })
    }
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
