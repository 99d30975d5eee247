//! `imgsvc`: pull, list, inspect and remove images in a local store.

mod serve;

use clap::{Parser, Subcommand};
use imgsvc::{BlockingService, Image, Options, Progress};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `println!` that ends the process quietly when the reader went away
/// (`imgsvc images | head -1`) and with a one-line error when stdout fails
/// otherwise (a full disk), instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            output_failed(e);
        }
    }};
}

fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141); // as if SIGPIPE had ended us, which shells expect
    }
    eprintln!("imgsvc: i/o: writing output: {e}");
    std::process::exit(2)
}

#[derive(Parser)]
#[command(name = "imgsvc", version, about = "A container image service: pull, list, inspect and remove OCI images")]
struct Cli {
    /// Store root [default: $IMGSVC_ROOT, /var/lib/imgsvc for root, else $XDG_DATA_HOME/imgsvc]
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Pinned image names (exact, or `prefix*`); repeatable
    #[arg(long = "pinned", global = true)]
    pinned: Vec<String>,
    /// Blobs downloaded at once per pull
    #[arg(long, global = true, default_value_t = 4)]
    parallel: usize,
    /// Fail a pull that receives no bytes for this many seconds (0: never)
    #[arg(long, global = true, default_value_t = 300)]
    progress_timeout: u64,
    /// registries.conf (search, aliases, mirrors, insecure, blocked) [default:
    /// /etc/containers/registries.conf and its .d directory; "" reads none]
    #[arg(long, global = true, value_name = "FILE")]
    registries_conf: Option<String>,
    /// containers auth.json [default: $REGISTRY_AUTH_FILE or the containers default; "" reads none]
    #[arg(long, global = true, value_name = "FILE")]
    auth_file: Option<String>,
    /// Docker config.json with credentials [default: ~/.docker/config.json; "" reads none]
    #[arg(long, global = true, value_name = "FILE")]
    docker_config: Option<String>,
    /// A certs.d root holding one <host:port>/ directory per registry (ca.crt,
    /// client.cert, client.key) [default: /etc/containers/certs.d; "" reads none]
    #[arg(long, global = true, value_name = "DIR")]
    cert_dir: Option<String>,
    /// Do not unpack layers while pulling (rootfs, export and mount unpack on demand)
    #[arg(long, global = true)]
    no_unpack: bool,
    /// Refuse a layer that uncompresses to more than this many bytes
    #[arg(long, global = true, value_name = "BYTES", default_value_t = imgsvc::DEFAULT_MAX_LAYER_BYTES)]
    max_layer_bytes: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image and print its id
    Pull {
        /// Image reference (registry/repository:tag or @sha256:digest; short names go through registries.conf)
        reference: String,
    },
    /// List images
    Images {
        /// Only the image this name, digest or id names
        filter: Option<String>,
        /// Print CRI JSON, as `crictl images -o json` does
        #[arg(long)]
        json: bool,
        /// Print only image ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show one image, with its config
    Inspect {
        /// Image name, digest or id
        reference: String,
        /// Print CRI JSON, as `crictl inspecti -o json` does
        #[arg(long)]
        json: bool,
    },
    /// Remove images with all their names (absent ones are fine)
    Rmi {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Drop one name; the image goes with its last name
    Untag { name: String },
    /// Check the store: every blob re-hashed, no orphans; exit 1 when it finds problems
    Fsck {
        /// Remove orphaned downloads, unreferenced blobs and incomplete images
        #[arg(long)]
        repair: bool,
    },
    /// Print the image's unpacked layer directories, top layer first (overlay lowerdirs)
    Rootfs { reference: String },
    /// Write the image's merged root filesystem into DIR (absent or empty)
    Export { reference: String, dir: PathBuf },
    /// Mount the image's root filesystem read-only at DIR (overlay; needs privileges)
    Mount { reference: String, dir: PathBuf },
    /// Show the store's filesystem usage
    Fsinfo {
        /// Print CRI JSON, as `crictl imagefsinfo -o json` does
        #[arg(long)]
        json: bool,
    },
    /// Serve the CRI image API over gRPC on a unix socket (for crictl and the kubelet)
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgsvc: {}: {}", e.kind().name(), e.message().replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn open(cli: &Cli) -> imgsvc::Result<BlockingService> {
    let mut options = Options::new(cli.root.clone().unwrap_or_else(Options::default_root));
    options.pinned = cli.pinned.clone();
    options.max_parallel_downloads = cli.parallel;
    options.progress_timeout = Duration::from_secs(cli.progress_timeout);
    options.registry = registry_options(cli);
    options.unpack = !cli.no_unpack;
    options.max_layer_bytes = cli.max_layer_bytes;
    BlockingService::new(options)
}

/// System defaults, each replaced by its flag; an empty flag reads nothing.
fn registry_options(cli: &Cli) -> imgsvc::RegistryOptions {
    let mut r = imgsvc::RegistryOptions::system_defaults();
    let pick = |flag: &Option<String>, default: Option<std::path::PathBuf>| match flag {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => default,
    };
    if cli.registries_conf.is_some() {
        r.registries_conf_d = None;
    }
    r.registries_conf = pick(&cli.registries_conf, r.registries_conf);
    r.auth_file = pick(&cli.auth_file, r.auth_file);
    r.docker_config = pick(&cli.docker_config, r.docker_config);
    r.certs_dir = pick(&cli.cert_dir, r.certs_dir);
    r
}

fn run(cli: Cli) -> imgsvc::Result<ExitCode> {
    let svc = open(&cli)?;
    match &cli.command {
        Command::Serve(args) => return serve::run(svc, args),
        Command::Pull { reference } => {
            let tty = std::io::stderr().is_terminal();
            let mut display = PullDisplay::new(tty);
            let mut cb = |p: &Progress| {
                display.event(p);
                true
            };
            let cancel = imgsvc::CancelToken::new();
            let signalled = cancel_on_signal(&cancel);
            let result = svc.pull_cancellable(reference, None, Some(&mut cb), &cancel);
            display.finish();
            if let Some(code) = signalled.get() {
                // Dropping the service waits for the pull to take back what it fetched.
                drop(svc);
                eprintln!("imgsvc: pull cancelled by a signal; the store is as it was");
                return Ok(ExitCode::from(*code));
            }
            outln!("{}", result?);
        }
        Command::Images { filter, json, quiet } => {
            let mut images = svc.list(filter.as_deref())?;
            sort_like_crictl(&mut images);
            if *json {
                outln!("{}", pretty(&imgsvc::json::image_list(&images)));
            } else if *quiet {
                for i in &images {
                    outln!("{}", i.id);
                }
            } else {
                print_table(&images);
            }
        }
        Command::Inspect { reference, json } => match svc.status(reference, true)? {
            None => {
                eprintln!("no such image {reference:?}");
                return Ok(ExitCode::from(1));
            }
            Some(status) => {
                let value = imgsvc::json::image_status(&status);
                if *json {
                    outln!("{}", pretty(&value));
                } else {
                    let i = &status.image;
                    outln!("ID:           {}", i.id);
                    outln!("RepoTags:     {}", i.repo_tags.join(", "));
                    outln!("RepoDigests:  {}", i.repo_digests.join(", "));
                    outln!("Size:         {} ({})", i.size, human_size(i.size));
                    match i.uid {
                        Some(uid) => outln!("Uid:          {uid}"),
                        None if !i.username.is_empty() => outln!("Username:     {}", i.username),
                        None => {}
                    }
                    outln!("Pinned:       {}", i.pinned);
                    if let Some(spec) = value.get("info").and_then(|i| i.get("imageSpec")) {
                        outln!("Config:\n{}", pretty(spec));
                    }
                }
            }
        },
        Command::Rmi { references } => {
            for r in references {
                let names = svc.status(r, false)?.map(|s| s.image);
                svc.remove(r)?;
                if let Some(img) = names {
                    for name in if img.repo_tags.is_empty() { &img.repo_digests } else { &img.repo_tags } {
                        outln!("Deleted: {name}");
                    }
                    if img.repo_tags.is_empty() && img.repo_digests.is_empty() {
                        outln!("Deleted: {}", img.id);
                    }
                }
            }
        }
        Command::Untag { name } => {
            svc.untag(name)?;
            outln!("Untagged: {name}");
        }
        Command::Fsck { repair } => {
            let report = svc.fsck(*repair)?;
            for p in &report.problems {
                outln!("problem: {p}");
            }
            for r in &report.repaired {
                outln!("repaired: {r}");
            }
            if !report.is_clean() {
                outln!("{} problem(s) remain", report.remaining.len());
                return Ok(ExitCode::from(1));
            }
            outln!("store is clean ({} blobs verified)", report.blobs_checked);
        }
        Command::Rootfs { reference } => {
            for dir in svc.rootfs(reference)? {
                outln!("{}", dir.display());
            }
        }
        Command::Export { reference, dir } => {
            svc.export_rootfs(reference, dir)?;
            outln!("{}", dir.display());
        }
        Command::Mount { reference, dir } => {
            let lower = svc.rootfs(reference)?;
            mount_overlay(&lower, dir)?;
            outln!("{}", dir.display());
        }
        Command::Fsinfo { json } => {
            let u = svc.fs_info()?;
            if *json {
                outln!("{}", pretty(&imgsvc::json::fs_info(&u)));
            } else {
                outln!("Mountpoint:  {}", u.mountpoint);
                outln!("UsedBytes:   {} ({})", u.used_bytes, human_size(u.used_bytes));
                outln!("InodesUsed:  {}", u.inodes_used);
                outln!("Timestamp:   {}", u.timestamp_ns);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A read-only overlay of `lower` (top first) at `dir`, through mount(8).
/// A single layer is bind-mounted read-only: overlayfs wants two lower dirs
/// when there is no upper one.
fn mount_overlay(lower: &[PathBuf], dir: &std::path::Path) -> imgsvc::Result<()> {
    use imgsvc::{Error, ErrorKind};
    let status = |what: &str, out: std::io::Result<std::process::Output>| match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let kind = if msg.contains("permission denied") || msg.contains("must be superuser") {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::Io
            };
            Err(Error::new(kind, format!("{what}: {msg}")))
        }
        Err(e) => Err(Error::new(ErrorKind::Io, format!("{what}: running mount: {e}"))),
    };
    let mut cmd = std::process::Command::new("mount");
    match lower {
        [] => Err(Error::new(ErrorKind::Unsupported, "the image has no layers to mount")),
        [one] => {
            status("bind mount", cmd.arg("--bind").arg(one).arg(dir).output())?;
            let mut ro = std::process::Command::new("mount");
            status("read-only remount", ro.args(["-o", "remount,bind,ro"]).arg(dir).output())
        }
        many => {
            let dirs: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
            let opts = format!("ro,lowerdir={}", dirs.join(":"));
            status("overlay mount", cmd.args(["-t", "overlay", "overlay", "-o", &opts]).arg(dir).output())
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Decimal sizes with three significant digits, as crictl prints them.
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = if u == 0 { format!("{n}") } else { format!("{v:.digits$}") };
    let trimmed = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{trimmed}{}", units[u])
}

fn sort_like_crictl(images: &mut [Image]) {
    images.sort_by(|a, b| match (a.repo_tags.first(), b.repo_tags.first()) {
        (Some(x), Some(y)) => x.cmp(y),
        _ => match (a.repo_digests.first(), b.repo_digests.first()) {
            (Some(x), Some(y)) => x.cmp(y),
            _ => a.id.cmp(&b.id),
        },
    });
}

fn split_name(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "<none>"),
    }
}

fn print_table(images: &[Image]) {
    let mut rows = vec![["IMAGE".to_string(), "TAG".into(), "IMAGE ID".into(), "SIZE".into()]];
    for i in images {
        let short_id: String = i.id.trim_start_matches("sha256:").chars().take(13).collect();
        let size = human_size(i.size);
        if i.repo_tags.is_empty() {
            let repo = i
                .repo_digests
                .first()
                .map(|d| d.split('@').next().unwrap_or("<none>").to_string())
                .unwrap_or("<none>".into());
            rows.push([repo, "<none>".into(), short_id.clone(), size.clone()]);
        }
        for t in &i.repo_tags {
            let (repo, tag) = split_name(t);
            rows.push([repo.to_string(), tag.to_string(), short_id.clone(), size.clone()]);
        }
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line = writeln!(
            out,
            "{:w0$}   {:w1$}   {:w2$}   {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        if let Err(e) = line.and_then(|()| out.flush()) {
            output_failed(e);
        }
    }
}

/// A progress bar on a terminal, one line per event otherwise.
struct PullDisplay {
    tty: bool,
    total: u64,
    done: HashMap<String, u64>,
    drawn: bool,
}

impl PullDisplay {
    fn new(tty: bool) -> Self {
        PullDisplay { tty, total: 0, done: HashMap::new(), drawn: false }
    }

    fn event(&mut self, p: &Progress) {
        match p {
            Progress::Resolved { total_bytes, .. } => self.total = *total_bytes,
            Progress::Bytes { digest, done, .. } => {
                self.done.insert(digest.clone(), *done);
            }
            Progress::LayerDone { digest, size } | Progress::LayerSkipped { digest, size } => {
                self.done.insert(digest.clone(), *size);
            }
            _ => {}
        }
        if self.tty {
            let done: u64 = self.done.values().sum();
            let width = 30usize;
            let filled =
                if self.total == 0 { width } else { ((done as f64 / self.total as f64) * width as f64) as usize }
                    .min(width);
            // Progress output failing (stderr closed) must not stop the pull.
            let _ = write!(
                std::io::stderr(),
                "\r[{}{}] {} / {}   ",
                "#".repeat(filled),
                ".".repeat(width - filled),
                human_size(done),
                human_size(self.total)
            );
            self.drawn = true;
        } else {
            let _ = writeln!(std::io::stderr(), "{}", imgsvc::json::progress(p));
        }
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(0), "0B");
        assert_eq!(super::human_size(999), "999B");
        assert_eq!(super::human_size(125_390_262), "125MB");
        assert_eq!(super::human_size(1_500), "1.5kB");
        assert_eq!(super::human_size(12_340_000), "12.3MB");
    }
}

/// SIGINT or SIGTERM during a pull cancels it, so that it takes back what it
/// fetched before we exit (with 128 + the signal's number, as shells expect);
/// a second signal exits at once. Returns where the exit code will be set.
fn cancel_on_signal(cancel: &imgsvc::CancelToken) -> std::sync::Arc<std::sync::OnceLock<u8>> {
    let code = std::sync::Arc::new(std::sync::OnceLock::new());
    let (cancel, code2) = (cancel.clone(), code.clone());
    let watch = move || -> Option<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().ok()?;
        rt.block_on(async {
            let mut int = signal(SignalKind::interrupt()).ok()?;
            let mut term = signal(SignalKind::terminate()).ok()?;
            let first = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
            let _ = code2.set(first);
            cancel.cancel();
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            std::process::exit(first.into())
        })
    };
    // Without the thread a signal simply ends the process, as before.
    let _ = std::thread::Builder::new().name("imgsvc-signals".into()).spawn(watch);
    code
}
