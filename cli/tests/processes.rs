//! Across processes: two `imgsvc pull` processes on one store share the
//! downloads; pulling a 1 GiB layer keeps peak RSS under 100 MiB.

#[path = "../../tests/common/mod.rs"]
mod common;
use common::*;
use std::process::{Command, Stdio};

const NO_SYSTEM_CONFIG: [&str; 4] = ["--registries-conf=", "--auth-file=", "--docker-config=", "--cert-dir="];

fn imgsvc(root: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsvc"));
    c.arg("--root").arg(root).args(NO_SYSTEM_CONFIG);
    c
}

#[test]
fn two_processes_pulling_one_image_fetch_each_blob_once() {
    let repo = format!("test/twoproc-{}", std::process::id());
    let name = private_copy("debian:v1", &format!("{repo}:v1"));
    let (m, _) = registry_manifest(&repo, "v1");
    let root = temp_root();
    let procs: Vec<_> = (0..2)
        .map(|_| {
            imgsvc(root.path()).arg("pull").arg(&name).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap()
        })
        .collect();
    let ids: Vec<String> = procs
        .into_iter()
        .map(|p| {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    let id = m["config"]["digest"].as_str().unwrap();
    assert_eq!(ids, vec![id, id]);
    let mut digests = vec![id.to_string()];
    digests.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for d in &digests {
        assert_eq!(blob_gets(&repo, d), Some(1), "blob {d} fetched more than once");
    }
    let fsck = imgsvc(root.path()).arg("fsck").output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn pulling_a_1gib_layer_stays_under_100mib_rss() {
    // scripts/test pushes fixture/big (IMGSVC_FIXTURE_BIG_MB=1024).
    let (m, _) = registry_manifest("fixture/big", "latest");
    let layer = m["layers"][0]["size"].as_u64().unwrap();
    assert!(layer >= 1 << 30, "fixture/big has a {layer}-byte layer; push it with IMGSVC_FIXTURE_BIG_MB=1024");
    let root = temp_root();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(env!("CARGO_BIN_EXE_imgsvc"))
        .arg("--root")
        .arg(root.path())
        .args(NO_SYSTEM_CONFIG)
        .arg("pull")
        .arg(fixture("big:latest"))
        .output()
        .expect("run /usr/bin/time (apt-get install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let kib: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .expect("peak RSS from /usr/bin/time");
    eprintln!("peak RSS pulling a {layer}-byte layer: {} MiB", kib / 1024);
    assert!(kib < 100 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn a_signal_cancels_a_pull_and_the_store_stays_as_it_was() {
    use std::io::BufRead;
    let root = temp_root();
    let keep = imgsvc(root.path()).arg("pull").arg(fixture("small:a")).output().unwrap();
    assert!(keep.status.success());
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let name =
            private_copy("debian:v1", &format!("test/signal-{}-{}:v1", signal[1..].to_lowercase(), std::process::id()));
        let mut child = imgsvc(root.path()).arg("pull").arg(&name).stderr(Stdio::piped()).spawn().unwrap();
        // Signal once the big layer is in and being unpacked.
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = vec![];
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push(line.clone());
            if line.contains("\"layer_done\"") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["size"].as_u64().unwrap_or(0) > 1 << 20 {
                    let pid = child.id().to_string();
                    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
                    break;
                }
            }
        }
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {seen:?} {rest:?}");
        assert!(rest.last().is_some_and(|l| l.contains("cancelled")), "{rest:?}");
        let fsck = imgsvc(root.path()).arg("fsck").output().unwrap();
        assert!(fsck.status.success(), "{signal}: {}", String::from_utf8_lossy(&fsck.stdout));
        let images = imgsvc(root.path()).args(["images", "-q"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&images.stdout).lines().count(), 1, "{signal}");
    }
}
