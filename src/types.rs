//! The public value types every surface translates: options, credentials,
//! images, filesystem usage and progress events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How a service is set up. `Options::new(root)` gives the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store's root directory (created if missing).
    pub root: PathBuf,
    /// Pinned images: exact normalized names, or `prefix*` anchored at the start.
    pub pinned: Vec<String>,
    /// How many blobs one pull downloads at once.
    pub max_parallel_downloads: usize,
    /// A pull that receives no bytes for this long fails with a timeout;
    /// `Duration::ZERO` means never.
    pub progress_timeout: Duration,
    /// Timeout for establishing a connection to a registry.
    pub connect_timeout: Duration,
    /// Registry configuration files (none by default).
    pub registry: RegistryOptions,
    /// Unpack layers into the layer store as they are pulled (the default).
    /// When off, images are unpacked on demand by `rootfs`/`export_rootfs`.
    pub unpack: bool,
    /// Largest uncompressed size of one layer; more is refused as a
    /// decompression bomb.
    pub max_layer_bytes: u64,
}

/// Default for [`Options::max_layer_bytes`]: 64 GiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// The registry configuration files to read. Nothing is read unless named
/// here, so a library user (and every test) sees only what it asked for;
/// [`RegistryOptions::system_defaults`] gives the paths CRI-O, podman and
/// skopeo users already have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// containers-registries.conf v2: search, aliases, mirrors, insecure, blocked.
    pub registries_conf: Option<PathBuf>,
    /// Drop-in directory; defaults to `<registries_conf>.d`.
    pub registries_conf_d: Option<PathBuf>,
    /// containers auth.json (consulted first).
    pub auth_file: Option<PathBuf>,
    /// Docker's config.json (consulted after auth.json).
    pub docker_config: Option<PathBuf>,
    /// A certs.d root holding one `<host:port>/` directory per registry
    /// (`*.crt` CAs, `client.cert` + `client.key`).
    pub certs_dir: Option<PathBuf>,
}

impl RegistryOptions {
    /// The usual locations, where they exist: /etc/containers/registries.conf
    /// (and .d), `$REGISTRY_AUTH_FILE` or the containers auth.json,
    /// `$DOCKER_CONFIG/config.json` or ~/.docker/config.json, and
    /// /etc/containers/certs.d.
    pub fn system_defaults() -> Self {
        let existing = |p: PathBuf| p.exists().then_some(p);
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let auth_file = env("REGISTRY_AUTH_FILE").or_else(|| {
            let runtime = env("XDG_RUNTIME_DIR").unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", uid())));
            let p = if uid() == 0 {
                PathBuf::from("/run/containers/0/auth.json")
            } else {
                runtime.join("containers/auth.json")
            };
            existing(p)
        });
        let docker_config = env("DOCKER_CONFIG")
            .map(|d| d.join("config.json"))
            .or_else(|| env("HOME").map(|h| h.join(".docker/config.json")))
            .and_then(existing);
        RegistryOptions {
            registries_conf: existing(PathBuf::from("/etc/containers/registries.conf")),
            registries_conf_d: existing(PathBuf::from("/etc/containers/registries.conf.d")),
            auth_file,
            docker_config,
            certs_dir: existing(PathBuf::from("/etc/containers/certs.d")),
        }
    }
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

impl Options {
    /// Defaults for a store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Options {
            root: root.into(),
            pinned: Vec::new(),
            max_parallel_downloads: 4,
            progress_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            registry: RegistryOptions::default(),
            unpack: true,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
        }
    }

    /// `$IMGSVC_ROOT`, else `/var/lib/imgsvc` for root, else `$XDG_DATA_HOME/imgsvc`
    /// (falling back to `~/.local/share/imgsvc`).
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os("IMGSVC_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(root);
        }
        if is_root() {
            return PathBuf::from("/var/lib/imgsvc");
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|r| !r.is_empty()) {
            return PathBuf::from(xdg).join("imgsvc");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/imgsvc")
    }
}

fn is_root() -> bool {
    uid() == 0
}

/// Registry credentials for one pull, as in the CRI `AuthConfig`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Auth {
    pub username: String,
    pub password: String,
    /// base64 of `user:password`.
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl std::fmt::Debug for Auth {
    // Credentials never appear in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// An image, as the CRI `Image` message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<config digest hex>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Bytes of the image's blobs as stored (index, manifest, config, layers).
    pub size: u64,
    /// Set when the config's user is numeric; `Some(0)` is root.
    pub uid: Option<i64>,
    pub username: String,
    pub pinned: bool,
}

/// The answer to a status request for a present image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStatus {
    pub image: Image,
    /// Verbose only: key `info`, a JSON object with `imageSpec` (the image config).
    pub info: BTreeMap<String, String>,
}

/// Usage of the filesystem holding the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemUsage {
    /// When this was measured, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The store's root directory.
    pub mountpoint: String,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// One event of a pull, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The reference was resolved to a manifest: what will be fetched.
    Resolved { image: String, manifest_digest: String, total_bytes: u64, layers: usize },
    /// A blob download began.
    LayerStarted { digest: String, size: u64 },
    /// Bytes of a blob arrived (at most every few hundred ms per blob).
    Bytes { digest: String, done: u64, total: u64 },
    /// A blob was downloaded and verified.
    LayerDone { digest: String, size: u64 },
    /// A blob was already in the store.
    LayerSkipped { digest: String, size: u64 },
    /// The image is recorded in the store.
    Committed { image_id: String },
}
