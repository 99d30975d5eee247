//! The JSON documents C callers pass in: service options and pull credentials.
//! Unknown keys, wrong types and out-of-range numbers are invalid arguments.

use crate::boundary::Failure;
use imgsvc_core::{Auth, Options, RegistryOptions};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The largest timeout accepted, in milliseconds (about 49.7 days): far more
/// than any real use, and small enough that no deadline arithmetic overflows.
const MAX_TIMEOUT_MS: u64 = u32::MAX as u64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsJson {
    pinned: Option<Vec<String>>,
    max_parallel_downloads: Option<u64>,
    progress_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    system_registry_config: Option<bool>,
    registries_conf: Option<String>,
    registries_conf_d: Option<String>,
    auth_file: Option<String>,
    docker_config: Option<String>,
    certs_dir: Option<String>,
    unpack: Option<bool>,
    max_layer_bytes: Option<u64>,
}

/// Options for a store at `root` from `json` (NULL: the defaults).
pub(crate) fn parse_options(root: &str, json: Option<&str>) -> Result<Options, Failure> {
    if root.is_empty() {
        return Err(Failure::invalid("root is empty"));
    }
    let mut options = Options::new(root);
    let Some(json) = json else { return Ok(options) };
    let mut parsed: OptionsJson =
        serde_json::from_str(json).map_err(|e| Failure::invalid(format!("options_json: {e}")))?;
    options.registry = registry_options(&parsed);
    if let Some(pinned) = parsed.pinned.take() {
        options.pinned = pinned;
    }
    if let Some(n) = parsed.max_parallel_downloads {
        // The core checks the range (1..=64); here only what fits in usize.
        options.max_parallel_downloads = usize::try_from(n)
            .map_err(|_| Failure::invalid(format!("options_json: max_parallel_downloads {n} is out of range")))?;
    }
    if let Some(ms) = parsed.progress_timeout_ms {
        options.progress_timeout = timeout("progress_timeout_ms", ms, 0)?;
    }
    if let Some(unpack) = parsed.unpack {
        options.unpack = unpack;
    }
    if let Some(n) = parsed.max_layer_bytes {
        if n == 0 {
            return Err(Failure::invalid("options_json: max_layer_bytes must be at least 1"));
        }
        options.max_layer_bytes = n;
    }
    if let Some(ms) = parsed.connect_timeout_ms {
        // A zero connect timeout would fail every connection.
        options.connect_timeout = timeout("connect_timeout_ms", ms, 1)?;
    }
    Ok(options)
}

/// The registry configuration files: none, or with "system_registry_config"
/// the usual locations; each path key given replaces its file, "" meaning
/// none. Naming a registries.conf without a drop-in directory makes the
/// core use `<registries_conf>.d`, as the CLI does.
fn registry_options(parsed: &OptionsJson) -> RegistryOptions {
    let mut r = if parsed.system_registry_config == Some(true) {
        RegistryOptions::system_defaults()
    } else {
        RegistryOptions::default()
    };
    if parsed.registries_conf.is_some() {
        r.registries_conf_d = None;
    }
    let pick = |given: &Option<String>, current: Option<PathBuf>| match given {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => current,
    };
    r.registries_conf = pick(&parsed.registries_conf, r.registries_conf);
    r.registries_conf_d = pick(&parsed.registries_conf_d, r.registries_conf_d);
    r.auth_file = pick(&parsed.auth_file, r.auth_file);
    r.docker_config = pick(&parsed.docker_config, r.docker_config);
    r.certs_dir = pick(&parsed.certs_dir, r.certs_dir);
    r
}

fn timeout(name: &str, ms: u64, min: u64) -> Result<Duration, Failure> {
    if ms < min || ms > MAX_TIMEOUT_MS {
        return Err(Failure::invalid(format!(
            "options_json: {name} must be between {min} and {MAX_TIMEOUT_MS}, got {ms}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// CRI `AuthConfig` in protojson: camelCase names, and the proto's own
/// snake_case names as protojson parsers also accept them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthJson {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "serverAddress", alias = "server_address")]
    server_address: String,
    #[serde(default, rename = "identityToken", alias = "identity_token")]
    identity_token: String,
    #[serde(default, rename = "registryToken", alias = "registry_token")]
    registry_token: String,
}

/// Credentials from `json`; the message never repeats the input, which may
/// hold secrets.
pub(crate) fn parse_auth(json: &str) -> Result<Auth, Failure> {
    let a: AuthJson = serde_json::from_str(json).map_err(|e| {
        // serde's message quotes unknown field names and types, not values,
        // except for "invalid value" errors; keep only the category then.
        let msg = e.to_string();
        let safe = if msg.contains("unknown field") || msg.contains("invalid type") || msg.contains("missing field") {
            msg
        } else {
            format!("not a JSON object of credentials (line {}, column {})", e.line(), e.column())
        };
        Failure::invalid(format!("auth_json: {safe}"))
    })?;
    Ok(Auth {
        username: a.username,
        password: a.password,
        auth: a.auth,
        server_address: a.server_address,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IMGSVC_INVALID_ARGUMENT;

    #[test]
    fn defaults_and_every_key() {
        let d = parse_options("/tmp/x", None).unwrap();
        assert_eq!(d.max_parallel_downloads, Options::new("/tmp/x").max_parallel_downloads);
        let o = parse_options(
            "/tmp/x",
            Some(r#"{"pinned":["a/b:1","c*"],"max_parallel_downloads":2,"progress_timeout_ms":0,"connect_timeout_ms":1500}"#),
        )
        .unwrap();
        assert_eq!(o.pinned, vec!["a/b:1".to_string(), "c*".to_string()]);
        assert_eq!(o.max_parallel_downloads, 2);
        assert_eq!(o.progress_timeout, Duration::ZERO);
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        assert_eq!(o.root, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(parse_options("/tmp/x", Some("{}")).unwrap().pinned, Vec::<String>::new());
    }

    #[test]
    fn registry_files() {
        // Nothing is read unless named.
        assert_eq!(parse_options("/tmp/x", Some("{}")).unwrap().registry, RegistryOptions::default());
        let o = parse_options(
            "/tmp/x",
            Some(
                r#"{"registries_conf":"/c/registries.conf","registries_conf_d":"/c/more.d","auth_file":"/c/auth.json",
                    "docker_config":"/d/config.json","certs_dir":"/c/certs.d"}"#,
            ),
        )
        .unwrap();
        let want = RegistryOptions {
            registries_conf: Some("/c/registries.conf".into()),
            registries_conf_d: Some("/c/more.d".into()),
            auth_file: Some("/c/auth.json".into()),
            docker_config: Some("/d/config.json".into()),
            certs_dir: Some("/c/certs.d".into()),
        };
        assert_eq!(o.registry, want);
        // "" is none; with the system defaults it turns one file off.
        let all_off = r#"{"system_registry_config":true,"registries_conf":"","registries_conf_d":"",
            "auth_file":"","docker_config":"","certs_dir":""}"#;
        assert_eq!(parse_options("/tmp/x", Some(all_off)).unwrap().registry, RegistryOptions::default());
        let system = parse_options("/tmp/x", Some(r#"{"system_registry_config":true,"auth_file":"/a.json"}"#)).unwrap();
        let defaults = RegistryOptions::system_defaults();
        assert_eq!(system.registry, RegistryOptions { auth_file: Some("/a.json".into()), ..defaults.clone() });
        // A registries.conf named explicitly brings its own .d, not the system's.
        let conf =
            parse_options("/tmp/x", Some(r#"{"system_registry_config":true,"registries_conf":"/r.conf"}"#)).unwrap();
        assert_eq!(conf.registry.registries_conf, Some("/r.conf".into()));
        assert_eq!(conf.registry.registries_conf_d, None);
        assert_eq!(conf.registry.certs_dir, defaults.certs_dir);
    }

    #[test]
    fn bad_options_are_invalid_arguments() {
        for (json, needle) in [
            (r#"{"pinned":[],"colour":"blue"}"#, "unknown field `colour`"),
            (r#"{"max_parallel_downloads":-1}"#, "invalid value"),
            (r#"{"max_parallel_downloads":1.5}"#, "invalid type"),
            (r#"{"progress_timeout_ms":99999999999}"#, "between 0 and"),
            (r#"{"connect_timeout_ms":0}"#, "between 1 and"),
            (r#"{"pinned":"x"}"#, "invalid type"),
            (r#"{"auth_file":3}"#, "invalid type"),
            (r#"{"certs_dir":["/a"]}"#, "invalid type"),
            (r#"{"system_registry_config":"yes"}"#, "invalid type"),
            (r#"{"registries_conf_dir":"/x"}"#, "unknown field `registries_conf_dir`"),
            (r#"[1,2]"#, "invalid type"),
            ("", "EOF"),
            ("{", "EOF"),
        ] {
            let e = parse_options("/tmp/x", Some(json)).unwrap_err();
            assert_eq!(e.code, IMGSVC_INVALID_ARGUMENT, "{json}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
        assert_eq!(parse_options("", None).unwrap_err().code, IMGSVC_INVALID_ARGUMENT);
    }

    #[test]
    fn auth_accepts_both_spellings_and_hides_values() {
        let a = parse_auth(r#"{"username":"u","password":"p","serverAddress":"r:5000","identity_token":"t"}"#).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert_eq!(a.server_address, "r:5000");
        assert_eq!(a.identity_token, "t");
        let e = parse_auth(r#"{"user":"u"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `user`"), "{}", e.message);
        let e = parse_auth(r#"{"password":"hunter2"#).unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }
}
