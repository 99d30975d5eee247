//! Credentials from the files people already have: containers' auth.json and
//! Docker's config.json (`auths` with `auth` or `username`/`password`,
//! `identitytoken`, per-repository keys, `credHelpers` and `credsStore`).

use crate::error::{Error, ErrorKind, Result};
use crate::Auth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What we authenticate with at one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) enum Credential {
    #[default]
    Anonymous,
    Basic(String, String),
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    IdentityToken(String),
    /// A registry bearer token, sent as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Credential::Anonymous => "Anonymous",
            Credential::Basic(..) => "Basic(..)",
            Credential::IdentityToken(_) => "IdentityToken(..)",
            Credential::RegistryToken(_) => "RegistryToken(..)",
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
}

/// The credential files to consult, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialFiles {
    pub files: Vec<PathBuf>,
}

fn decode_basic(auth: &str, what: &str) -> Result<(String, String)> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| Error::invalid(format!("{what}: the `auth` field is not valid base64")))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| Error::invalid(format!("{what}: the decoded `auth` field is not UTF-8")))?;
    let (user, pass) = text.split_once(':').ok_or_else(|| {
        Error::invalid(format!("{what}: the decoded `auth` field has no ':' between user name and password"))
    })?;
    Ok((user.to_string(), pass.trim_matches('\0').to_string()))
}

/// The credential a CRI `AuthConfig` gives for `domain`, or `None` when it
/// says nothing (empty) or names another server.
pub(crate) fn from_cri(auth: Option<&Auth>, domain: &str) -> Result<Option<Credential>> {
    let Some(a) = auth else { return Ok(None) };
    if !a.server_address.is_empty() && !server_matches(&a.server_address, domain) {
        return Ok(None);
    }
    if !a.registry_token.is_empty() {
        return Ok(Some(Credential::RegistryToken(a.registry_token.clone())));
    }
    if !a.username.is_empty() {
        return Ok(Some(Credential::Basic(a.username.clone(), a.password.clone())));
    }
    if !a.auth.is_empty() {
        let (u, p) = decode_basic(&a.auth, "auth")?;
        return Ok(Some(Credential::Basic(u, p)));
    }
    if !a.identity_token.is_empty() {
        return Ok(Some(Credential::IdentityToken(a.identity_token.clone())));
    }
    Ok(None)
}

/// Reject a malformed CRI `AuthConfig` before any work is done.
pub(crate) fn check_cri(auth: Option<&Auth>) -> Result<()> {
    match auth {
        Some(a) if !a.auth.is_empty() => decode_basic(&a.auth, "auth").map(|_| ()),
        _ => Ok(()),
    }
}

/// The host part of a server address such as `https://host:5000/v1/` or `host:5000`.
fn server_host(s: &str) -> &str {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.split('/').next().unwrap_or(s)
}

fn server_matches(server: &str, domain: &str) -> bool {
    let host = server_host(server);
    host == domain || (domain == "docker.io" && matches!(host, "index.docker.io" | "registry-1.docker.io"))
}

impl CredentialFiles {
    /// The credential for `repository` (`domain/path`) from the first file
    /// that has one; the most specific `auths` key wins inside a file.
    pub fn lookup(&self, domain: &str, repository: &str) -> Result<Credential> {
        for path in &self.files {
            let text = match super::config::read_config_file(path) {
                Ok(text) => text,
                Err(e) if e.kind() == crate::ErrorKind::InvalidArgument => return Err(e),
                Err(_) => continue, // an absent file holds no credentials
            };
            let file: AuthFile = serde_json::from_str(&text)
                .map_err(|e| Error::invalid(format!("{}: not a valid credentials file: {e}", path.display())))?;
            if let Some(helper) = file.cred_helpers.get(domain) {
                if let Some(c) = run_helper(helper, domain)? {
                    return Ok(c);
                }
            }
            if let Some(c) = lookup_auths(&file.auths, domain, repository, path)? {
                return Ok(c);
            }
            if let Some(store) = &file.creds_store {
                if let Some(c) = run_helper(store, domain)? {
                    return Ok(c);
                }
            }
        }
        Ok(Credential::Anonymous)
    }
}

fn normalize_key(key: &str) -> String {
    let k = key.split_once("://").map_or(key, |(_, rest)| rest).trim_end_matches('/');
    let k = k.strip_suffix("/v1").or_else(|| k.strip_suffix("/v2")).unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.strip_prefix("index.docker.io/").map(|r| format!("docker.io/{r}")).unwrap_or_else(|| k.to_string()),
    }
}

fn lookup_auths(
    auths: &BTreeMap<String, AuthEntry>,
    domain: &str,
    repository: &str,
    path: &Path,
) -> Result<Option<Credential>> {
    // Most specific first: domain/a/b, domain/a, domain.
    let mut best: Option<(&AuthEntry, usize)> = None;
    for (key, entry) in auths {
        let k = normalize_key(key);
        let matches = k == domain || repository == k || repository.starts_with(&format!("{k}/"));
        if matches && best.is_none_or(|(_, len)| k.len() > len) {
            best = Some((entry, k.len()));
        }
    }
    let Some((e, _)) = best else { return Ok(None) };
    let what = format!("{} (entry for {domain})", path.display());
    if !e.identitytoken.is_empty() {
        return Ok(Some(Credential::IdentityToken(e.identitytoken.clone())));
    }
    if !e.auth.is_empty() {
        let (u, p) = decode_basic(&e.auth, &what)?;
        return Ok(Some(Credential::Basic(u, p)));
    }
    if !e.username.is_empty() {
        return Ok(Some(Credential::Basic(e.username.clone(), e.password.clone())));
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// `docker-credential-<name> get`, with the server on stdin.
fn run_helper(name: &str, domain: &str) -> Result<Option<Credential>> {
    use std::io::Write;
    let program = format!("docker-credential-{name}");
    let server = if domain == "docker.io" { "https://index.docker.io/v1/".to_string() } else { domain.to_string() };
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(ErrorKind::Unauthenticated, format!("credential helper {program} could not run: {e}"))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::io(format!("running {program}"), e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        if msg.to_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!("credential helper {program} failed: {}", msg.trim()),
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::new(ErrorKind::Unauthenticated, format!("credential helper {program} answered badly: {e}"))
    })?;
    if answer.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(answer.secret)));
    }
    Ok(Some(Credential::Basic(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keys_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.json");
        // alice:secret, and a more specific key for one repository.
        std::fs::write(
            &auth,
            r#"{"auths": {
                "reg.example:5000": {"auth": "YWxpY2U6c2VjcmV0"},
                "reg.example:5000/team/app": {"username": "bob", "password": "pw"},
                "https://index.docker.io/v1/": {"identitytoken": "refresh-me"}
            }}"#,
        )
        .unwrap();
        let files = CredentialFiles { files: vec![dir.path().join("missing.json"), auth.clone()] };
        assert_eq!(
            files.lookup("reg.example:5000", "reg.example:5000/other").unwrap(),
            Credential::Basic("alice".into(), "secret".into())
        );
        assert_eq!(
            files.lookup("reg.example:5000", "reg.example:5000/team/app").unwrap(),
            Credential::Basic("bob".into(), "pw".into())
        );
        assert_eq!(
            files.lookup("docker.io", "docker.io/library/busybox").unwrap(),
            Credential::IdentityToken("refresh-me".into())
        );
        assert_eq!(files.lookup("quay.io", "quay.io/x").unwrap(), Credential::Anonymous);

        // A credential helper on PATH answers for its registry.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-imgsvctest");
        std::fs::write(&helper, "#!/bin/sh\nread server\n[ \"$server\" = helper.example ] || { echo 'credentials not found in native keychain'; exit 1; }\necho '{\"ServerURL\":\"helper.example\",\"Username\":\"carol\",\"Secret\":\"s3\"}'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, r#"{"credHelpers": {"helper.example": "imgsvctest"}, "credsStore": "imgsvctest"}"#)
            .unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        // Only credential helpers look at PATH in this test binary.
        std::env::set_var("PATH", path);
        let files = CredentialFiles { files: vec![cfg] };
        assert_eq!(
            files.lookup("helper.example", "helper.example/x").unwrap(),
            Credential::Basic("carol".into(), "s3".into())
        );
        assert_eq!(files.lookup("other.example", "other.example/x").unwrap(), Credential::Anonymous);
    }

    #[test]
    fn cri_auth_config() {
        let a = Auth { auth: "dTpw".into(), server_address: "https://reg.example:5000".into(), ..Default::default() };
        assert_eq!(from_cri(Some(&a), "reg.example:5000").unwrap(), Some(Credential::Basic("u".into(), "p".into())));
        assert_eq!(from_cri(Some(&a), "other:5000").unwrap(), None, "server_address names another registry");
        let bad = Auth { auth: "bm9jb2xvbg==".into(), ..Default::default() };
        assert_eq!(from_cri(Some(&bad), "x").unwrap_err().kind(), ErrorKind::InvalidArgument);
        let t = Auth { registry_token: "tok".into(), username: "u".into(), ..Default::default() };
        assert_eq!(from_cri(Some(&t), "x").unwrap(), Some(Credential::RegistryToken("tok".into())));
        assert_eq!(from_cri(Some(&Auth::default()), "x").unwrap(), None);
    }
}
