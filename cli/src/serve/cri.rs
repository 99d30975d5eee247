//! The CRI RPC handlers. Each one unwraps the request, calls
//! `imgsvc::Service`, and maps the answer or the error; CRI semantics (what a
//! name means, idempotent removal, image ids) live in the core.
//!
//! Every handled call is logged once at info level: method, image, outcome and
//! time taken. Credentials are never logged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

/// Messages and the ImageService server, generated from proto/cri_image.proto.
pub mod api {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/image/runtime.v1.rs"));
}

/// Messages and the RuntimeService server, generated from proto/cri_runtime.proto.
pub mod runtime_api {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/runtime/runtime.v1.rs"));
}

use api::image_service_server::{ImageService, ImageServiceServer};
use runtime_api::runtime_service_server::{RuntimeService, RuntimeServiceServer};

impl fmt::Debug for api::AuthConfig {
    // Generated Debug would print the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// The one mapping from the core's error kinds to gRPC codes (DESIGN.md).
pub fn status_of(e: &imgsvc::Error) -> Status {
    use imgsvc::ErrorKind as K;
    let code = match e.kind() {
        K::InvalidArgument => Code::InvalidArgument,
        K::NotFound => Code::NotFound,
        K::Unauthenticated => Code::Unauthenticated,
        K::PermissionDenied => Code::PermissionDenied,
        K::Unavailable => Code::Unavailable,
        K::Integrity => Code::DataLoss,
        K::Unsupported => Code::FailedPrecondition,
        K::StorageFull => Code::ResourceExhausted,
        K::Io => Code::Internal,
        K::Cancelled => Code::Cancelled,
        K::Timeout => Code::DeadlineExceeded,
        K::Internal => Code::Internal,
        // A kind added to the core after this was written.
        _ => Code::Unknown,
    };
    Status::new(code, clip(e.message(), MAX_MESSAGE))
}

/// Longest error message sent to a client: errors quote the request, which
/// may be megabytes long, and the message travels in an HTTP/2 trailer.
const MAX_MESSAGE: usize = 2048;

/// Longest image name written to the log.
const MAX_LOGGED_IMAGE: usize = 512;

/// `s` cut to at most `max` bytes (at a character boundary), saying so.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

fn to_image(i: imgsvc::Image) -> api::Image {
    api::Image {
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests: i.repo_digests,
        size: i.size,
        uid: i.uid.map(|value| api::Int64Value { value }),
        username: i.username,
        spec: None,
        pinned: i.pinned,
    }
}

/// The CRI `AuthConfig` as the core's `Auth`; an all-empty one means none.
fn to_auth(a: api::AuthConfig) -> Option<imgsvc::Auth> {
    let auth = imgsvc::Auth {
        username: a.username,
        password: a.password,
        auth: a.auth,
        server_address: a.server_address,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    };
    (auth != imgsvc::Auth::default()).then_some(auth)
}

/// The client's deadline, from the `grpc-timeout` header ("<digits><unit>").
fn deadline<T>(req: &Request<T>) -> Option<Duration> {
    parse_grpc_timeout(req.metadata().get("grpc-timeout")?.to_str().ok()?)
}

fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None; // the spec allows at most 8 digits
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Logs a call once: when it ends, or, if its future is dropped first (the
/// client went away, or tonic's own deadline fired), when it is dropped.
///
/// Strings are logged quoted and escaped (a newline in a request cannot fake
/// a log line), the image cut to `MAX_LOGGED_IMAGE` bytes.
struct CallLog {
    method: &'static str,
    image: String,
    start: Instant,
    done: bool,
}

impl CallLog {
    fn new(method: &'static str, image: &str) -> Self {
        CallLog { method, image: clip(image, MAX_LOGGED_IMAGE), start: Instant::now(), done: false }
    }

    fn finish<T>(mut self, result: &Result<T, Status>) {
        self.done = true;
        let elapsed_ms = self.start.elapsed().as_millis() as u64;
        let image = self.image.as_str();
        match result {
            Ok(_) => tracing::info!(method = self.method, image, outcome = "ok", elapsed_ms),
            Err(s) => tracing::info!(method = self.method, image, outcome = ?s.code(), error = s.message(), elapsed_ms),
        }
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        if !self.done {
            let elapsed_ms = self.start.elapsed().as_millis() as u64;
            let image = self.image.as_str();
            tracing::info!(method = self.method, image, outcome = "abandoned (client gone or deadline)", elapsed_ms);
        }
    }
}

/// Runs `work` for one call: bounded by the client's deadline, cut short when
/// the server's grace period ends, and logged.
async fn call<T>(
    method: &'static str,
    image: &str,
    deadline: Option<Duration>,
    shutdown: &CancellationToken,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let log = CallLog::new(method, image);
    let bounded = async {
        tokio::select! {
            r = work => r,
            () = shutdown.cancelled() => Err(Status::cancelled("imgsvc is shutting down")),
        }
    };
    let result = match deadline {
        Some(d) => tokio::time::timeout(d, bounded).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!("{method} did not finish within the client's deadline")))
        }),
        None => bounded.await,
    };
    log.finish(&result);
    result
}

fn image_of(spec: Option<&api::ImageSpec>) -> &str {
    spec.map_or("", |s| s.image.as_str())
}

fn filter_of(filter: Option<&api::ImageFilter>) -> &str {
    image_of(filter.and_then(|f| f.image.as_ref()))
}

/// Images in one StreamImages message; well under the 4 MiB default limit
/// even for images with many names.
const STREAM_BATCH: usize = 200;

/// runtime.v1.ImageService over `imgsvc::Service`.
pub struct Images {
    service: imgsvc::Service,
    shutdown: CancellationToken,
}

pub fn image_service(service: imgsvc::Service, shutdown: CancellationToken) -> ImageServiceServer<Images> {
    ImageServiceServer::new(Images { service, shutdown })
}

type ImageBatches = Pin<Box<dyn tokio_stream::Stream<Item = Result<api::StreamImagesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        req: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let limit = deadline(&req);
        let req = req.into_inner();
        let filter = filter_of(req.filter.as_ref());
        call("ListImages", filter, limit, &self.shutdown, async {
            let images = self.service.list(Some(filter)).await.map_err(|e| status_of(&e))?;
            Ok(Response::new(api::ListImagesResponse { images: images.into_iter().map(to_image).collect() }))
        })
        .await
    }

    type StreamImagesStream = ImageBatches;

    async fn stream_images(&self, req: Request<api::StreamImagesRequest>) -> Result<Response<ImageBatches>, Status> {
        let limit = deadline(&req);
        let req = req.into_inner();
        let filter = filter_of(req.filter.as_ref());
        call("StreamImages", filter, limit, &self.shutdown, async {
            let images: Vec<api::Image> =
                self.service.list(Some(filter)).await.map_err(|e| status_of(&e))?.into_iter().map(to_image).collect();
            // Every message carries at least one image; no images, no message.
            let batches: Vec<_> = images
                .chunks(STREAM_BATCH)
                .map(|chunk| Ok(api::StreamImagesResponse { images: chunk.to_vec() }))
                .collect();
            Ok(Response::new(Box::pin(tokio_stream::iter(batches)) as ImageBatches))
        })
        .await
    }

    async fn image_status(
        &self,
        req: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let limit = deadline(&req);
        let req = req.into_inner();
        let image = image_of(req.image.as_ref());
        call("ImageStatus", image, limit, &self.shutdown, async {
            let status = self.service.status(image, req.verbose).await.map_err(|e| status_of(&e))?;
            Ok(Response::new(match status {
                Some(s) => {
                    api::ImageStatusResponse { image: Some(to_image(s.image)), info: s.info.into_iter().collect() }
                }
                None => api::ImageStatusResponse { image: None, info: Default::default() },
            }))
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        let limit = deadline(&req);
        let req = req.into_inner();
        let image = image_of(req.image.as_ref());
        let handler = req.image.as_ref().map_or("", |s| s.runtime_handler.as_str());
        let auth = req.auth.map(to_auth).unwrap_or(None);
        call("PullImage", image, limit, &self.shutdown, async {
            if !handler.is_empty() {
                // The CRI asks runtimes to reject handlers they do not know; we
                // know only the default one.
                let handler = clip(handler, MAX_LOGGED_IMAGE);
                return Err(Status::invalid_argument(format!(
                    "unknown runtime handler {handler:?}: imgsvc has only the default handler"
                )));
            }
            let mut progress = |p: &imgsvc::Progress| {
                match p {
                    imgsvc::Progress::Resolved { manifest_digest, total_bytes, layers, .. } => {
                        tracing::debug!(image, manifest = %manifest_digest, total_bytes, layers, "pull resolved")
                    }
                    imgsvc::Progress::LayerDone { digest, size } => {
                        tracing::debug!(image, blob = %digest, size, "blob fetched")
                    }
                    _ => {}
                }
                true
            };
            let id = self.service.pull(image, auth.as_ref(), Some(&mut progress)).await.map_err(|e| status_of(&e))?;
            Ok(Response::new(api::PullImageResponse { image_ref: id }))
        })
        .await
    }

    async fn remove_image(
        &self,
        req: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let limit = deadline(&req);
        let req = req.into_inner();
        let image = image_of(req.image.as_ref());
        call("RemoveImage", image, limit, &self.shutdown, async {
            self.service.remove(image).await.map_err(|e| status_of(&e))?;
            Ok(Response::new(api::RemoveImageResponse {}))
        })
        .await
    }

    async fn image_fs_info(
        &self,
        req: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        let limit = deadline(&req);
        call("ImageFsInfo", "", limit, &self.shutdown, async {
            let u = self.service.fs_info().await.map_err(|e| status_of(&e))?;
            let usage = api::FilesystemUsage {
                timestamp: u.timestamp_ns,
                fs_id: Some(api::FilesystemIdentifier { mountpoint: u.mountpoint }),
                used_bytes: Some(api::UInt64Value { value: u.used_bytes }),
                inodes_used: Some(api::UInt64Value { value: u.inodes_used }),
            };
            Ok(Response::new(api::ImageFsInfoResponse {
                image_filesystems: vec![usage],
                container_filesystems: vec![],
            }))
        })
        .await
    }
}

/// The part of runtime.v1.RuntimeService an image service answers; every
/// other RPC keeps its generated body, which answers UNIMPLEMENTED.
pub struct Runtime;

/// RPCs of `Runtime` with a body of ours (which logs the call itself).
const RUNTIME_SERVED: [&str; 3] = ["Version", "ListContainers", "ListPodSandbox"];

pub fn runtime_service() -> LogUnserved<RuntimeServiceServer<Runtime>> {
    LogUnserved(RuntimeServiceServer::new(Runtime))
}

/// Gives the RuntimeService calls answered by a generated stub their log
/// line too (they answer UNIMPLEMENTED at once, so it is written up front).
#[derive(Clone)]
pub struct LogUnserved<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for LogUnserved<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for LogUnserved<S>
where
    S: tonic::codegen::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> S::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        if !RUNTIME_SERVED.contains(&method) {
            let method = clip(method, MAX_LOGGED_IMAGE);
            tracing::info!(method = method.as_str(), image = "", outcome = ?Code::Unimplemented, elapsed_ms = 0u64);
        }
        self.0.call(req)
    }
}

/// The kubelet runtime API version other runtimes report.
const KUBELET_API_VERSION: &str = "0.1.0";

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _req: Request<runtime_api::VersionRequest>,
    ) -> Result<Response<runtime_api::VersionResponse>, Status> {
        let log = CallLog::new("Version", "");
        let result = Ok(Response::new(runtime_api::VersionResponse {
            version: KUBELET_API_VERSION.to_string(),
            runtime_name: "imgsvc".to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: "v1".to_string(),
        }));
        log.finish(&result);
        result
    }

    async fn list_containers(
        &self,
        _req: Request<runtime_api::ListContainersRequest>,
    ) -> Result<Response<runtime_api::ListContainersResponse>, Status> {
        let log = CallLog::new("ListContainers", "");
        let result = Ok(Response::new(runtime_api::ListContainersResponse { containers: vec![] }));
        log.finish(&result);
        result
    }

    async fn list_pod_sandbox(
        &self,
        _req: Request<runtime_api::ListPodSandboxRequest>,
    ) -> Result<Response<runtime_api::ListPodSandboxResponse>, Status> {
        let log = CallLog::new("ListPodSandbox", "");
        let result = Ok(Response::new(runtime_api::ListPodSandboxResponse { items: vec![] }));
        log.finish(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("999u"), Some(Duration::from_micros(999)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse_grpc_timeout("123456789S"), None); // nine digits
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
    }

    #[test]
    fn every_error_kind_has_its_code() {
        use imgsvc::ErrorKind as K;
        let table = [
            (K::InvalidArgument, Code::InvalidArgument),
            (K::NotFound, Code::NotFound),
            (K::Unauthenticated, Code::Unauthenticated),
            (K::PermissionDenied, Code::PermissionDenied),
            (K::Unavailable, Code::Unavailable),
            (K::Integrity, Code::DataLoss),
            (K::Unsupported, Code::FailedPrecondition),
            (K::StorageFull, Code::ResourceExhausted),
            (K::Io, Code::Internal),
            (K::Cancelled, Code::Cancelled),
            (K::Timeout, Code::DeadlineExceeded),
            (K::Internal, Code::Internal),
        ];
        for (kind, code) in table {
            let s = status_of(&imgsvc::Error::new(kind, "why"));
            assert_eq!((s.code(), s.message()), (code, "why"), "{kind:?}");
        }
    }

    #[test]
    fn long_messages_are_clipped_at_a_char_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc... (6 bytes in all)");
        // 'é' is two bytes: a cut inside it moves back before it.
        assert_eq!(clip("aé", 2), "a... (3 bytes in all)");
        let huge = format!("invalid image reference \"{}\"", "z".repeat(1 << 20));
        let s = status_of(&imgsvc::Error::new(imgsvc::ErrorKind::InvalidArgument, huge));
        assert!(s.message().len() < MAX_MESSAGE + 40, "{}", s.message().len());
        assert!(s.message().starts_with("invalid image reference \"zzz"));
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = api::AuthConfig {
            username: "alice".into(),
            password: "s3cret-pw".into(),
            auth: "YWxpY2U6czNjcmV0LXB3".into(),
            server_address: "r.example".into(),
            identity_token: "id-tok".into(),
            registry_token: "reg-tok".into(),
        };
        let shown = format!("{a:?}");
        for secret in ["s3cret-pw", "YWxpY2U6czNjcmV0LXB3", "id-tok", "reg-tok"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("alice"));
    }

    #[test]
    fn empty_auth_is_none() {
        assert!(to_auth(api::AuthConfig::default()).is_none());
        let a = to_auth(api::AuthConfig { username: "u".into(), password: "p".into(), ..Default::default() }).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
    }

    #[test]
    fn uid_zero_is_set() {
        let img = imgsvc::Image {
            id: "sha256:00".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            uid: Some(0),
            username: String::new(),
            pinned: false,
        };
        assert_eq!(to_image(img).uid, Some(api::Int64Value { value: 0 }));
    }
}
