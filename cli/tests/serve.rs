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
        let dir = tempfile::Builder::new().prefix("imgsvc-serve-").tempdir().unwrap();
        // A directory that does not exist yet: serve creates it.
        let socket = dir.path().join("run/nested/imgsvc.sock");
        let mut d = Daemon::spawn(dir, socket, extra);
        d.wait_ready();
        d
    }

    fn spawn(dir: tempfile::TempDir, socket: PathBuf, extra: &[&str]) -> Daemon {
        let root = dir.path().join("root");
        let log = dir.path().join("daemon.log");
        // Our own registries.conf, never the machine's; having one at all
        // turns on short-name resolution, which id lookups must get past.
        let conf = dir.path().join("registries.conf");
        std::fs::write(&conf, "[aliases]\n\"busybox\" = \"docker.io/library/busybox\"\n").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
            .arg("--root")
            .arg(&root)
            .arg("--registries-conf")
            .arg(&conf)
            .args(["--auth-file", "", "--docker-config", "", "--cert-dir", ""])
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
async fn assert_pull_stopped(proxy: &StallProxy, images: &mut Images, image: &str) {
    let before = proxy.delivered.load(Ordering::SeqCst);
    proxy.release();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = proxy.delivered.load(Ordering::SeqCst);
    // A live download of the 95 MB layer would move megabytes in this time.
    assert!(after - before < 1024 * 1024, "the pull kept downloading after it was abandoned: {} bytes", after - before);
    assert!(status(images, image).await.is_none(), "an abandoned pull must not record the image");
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
    assert_pull_stopped(&proxy, &mut c, &image).await;
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
    assert_pull_stopped(&proxy, &mut c, &image).await;
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
