//! The async service: CRI semantics over the store and the pull engine.

use crate::catalog::{self, Catalog, Found, NewEntry, Record};
use crate::error::{Error, Result};
use crate::layers::Layers;
use crate::manifest::{self, Descriptor};
use crate::pull::{self, CancelToken, Jobs};
use crate::reference::Reference;
use crate::registry::Registries;
use crate::store::{Generation, Store};
use crate::types::{Auth, FilesystemUsage, Image, ImageStatus, Options, Progress};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Lease entries naming unpacked layers start with this (blob entries are bare digests).
pub(crate) const LAYER_LEASE: &str = "layer:";

/// The image service. Cheap to clone; all clones share one store and one set
/// of in-flight pulls.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub options: Options,
    pub store: Store,
    pub layers: Layers,
    pub registries: Registries,
    pub jobs: Jobs,
    cache: Mutex<Cache>,
    /// Blob lists of manifests (immutable, so cached forever).
    manifest_blobs: Mutex<HashMap<String, Vec<String>>>,
    /// Layer chain ids of image configs (immutable, so cached forever).
    config_chains: Mutex<HashMap<String, Vec<String>>>,
}

#[derive(Default)]
struct Cache {
    generation: Option<Generation>,
    catalog: Arc<Catalog>,
    usage: Option<(Generation, u64, u64)>,
}

impl Service {
    /// Open the store at `options.root`, creating it if needed.
    pub fn new(options: Options) -> Result<Self> {
        // reqwest is built without a default crypto provider; ours is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if options.max_parallel_downloads == 0 || options.max_parallel_downloads > 64 {
            return Err(Error::invalid(format!(
                "max_parallel_downloads must be between 1 and 64, got {}",
                options.max_parallel_downloads
            )));
        }
        if options.root.as_os_str().is_empty() {
            return Err(Error::invalid("the store root is empty"));
        }
        let store = Store::open(&options.root)?;
        let layers = Layers::open(&options.root)?;
        let registries = Registries::new(&options.registry, options.connect_timeout)?;
        let inner = Inner {
            options,
            store,
            layers,
            registries,
            jobs: Default::default(),
            cache: Default::default(),
            manifest_blobs: Default::default(),
            config_chains: Default::default(),
        };
        inner.catalog()?; // a corrupt index.json is reported at open
        Ok(Service { inner: Arc::new(inner) })
    }

    /// Cancel every pull in flight and wait, at most `limit`, until each has
    /// ended, having taken back what it fetched. For shutting down.
    pub async fn stop_pulls(&self, limit: std::time::Duration) {
        crate::pull::stop_all(&self.inner.jobs, limit).await
    }

    /// The options this service was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// All images, or with a non-empty `filter` just the one it names (0 or 1).
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<Image>> {
        let cat = self.inner.catalog()?;
        match filter.filter(|f| !f.is_empty()) {
            None => Ok(cat.images.values().map(|r| self.inner.image(r)).collect()),
            Some(f) => Ok(match self.inner.find(&cat, f)? {
                Found::Image(r) => vec![self.inner.image(r)],
                Found::Absent => vec![],
            }),
        }
    }

    /// The image `image` names, or `None` when absent (not an error).
    pub async fn status(&self, image: &str, verbose: bool) -> Result<Option<ImageStatus>> {
        let cat = self.inner.catalog()?;
        let rec = match self.inner.find(&cat, image)? {
            Found::Image(r) => r,
            Found::Absent => return Ok(None),
        };
        let mut info = BTreeMap::new();
        if verbose {
            let config = self.inner.store.read_blob(&rec.id, manifest::CONFIG_MAX)?;
            let spec: serde_json::Value = serde_json::from_slice(&config)
                .map_err(|e| Error::integrity(format!("stored config of {} is not JSON: {e}", rec.id)))?;
            let mut value = serde_json::json!({ "imageSpec": spec });
            let chains = self.inner.chains_of(&rec.id);
            let unpacked: Option<Vec<_>> = chains.iter().map(|c| self.inner.layers.info(c)).collect();
            if let Some(layers) = unpacked.filter(|_| !chains.is_empty()) {
                let bytes: u64 = layers.iter().map(|l| l.size).sum();
                value["unpackedSize"] = serde_json::json!(bytes.to_string());
            }
            info.insert("info".to_string(), value.to_string());
        }
        Ok(Some(ImageStatus { image: self.inner.image(rec), info }))
    }

    /// Pull `image` and return its id (`sha256:<config digest>`).
    /// `progress` returns `false` to cancel the pull.
    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&Auth>,
        progress: Option<&mut (dyn FnMut(&Progress) -> bool + Send)>,
    ) -> Result<String> {
        pull::pull(&self.inner, image, auth, progress, None).await
    }

    /// [`Service::pull`] that also stops when `cancel` is cancelled.
    pub async fn pull_cancellable(
        &self,
        image: &str,
        auth: Option<&Auth>,
        progress: Option<&mut (dyn FnMut(&Progress) -> bool + Send)>,
        cancel: &CancelToken,
    ) -> Result<String> {
        pull::pull(&self.inner, image, auth, progress, Some(cancel)).await
    }

    /// Remove the image `image` names, with all its names. Removing what is
    /// not there succeeds. Blobs no other image uses are deleted.
    pub async fn remove(&self, image: &str) -> Result<()> {
        let inner = self.inner.clone();
        let image = image.to_string();
        blocking(move || inner.remove(&image)).await
    }

    /// Drop one name; the image goes with its last name.
    pub async fn untag(&self, name: &str) -> Result<()> {
        let inner = self.inner.clone();
        let name = name.to_string();
        blocking(move || inner.untag(&name)).await
    }

    /// Check the store (re-hashing every blob); with `repair`, remove what is
    /// orphaned and images that cannot be complete.
    pub async fn fsck(&self, repair: bool) -> Result<crate::FsckReport> {
        let inner = self.inner.clone();
        blocking(move || crate::fsck::run(&inner, repair)).await
    }

    /// The image's unpacked layer directories, top layer first: the
    /// `lowerdir` list of an overlay mount. Layers not unpacked yet (an image
    /// pulled with unpacking off, or before it existed) are unpacked now.
    pub async fn rootfs(&self, image: &str) -> Result<Vec<PathBuf>> {
        let inner = self.inner.clone();
        let image = image.to_string();
        let layers = blocking(move || inner.unpacked_layers(&image)).await?;
        Ok(layers.into_iter().rev().map(|(dir, _)| dir).collect())
    }

    /// Materialize the image's merged root filesystem in `dir` (absent or
    /// empty): files are hard-linked from the layer store where the
    /// filesystem allows, copied otherwise.
    pub async fn export_rootfs(&self, image: &str, dir: &Path) -> Result<()> {
        let inner = self.inner.clone();
        let (image, dir) = (image.to_string(), dir.to_path_buf());
        blocking(move || {
            let layers = inner.unpacked_layers(&image)?;
            crate::export::export(&layers, &dir)
        })
        .await
    }

    /// Usage of the store's filesystem by images.
    pub async fn fs_info(&self) -> Result<FilesystemUsage> {
        self.inner.fs_info()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("worker failed: {e}")))?
}

fn pinned(patterns: &[String], names: &std::collections::BTreeSet<String>) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => names.iter().any(|n| n.starts_with(prefix)),
        None => names.contains(p),
    })
}

impl Inner {
    /// The catalog for the current index.json, re-read only when it changed.
    pub(crate) fn catalog(&self) -> Result<Arc<Catalog>> {
        let generation = self.store.generation()?;
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.generation == Some(generation) {
                return Ok(cache.catalog.clone());
            }
        }
        let (index, generation) = self.store.read_index()?;
        let catalog = Arc::new(Catalog::build(&index));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.generation = Some(generation);
        cache.catalog = catalog.clone();
        Ok(catalog)
    }

    /// Look an image up; with a registries.conf, a short name means the
    /// first of its candidates present in the store.
    fn find<'c>(&self, cat: &'c Catalog, input: &str) -> Result<Found<'c>> {
        // "sha256:<hex>" is an image id, not the short name "sha256" with a tag.
        let short = Reference::parse(input)
            .ok()
            .filter(|r| r.is_short() && self.registries.has_conf() && !input.starts_with("sha256:"));
        let Some(r) = short else { return cat.lookup(input) };
        match self.registries.candidates(&r) {
            Ok(candidates) => {
                for c in candidates {
                    if let Found::Image(rec) = cat.lookup_name(&c) {
                        return Ok(Found::Image(rec));
                    }
                }
                cat.lookup_id(input)
            }
            // An ambiguous short name may still be an id prefix.
            Err(e) => match cat.lookup_id(input)? {
                Found::Image(rec) => Ok(Found::Image(rec)),
                Found::Absent => Err(e),
            },
        }
    }

    fn image(&self, r: &Record) -> Image {
        let (uid, username) = manifest::user_to_uid(&r.user);
        Image {
            id: r.id.clone(),
            repo_tags: r.repo_tags.iter().cloned().collect(),
            repo_digests: r.repo_digests.iter().cloned().collect(),
            size: r.size,
            uid,
            username,
            pinned: pinned(&self.options.pinned, &r.repo_tags),
        }
    }

    /// Record a pulled image, under the metadata lock. `NotFound` means a blob
    /// vanished (a concurrent GC) and the pull should fetch again.
    pub(crate) fn commit_pull(&self, entry: NewEntry, layers: &[String]) -> Result<()> {
        let _lock = self.store.lock()?;
        for digest in &entry.blobs {
            if !self.store.blob_path(digest)?.exists() {
                return Err(Error::not_found(format!("blob {digest} disappeared before the image was recorded")));
            }
        }
        for chain in layers {
            if !self.layers.has(chain) {
                return Err(Error::not_found(format!("layer {chain} disappeared before the image was recorded")));
            }
        }
        let (mut index, _) = self.store.read_index()?;
        catalog::apply_pull(&mut index, entry);
        crate::failpoint::hit("before-index-write");
        self.write_index(&index)?;
        crate::failpoint::hit("after-index-write");
        Ok(())
    }

    fn remove(&self, image: &str) -> Result<()> {
        let cat = self.catalog()?;
        let id = match self.find(&cat, image)? {
            Found::Image(r) => r.id.clone(),
            Found::Absent => return Ok(()),
        };
        let _lock = self.store.lock()?;
        let (mut index, _) = self.store.read_index()?;
        let gone = catalog::remove_image(&mut index, &id);
        if gone.is_empty() {
            return Ok(()); // removed concurrently
        }
        self.write_index(&index)?;
        self.collect(&index, &gone)
    }

    fn untag(&self, name: &str) -> Result<()> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if name.starts_with("sha256:") || (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(Error::invalid(format!("untag takes a name, not an image id ({name:?}); use remove")));
        }
        let reference = Reference::parse(name)?;
        let _lock = self.store.lock()?;
        let (mut index, _) = self.store.read_index()?;
        let gone = catalog::remove_name(&mut index, &reference);
        if gone.is_empty() {
            return Err(Error::not_found(format!("no image is named {reference}")));
        }
        self.write_index(&index)?;
        self.collect(&index, &gone)
    }

    /// Write index.json and forget the cached catalog: a file's identity
    /// (inode, coarse mtime, length) can repeat across quick rewrites.
    fn write_index(&self, index: &crate::store::LayoutIndex) -> Result<()> {
        let result = self.store.write_index(index);
        self.forget_cache();
        result
    }

    /// Blobs of `manifest` (itself, its config, its layers).
    fn blobs_of(&self, d: &Descriptor) -> Result<Vec<String>> {
        if let Some(v) = self.manifest_blobs.lock().unwrap_or_else(|e| e.into_inner()).get(&d.digest) {
            return Ok(v.clone());
        }
        let mut out = vec![d.digest.clone()];
        if let Ok(body) = self.store.read_blob(&d.digest, manifest::MANIFEST_MAX as u64) {
            if let Ok(manifest::Document::Manifest { manifest, .. }) = manifest::parse_document(&body, None, &d.digest)
            {
                out.push(manifest.config.digest.clone());
                out.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            }
        }
        self.manifest_blobs.lock().unwrap_or_else(|e| e.into_inner()).insert(d.digest.clone(), out.clone());
        Ok(out)
    }

    /// Delete blobs `digests` and unpacked layers `chains` unless an image or
    /// an in-flight pull uses them.
    pub(crate) fn discard_unreferenced(&self, digests: &[String], chains: &[String]) -> Result<()> {
        if digests.is_empty() && chains.is_empty() {
            return Ok(());
        }
        let _lock = self.store.lock()?;
        let (index, _) = self.store.read_index()?;
        let mut keep = self.store.leased_blobs()?;
        for d in &index.manifests {
            keep.extend(self.entry_blobs(d)?);
        }
        for digest in digests.iter().filter(|d| !keep.contains(*d)) {
            self.store.remove_blob(digest)?;
        }
        let keep_layers = self.wanted_layers(&index, &keep);
        for chain in chains.iter().filter(|c| !keep_layers.contains(*c)) {
            self.layers.remove(chain)?;
        }
        Ok(())
    }

    /// Chain ids of the layers of the image whose config is `config`; empty
    /// when the config is missing or unreadable (fsck reports that).
    pub(crate) fn chains_of(&self, config: &str) -> Vec<String> {
        if let Some(v) = self.config_chains.lock().unwrap_or_else(|e| e.into_inner()).get(config) {
            return v.clone();
        }
        let Ok(bytes) = self.store.read_blob(config, manifest::CONFIG_MAX) else { return vec![] };
        let Ok(cfg) = manifest::ImageConfig::parse(&bytes) else { return vec![] };
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let chains = crate::layers::chain_ids(&diff_ids);
        self.config_chains.lock().unwrap_or_else(|e| e.into_inner()).insert(config.to_string(), chains.clone());
        chains
    }

    /// Layers some image in `index` or a live lease (in `leased`) needs.
    pub(crate) fn wanted_layers(&self, index: &crate::store::LayoutIndex, leased: &HashSet<String>) -> HashSet<String> {
        let mut keep: HashSet<String> =
            leased.iter().filter_map(|l| l.strip_prefix(LAYER_LEASE)).map(str::to_string).collect();
        let ids: HashSet<&str> =
            index.manifests.iter().filter_map(|d| catalog::annotation(d, catalog::IMAGE_ID)).collect();
        for id in ids {
            keep.extend(self.chains_of(id));
        }
        keep
    }

    /// The layer directories of `image`, bottom first, unpacking any that
    /// are missing from the blobs in the store.
    fn unpacked_layers(&self, image: &str) -> Result<Vec<(PathBuf, crate::unpack::Whiteouts)>> {
        let cat = self.catalog()?;
        let rec = match self.find(&cat, image)? {
            Found::Image(r) => r.clone(),
            Found::Absent => return Err(Error::not_found(format!("no such image {image:?}"))),
        };
        let manifest_digest = rec.manifests.iter().next().ok_or_else(|| Error::internal("image without manifest"))?;
        let body = self.store.read_blob(manifest_digest, manifest::MANIFEST_MAX as u64)?;
        let manifest::Document::Manifest { manifest, .. } = manifest::parse_document(&body, None, &rec.id)? else {
            return Err(Error::integrity(format!("{}: stored manifest is not an image manifest", rec.id)));
        };
        let config = manifest::ImageConfig::parse(&self.store.read_blob(&rec.id, manifest::CONFIG_MAX)?)?;
        let diff_ids = config.diff_ids(manifest.layers.len(), &rec.id)?;
        let chains = crate::layers::chain_ids(&diff_ids);
        // A remove racing this call must not collect what it unpacks.
        let mut leased: Vec<String> = chains.iter().map(|c| format!("{LAYER_LEASE}{c}")).collect();
        leased.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let _lease = self.store.lease(&leased)?;
        let never = AtomicBool::new(false);
        let mut unpacked_any = false;
        let mut out = Vec::with_capacity(chains.len());
        for ((chain, diff_id), layer) in chains.iter().zip(&diff_ids).zip(&manifest.layers) {
            if !self.layers.has(chain) {
                if !self.store.has_blob(&layer.digest, layer.size) {
                    return Err(Error::integrity(format!(
                        "layer blob {} of image {} is missing from the store; pull the image again",
                        layer.digest, rec.id
                    )));
                }
                let blob = self.store.blob_path(&layer.digest)?;
                let max = self.options.max_layer_bytes;
                unpacked_any |= self.layers.ensure(chain, diff_id, &layer.digest, &blob, max, &never)?;
            }
            let info =
                self.layers.info(chain).ok_or_else(|| Error::integrity(format!("layer {chain} has no record")))?;
            out.push((self.layers.diff_dir(chain)?, info.whiteouts));
        }
        if unpacked_any {
            self.forget_cache();
        }
        Ok(out)
    }

    pub(crate) fn forget_cache(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.generation = None;
        cache.usage = None;
    }

    pub(crate) fn entry_blobs(&self, d: &Descriptor) -> Result<Vec<String>> {
        let mut v = self.blobs_of(d)?;
        if let Some(ix) = catalog::annotation(d, catalog::INDEX_DIGEST) {
            v.push(ix.to_string());
        }
        Ok(v)
    }

    /// Delete the blobs of `gone` entries that nothing in `index` and no
    /// in-flight pull (any process) still needs. Caller holds the lock.
    fn collect(&self, index: &crate::store::LayoutIndex, gone: &[Descriptor]) -> Result<()> {
        let mut candidates = HashSet::new();
        // Layer ids come from the configs, so read them before blobs go.
        let mut layer_candidates = HashSet::new();
        for d in gone {
            candidates.extend(self.entry_blobs(d)?);
            if let Some(id) = catalog::annotation(d, catalog::IMAGE_ID) {
                layer_candidates.extend(self.chains_of(id));
            }
        }
        let mut keep: HashSet<String> = self.store.leased_blobs()?;
        for d in &index.manifests {
            keep.extend(self.entry_blobs(d)?);
        }
        let keep_layers = self.wanted_layers(index, &keep);
        for digest in candidates.difference(&keep) {
            self.store.remove_blob(digest)?;
        }
        for chain in layer_candidates.difference(&keep_layers) {
            self.layers.remove(chain)?;
        }
        Ok(())
    }

    fn fs_info(&self) -> Result<FilesystemUsage> {
        let generation = self.store.generation()?;
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).usage.filter(|(g, _, _)| *g == generation);
        let (used_bytes, inodes_used) = match cached {
            Some((_, b, i)) => (b, i),
            None => {
                let (b, i) = self.store.usage()?;
                let (lb, li) = self.layers.usage();
                let (b, i) = (b + lb, i + li);
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).usage = Some((generation, b, i));
                (b, i)
            }
        };
        let timestamp_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(1);
        Ok(FilesystemUsage {
            timestamp_ns,
            mountpoint: self.store.root().display().to_string(),
            used_bytes,
            inodes_used,
        })
    }
}
