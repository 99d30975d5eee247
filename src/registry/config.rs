//! registries.conf (containers-registries.conf v2): short-name search and
//! aliases, and per-registry rules (location, insecure, blocked, mirrors).
//!
//! The main file is read first, then the drop-ins of `registries.conf.d/` in
//! name order; a later file overrides the search list and the mode, merges
//! aliases (an empty value erases one) and replaces rules with the same prefix.

use crate::error::{Error, Result};
use crate::reference::Reference;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a short name with several candidates is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortNameMode {
    /// Several candidates are an error (a library never prompts).
    Enforcing,
    /// Try every candidate in order (the default).
    #[default]
    Permissive,
    /// Try every candidate in order.
    Disabled,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct File {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<String>,
    aliases: Option<BTreeMap<String, String>>,
    #[serde(default)]
    registry: Vec<RuleFile>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "kebab-case")]
struct RuleFile {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorFile>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "kebab-case")]
struct MirrorFile {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// One `[[registry]]` table, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    /// Used only for pulls by digest.
    pub digest_only: bool,
}

/// Where to fetch a reference from, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The reference at this endpoint (the mirror's or location's name).
    pub reference: Reference,
    pub insecure: bool,
    pub mirror: bool,
}

/// Everything read from registries.conf and its drop-ins.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConf {
    pub search: Vec<String>,
    pub mode: ShortNameMode,
    pub aliases: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    /// The files read, for error messages.
    pub files: Vec<PathBuf>,
}

impl RegistriesConf {
    /// Read `main` (if given and present) and the drop-ins in `dropins`.
    pub fn load(main: Option<&Path>, dropins: Option<&Path>) -> Result<Option<RegistriesConf>> {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(m) = main {
            if m.exists() {
                files.push(m.to_path_buf());
            } else {
                return Err(Error::invalid(format!("registries.conf {} does not exist", m.display())));
            }
        }
        if let Some(d) = dropins {
            if let Ok(rd) = std::fs::read_dir(d) {
                let mut more: Vec<PathBuf> =
                    rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
                more.sort();
                files.extend(more);
            }
        }
        if files.is_empty() {
            return Ok(None);
        }
        let mut conf = RegistriesConf::default();
        for path in &files {
            let text = read_config_file(path)?;
            let file: File = toml::from_str(&text).map_err(|e| {
                let line = e.span().map(|s| text[..s.start].lines().count().max(1));
                let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
                Error::invalid(format!("{}:{at}: {}", path.display(), e.message()))
            })?;
            conf.merge(file, path)?;
        }
        conf.files = files;
        Ok(Some(conf))
    }

    fn merge(&mut self, file: File, path: &Path) -> Result<()> {
        if let Some(s) = file.unqualified_search_registries {
            self.search = s;
        }
        if let Some(m) = file.short_name_mode {
            self.mode = match m.as_str() {
                "enforcing" => ShortNameMode::Enforcing,
                "permissive" => ShortNameMode::Permissive,
                "disabled" => ShortNameMode::Disabled,
                other => {
                    return Err(Error::invalid(format!(
                        "{}: short-name-mode {other:?} is not one of enforcing, permissive, disabled",
                        path.display()
                    )))
                }
            };
        }
        for (name, value) in file.aliases.unwrap_or_default() {
            if value.is_empty() {
                self.aliases.remove(&name);
            } else {
                self.aliases.insert(name, value);
            }
        }
        for r in file.registry {
            let prefix = r.prefix.clone().or_else(|| r.location.clone()).ok_or_else(|| {
                Error::invalid(format!("{}: a [[registry]] needs a prefix or a location", path.display()))
            })?;
            let location = r.location.clone().unwrap_or_else(|| prefix.clone());
            let rule = Rule {
                prefix: prefix.clone(),
                location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors: r
                    .mirror
                    .iter()
                    .map(|m| Mirror {
                        location: m.location.clone(),
                        insecure: m.insecure,
                        digest_only: r.mirror_by_digest_only || m.pull_from_mirror.as_deref() == Some("digest-only"),
                    })
                    .collect(),
            };
            self.rules.retain(|x| x.prefix != prefix);
            self.rules.push(rule);
        }
        Ok(())
    }

    /// The candidates a (possibly short) reference stands for, in order.
    pub fn candidates(&self, r: &Reference) -> Result<Vec<Reference>> {
        let Some(short) = r.short_name() else { return Ok(vec![r.clone()]) };
        if let Some(target) = self.aliases.get(short) {
            return Ok(vec![r.qualified(target)?]);
        }
        if self.search.is_empty() {
            return Err(Error::invalid(format!(
                "short name {short:?} did not resolve to an alias and no unqualified-search-registries are defined in {}",
                self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        let candidates: Vec<Reference> =
            self.search.iter().map(|reg| r.qualified(&format!("{reg}/{short}"))).collect::<Result<_>>()?;
        if self.mode == ShortNameMode::Enforcing && candidates.len() > 1 {
            return Err(Error::invalid(format!(
                "short name {short:?} is ambiguous in enforcing mode; use one of: {}",
                candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(candidates)
    }

    /// The rule with the longest prefix matching `r`, if any.
    pub fn rule_for(&self, r: &Reference) -> Option<&Rule> {
        let full = r.repository();
        self.rules
            .iter()
            .filter(|rule| prefix_matches(&rule.prefix, r.domain(), &full))
            .max_by_key(|rule| rule.prefix.len())
    }
}

fn prefix_matches(prefix: &str, domain: &str, repository: &str) -> bool {
    if let Some(suffix) = prefix.strip_prefix("*.") {
        return domain.ends_with(&format!(".{suffix}"));
    }
    repository == prefix || repository.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The endpoints to try for `r`: mirrors in order, then the origin.
pub fn sources(conf: Option<&RegistriesConf>, r: &Reference) -> Result<Vec<Source>> {
    let origin = Source { reference: r.clone(), insecure: false, mirror: false };
    let Some(rule) = conf.and_then(|c| c.rule_for(r)) else { return Ok(vec![origin]) };
    if rule.blocked {
        return Err(Error::new(
            crate::ErrorKind::PermissionDenied,
            format!("registry {} is blocked by registries.conf (prefix {:?})", r.domain(), rule.prefix),
        ));
    }
    let full = r.repository();
    // The part after the prefix (wildcard prefixes replace nothing).
    let rest = if rule.prefix.starts_with("*.") { String::new() } else { full[rule.prefix.len()..].to_string() };
    let relocate = |location: &str| -> Result<Reference> {
        if rule.prefix.starts_with("*.") {
            Ok(r.clone())
        } else {
            r.relocated(&format!("{location}{rest}"))
        }
    };
    let mut out = Vec::new();
    for m in &rule.mirrors {
        if m.digest_only && r.digest().is_none() {
            continue;
        }
        out.push(Source { reference: relocate(&m.location)?, insecure: m.insecure, mirror: true });
    }
    out.push(Source { reference: relocate(&rule.location)?, insecure: rule.insecure, mirror: false });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registries.conf");
        std::fs::write(&p, text).unwrap();
        RegistriesConf::load(Some(&p), None).unwrap().unwrap()
    }

    #[test]
    fn short_names() {
        let c = conf(
            r#"
unqualified-search-registries = ["quay.io", "docker.io"]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#,
        );
        let names = |s: &str| -> Vec<String> {
            c.candidates(&Reference::parse(s).unwrap()).unwrap().iter().map(|r| r.to_string()).collect()
        };
        assert_eq!(names("busybox"), vec!["quay.io/busybox:latest", "docker.io/library/busybox:latest"]);
        assert_eq!(names("fedora:39"), vec!["registry.fedoraproject.org/fedora:39"]);
        assert_eq!(names("quay.io/a/b"), vec!["quay.io/a/b:latest"]);
        let enforcing = conf("unqualified-search-registries = [\"a.io\", \"b.io\"]\nshort-name-mode = \"enforcing\"\n");
        let err = enforcing.candidates(&Reference::parse("app").unwrap()).unwrap_err();
        assert!(err.message().contains("a.io/app:latest") && err.message().contains("b.io/app:latest"), "{err}");
        let none = conf("[aliases]\n\"x\" = \"example.com/x\"\n");
        assert!(none
            .candidates(&Reference::parse("app").unwrap())
            .unwrap_err()
            .message()
            .contains("no unqualified-search"));
    }

    #[test]
    fn rules_mirrors_and_blocking() {
        let c = conf(
            r#"
[[registry]]
prefix = "example.com/team"
location = "internal.example.com:5000/mirror/team"
[[registry.mirror]]
location = "mirror-a.local"
[[registry.mirror]]
location = "mirror-b.local/cache"
insecure = true

[[registry]]
location = "bad.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
"#,
        );
        let r = Reference::parse("example.com/team/app:1").unwrap();
        let s = sources(Some(&c), &r).unwrap();
        let got: Vec<(String, bool, bool)> =
            s.iter().map(|s| (s.reference.to_string(), s.insecure, s.mirror)).collect();
        assert_eq!(
            got,
            vec![
                ("mirror-a.local/app:1".into(), false, true),
                ("mirror-b.local/cache/app:1".into(), true, true),
                ("internal.example.com:5000/mirror/team/app:1".into(), false, false),
            ]
        );
        // A prefix matches whole path components only.
        assert_eq!(sources(Some(&c), &Reference::parse("example.com/teamx/app").unwrap()).unwrap().len(), 1);
        let err = sources(Some(&c), &Reference::parse("bad.example.com/x").unwrap()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::PermissionDenied);
        let w = sources(Some(&c), &Reference::parse("reg.corp.example/x").unwrap()).unwrap();
        assert!(w[0].insecure && w[0].reference.to_string() == "reg.corp.example/x:latest");
    }

    #[test]
    fn dropins_override_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(
            &main,
            "unqualified-search-registries = [\"a.io\"]\n[aliases]\n\"x\" = \"a.io/x\"\n\"y\" = \"a.io/y\"\n",
        )
        .unwrap();
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("10-b.conf"), "unqualified-search-registries = [\"b.io\"]\n[aliases]\n\"y\" = \"\"\n")
            .unwrap();
        let c = RegistriesConf::load(Some(&main), Some(&d)).unwrap().unwrap();
        assert_eq!(c.search, vec!["b.io"]);
        assert!(c.aliases.contains_key("x") && !c.aliases.contains_key("y"));
        std::fs::write(d.join("20-bad.conf"), "# comment\n\nunqualified-search-registries = [\"a\"\n").unwrap();
        let err = RegistriesConf::load(Some(&main), Some(&d)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains("20-bad.conf") && err.message().contains("line 3"), "{err}");
    }
}

/// Largest configuration, credentials or certificate file we read: far
/// more than any real one, and a bound when a path names /dev/zero.
pub(crate) const CONFIG_FILE_MAX: u64 = 4 << 20;

/// A configuration file as text, refusing one over [`CONFIG_FILE_MAX`].
pub(crate) fn read_config_file(path: &Path) -> Result<String> {
    let bytes = read_config_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| Error::invalid(format!("{}: not UTF-8 text", path.display())))
}

/// A configuration file's bytes, refusing one over [`CONFIG_FILE_MAX`].
pub(crate) fn read_config_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > CONFIG_FILE_MAX {
        return Err(Error::invalid(format!("{}: larger than {CONFIG_FILE_MAX} bytes", path.display())));
    }
    Ok(bytes)
}
