//! `imgsvc serve` through a real gRPC client (tonic) on its unix socket, with
//! the real registry: what crictl cannot exercise (StreamImages, deadlines,
//! disconnects, shutdown with calls in flight) and the socket's life.
//!
//! Pulls that must stay in flight go through `StallProxy`, a TCP relay to the
//! registry that can hold back response bytes, so the tests do not depend on
//! timing of a fast loopback download.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fmt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The generated code names its codec by this path (see build.rs); the
/// server's own codec differs only in how it reports undecodable requests.
mod serve {
    pub mod codec {
        pub type CriCodec<T, U> = tonic_prost::ProstCodec<T, U>;
    }
}

mod api {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/image/runtime.v1.rs"));
}
mod runtime_api {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/runtime/runtime.v1.rs"));
}

// The generated code leaves Debug to us (the server redacts secrets there too).
impl fmt::Debug for api::AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig").field("username", &self.username).finish_non_exhaustive()
    }
}

type Images = api::image_service_client::ImageServiceClient<Channel>;
type Runtime = runtime_api::runtime_service_client::RuntimeServiceClient<Channel>;

/// A running `imgsvc serve` with its own store, socket and log file.
struct Daemon {
    child: Child,
    socket: PathBuf,
    root: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        Daemon::start_with(&[], extra)
    }

    /// `registry` replaces the default registry flags given before `serve`
    /// (pairs of flag and value).
    fn start_with(registry: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("imgsvc-serve-").tempdir().unwrap();
        // A directory that does not exist yet: serve creates it.
        let socket = dir.path().join("run/nested/imgsvc.sock");
        let mut d = Daemon::spawn_with(dir, socket, registry, extra);
        d.wait_ready();
        d
    }

    fn spawn(dir: tempfile::TempDir, socket: PathBuf, extra: &[&str]) -> Daemon {
        Daemon::spawn_with(dir, socket, &[], extra)
    }

    fn spawn_with(dir: tempfile::TempDir, socket: PathBuf, registry: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let root = dir.path().join("root");
        let log = dir.path().join("daemon.log");
        // Our own registries.conf, never the machine's; having one at all
        // turns on short-name resolution, which id lookups must get past.
        let conf = dir.path().join("registries.conf");
        std::fs::write(&conf, "[aliases]\n\"busybox\" = \"docker.io/library/busybox\"\n").unwrap();
        let conf = conf.display().to_string();
        let mut flags = vec![
            ("--registries-conf", conf.as_str()),
            ("--auth-file", ""),
            ("--docker-config", ""),
            ("--cert-dir", ""),
        ];
        for (flag, value) in registry {
            flags.retain(|(f, _)| f != flag);
            flags.push((flag, value));
        }
        let child = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
            .arg("--root")
            .arg(&root)
            .args(flags.iter().flat_map(|(f, v)| [*f, *v]))
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .args(extra)
            .env("IMGSVC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, socket, root, log, _dir: dir }
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("imgsvc serve exited ({status}) before listening:\n{}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "imgsvc serve did not listen:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn channel(&self) -> Channel {
        channel(&self.socket).await
    }

    async fn images(&self) -> Images {
        Images::new(self.channel().await)
    }

    fn signal(&self, name: &str) {
        let st = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(st.success());
    }

    /// Wait for the process to exit on its own.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "imgsvc serve still running after {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::try_from("http://imgsvc.invalid")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(socket).await?))
            }
        }))
        .await
        .expect("connect to imgsvc serve")
}

fn spec(image: &str) -> Option<api::ImageSpec> {
    Some(api::ImageSpec { image: image.to_string(), ..Default::default() })
}

fn pull_request(image: &str, timeout: Option<Duration>) -> tonic::Request<api::PullImageRequest> {
    let mut req = tonic::Request::new(api::PullImageRequest { image: spec(image), auth: None });
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    req
}

async fn status(c: &mut Images, image: &str) -> Option<api::Image> {
    c.image_status(api::ImageStatusRequest { image: spec(image), verbose: false }).await.unwrap().into_inner().image
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay to the registry that, while `stalled`, stops passing response
/// bytes on any connection past its first `FREE` bytes (manifests, configs
/// and small layers get through; a big layer hangs mid-body).
struct StallProxy {
    addr: String,
    stalled: Arc<AtomicBool>,
    /// Response bytes handed to the client so far.
    delivered: Arc<AtomicU64>,
    /// Connections currently held back.
    waiting: Arc<AtomicUsize>,
}

const FREE: u64 = 256 * 1024;

impl StallProxy {
    async fn start(upstream: &str) -> StallProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let proxy = StallProxy {
            addr,
            stalled: Arc::new(AtomicBool::new(true)),
            delivered: Arc::default(),
            waiting: Arc::default(),
        };
        let (stalled, delivered, waiting, upstream) =
            (proxy.stalled.clone(), proxy.delivered.clone(), proxy.waiting.clone(), upstream.to_string());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_r, &mut server_w).await });
                let (stalled, delivered, waiting) = (stalled.clone(), delivered.clone(), waiting.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    loop {
                        let n = match server_r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sent + n as u64 > FREE && stalled.load(Ordering::SeqCst) {
                            waiting.fetch_add(1, Ordering::SeqCst);
                            while stalled.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            waiting.fetch_sub(1, Ordering::SeqCst);
                        }
                        if client_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n as u64;
                        delivered.fetch_add(n as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        proxy
    }

    fn release(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    /// Wait until some download is held back, i.e. a pull is mid-layer.
    async fn wait_held(&self) {
        let waiting = self.waiting.clone();
        until("a download to reach the stall", Duration::from_secs(20), move || waiting.load(Ordering::SeqCst) > 0)
            .await;
    }
}

/// After a pull was abandoned: let bytes flow again and check nobody reads them.
async fn assert_pull_stopped(d: &Daemon, proxy: &StallProxy, images: &mut Images, image: &str) {
    let before = proxy.delivered.load(Ordering::SeqCst);
    proxy.release();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let after = proxy.delivered.load(Ordering::SeqCst);
    // A live download would fetch the whole 95 MB layer (and record the
    // image) in this time on loopback. What a connection the client is just
    // closing can still take is kernel socket buffers: a few MiB on a loaded
    // machine.
    assert!(after - before < 16 << 20, "the pull kept downloading after it was abandoned: {} bytes", after - before);
    assert!(status(images, image).await.is_none(), "an abandoned pull must not record the image");
    // And it took back what it had fetched (the config, the small layers).
    let blobs = common::files_under(&d.root.join("blobs"));
    assert!(blobs.is_empty(), "an abandoned pull left blobs: {blobs:?}");
    let layers = common::files_under(&d.root.join("layers"));
    assert!(layers.iter().all(|p| p.extension().is_some_and(|e| e == "lock")), "and layers: {layers:?}");
}

fn is_cut_short(code: Code) -> bool {
    matches!(code, Code::DeadlineExceeded | Code::Cancelled)
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_runtime_service_and_empty_store() {
    let mut d = Daemon::start(&["--socket-mode", "0600"]);
    let meta = std::fs::symlink_metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let mut rt = Runtime::new(d.channel().await);
    let v = rt.version(runtime_api::VersionRequest { version: "v1".into() }).await.unwrap().into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_version.as_str(), v.runtime_api_version.as_str()),
        ("imgsvc", env!("CARGO_PKG_VERSION"), "v1")
    );
    assert!(rt
        .list_containers(runtime_api::ListContainersRequest {})
        .await
        .unwrap()
        .into_inner()
        .containers
        .is_empty());
    assert!(rt.list_pod_sandbox(runtime_api::ListPodSandboxRequest {}).await.unwrap().into_inner().items.is_empty());
    let e = rt.status(runtime_api::NotServed {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    let e = rt.run_pod_sandbox(runtime_api::NotServed {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // A server-streaming RPC we do not serve: the error comes with the call.
    let e = rt.stream_containers(runtime_api::NotServed {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");

    let mut c = d.images().await;
    let fs = c.image_fs_info(api::ImageFsInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(fs.image_filesystems.len(), 1);
    assert!(fs.container_filesystems.is_empty());
    let u = &fs.image_filesystems[0];
    assert_eq!(u.fs_id.as_ref().unwrap().mountpoint, d.root.display().to_string());
    assert!(u.timestamp > 0);
    assert!(c.list_images(api::ListImagesRequest { filter: None }).await.unwrap().into_inner().images.is_empty());
    let mut stream = c.stream_images(api::StreamImagesRequest { filter: None }).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_none(), "no images, no messages");
    // Absent images: an empty status, and an idempotent remove (twice), for a
    // name, a short name, an id with and without "sha256:".
    let zeros = "0".repeat(64);
    for image in ["docker.io/library/busybox:latest", "busybox", &format!("sha256:{zeros}"), &zeros] {
        assert!(status(&mut c, image).await.is_none(), "{image}");
        c.remove_image(api::RemoveImageRequest { image: spec(image) }).await.unwrap();
        c.remove_image(api::RemoveImageRequest { image: spec(image) }).await.unwrap();
    }
    let e =
        c.image_status(api::ImageStatusRequest { image: spec("Not A Reference"), verbose: false }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut req = pull_request("docker.io/library/busybox:latest", None).into_inner();
    req.image.as_mut().unwrap().runtime_handler = "kata".into();
    let e = c.pull_image(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A second server on the same socket is refused; the first keeps it.
    let out = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .arg("--root")
        .arg(d.root.join("other"))
        .args(["--registries-conf", "", "serve", "--listen", &format!("unix://{}", d.socket.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another imgsvc serve is running"), "{err}");
    assert!(c.image_fs_info(api::ImageFsInfoRequest {}).await.is_ok(), "the first server still answers");

    d.signal("TERM");
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
    assert!(!d.socket.exists(), "socket removed on exit");
    let log = d.log();
    assert!(log.contains("imgsvc stopped"), "{log}");
    for method in [
        "Version",
        "ListContainers",
        "ImageFsInfo",
        "ListImages",
        "StreamImages",
        "ImageStatus",
        "RemoveImage",
        "PullImage",
    ] {
        assert!(log.contains(&format!("method=\"{method}\"")), "no log line for {method}:\n{log}");
    }
    // Calls answered by a generated stub are logged too, with their outcome.
    for method in ["Status", "RunPodSandbox", "StreamContainers"] {
        assert!(
            log.lines().any(|l| l.contains(&format!("method=\"{method}\"")) && l.contains("outcome=Unimplemented")),
            "no Unimplemented log line for {method}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_socket_replaced_other_files_kept() {
    let dir = tempfile::Builder::new().prefix("imgsvc-serve-").tempdir().unwrap();
    let socket = dir.path().join("imgsvc.sock");
    // What a crashed server leaves: the socket file, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut d = Daemon::spawn(dir, socket.clone(), &[]);
    d.wait_ready();
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "default mode");
    assert!(d.log().contains("replacing a stale socket"), "{}", d.log());
    d.signal("INT");
    assert!(d.wait_exit(Duration::from_secs(10)).success());
    assert!(!socket.exists());

    // Not a socket: refused and left alone.
    std::fs::write(&socket, "precious").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .arg("--root")
        .arg(d.root.clone())
        .args(["--registries-conf", "", "serve", "--listen", &format!("unix://{}", socket.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_images_matches_list_images() {
    let d = Daemon::start(&[]);
    let mut c = d.images().await;
    let names = [common::fixture("small:a"), common::fixture("root:latest"), common::fixture("named:latest")];
    for n in &names {
        let id = c.pull_image(pull_request(n, None)).await.unwrap().into_inner().image_ref;
        assert_eq!(status(&mut c, n).await.unwrap().id, id, "image_ref equals Image.id");
    }
    let mut listed = c.list_images(api::ListImagesRequest { filter: None }).await.unwrap().into_inner().images;
    assert_eq!(listed.len(), 3);
    let mut streamed = vec![];
    let mut stream = c.stream_images(api::StreamImagesRequest { filter: None }).await.unwrap().into_inner();
    while let Some(batch) = stream.message().await.unwrap() {
        assert!(!batch.images.is_empty(), "every message carries at least one image");
        streamed.extend(batch.images);
    }
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    streamed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(streamed, listed);

    // The filter names one image; uid 0 arrives as a set value.
    let filter = Some(api::ImageFilter { image: spec(&names[1]) });
    let mut stream = c.stream_images(api::StreamImagesRequest { filter }).await.unwrap().into_inner();
    let batch = stream.message().await.unwrap().unwrap();
    assert!(stream.message().await.unwrap().is_none());
    assert_eq!(batch.images.len(), 1);
    assert_eq!(batch.images[0].repo_tags, vec![names[1].clone()]);
    assert_eq!(batch.images[0].uid, Some(api::Int64Value { value: 0 }));
    let named = status(&mut c, &names[2]).await.unwrap();
    assert_eq!((named.uid, named.username.as_str()), (None, "nobody"));

    // Verbose status: one key, a JSON object holding the config.
    let s =
        c.image_status(api::ImageStatusRequest { image: spec(&names[0]), verbose: true }).await.unwrap().into_inner();
    assert_eq!(s.info.keys().collect::<Vec<_>>(), vec!["info"]);
    let info: serde_json::Value = serde_json::from_str(&s.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "1000:1000");
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_errors_map_to_codes() {
    let d = Daemon::start(&[]);
    let mut c = d.images().await;
    for (image, code) in [
        (common::fixture("does-not-exist:v1"), Code::NotFound),
        (common::fixture("artifact:latest"), Code::FailedPrecondition),
        (common::fixture("noplatform:latest"), Code::FailedPrecondition),
        ("UPPER/case:v1".to_string(), Code::InvalidArgument),
        // Nothing listens on port 1: the registry is unavailable.
        ("127.0.0.1:1/fixture/small:a".to_string(), Code::Unavailable),
    ] {
        let e = c.pull_image(pull_request(&image, None)).await.unwrap_err();
        assert_eq!(e.code(), code, "{image}: {e:?}");
    }
    let log = d.log();
    assert!(log.contains("outcome=NotFound"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_logged() {
    let d = Daemon::start(&[]);
    let mut c = d.images().await;
    let secret = "pw-never-in-logs-7f3a";
    let token = "tok-never-in-logs-91c2";
    let mut req = pull_request(&common::fixture("small:a"), None).into_inner();
    req.auth = Some(api::AuthConfig {
        username: "alice".into(),
        password: secret.into(),
        registry_token: token.into(),
        ..Default::default()
    });
    // The fixture registry has no auth; the pull's outcome does not matter here.
    let _ = c.pull_image(req).await;
    let log = d.log();
    assert!(log.contains("method=\"PullImage\""), "{log}");
    assert!(!log.contains(secret) && !log.contains(token), "credentials in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deadline_ends_the_call_and_the_pull() {
    let d = Daemon::start(&[]);
    let proxy = StallProxy::start(common::registry()).await;
    let image = format!("{}/fixture/debian:v1", proxy.addr);
    let mut c = d.images().await;
    let start = Instant::now();
    let e = c.pull_image(pull_request(&image, Some(Duration::from_secs(2)))).await.unwrap_err();
    assert!(is_cut_short(e.code()), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(4), "the deadline was not honoured: {:?}", start.elapsed());
    assert!(
        proxy.waiting.load(Ordering::SeqCst) > 0 || proxy.delivered.load(Ordering::SeqCst) > 0,
        "the pull never started"
    );
    // The server side ended the call too (logged with its outcome).
    until("the PullImage log line", Duration::from_secs(5), || {
        let log = d.log();
        log.lines()
            .any(|l| l.contains("method=\"PullImage\"") && (l.contains("DeadlineExceeded") || l.contains("abandoned")))
    })
    .await;
    assert_pull_stopped(&d, &proxy, &mut c, &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_ends_the_pull() {
    let d = Daemon::start(&[]);
    let proxy = StallProxy::start(common::registry()).await;
    let image = format!("{}/fixture/debian:v1", proxy.addr);
    let leaving = d.channel().await;
    let task = {
        let image = image.clone();
        tokio::spawn(async move { Images::new(leaving).pull_image(pull_request(&image, None)).await })
    };
    proxy.wait_held().await;
    task.abort(); // drops the call and its channel: the client is gone
    let _ = task.await;
    until("the abandoned PullImage log line", Duration::from_secs(5), || {
        d.log().lines().any(|l| l.contains("method=\"PullImage\"") && l.contains("abandoned"))
    })
    .await;
    let mut c = d.images().await;
    assert_pull_stopped(&d, &proxy, &mut c, &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pull_survives_one_waiter_leaving() {
    let d = Daemon::start(&[]);
    let proxy = StallProxy::start(common::registry()).await;
    let image = format!("{}/fixture/debian:v1", proxy.addr);
    let patient = {
        let (channel, image) = (d.channel().await, image.clone());
        tokio::spawn(async move { Images::new(channel).pull_image(pull_request(&image, None)).await })
    };
    proxy.wait_held().await;
    let mut c = d.images().await;
    let e = c.pull_image(pull_request(&image, Some(Duration::from_secs(1)))).await.unwrap_err();
    assert!(is_cut_short(e.code()), "{e:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.release();
    let id =
        tokio::time::timeout(Duration::from_secs(60), patient).await.unwrap().unwrap().unwrap().into_inner().image_ref;
    assert_eq!(status(&mut c, &image).await.unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_calls_finish_within_grace() {
    let mut d = Daemon::start(&["--grace-period", "20"]);
    let proxy = StallProxy::start(common::registry()).await;
    let image = format!("{}/fixture/debian:v1", proxy.addr);
    let call = {
        let (channel, image) = (d.channel().await, image.clone());
        tokio::spawn(async move { Images::new(channel).pull_image(pull_request(&image, None)).await })
    };
    proxy.wait_held().await;
    d.signal("TERM");
    let socket = d.socket.clone();
    until("the socket to go at SIGTERM", Duration::from_secs(2), move || !socket.exists()).await;
    assert!(d.child.try_wait().unwrap().is_none(), "the server waits for the call in flight");
    proxy.release();
    let reply = tokio::time::timeout(Duration::from_secs(60), call).await.unwrap().unwrap();
    assert!(reply.unwrap().into_inner().image_ref.starts_with("sha256:"));
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cancels_calls_after_grace() {
    let mut d = Daemon::start(&["--grace-period", "1"]);
    let proxy = StallProxy::start(common::registry()).await;
    let image = format!("{}/fixture/debian:v1", proxy.addr);
    let call = {
        let (channel, image) = (d.channel().await, image.clone());
        tokio::spawn(async move { Images::new(channel).pull_image(pull_request(&image, None)).await })
    };
    proxy.wait_held().await;
    let start = Instant::now();
    d.signal("TERM");
    let reply = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap();
    let e = reply.unwrap_err();
    assert_eq!(e.code(), Code::Cancelled, "{e:?}");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "cancelled after {waited:?}");
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
    assert!(!d.socket.exists());
    assert!(d.log().contains("imgsvc is shutting down"), "{}", d.log());
}

/// Sends and receives raw protobuf bytes: requests no generated client can
/// produce (invalid UTF-8, wrong wire types, fields we do not declare).
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// One ImageService call with `body` as the request's bytes, and optional
/// request metadata.
async fn raw_call(
    channel: Channel,
    method: &str,
    body: Vec<u8>,
    metadata: &[(&'static str, &str)],
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!("/runtime.v1.ImageService/{method}")).unwrap();
    let mut req = tonic::Request::new(body);
    for (key, value) in metadata {
        req.metadata_mut().insert(*key, value.parse().unwrap());
    }
    grpc.unary(req, path, RawCodec).await.map(|r| r.into_inner())
}

/// The log is one event per line, each starting with its timestamp, none huge.
fn assert_log_well_formed(log: &str) {
    for line in log.lines() {
        assert!(
            line.len() >= 4 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "a log line that does not start with a timestamp (forged by a request?): {:?}",
            &line[..line.len().min(200)]
        );
        assert!(line.len() < 8192, "a log line of {} bytes", line.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_and_absurd_fields_get_clear_errors() {
    let mut d = Daemon::start(&[]);
    let mut c = d.images().await;
    let small = common::fixture("small:a");
    let id = c.pull_image(pull_request(&small, None)).await.unwrap().into_inner().image_ref;

    // No image named at all (the message unset, or an empty string).
    for image in [None, spec("")] {
        let e = c.image_status(api::ImageStatusRequest { image: image.clone(), verbose: true }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("no image specified"), "{e:?}");
        let e = c.remove_image(api::RemoveImageRequest { image: image.clone() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("no image specified"), "{e:?}");
        let e = c.pull_image(api::PullImageRequest { image: image.clone(), auth: None }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("empty"), "{e:?}");
    }
    // An empty filter, however it is spelled, lists every image.
    for filter in [None, Some(api::ImageFilter { image: None }), Some(api::ImageFilter { image: spec("") })] {
        let listed = c.list_images(api::ListImagesRequest { filter: filter.clone() }).await.unwrap().into_inner();
        assert_eq!(listed.images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [id.as_str()], "{filter:?}");
        let mut stream = c.stream_images(api::StreamImagesRequest { filter }).await.unwrap().into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().images.len(), 1);
        assert!(stream.message().await.unwrap().is_none());
    }

    // Names that are not references or ids (or, like "sha256:zz", a short
    // name nothing resolves), one of them a megabyte long: INVALID_ARGUMENT
    // from every RPC that takes a name, with a message that stays short.
    let huge = format!("{}/{}", common::registry(), "z".repeat(1 << 20));
    let long_tag = format!("{small}{}", "t".repeat(300));
    let absurd = [
        " ",
        "a\nINFO forged log line",
        "nul\0byte",
        "sha256:",
        "sha256:zz",
        "UPPER/Case:v1",
        "a@sha256:1234",
        "//",
        "a:b:c:d",
        "\u{202e}txet",
        &huge,
        &long_tag,
    ];
    for name in absurd {
        let shown = &name[..name.len().min(40)];
        let check = |what: &str, r: Result<(), tonic::Status>| {
            let e = r.expect_err(&format!("{what} {shown:?} must fail"));
            assert_eq!(e.code(), Code::InvalidArgument, "{what} {shown:?}: {e:?}");
            assert!(!e.message().is_empty(), "{what} {shown:?}: no message");
            assert!(e.message().len() <= 2100, "{what} {shown:?}: a message of {} bytes", e.message().len());
        };
        let r = c.image_status(api::ImageStatusRequest { image: spec(name), verbose: false }).await;
        check("ImageStatus", r.map(|_| ()));
        let r = c.remove_image(api::RemoveImageRequest { image: spec(name) }).await;
        check("RemoveImage", r.map(|_| ()));
        let r = c.pull_image(pull_request(name, None)).await;
        check("PullImage", r.map(|_| ()));
        let filter = Some(api::ImageFilter { image: spec(name) });
        let r = c.list_images(api::ListImagesRequest { filter: filter.clone() }).await;
        check("ListImages", r.map(|_| ()));
        let r = c.stream_images(api::StreamImagesRequest { filter }).await;
        check("StreamImages", r.map(|_| ()));
    }
    // An absurd runtime handler is refused the same way.
    let mut req = pull_request(&small, None).into_inner();
    req.image.as_mut().unwrap().runtime_handler = "h".repeat(1 << 20);
    let e = c.pull_image(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() <= 2100, "a message of {} bytes", e.message().len());

    // Malformed credentials: refused before any work, and never echoed.
    for (auth, why) in [("%%%not-base64-s3cret%%%", "not valid base64"), ("bm8tY29sb24tczNjcmV0", "no ':'")] {
        let mut req = pull_request(&small, None).into_inner();
        req.auth = Some(api::AuthConfig { auth: auth.into(), ..Default::default() });
        let e = c.pull_image(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(why) && !e.message().contains(auth), "{e:?}");
    }

    // Fields we ignore may be as large and odd as a client likes.
    let annotations = (0..10_000).map(|i| (format!("k{i}"), "v".repeat(20))).collect();
    let odd = api::ImageSpec {
        image: small.clone(),
        annotations,
        user_specified_image: "u".repeat(100_000),
        runtime_handler: String::new(),
        image_ref: "\u{0}\u{7f}odd".into(),
    };
    let s = c.image_status(api::ImageStatusRequest { image: Some(odd), verbose: false }).await.unwrap().into_inner();
    assert_eq!(s.image.unwrap().id, id);

    // Bytes no generated client sends. Invalid UTF-8 in ImageSpec.image, a
    // field with the wrong wire type, a truncated message: INVALID_ARGUMENT.
    for (body, why) in [
        (vec![0x0a, 0x03, 0x0a, 0x01, 0xff], "UTF-8"),
        (vec![0x08, 0x01], "wire type"),
        (vec![0x0a, 0x05, 0x0a], "buffer underflow"),
    ] {
        let e = raw_call(d.channel().await, "ImageStatus", body.clone(), &[]).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{body:x?}: {e:?}");
        assert!(e.message().contains("malformed request") && e.message().contains(why), "{body:x?}: {e:?}");
    }
    // Fields we do not declare are skipped: sandbox_config (3) with any
    // content, and a field number no CRI version has.
    let mut body = prost::Message::encode_to_vec(&pull_request(&small, None).into_inner());
    body.extend([0x1a, 0x05, 0x0a, 0x03, b'p', b'o', b'd']); // field 3, a nested message
    body.extend([0xb8, 0x3e, 0x01]); // field 999, varint 1
    let reply = raw_call(d.channel().await, "PullImage", body, &[]).await.unwrap();
    let reply: api::PullImageResponse = prost::Message::decode(&reply[..]).unwrap();
    assert_eq!(reply.image_ref, id);

    // A request over the 4 MiB limit is refused by the gRPC layer.
    let e = c
        .image_status(api::ImageStatusRequest { image: spec(&"x".repeat(5 << 20)), verbose: false })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("too large"), "{e:?}");

    // Deadlines: an absurdly long or unparsable one is no deadline; a
    // nanosecond cuts a pull short.
    let status_body = prost::Message::encode_to_vec(&api::ImageStatusRequest { image: spec(&small), verbose: false });
    for timeout in ["99999999H", "bogus", "-5S"] {
        let reply = raw_call(d.channel().await, "ImageStatus", status_body.clone(), &[("grpc-timeout", timeout)])
            .await
            .unwrap_or_else(|e| panic!("grpc-timeout {timeout}: {e:?}"));
        let reply: api::ImageStatusResponse = prost::Message::decode(&reply[..]).unwrap();
        assert_eq!(reply.image.unwrap().id, id, "grpc-timeout {timeout}");
    }
    // (A pull held back by the proxy, so it cannot win the race.)
    let proxy = StallProxy::start(common::registry()).await;
    let held = format!("{}/fixture/debian:v1", proxy.addr);
    let pull_body = prost::Message::encode_to_vec(&pull_request(&held, None).into_inner());
    let e = raw_call(d.channel().await, "PullImage", pull_body, &[("grpc-timeout", "1n")]).await.unwrap_err();
    assert!(is_cut_short(e.code()), "{e:?}");

    // Still serving, nothing panicked, the log is intact.
    let mut rt = Runtime::new(d.channel().await);
    rt.version(runtime_api::VersionRequest { version: "\u{0}".repeat(1000) }).await.unwrap();
    assert_eq!(status(&mut c, &small).await.unwrap().id, id);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon died");
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    assert_log_well_formed(&log);
    assert!(!log.contains("s3cret"), "credentials in the log");
    assert!(
        log.lines().any(|l| l.contains("method=\"ImageStatus\"") && l.contains("bytes in all")),
        "the megabyte name is logged clipped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_flags_reach_the_daemon() {
    // A registry with TLS (our own CA) and basic auth, holding small:a.
    let dir = tempfile::Builder::new().prefix("imgsvc-serve-reg-").tempdir().unwrap();
    let (ca, crt, key) = common::make_ca_and_server_cert(dir.path());
    let htpasswd = Command::new("htpasswd").args(["-Bbn", "alice", "Flag-Pw-2718"]).output().expect("htpasswd");
    std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
    let tls = format!("  tls:\n    certificate: {}\n    key: {}", crt.display(), key.display());
    let auth = format!("auth:\n  htpasswd:\n    realm: test\n    path: {}", dir.path().join("htpasswd").display());
    let reg = common::start_registry(&dir.path().join("reg"), &tls, &auth);
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&reg.addr)).unwrap();
    std::fs::copy(&ca, certs.join(&reg.addr).join("ca.crt")).unwrap();
    let target = format!("{}/flags/small:a", reg.addr);
    let cert_dir = certs.join(&reg.addr).display().to_string();
    common::skopeo_copy(
        &common::fixture("small:a"),
        &target,
        &["--dest-creds", "alice:Flag-Pw-2718", "--dest-cert-dir", &cert_dir],
    );
    let id = common::registry_config_digest("fixture/small", "a");

    // Credentials as auth.json and as a Docker config.json; an alias.
    let b64 = Command::new("sh").args(["-c", "printf %s alice:Flag-Pw-2718 | base64 -w0"]).output().unwrap();
    let enc = String::from_utf8(b64.stdout).unwrap();
    let creds = format!(r#"{{"auths": {{"{}": {{"auth": "{enc}"}}}}}}"#, reg.addr);
    let auth_file = dir.path().join("auth.json");
    let docker_config = dir.path().join("config.json");
    std::fs::write(&auth_file, &creds).unwrap();
    std::fs::write(&docker_config, &creds).unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(&conf, format!("[aliases]\n\"flagsmall\" = \"{}/flags/small\"\n", reg.addr)).unwrap();
    let (auth_file, docker_config, conf, certs) = (
        auth_file.display().to_string(),
        docker_config.display().to_string(),
        conf.display().to_string(),
        certs.display().to_string(),
    );

    // The short name resolves only through --registries-conf, the registry is
    // trusted only through --cert-dir, and it lets in only with the
    // credentials of --auth-file (or --docker-config).
    for creds_flag in ["--auth-file", "--docker-config"] {
        let file = if creds_flag == "--auth-file" { &auth_file } else { &docker_config };
        let d = Daemon::start_with(&[("--registries-conf", &conf), ("--cert-dir", &certs), (creds_flag, file)], &[]);
        let mut c = d.images().await;
        let got = c.pull_image(pull_request("flagsmall:a", None)).await.unwrap().into_inner().image_ref;
        assert_eq!(got, id, "{creds_flag}");
        assert_eq!(status(&mut c, &target).await.unwrap().repo_tags, vec![target.clone()], "{creds_flag}");
    }
    // Without the credentials: UNAUTHENTICATED; without the CA: a certificate error.
    let d = Daemon::start_with(&[("--registries-conf", &conf), ("--cert-dir", &certs)], &[]);
    let e = d.images().await.pull_image(pull_request("flagsmall:a", None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let d = Daemon::start_with(&[("--registries-conf", &conf), ("--auth-file", &auth_file)], &[]);
    let e = d.images().await.pull_image(pull_request("flagsmall:a", None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("certificate"), "{e:?}");
}
