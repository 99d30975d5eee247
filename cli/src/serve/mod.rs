//! `imgsvc serve`: the CRI image API over gRPC on a unix socket, for the
//! kubelet and crictl.
//!
//! This module owns the process side: arguments, logging, the runtime, the
//! socket's life (see `socket`) and shutdown on SIGTERM/SIGINT. The RPC
//! handlers live in `cri` and only translate between CRI messages and
//! `imgsvc::Service`; no image logic lives here.

mod codec;
mod cri;
mod socket;

use imgsvc::{BlockingService, Error, ErrorKind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of `imgsvc serve` (the store options are the global ones).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Socket to listen on: unix:///PATH (a bare path works too)
    #[arg(long, default_value = "unix:///run/imgsvc/imgsvc.sock")]
    listen: String,
    /// Permission bits of the socket, in octal
    #[arg(long, default_value = "0660", value_parser = parse_mode)]
    socket_mode: u32,
    /// Seconds in-flight calls may run after SIGTERM/SIGINT before they are cancelled
    #[arg(long, default_value_t = 10)]
    grace_period: u64,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!("{s:?} is not an octal permission mode such as 0660")),
    }
}

/// The socket path named by `--listen`.
fn socket_path(listen: &str) -> imgsvc::Result<PathBuf> {
    let path = match listen.split_once("://") {
        Some(("unix", path)) => path,
        Some((scheme, _)) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("--listen {listen:?}: only unix:// sockets are served, not {scheme}://"),
            ))
        }
        None => listen,
    };
    if path.is_empty() {
        return Err(Error::new(ErrorKind::InvalidArgument, format!("--listen {listen:?} names no socket path")));
    }
    Ok(PathBuf::from(path))
}

/// Run the server until SIGTERM or SIGINT. `svc` is only used for its options:
/// the server opens its own `Service` inside its own runtime.
pub fn run(svc: BlockingService, args: &ServeArgs) -> imgsvc::Result<ExitCode> {
    let options = svc.options().clone();
    drop(svc);
    init_logging();
    let path = socket_path(&args.listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("imgsvc-serve")
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("starting the runtime: {e}")))?;
    let grace = Duration::from_secs(args.grace_period);
    let result = runtime.block_on(serve(options, path, args.socket_mode, grace));
    // Pulls were stopped and waited for in `serve`; anything still left
    // (a cleanup past its 10 s) is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // IMGSVC_LOG takes tracing's filter syntax (e.g. "debug", "imgsvc=debug").
    let filter = EnvFilter::try_from_env("IMGSVC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn serve(options: imgsvc::Options, path: PathBuf, mode: u32, grace: Duration) -> imgsvc::Result<()> {
    let root = options.root.clone();
    let service = imgsvc::Service::new(options)?;
    let (listener, socket) = socket::bind(&path, mode)?;
    tracing::info!(socket = %path.display(), root = %root.display(), version = env!("CARGO_PKG_VERSION"), "imgsvc serving CRI");

    // Two stages: stop accepting (and let calls finish), then cancel calls.
    let stop_accepting = CancellationToken::new();
    let cancel_calls = CancellationToken::new();
    tokio::spawn(on_signals(stop_accepting.clone(), cancel_calls.clone(), grace));

    let pulls = service.clone();
    let server = tonic::transport::Server::builder()
        .add_service(cri::image_service(service, cancel_calls.clone()))
        .add_service(cri::runtime_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            stop_accepting.clone().cancelled_owned(),
        );
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(|e| Error::new(ErrorKind::Io, format!("serving on {}: {e}", path.display()))),
        // Cancelled calls answer at once; a client that keeps its connection
        // open after that does not hold the process.
        () = async { stop_accepting.cancelled().await; socket.remove(); cancel_calls.cancelled().await; tokio::time::sleep(Duration::from_secs(2)).await } => {
            tracing::warn!("connections still open after the grace period; exiting anyway");
            Ok(())
        }
    };
    drop(socket); // removes the socket if it is still ours

    // Cancelled pulls take back what they fetched before we exit.
    pulls.stop_pulls(Duration::from_secs(10)).await;
    tracing::info!("imgsvc stopped");
    result
}

/// First SIGTERM/SIGINT: stop accepting, cancel what still runs after `grace`.
/// A second signal cancels at once.
async fn on_signals(stop_accepting: CancellationToken, cancel_calls: CancellationToken, grace: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop imgsvc with SIGKILL");
        return;
    };
    let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::info!(
        signal = name,
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, in-flight calls may finish"
    );
    stop_accepting.cancel();
    tokio::select! {
        () = tokio::time::sleep(grace) => tracing::info!("grace period over; cancelling in-flight calls"),
        _ = term.recv() => tracing::info!("second signal; cancelling in-flight calls"),
        _ = int.recv() => tracing::info!("second signal; cancelling in-flight calls"),
    }
    cancel_calls.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o777"), Ok(0o777));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(socket_path("unix:///run/imgsvc/imgsvc.sock").unwrap(), PathBuf::from("/run/imgsvc/imgsvc.sock"));
        assert_eq!(socket_path("/tmp/x.sock").unwrap(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(socket_path("unix://rel.sock").unwrap(), PathBuf::from("rel.sock"));
        assert_eq!(socket_path("tcp://127.0.0.1:1").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(socket_path("unix://").unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
