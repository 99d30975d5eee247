//! Image references: parsing and Docker normalization.
//!
//! `busybox` becomes `docker.io/library/busybox:latest`; `host:port/repo`
//! keeps its registry; `name:tag@digest` keeps only the digest, as both CRI
//! runtimes do. The grammar follows the distribution reference grammar; we
//! parse the raw string ourselves so we still know whether the user wrote a
//! short name (registries.conf search needs that).

use crate::error::{Error, Result};
use std::fmt;

/// The registry that short names resolve to.
pub const DOCKER_HUB: &str = "docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
    /// The name as written, without registry, when the input was short.
    short: Option<String>,
}

impl Reference {
    /// Parse and normalize `input`. A name with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("invalid image reference {}: {why}", clipped(input)));
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(&format!("it contains the character {c:?}")));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(|why| bad(&why))?)),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/', so `host:5000/repo` has none.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|why| bad(&why))?;
        }
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a 64-character hexadecimal string is an image id, not a name"));
        }
        let (domain, path, short) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_domain(first) => (first.to_string(), remainder.to_string(), None),
            _ => (DOCKER_HUB.to_string(), name.to_string(), Some(name.to_string())),
        };
        check_domain(&domain).map_err(|why| bad(&why))?;
        let domain = if domain == "index.docker.io" { DOCKER_HUB.to_string() } else { domain };
        let path = if domain == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        for component in path.split('/') {
            check_path_component(component).map_err(|why| bad(&why))?;
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(bad(&format!("the name is longer than {NAME_MAX} characters")));
        }
        // With a digest the tag is dropped: the digest alone says what to fetch.
        let tag = match (&digest, tag) {
            (Some(_), _) => None,
            (None, Some(t)) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference { domain, path, tag, digest, short })
    }

    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The tag, if the reference names one (never together with a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest `sha256:<hex>`, if the reference is by digest.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// Whether the input named no registry (so registries.conf search may apply).
    pub fn is_short(&self) -> bool {
        self.short.is_some()
    }
    /// The name as written (no registry, no tag) when the input was short.
    pub fn short_name(&self) -> Option<&str> {
        self.short.as_deref()
    }
    /// This short name qualified with `registry` (a registries.conf search
    /// entry or an alias target), keeping the tag or digest.
    pub fn qualified(&self, target: &str) -> Result<Reference> {
        let mut s = target.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        Reference::parse(&s)
    }
    /// The same tag or digest in another repository (a mirror or a
    /// registries.conf `location`).
    pub fn relocated(&self, repository: &str) -> Result<Reference> {
        let mut r = Reference::parse(repository)?;
        r.tag = self.tag.clone();
        r.digest = self.digest.clone();
        r.short = None;
        Ok(r)
    }
    /// `domain/path`, the repository name used in repo tags and repo digests.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
    /// `repository@digest` for a given digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{}", self.repository(), digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `input` quoted for a message, cut short when long (a caller may pass megabytes).
pub(crate) fn clipped(input: &str) -> String {
    const MAX: usize = 256;
    match input.char_indices().nth(MAX) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &input[..cut], input.len()),
    }
}

/// As in containers/image: a first component is a registry only if it has a
/// '.' or ':' or is `localhost` (so `UPPER/app` is an invalid docker.io name).
fn looks_like_domain(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// Validate `sha256:<64 hex>`; other algorithms are not stored by us.
pub(crate) fn parse_digest(s: &str) -> std::result::Result<String, String> {
    let (alg, hex) = s.split_once(':').ok_or_else(|| format!("digest {s:?} has no algorithm"))?;
    if alg != "sha256" {
        return Err(format!("digest algorithm {alg:?} is not supported (only sha256)"));
    }
    if hex.len() != 64 {
        return Err(format!("sha256 digest must have 64 hex characters, got {}", hex.len()));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("digest must be lowercase hexadecimal".to_string());
    }
    Ok(s.to_string())
}

fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let ok_first = tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_rest = tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if tag.is_empty() || !ok_first || !ok_rest {
        return Err(format!("tag {tag:?} is not valid"));
    }
    if tag.len() > TAG_MAX {
        return Err(format!("tag is longer than {TAG_MAX} characters"));
    }
    Ok(())
}

fn check_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // Bracketed IPv6: [::1]:5000
        let (addr, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} is not an IPv6 address"));
        }
        (None, after.strip_prefix(':').map(Some).unwrap_or(if after.is_empty() { None } else { Some("x") }))
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("registry host {host:?} is not valid"));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("registry port {port:?} is not valid"));
        }
    }
    Ok(())
}

fn check_path_component(c: &str) -> std::result::Result<(), String> {
    let why = || {
        if c.bytes().any(|b| b.is_ascii_uppercase()) {
            format!("repository name component {c:?} must be lowercase")
        } else {
            format!("repository name component {c:?} is not valid")
        }
    };
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(why());
    }
    // Separators: one '.', one or two '_', or any number of '-', between alphanumerics.
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_digit() || ch.is_ascii_lowercase() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || (!sep.is_empty() && sep.bytes().all(|x| x == b'-'));
        if !ok {
            return Err(why());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("quay.io/org/app:1.0", "quay.io/org/app:1.0"),
            ("127.0.0.1:5000/fixture/debian:v1", "127.0.0.1:5000/fixture/debian:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
            ("[::1]:5000/app:v2", "[::1]:5000/app:v2"),
            ("myreg:5000", "docker.io/library/myreg:5000"),
            ("a__b/c--d/e.f:T_1.x-y", "docker.io/a__b/c--d/e.f:T_1.x-y"),
        ];
        for (input, want) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "input {input}");
        }
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag(), None);
        let r = Reference::parse(&format!("127.0.0.1:5000/app:v1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/app@{D}"));
        assert!(Reference::parse("busybox").unwrap().is_short());
        assert!(!Reference::parse("quay.io/a").unwrap().is_short());
    }

    #[test]
    fn rejects() {
        let long = format!("{}/x", "a".repeat(300));
        let longtag = format!("app:{}", "t".repeat(129));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("Busybox".into(), "lowercase"),
            ("docker.io/Library/busybox".into(), "lowercase"),
            ("UPPER/case".into(), "lowercase"),
            ("busy box".into(), "character"),
            ("busybox\n".into(), "character"),
            ("busybox@sha256:abc".into(), "64 hex"),
            (format!("busybox@{}", &D[..70]), "64 hex"),
            ("busybox@md5:0123".into(), "not supported"),
            (format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")), "lowercase hex"),
            (long, "longer than 255"),
            (longtag, "longer than 128"),
            ("app:".into(), "tag"),
            ("app:-x".into(), "tag"),
            ("a//b".into(), "not valid"),
            ("-a/b".into(), "not valid"),
            ("a./b".into(), "not valid"),
            ("host:port/a".into(), "port"),
            ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(), "image id"),
            ("a/b___c".into(), "not valid"),
            (":tag".into(), "empty"),
        ];
        for (input, why) in cases {
            let err = Reference::parse(&input).expect_err(&input);
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
            assert!(err.message().contains(why), "{input:?}: {err} (want {why:?})");
        }
    }
}
