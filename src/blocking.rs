//! The blocking facade: the async service driven by a runtime it owns.
//! Callbacks run on the calling thread, and only during the call.

use crate::error::{Error, Result};
use crate::pull::CancelToken;
use crate::service::Service;
use crate::types::{Auth, FilesystemUsage, Image, ImageStatus, Options, Progress};

/// A [`Service`] for synchronous callers; safe to share between threads.
pub struct BlockingService {
    service: Service,
    runtime: tokio::runtime::Runtime,
}

impl BlockingService {
    /// Open the store at `options.root`.
    pub fn new(options: Options) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imgsvc")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("starting the runtime: {e}")))?;
        let service = {
            let _in_runtime = runtime.enter();
            Service::new(options)?
        };
        Ok(BlockingService { service, runtime })
    }

    /// Drive `fut` to completion. From inside a progress callback (or any
    /// async context) the calling thread is already in a runtime, where
    /// `block_on` would panic: then a helper thread drives it instead.
    fn run<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.runtime.block_on(fut);
        }
        std::thread::scope(|s| match s.spawn(|| self.runtime.block_on(fut)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    /// Cancel the pulls still running (those whose callers all gave up are
    /// still cleaning up) and wait for them, for at most 30 s. Dropping the
    /// service does this too.
    pub fn stop_pulls(&self) {
        self.run(self.service.stop_pulls(std::time::Duration::from_secs(30)))
    }

    /// The async service inside, for callers that also have a runtime.
    pub fn service(&self) -> &Service {
        &self.service
    }

    pub fn list(&self, filter: Option<&str>) -> Result<Vec<Image>> {
        self.run(self.service.list(filter))
    }

    pub fn status(&self, image: &str, verbose: bool) -> Result<Option<ImageStatus>> {
        self.run(self.service.status(image, verbose))
    }

    /// Pull; `progress` runs on this thread and returns `false` to cancel.
    pub fn pull(
        &self,
        image: &str,
        auth: Option<&Auth>,
        progress: Option<&mut (dyn FnMut(&Progress) -> bool + Send)>,
    ) -> Result<String> {
        self.run(self.service.pull(image, auth, progress))
    }

    /// Pull that also stops, promptly, when `cancel` is cancelled from any thread.
    pub fn pull_cancellable(
        &self,
        image: &str,
        auth: Option<&Auth>,
        progress: Option<&mut (dyn FnMut(&Progress) -> bool + Send)>,
        cancel: &CancelToken,
    ) -> Result<String> {
        self.run(self.service.pull_cancellable(image, auth, progress, cancel))
    }

    pub fn remove(&self, image: &str) -> Result<()> {
        self.run(self.service.remove(image))
    }

    pub fn untag(&self, name: &str) -> Result<()> {
        self.run(self.service.untag(name))
    }

    /// Check (and with `repair`, clean) the store.
    pub fn fsck(&self, repair: bool) -> Result<crate::FsckReport> {
        self.run(self.service.fsck(repair))
    }

    /// The image's unpacked layer directories, top layer first (overlay `lowerdir`).
    pub fn rootfs(&self, image: &str) -> Result<Vec<std::path::PathBuf>> {
        self.run(self.service.rootfs(image))
    }

    /// Materialize the image's merged root filesystem in `dir` (absent or empty).
    pub fn export_rootfs(&self, image: &str, dir: impl AsRef<std::path::Path>) -> Result<()> {
        self.run(self.service.export_rootfs(image, dir.as_ref()))
    }

    pub fn fs_info(&self) -> Result<FilesystemUsage> {
        self.run(self.service.fs_info())
    }

    pub fn options(&self) -> &Options {
        self.service.options()
    }
}

impl Drop for BlockingService {
    fn drop(&mut self) {
        // Without this, ending the runtime would stop a cancelled pull in the
        // middle of taking back its blobs and layers.
        self.stop_pulls();
    }
}
