//! The pull engine: resolve a reference to one platform's manifest, fetch the
//! blobs the store lacks in parallel (streamed, verified, resumable), and
//! record the image. Concurrent pulls of the same reference and credentials
//! share one job; every blob is fetched by one puller at a time, across
//! processes too (a lock file per blob).

use crate::catalog::NewEntry;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{self, Descriptor, Document, ImageConfig};
use crate::reference::Reference;
use crate::registry::{self, Repo};
use crate::service::Inner;
use crate::types::{Auth, Progress};
use futures_util::StreamExt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A thread-safe handle that cancels the pulls it is given to.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(CancellationToken);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Cancel; safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.0.cancel()
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    pub(crate) async fn cancelled(&self) {
        self.0.cancelled().await
    }
}

/// Pulls of the same reference with the same credentials share one job.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PullKey {
    reference: String,
    auth: u64,
}

pub(crate) struct Job {
    events: broadcast::Sender<Progress>,
    result: watch::Sender<Option<Result<String>>>,
    waiters: AtomicUsize,
    cancel: CancellationToken,
    /// The job's `Resolved` event, for callers that join after it was sent.
    resolved: Mutex<Option<Progress>>,
}

pub(crate) type Jobs = Mutex<std::collections::HashMap<PullKey, Arc<Job>>>;

/// Cancel every pull in flight and wait, at most `limit`, until each has
/// ended: a pull whose callers have all gone is still taking back what it
/// fetched, and ending the runtime under it would leave that in the store.
pub(crate) async fn stop_all(jobs: &Jobs, limit: Duration) {
    let running: Vec<Arc<Job>> = jobs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    for job in &running {
        job.cancel.cancel();
    }
    let _ = tokio::time::timeout(limit, async {
        for job in running {
            let mut result = job.result.subscribe();
            while result.borrow_and_update().is_none() {
                if result.changed().await.is_err() {
                    break;
                }
            }
        }
    })
    .await;
}

/// Drops its claim on a job; the last waiter to leave cancels it.
struct Waiter(Arc<Job>);

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.0.waiters.fetch_sub(1, Ordering::AcqRel) == 1 && self.0.result.borrow().is_none() {
            self.0.cancel.cancel();
        }
    }
}

pub(crate) async fn pull(
    inner: &Arc<Inner>,
    image: &str,
    auth: Option<&Auth>,
    mut progress: Option<&mut (dyn FnMut(&Progress) -> bool + Send)>,
    cancel: Option<&CancelToken>,
) -> Result<String> {
    let reference = Reference::parse(image)?;
    registry::credentials::check_cri(auth)?; // reject malformed credentials before any work
    let key = PullKey {
        reference: reference.to_string(),
        auth: {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            auth.hash(&mut h);
            h.finish()
        },
    };
    let mut replay = None;
    let (job, mut events, mut result) = {
        let mut jobs = inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
        // Join a running job only: a finished one's result may predate a remove.
        match jobs.get(&key).filter(|j| !j.cancel.is_cancelled() && j.result.borrow().is_none()) {
            Some(job) => {
                job.waiters.fetch_add(1, Ordering::AcqRel);
                // A late joiner still learns what is being pulled; the lock
                // makes replay and subscription see the event exactly once.
                let resolved = job.resolved.lock().unwrap_or_else(|e| e.into_inner());
                replay = resolved.clone();
                let events = job.events.subscribe();
                drop(resolved);
                (job.clone(), events, job.result.subscribe())
            }
            None => {
                let job = Arc::new(Job {
                    events: broadcast::channel(1024).0,
                    result: watch::channel(None).0,
                    waiters: AtomicUsize::new(1),
                    cancel: CancellationToken::new(),
                    resolved: Mutex::new(None),
                });
                jobs.insert(key.clone(), job.clone());
                // Subscribe before the job runs, so no event is missed.
                let (events, result) = (job.events.subscribe(), job.result.subscribe());
                let (inner2, job2, auth2) = (inner.clone(), job.clone(), auth.cloned());
                tokio::spawn(async move {
                    // Cancellation is handled inside, stage by stage, so that
                    // a cancelled pull still takes back what it fetched.
                    let result = run(&inner2, reference, auth2, &job2).await;
                    if let Err(e) = &result {
                        tracing::debug!(image = %key.reference, error = %e, "pull failed");
                    }
                    job2.result.send_replace(Some(result));
                    let mut jobs = inner2.jobs.lock().unwrap_or_else(|e| e.into_inner());
                    if jobs.get(&key).is_some_and(|j| Arc::ptr_eq(j, &job2)) {
                        jobs.remove(&key);
                    }
                });
                (job, events, result)
            }
        }
    };
    let _waiter = Waiter(job); // held until this caller stops waiting
    let never = CancelToken::new();
    let cancel = cancel.unwrap_or(&never);
    let mut deliver = |ev: &Progress| -> Result<()> {
        match progress.as_mut() {
            Some(cb) => {
                if cb(ev) {
                    Ok(())
                } else {
                    Err(Error::new(ErrorKind::Cancelled, "pull cancelled by the progress callback"))
                }
            }
            None => Ok(()),
        }
    };
    // A callback that cancels after the image was already recorded (events
    // reach it late) gets the truth: the pull succeeded.
    let finished_anyway = |result: &watch::Receiver<Option<Result<String>>>, e: Error| match &*result.borrow() {
        Some(Ok(id)) => Ok(id.clone()),
        _ => Err(e),
    };
    if let Some(ev) = &replay {
        if let Err(e) = deliver(ev) {
            return finished_anyway(&result, e);
        }
    }
    loop {
        let done = result.borrow_and_update().clone();
        if let Some(r) = done {
            while let Ok(ev) = events.try_recv() {
                if let Err(e) = deliver(&ev) {
                    return if r.is_ok() { r } else { Err(e) };
                }
            }
            return r;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::cancelled()),
            ev = events.recv() => match ev {
                Ok(ev) => if let Err(e) = deliver(&ev) { return finished_anyway(&result, e) },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => { let _ = result.changed().await; }
            },
            _ = result.changed() => {}
        }
    }
}

/// `fut` unless the job is cancelled first.
async fn unless_cancelled<T>(job: &Job, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        biased;
        _ = job.cancel.cancelled() => Err(Error::cancelled()),
        r = fut => r,
    }
}

/// `fut` unless the configured no-progress time passes first.
async fn in_time<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if limit.is_zero() {
        return fut.await;
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(ErrorKind::Timeout, format!("{}: no progress for {}s", what(), limit.as_secs_f64()))),
    }
}

async fn run(inner: &Arc<Inner>, reference: Reference, auth: Option<Auth>, job: &Job) -> Result<String> {
    // A short name may stand for several candidates: the first that pulls wins.
    let mut last = None;
    for candidate in inner.registries.candidates(&reference)? {
        match pull_one(inner, candidate, auth.as_ref(), job).await {
            Ok(id) => return Ok(id),
            Err(e) if job.cancel.is_cancelled() => return Err(e),
            Err(e) => {
                tracing::debug!(image = %reference, error = %e, "candidate failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::internal("no candidates")))
}

/// Resolve `reference` at the first endpoint that answers: mirrors in order
/// (skipped when down or lacking the image), then the origin.
async fn resolve(
    inner: &Arc<Inner>,
    reference: &Reference,
    auth: Option<&Auth>,
) -> Result<(Repo, bytes::Bytes, String)> {
    let limit = inner.options.progress_timeout;
    for source in inner.registries.sources(reference)? {
        let attempt = async {
            let repo = inner.registries.connect(&source, auth).await?;
            let (body, digest) =
                in_time(limit, || format!("fetching {}", source.reference), repo.manifest(None)).await?;
            Ok::<_, Error>((repo, body, digest))
        }
        .await;
        match attempt {
            Ok(found) => return Ok(found),
            Err(e) if source.mirror => {
                tracing::info!(mirror = %source.reference, error = %e, "mirror failed; trying the next endpoint");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal("no endpoint to pull from"))
}

async fn pull_one(inner: &Arc<Inner>, reference: Reference, auth: Option<&Auth>, job: &Job) -> Result<String> {
    let started = Instant::now();
    let limit = inner.options.progress_timeout;
    let emit = |ev: Progress| {
        if matches!(ev, Progress::Resolved { .. }) {
            let mut resolved = job.resolved.lock().unwrap_or_else(|e| e.into_inner());
            *resolved = Some(ev.clone());
            let _ = job.events.send(ev);
        } else {
            let _ = job.events.send(ev);
        }
    };
    let (repo, top_body, top_digest) = unless_cancelled(job, resolve(inner, &reference, auth)).await?;
    let what = reference.to_string();
    let (index, manifest_body, manifest_digest, doc) = match manifest::parse_document(&top_body, None, &what)? {
        Document::Index { index, .. } => {
            let (os, arch, variants) = manifest::host_platform();
            let entry = manifest::choose_platform(&index.manifests, &os, &arch, &variants).ok_or_else(|| {
                let available: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| {
                        format!(
                            "{}/{}{}",
                            p.os,
                            p.architecture,
                            p.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default()
                        )
                    })
                    .collect();
                Error::unsupported(format!(
                    "{what}: the image index has no manifest for {os}/{arch} (it has: {})",
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                ))
            })?;
            let entry = entry.clone();
            let (body, digest) = unless_cancelled(
                job,
                in_time(limit, || format!("fetching {what}"), repo.manifest(Some(&entry.digest))),
            )
            .await?;
            let doc = manifest::parse_document(&body, None, &what)?;
            (Some((top_body, top_digest, entry)), body, digest, doc)
        }
        doc => (None, top_body, top_digest, doc),
    };
    let (manifest_media_type, manifest) = match doc {
        Document::Manifest { media_type, manifest } => (media_type, manifest),
        Document::Index { .. } => {
            return Err(Error::unsupported(format!("{what}: nested image indexes are not supported")))
        }
    };
    manifest.check_is_image(&what)?;
    if manifest.config.size > manifest::CONFIG_MAX {
        return Err(Error::unsupported(format!(
            "{what}: image config is {} bytes, over the limit",
            manifest.config.size
        )));
    }
    let blobs: Vec<Descriptor> =
        std::iter::once(manifest.config.clone()).chain(manifest.layers.iter().cloned()).collect();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    emit(Progress::Resolved {
        image: what.clone(),
        manifest_digest: manifest_digest.clone(),
        total_bytes: total,
        layers: manifest.layers.len(),
    });

    let store = &inner.store;
    let mut leased: Vec<String> = blobs.iter().map(|b| b.digest.clone()).collect();
    leased.push(manifest_digest.clone());
    if let Some((_, d, _)) = &index {
        leased.push(d.clone());
    }
    let lease = store.lease(&leased)?;

    // A blob GC removed between our check and our commit is fetched again.
    let mut rounds = 0;
    loop {
        let writers = Arc::new(());
        let fetched = Mutex::new(Vec::new());
        let mut unpacked = Vec::new();
        let outcome = unless_cancelled(
            job,
            fetch_and_unpack(inner, &repo, &manifest, &what, &emit, &writers, &fetched, &mut unpacked),
        )
        .await;
        let (config, chains, _layer_lease) = match outcome {
            Ok(Some(x)) => x,
            Ok(None) if rounds < 3 => {
                rounds += 1; // the config vanished under us: fetch it again
                continue;
            }
            Ok(None) => return Err(Error::not_found(format!("{what}: the image config keeps disappearing"))),
            Err(e) => {
                // Writers and unpackers of stopped work delete their files as they end.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Arc::strong_count(&writers) > 1 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // A failed pull leaves the store as it was: drop what it alone fetched.
                drop(lease);
                let fetched = fetched.into_inner().unwrap_or_else(|e| e.into_inner());
                let inner2 = inner.clone();
                let _ = tokio::task::spawn_blocking(move || inner2.discard_unreferenced(&fetched, &unpacked)).await;
                return Err(e);
            }
        };
        store.put_blob(&manifest_digest, &manifest_body)?;
        if let Some((body, digest, _)) = &index {
            store.put_blob(digest, body)?;
        }
        let id = manifest.config.digest.clone();
        let index_size = index.as_ref().map_or(0, |(b, _, _)| b.len() as u64);
        let entry = NewEntry {
            id: id.clone(),
            manifest: Descriptor {
                media_type: manifest_media_type.clone(),
                digest: manifest_digest.clone(),
                size: manifest_body.len() as u64,
                platform: index.as_ref().and_then(|(_, _, e)| e.platform.clone()),
                annotations: Default::default(),
            },
            tag: reference.tag().map(|_| reference.to_string()),
            repo_digest: reference.with_digest(index.as_ref().map_or(&manifest_digest, |(_, d, _)| d)),
            index_digest: index.as_ref().map(|(_, d, _)| d.clone()),
            size: index_size + manifest_body.len() as u64 + total,
            user: config.user().to_string(),
            blobs: leased.clone(),
        };
        let inner2 = inner.clone();
        let committed = tokio::task::spawn_blocking(move || inner2.commit_pull(entry, &chains))
            .await
            .map_err(|e| Error::internal(format!("commit task failed: {e}")))?;
        match committed {
            Ok(()) => {
                emit(Progress::Committed { image_id: id.clone() });
                tracing::debug!(image = %what, id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "pulled");
                return Ok(id);
            }
            Err(e) if e.kind() == ErrorKind::NotFound && rounds < 3 => rounds += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Fetch the config, then every layer in parallel, each unpacked as soon as
/// it is in the store (when unpacking is on) while the others download.
/// `Ok(None)` means the config vanished (a racing remove) and the caller
/// should try again. `fetched` collects the blobs this call downloaded (as
/// each lands, so a cancelled call leaves the full list) and
/// `unpacked` the image's layer ids, so a failed pull can take back what no
/// other image uses.
#[allow(clippy::too_many_arguments)]
async fn fetch_and_unpack(
    inner: &Arc<Inner>,
    repo: &Repo,
    manifest: &manifest::Manifest,
    what: &str,
    emit: &(impl Fn(Progress) + Sync),
    writers: &Arc<()>,
    fetched: &Mutex<Vec<String>>,
    unpacked: &mut Vec<String>,
) -> Result<Option<(ImageConfig, Vec<String>, Option<crate::store::Lease>)>> {
    let store = &inner.store;
    fetch_blob(inner, repo, &manifest.config, emit, writers, fetched).await?;
    let config_bytes = match store.read_blob(&manifest.config.digest, manifest::CONFIG_MAX) {
        Err(_) if !store.has_blob(&manifest.config.digest, manifest.config.size) => return Ok(None),
        r => r?,
    };
    let config = ImageConfig::parse(&config_bytes)?;
    let (chains, diff_ids, lease) = if inner.options.unpack {
        let diff_ids = config.diff_ids(manifest.layers.len(), what)?;
        let chains = crate::layers::chain_ids(&diff_ids);
        let entries: Vec<String> = chains.iter().map(|c| format!("{}{c}", crate::service::LAYER_LEASE)).collect();
        let lease = store.lease(&entries)?;
        unpacked.extend(chains.iter().cloned());
        (chains, diff_ids, Some(lease))
    } else {
        (vec![], vec![], None)
    };
    let parallel = inner.options.max_parallel_downloads.max(1);
    let work: Vec<_> = manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let layer = chains.get(i).zip(diff_ids.get(i));
            async move {
                fetch_blob(inner, repo, d, emit, writers, fetched).await?;
                if let Some((chain, diff_id)) = layer {
                    unpack_layer(inner, chain, diff_id, d, writers).await?;
                }
                Ok::<_, Error>(())
            }
        })
        .collect();
    let mut running = futures_util::stream::iter(work).buffer_unordered(parallel);
    while let Some(r) = running.next().await {
        // An error returns at once; dropping the stream stops the other work.
        r?;
    }
    drop(running);
    Ok(Some((config, chains, lease)))
}

/// Stops a blocking unpack when the pull that waits for it goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Unpack one layer on a blocking thread, unless it is there already.
async fn unpack_layer(inner: &Arc<Inner>, chain: &str, diff_id: &str, d: &Descriptor, writers: &Arc<()>) -> Result<()> {
    if inner.layers.has(chain) {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let (inner2, alive) = (inner.clone(), writers.clone());
    let (chain, diff_id, digest) = (chain.to_string(), diff_id.to_string(), d.digest.clone());
    tokio::task::spawn_blocking(move || {
        let _alive = alive; // counted until its temporary directory is gone
        let blob = inner2.store.blob_path(&digest)?;
        inner2.layers.ensure(&chain, &diff_id, &digest, &blob, inner2.options.max_layer_bytes, &stop).map(|_| ())
    })
    .await
    .map_err(|e| Error::internal(format!("unpack task failed: {e}")))?
}

/// Make sure one blob is in the store. A blob this call sets out to download
/// goes into `fetched` first: if the call is then dropped, the writer may
/// still finish it, and the pull's cleanup must know it is ours to take back.
async fn fetch_blob(
    inner: &Arc<Inner>,
    repo: &Repo,
    d: &Descriptor,
    emit: &(impl Fn(Progress) + Sync),
    writers: &Arc<()>,
    fetched: &Mutex<Vec<String>>,
) -> Result<()> {
    let store = &inner.store;
    loop {
        if store.has_blob(&d.digest, d.size) {
            emit(Progress::LayerSkipped { digest: d.digest.clone(), size: d.size });
            return Ok(());
        }
        // One fetcher per blob, in any process; the others wait and then skip it.
        match store.try_lock_blob(&d.digest)? {
            Some(lock) => {
                if store.has_blob(&d.digest, d.size) {
                    emit(Progress::LayerSkipped { digest: d.digest.clone(), size: d.size });
                    return Ok(());
                }
                fetched.lock().unwrap_or_else(|e| e.into_inner()).push(d.digest.clone());
                emit(Progress::LayerStarted { digest: d.digest.clone(), size: d.size });
                let downloaded = download(inner, repo, d, emit, writers).await;
                // Waiters re-check the blob after they get the lock, so the
                // lock file can go now, whatever happened.
                store.unlock_blob(&d.digest, lock);
                downloaded?;
                emit(Progress::LayerDone { digest: d.digest.clone(), size: d.size });
                return Ok(());
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

enum Chunk {
    Data(bytes::Bytes),
    Restart,
}

const MAX_ATTEMPTS: u32 = 5;

/// Stream one blob into an ingest file on a blocking thread, hashing as it
/// goes; resume with `Range` after a broken connection.
async fn download(
    inner: &Arc<Inner>,
    repo: &Repo,
    d: &Descriptor,
    emit: &(impl Fn(Progress) + Sync),
    writers: &Arc<()>,
) -> Result<()> {
    let limit = inner.options.progress_timeout;
    // A short queue between the network and the disk writer: enough to keep
    // both busy, and memory stays small with several downloads at once.
    let (tx, mut rx) = mpsc::channel::<Chunk>(1);
    let inner2 = inner.clone();
    let (digest, size) = (d.digest.clone(), d.size);
    let alive = writers.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let _alive = alive; // counted until the ingest file is gone
        let mut ingest = inner2.store.ingest(&digest)?;
        while let Some(chunk) = rx.blocking_recv() {
            match chunk {
                Chunk::Data(bytes) => ingest.write(&bytes)?,
                Chunk::Restart => ingest.reset()?,
            }
        }
        if ingest.written() != size {
            return Err(Error::internal("download ended early"));
        }
        ingest.commit(&inner2.store, size)
    });
    let sent = async {
        let mut offset = 0u64;
        let mut attempts = 0u32;
        let mut last_report = Instant::now();
        while offset < d.size || (d.size == 0 && attempts == 0) {
            let opened = in_time(limit, || format!("fetching blob {}", d.digest), async {
                Ok(repo.blob(&d.digest, offset).await)
            })
            .await?;
            let (mut stream, ranged) = match opened {
                Ok(b) => (b.stream, b.ranged),
                Err(e) if registry::is_transient(&e) && attempts + 1 < MAX_ATTEMPTS => {
                    attempts += 1;
                    tracing::debug!(blob = %d.digest, error = %e, attempts, "retrying blob");
                    tokio::time::sleep(registry::backoff(attempts, Some(&e))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !ranged && offset > 0 {
                tx.send(Chunk::Restart).await.map_err(|_| Error::internal("blob writer stopped"))?;
                offset = 0;
            }
            if d.size == 0 {
                break;
            }
            loop {
                let next = in_time(limit, || format!("downloading blob {}", d.digest), async { Ok(stream.next().await) }).await?;
                match next {
                    Some(Ok(bytes)) => {
                        offset += bytes.len() as u64;
                        if offset > d.size {
                            return Err(Error::integrity(format!(
                                "blob {} is longer than the {} bytes its descriptor says",
                                d.digest, d.size
                            )));
                        }
                        tx.send(Chunk::Data(bytes)).await.map_err(|_| Error::internal("blob writer stopped"))?;
                        if last_report.elapsed() >= Duration::from_millis(250) || offset == d.size {
                            last_report = Instant::now();
                            emit(Progress::Bytes { digest: d.digest.clone(), done: offset, total: d.size });
                        }
                    }
                    Some(Err(e)) => {
                        attempts += 1;
                        if attempts >= MAX_ATTEMPTS {
                            return Err(Error::unavailable(format!("downloading blob {}: {e} (after {attempts} attempts)", d.digest)));
                        }
                        tracing::debug!(blob = %d.digest, error = %e, offset, "connection broke; resuming");
                        tokio::time::sleep(registry::backoff(attempts, None)).await;
                        break;
                    }
                    None if offset < d.size => {
                        attempts += 1;
                        if attempts >= MAX_ATTEMPTS {
                            return Err(Error::unavailable(format!(
                                "downloading blob {}: the registry sent {offset} of {} bytes (after {attempts} attempts)",
                                d.digest, d.size
                            )));
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(|e| Error::internal(format!("blob writer failed: {e}")))?;
    match (sent, written) {
        // The sender only sees that the writer stopped; the writer knows why (a full disk, say).
        (Err(e), Err(w)) if e.kind() == ErrorKind::Internal => Err(w),
        (Err(e), _) => Err(e),
        (Ok(()), w) => w,
    }
}
