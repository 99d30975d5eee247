//! The `imgsvc` command line against the real registry.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::*;
use std::process::{Command, Output};

fn imgsvc(root: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("IMGSVC_ROOT")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn pull_list_inspect_remove_fsinfo() {
    let root = temp_root();
    let r = root.path();
    let reference = fixture("small:a");
    let out = imgsvc(r, &["pull", &reference]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id, registry_config_digest("fixture/small", "a"));
    // Not a terminal: one JSON line per progress event on stderr.
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stderr).lines().map(|l| serde_json::from_str(l).expect("a JSON event")).collect();
    assert_eq!(events.first().unwrap()["type"], "resolved");
    assert_eq!(events.last().unwrap()["type"], "committed");

    let out = imgsvc(r, &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &v["images"][0];
    assert_eq!(img["id"], id.as_str());
    assert_eq!(img["repoTags"][0], reference.as_str());
    assert!(img["size"].as_str().unwrap().parse::<u64>().unwrap() > 0, "size is a decimal string");
    assert_eq!(img["uid"]["value"], "1000");
    assert_eq!(img["username"], "");
    assert_eq!(img["pinned"], false);

    let out = imgsvc(r, &["images"]);
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().starts_with("IMAGE"), "{table}");
    assert!(table.contains(&format!("{}/fixture/small", registry())) && table.contains(&id[7..20]), "{table}");
    assert_eq!(stdout(&imgsvc(r, &["images", "-q"])).trim(), id);

    let out = imgsvc(r, &["inspect", "--json", &id[7..20]]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["id"], id.as_str());
    assert_eq!(v["info"]["imageSpec"]["config"]["User"], "1000:1000");

    let out = imgsvc(r, &["fsinfo", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fs = &v["imageFilesystems"][0];
    assert_eq!(fs["fsId"]["mountpoint"], r.display().to_string());
    assert!(fs["usedBytes"]["value"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(fs["inodesUsed"]["value"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(fs["timestamp"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(v["containerFilesystems"], serde_json::json!([]));

    let out = imgsvc(r, &["rmi", &reference]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), format!("Deleted: {reference}"));
    assert_eq!(stdout(&imgsvc(r, &["images", "-q"])).trim(), "");
    // Missing images: inspect says so and exits 1; rmi succeeds.
    let out = imgsvc(r, &["inspect", &reference]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), format!("no such image {reference:?}"));
    assert!(imgsvc(r, &["rmi", &reference]).status.success());
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let root = temp_root();
    for args in [vec!["pull", "Not/Valid"], vec!["pull", &fixture("small:missing-tag")], vec!["untag", "sha256:abc"]] {
        let out = imgsvc(root.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("imgsvc: "), "{err}");
    }
    let out = imgsvc(root.path(), &["pull", &fixture("small:missing-tag")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn default_root_comes_from_the_environment() {
    let root = temp_root();
    let out = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .args(["fsinfo", "--json"])
        .env("IMGSVC_ROOT", root.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["imageFilesystems"][0]["fsId"]["mountpoint"], root.path().display().to_string());
    assert!(root.path().join("oci-layout").exists() && root.path().join("index.json").exists());
}

#[test]
fn registry_flags_reach_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"{}\"]\n[[registry]]\nprefix = \"blocked.example\"\nblocked = true\n",
            registry()
        ),
    )
    .unwrap();
    let root = temp_root();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imgsvc"))
            .arg("--root")
            .arg(root.path())
            .args(["--auth-file=", "--docker-config=", "--cert-dir="])
            .arg(format!("--registries-conf={}", conf.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["pull", "fixture/small:a"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out).trim(), registry_config_digest("fixture/small", "a"));
    let out = run(&["pull", "blocked.example/app"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&conf, "this is = = not toml").unwrap();
    let out = run(&["images"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("registries.conf"));
}

#[test]
fn no_unpack_rootfs_export_and_mount() {
    let root = temp_root();
    let r = root.path();
    let reference = fixture("debian:v1");
    let out = imgsvc(r, &["--no-unpack", "pull", &reference]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(r.join("layers/sha256")).unwrap().count(), 0, "--no-unpack unpacked");

    let out = imgsvc(r, &["rootfs", &reference]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dirs: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    // Top layer first: the opaque directory's new content is in the first one.
    assert!(std::path::Path::new(&dirs[0]).join("opt/imgsvc/replaced/new.txt").exists(), "{dirs:?}");

    let dest = tempfile::tempdir().unwrap();
    let export = dest.path().join("rootfs");
    let out = imgsvc(r, &["export", &reference, export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chroot = Command::new("chroot").arg(&export).args(["/bin/sh", "-c", "echo ok"]).output().unwrap();
    assert_eq!(stdout(&chroot), "ok\n");
    let out = imgsvc(r, &["export", &reference, export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));

    // Read-only overlay of the layer directories (CI runs as root).
    let mnt = tempfile::tempdir().unwrap();
    let out = imgsvc(r, &["mount", &reference, mnt.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hello = std::fs::read_to_string(mnt.path().join("etc/imgsvc-fixture/hello.txt"));
    let removed = mnt.path().join("etc/imgsvc-fixture/remove-me.txt").exists();
    let writable = std::fs::write(mnt.path().join("new-file"), b"x").is_ok();
    let _ = Command::new("umount").arg(mnt.path()).status();
    assert_eq!(hello.unwrap(), "hello from imgsvc fixture layer b\n");
    assert!(!removed, "a whiteout shows through the mount");
    assert!(!writable, "the mount is read-only");

    let out = imgsvc(r, &["rmi", &reference]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(r.join("layers/sha256")).unwrap().count(), 0, "layers outlived the image");
    let out = imgsvc(r, &["export", &reference, dest.path().join("again").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let root = temp_root();
    let r = root.path();
    assert!(imgsvc(r, &["pull", &fixture("small:a")]).status.success());
    // A reader that went away: quiet, like any Unix tool killed by SIGPIPE.
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .arg("--root")
        .arg(r)
        .args(["images", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    // A full disk: one line on stderr, exit 2.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_imgsvc")).arg("--root").arg(r).args(["images"]).stdout(full).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("imgsvc: i/o: writing output:") && !err.contains("panicked"), "{err}");
}
