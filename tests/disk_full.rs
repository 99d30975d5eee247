//! A full disk: the store lives on a small tmpfs; a pull that does not fit
//! fails with the storage-full error and leaves what was stored intact.

mod common;
use common::*;
use imgsvc::ErrorKind;
use std::process::Command;

struct Mount(tempfile::TempDir);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn small_tmpfs(mib: u32) -> Mount {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(st.success(), "mounting a {mib} MiB tmpfs failed: this test needs root (as CI runs it)");
    Mount(dir)
}

#[test]
fn a_full_disk_is_storage_full_and_the_store_survives() {
    let mount = small_tmpfs(24);
    let root = mount.0.path().join("store");
    let svc = open(&root);
    let keep = svc.pull(&fixture("named:latest"), None, None).unwrap();
    let index_before = std::fs::read(root.join("index.json")).unwrap();
    let blobs_before = stored_blobs(&root);

    // The Debian image is ~95 MB: it cannot fit.
    let err = svc.pull(&fixture("debian:v1"), None, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    assert!(err.message().contains("No space left"), "{err}");

    assert_eq!(std::fs::read(root.join("index.json")).unwrap(), index_before);
    assert_eq!(stored_blobs(&root), blobs_before, "a failed pull changed the blobs");
    let report = svc.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(svc.status(&keep, false).unwrap().unwrap().image.id, keep);
    // Space is back: the small image still pulls again after a remove.
    svc.remove(&keep).unwrap();
    assert_eq!(svc.pull(&fixture("named:latest"), None, None).unwrap(), keep);
}
