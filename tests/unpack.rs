//! Unpacked layers and root filesystems, against the real registry: the
//! Debian fixture exported equals the tree umoci (an independent
//! implementation) made from the same layers; layers are shared, counted and
//! collected; hostile layers are refused without writing outside the store.

mod common;
use common::*;
use imgsvc::ErrorKind;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_cache() -> PathBuf {
    std::env::var_os("IMGSVC_FIXTURES").map(PathBuf::from).unwrap_or_else(|| "/var/tmp/imgsvc-fixtures".into())
}

/// What we compare of one filesystem object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char, // f d l c b p
    mode: u32,
    uid: u64,
    gid: u64,
    /// File content hash, symlink target, or device numbers.
    data: String,
    mtime: Option<i64>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The expected tree, from the tar umoci's unpack was archived into.
fn tree_of_tar(path: &Path) -> BTreeMap<String, Node> {
    let mut out: BTreeMap<String, Node> = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(path).expect("the fixture's expected rootfs tar"));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
        if name.is_empty() {
            continue;
        }
        let h = e.header().clone();
        let mut xattrs = BTreeMap::new();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for x in exts.flatten() {
                if let Some(k) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattrs.insert(k.to_string(), x.value_bytes().to_vec());
                }
            }
        }
        let (kind, data) = match h.entry_type() {
            tar::EntryType::Regular => {
                let mut b = vec![];
                e.read_to_end(&mut b).unwrap();
                ('f', sha(&b))
            }
            tar::EntryType::Directory => ('d', String::new()),
            tar::EntryType::Symlink => ('l', e.link_name().unwrap().unwrap().to_string_lossy().into_owned()),
            tar::EntryType::Link => {
                let target = e.link_name().unwrap().unwrap().to_string_lossy().trim_start_matches("./").to_string();
                let t = out.get(&target).unwrap_or_else(|| panic!("hard link {name} to unknown {target}")).clone();
                out.insert(name, t);
                continue;
            }
            tar::EntryType::Char => ('c', format!("{:?},{:?}", h.device_major().unwrap(), h.device_minor().unwrap())),
            tar::EntryType::Block => ('b', format!("{:?},{:?}", h.device_major().unwrap(), h.device_minor().unwrap())),
            tar::EntryType::Fifo => ('p', String::new()),
            other => panic!("unexpected {other:?} in the expected rootfs"),
        };
        let mtime = (kind == 'f').then(|| h.mtime().unwrap() as i64);
        out.insert(
            name,
            Node {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
                mtime,
                xattrs,
            },
        );
    }
    out
}

fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names[..]) else { return out };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut v = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]) {
            out.insert(name, v[..len].to_vec());
        }
    }
    out
}

/// The exported tree, walked without following symlinks.
fn tree_of_dir(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, data) = if ft.is_dir() {
                stack.push(p.clone());
                ('d', String::new())
            } else if ft.is_symlink() {
                ('l', std::fs::read_link(&p).unwrap().to_string_lossy().into_owned())
            } else if ft.is_file() {
                ('f', sha(&std::fs::read(&p).unwrap()))
            } else if ft.is_char_device() {
                ('c', format!("{:?},{:?}", Some(rustix::fs::major(m.rdev())), Some(rustix::fs::minor(m.rdev()))))
            } else if ft.is_block_device() {
                ('b', format!("{:?},{:?}", Some(rustix::fs::major(m.rdev())), Some(rustix::fs::minor(m.rdev()))))
            } else {
                ('p', String::new())
            };
            let name = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = if kind == 'l' { 0o777 } else { m.mode() & 0o7777 };
            let mtime = (kind == 'f').then(|| m.mtime());
            out.insert(
                name,
                Node { kind, mode, uid: m.uid() as u64, gid: m.gid() as u64, data, mtime, xattrs: xattrs_of(&p) },
            );
        }
    }
    out
}

fn assert_same_tree(want: &BTreeMap<String, Node>, got: &BTreeMap<String, Node>) {
    let mut diffs = vec![];
    for (k, w) in want {
        match got.get(k) {
            None => diffs.push(format!("missing {k}")),
            // Tar modes of symlinks are meaningless; Linux shows 0777.
            Some(g) if w.kind == 'l' && g.kind == 'l' && (&w.data, w.uid, w.gid) == (&g.data, g.uid, g.gid) => {}
            Some(g) if g != w => diffs.push(format!("{k}: want {w:?}, got {g:?}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("unexpected {k}"));
    }
    assert!(diffs.is_empty(), "{} differences, first ones:\n{}", diffs.len(), diffs[..diffs.len().min(25)].join("\n"));
}

#[test]
fn the_debian_image_exported_equals_the_rootfs_it_was_built_from() {
    let root = temp_root();
    let svc = open(root.path());
    let id = svc.pull(&fixture("debian:v1"), None, None).unwrap();

    let dirs = svc.rootfs(&id).unwrap();
    assert_eq!(dirs.len(), 4, "one directory per layer: {dirs:?}");
    assert!(dirs.iter().all(|d| d.is_dir() && d.starts_with(root.path().join("layers"))), "{dirs:?}");

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("rootfs");
    svc.export_rootfs(&id, &dest).unwrap();
    let want = tree_of_tar(&fixtures_cache().join("debian-rootfs.tar"));
    assert!(want.len() > 5000, "the expected tree is a whole Debian ({} entries)", want.len());
    assert_same_tree(&want, &tree_of_dir(&dest));

    // What the last two layers did, spelled out.
    let fixture_dir = dest.join("etc/imgsvc-fixture");
    assert!(!fixture_dir.join("remove-me.txt").exists() && !fixture_dir.join("remove-dir").exists());
    assert!(!dest.join("usr/share/man").exists());
    assert!(!dest.join("opt/imgsvc/replaced/old1.txt").exists() && !dest.join("opt/imgsvc/replaced/old-sub").exists());
    assert!(dest.join("opt/imgsvc/replaced/new.txt").exists());
    let setuid = std::fs::metadata(fixture_dir.join("setuid-script")).unwrap();
    assert_eq!(setuid.mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::metadata(fixture_dir.join("user-owned.txt")).unwrap().uid(), 1000);
    assert_eq!(
        std::fs::metadata(fixture_dir.join("hello.txt")).unwrap().ino(),
        std::fs::metadata(fixture_dir.join("hello-hardlink")).unwrap().ino()
    );

    // It runs.
    let run = Command::new("chroot").arg(&dest).args(["/bin/sh", "-c", "echo ok"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok\n", "{}", String::from_utf8_lossy(&run.stderr));

    // The layer directories are overlay lower directories: mounted read-only
    // they show the same tree.
    let merged = tempfile::tempdir().unwrap();
    let lower: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &format!("ro,lowerdir={}", lower.join(":"))])
        .arg(merged.path())
        .status()
        .unwrap();
    assert!(st.success(), "overlay mount of the layer directories (needs root, as CI runs)");
    let mounted = tree_of_dir(merged.path());
    let _ = Command::new("umount").arg(merged.path()).status();
    assert_same_tree(&want, &mounted);

    // Shared content is not unpacked twice; the export does not pin layers.
    let before = std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count();
    assert_eq!(svc.pull(&fixture("debian:v1"), None, None).unwrap(), id);
    assert_eq!(std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count(), before);
    svc.remove(&id).unwrap();
    assert_eq!(std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count(), 0, "layers left");
    assert!(svc.fsck(false).unwrap().is_clean());
    assert!(dest.join("bin/sh").exists(), "an export outlives the image");
}

#[test]
fn layers_are_shared_counted_and_collected() {
    let root = temp_root();
    let svc = open(root.path());
    let empty = svc.fs_info().unwrap();
    // Same content, zstd and uncompressed blobs: one config, one set of layers.
    let id = svc.pull(&fixture("small-zstd:latest"), None, None).unwrap();
    let layer_dirs = || std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count();
    let n = layer_dirs();
    assert!(n > 0);
    let with_zstd = svc.fs_info().unwrap();
    assert!(with_zstd.used_bytes > empty.used_bytes && with_zstd.inodes_used > empty.inodes_used);
    assert_eq!(svc.pull(&fixture("small-plain:latest"), None, None).unwrap(), id);
    assert_eq!(layer_dirs(), n, "the uncompressed copy of the same layers reuses them");

    let status = svc.status(&id, true).unwrap().unwrap();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let unpacked: u64 = info["unpackedSize"].as_str().expect("unpackedSize when unpacked").parse().unwrap();
    assert!(unpacked > 0, "{info}");
    let plain_status = svc.status(&fixture("small-plain:latest"), false).unwrap().unwrap();
    assert_eq!(plain_status.image.id, id);

    let out = tempfile::tempdir().unwrap();
    svc.export_rootfs(&id, out.path()).unwrap();
    let err = svc.export_rootfs(&id, out.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "a non-empty export directory: {err}");
    assert_eq!(svc.rootfs("fixture/nothing:here").unwrap_err().kind(), ErrorKind::NotFound);

    svc.remove(&id).unwrap();
    assert_eq!(layer_dirs(), 0);
    assert!(svc.fs_info().unwrap().used_bytes < with_zstd.used_bytes);
}

#[test]
fn without_unpacking_layers_are_unpacked_on_demand() {
    let root = temp_root();
    let svc = open_with(root.path(), |o| o.unpack = false);
    let id = svc.pull(&fixture("small:a"), None, None).unwrap();
    let layer_dirs = || std::fs::read_dir(root.path().join("layers/sha256")).unwrap().count();
    assert_eq!(layer_dirs(), 0, "nothing unpacked while pulling");
    let info = svc.status(&id, true).unwrap().unwrap().info;
    assert!(!info["info"].contains("unpackedSize"), "{info:?}");
    let dirs = svc.rootfs(&id).unwrap();
    assert_eq!(layer_dirs(), dirs.len());
    let out = tempfile::tempdir().unwrap();
    svc.export_rootfs(&id, out.path()).unwrap();
    assert!(std::fs::read_dir(out.path()).unwrap().count() > 0);
    assert!(svc.fsck(false).unwrap().is_clean());
}

// ---------------------------------------------------------------------------
// Hostile and odd layers, pushed over the registry API.

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Push an image of `layers` (blob bytes, diff_id) as `repo:v1`.
fn push_image(repo: &str, layers: &[(Vec<u8>, String)]) -> String {
    let mut descs = vec![];
    for (blob, _) in layers {
        let media = if blob.starts_with(&[0x1f, 0x8b]) {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        descs.push(serde_json::json!({"mediaType": media, "digest": push_blob(repo, blob), "size": blob.len()}));
    }
    let diff_ids: Vec<&String> = layers.iter().map(|(_, d)| d).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"test": repo}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let cdigest = push_blob(repo, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": config.len()},
        "layers": descs,
    })
    .to_string();
    curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {OCI_MANIFEST}"),
        "--data-binary",
        &manifest,
        &format!("http://{}/v2/{repo}/manifests/v1", registry()),
    ]);
    format!("{}/{repo}:v1", registry())
}

/// A tar built entry by entry with raw names (tar::Builder refuses `..`).
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        RawTar(vec![])
    }
    fn entry(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, tar::EntryType::Regular, "", data)
    }
    /// (uncompressed tar, its diff_id)
    fn finish(mut self) -> (Vec<u8>, String) {
        self.0.extend_from_slice(&[0u8; 1024]);
        let d = format!("sha256:{}", sha(&self.0));
        (self.0, d)
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn layer_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("layers/sha256")).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn hostile_layers_are_refused_and_nothing_is_written_outside() {
    let tag = format!("{}-{}", std::process::id(), rand_suffix());
    let outside = std::env::temp_dir().join(format!("imgsvc-escape-{tag}"));
    let _ = std::fs::remove_file(&outside);
    let outside_name = outside.file_name().unwrap().to_str().unwrap().to_string();
    let cases: Vec<(&str, (Vec<u8>, String))> = vec![
        (
            "dotdot",
            RawTar::new()
                .file("ok.txt", b"x")
                .file(&format!("../../../../../../tmp/{outside_name}"), b"pwned")
                .finish(),
        ),
        ("absolute", RawTar::new().file(outside.to_str().unwrap(), b"pwned").finish()),
        (
            "symlink-escape",
            RawTar::new().entry("evil", tar::EntryType::Symlink, "../../../../../../../../tmp", b"").finish(),
        ),
        (
            "hardlink-escape",
            RawTar::new().entry("evil", tar::EntryType::Link, "../../../../../etc/passwd", b"").finish(),
        ),
        (
            "under-symlink",
            RawTar::new()
                .entry("tmp", tar::EntryType::Symlink, "/tmp", b"")
                .file(&format!("tmp/{outside_name}"), b"pwned")
                .finish(),
        ),
    ];
    let root = temp_root();
    let svc = open(root.path());
    let keep = svc.pull(&fixture("small:a"), None, None).unwrap();
    let layers_before = layer_count(root.path());
    let index_before = std::fs::read(root.path().join("index.json")).unwrap();
    for (name, (tar, diff_id)) in cases {
        let reference = push_image(&format!("test/hostile-{name}-{tag}"), &[(gzip(&tar), diff_id)]);
        let err = svc.pull(&reference, None, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{name}: {err}");
        assert!(err.message().contains("refused"), "{name}: {err}");
        assert!(!outside.exists(), "{name} wrote {}", outside.display());
        assert_eq!(std::fs::read(root.path().join("index.json")).unwrap(), index_before, "{name}");
        assert_eq!(layer_count(root.path()), layers_before, "{name} left a layer");
        let report = svc.fsck(false).unwrap();
        assert!(report.is_clean(), "{name}: {report:?}");
    }
    assert!(svc.status(&keep, false).unwrap().is_some());
}

#[test]
fn bombs_wrong_diff_ids_and_multi_member_gzip() {
    let tag = format!("{}-{}", std::process::id(), rand_suffix());
    let root = temp_root();

    // 8 MiB of zeros: a few KiB compressed, over a 1 MiB limit.
    let (bomb, bomb_id) = RawTar::new().file("zeros", &vec![0u8; 8 << 20]).finish();
    let reference = push_image(&format!("test/bomb-{tag}"), &[(gzip(&bomb), bomb_id)]);
    let small = open_with(root.path(), |o| o.max_layer_bytes = 1 << 20);
    let err = small.pull(&reference, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("limit"), "{err}");
    assert_eq!(layer_count(root.path()), 0);
    drop(small);
    // The default limit lets it through.
    let svc = open(root.path());
    svc.pull(&reference, None, None).unwrap();

    // One byte over, crossed in the end-of-archive padding: still named as the limit.
    let (just, just_id) = RawTar::new().file("f", &vec![7u8; 200 << 10]).finish();
    let limit = just.len() as u64 - 1;
    let reference = push_image(&format!("test/just-over-{tag}"), &[(gzip(&just), just_id)]);
    let other = temp_root();
    let tight = open_with(other.path(), |o| o.max_layer_bytes = limit);
    let err = tight.pull(&reference, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains(&format!("limit of {limit} bytes")), "{err}");
    let exact = open_with(other.path(), |o| o.max_layer_bytes = limit + 1);
    exact.pull(&reference, None, None).unwrap();

    // The config's diff_id must match the uncompressed stream.
    let (tar, _) = RawTar::new().file("a.txt", b"a").finish();
    let lie = format!("sha256:{}", "0".repeat(64));
    let reference = push_image(&format!("test/diffid-{tag}"), &[(gzip(&tar), lie)]);
    let err = svc.pull(&reference, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("diff_id") || err.message().contains("config says"), "{err}");

    // A gzip stream cut in half is named as such, not blamed on an entry.
    let (tar, diff_id) = RawTar::new().file("a/file", &vec![b'x'; 64 << 10]).file("b", b"b").finish();
    let whole = gzip(&tar);
    let reference = push_image(&format!("test/truncated-{tag}"), &[(whole[..whole.len() / 2].to_vec(), diff_id)]);
    let err = svc.pull(&reference, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.message().contains("truncated or corrupt"), "{err}");

    // Two gzip members are one layer; an uncompressed layer above it.
    let (tar, diff_id) = RawTar::new().file("one.txt", b"first member").file("two.txt", b"second member").finish();
    let cut = 1024; // after the first entry
    let mut multi = gzip(&tar[..cut]);
    multi.extend(gzip(&tar[cut..]));
    let (plain, plain_id) =
        RawTar::new().entry("dir", tar::EntryType::Directory, "", b"").file("dir/three.txt", b"plain").finish();
    let reference = push_image(&format!("test/multi-{tag}"), &[(multi, diff_id), (plain, plain_id)]);
    let id = svc.pull(&reference, None, None).unwrap();
    let out = tempfile::tempdir().unwrap();
    svc.export_rootfs(&id, out.path()).unwrap();
    assert_eq!(std::fs::read_to_string(out.path().join("one.txt")).unwrap(), "first member");
    assert_eq!(std::fs::read_to_string(out.path().join("two.txt")).unwrap(), "second member");
    assert_eq!(std::fs::read_to_string(out.path().join("dir/three.txt")).unwrap(), "plain");
    assert!(svc.fsck(false).unwrap().is_clean());
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Waits (a pull's cleanup may still be running after its caller was told it
/// was cancelled) until the store looks as it did, or says how it differs.
fn wait_until_as_before(svc: &imgsvc::BlockingService, root: &Path, blobs: &[String], layers: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = (blob_names(root), layer_count(root), svc.fsck(false).unwrap());
        if (now.0 == blobs && now.1 == layers && now.2.is_clean()) || std::time::Instant::now() > deadline {
            assert_eq!(now.0, blobs, "blobs left behind");
            assert_eq!(now.1, layers, "layers left behind");
            assert!(now.2.is_clean(), "{:?}", now.2);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn failed_and_cancelled_pulls_take_back_what_they_fetched() {
    let tag = format!("{}-{}", std::process::id(), rand_suffix());
    // 256 MiB of zeros: downloaded in a moment, unpacked in a while; a tiny
    // layer beside it fails (a lying diff_id) or is waited for (cancel).
    let (big, big_id) = RawTar::new().file("zeros", &vec![0u8; 256 << 20]).finish();
    let big = gzip(&big);
    let (small, small_id) = RawTar::new().file("a.txt", b"a").finish();
    let lie = format!("sha256:{}", "0".repeat(64));
    let failing = push_image(&format!("test/fails-late-{tag}"), &[(big.clone(), big_id.clone()), (gzip(&small), lie)]);
    let good = push_image(&format!("test/cancelled-{tag}"), &[(big, big_id), (gzip(&small), small_id)]);

    let root = temp_root();
    let svc = open(root.path());
    let keep = svc.pull(&fixture("small:a"), None, None).unwrap();
    let (blobs, layers) = (blob_names(root.path()), layer_count(root.path()));

    // The failure comes while the big layer, already fetched, is unpacking.
    let err = svc.pull(&failing, None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    wait_until_as_before(&svc, root.path(), &blobs, layers);

    // Cancelled by the caller once the big blob is in: its unpacking stops
    // (inside the one big file) and both blobs go.
    let mut cb = |ev: &imgsvc::Progress| !matches!(ev, imgsvc::Progress::LayerDone { size, .. } if *size > 4096);
    let err = svc.pull(&good, None, Some(&mut cb)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    wait_until_as_before(&svc, root.path(), &blobs, layers);
    assert!(svc.status(&keep, false).unwrap().is_some());
    // And the same image pulls whole afterwards.
    svc.pull(&good, None, None).unwrap();
    assert!(svc.fsck(false).unwrap().is_clean());
}
