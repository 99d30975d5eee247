//! include/imgsvc.h is generated from this crate by cbindgen and committed;
//! this test fails when the committed header differs from what cbindgen
//! makes now. Regenerate it with:
//!
//!     IMGSVC_BLESS=1 cargo test -p imgsvc-capi --release --test header

use std::path::PathBuf;

#[test]
fn committed_header_matches_cbindgen() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let committed_path = crate_dir.join("../../include/imgsvc.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate the header");

    let tmp = tempfile::tempdir().expect("temporary directory");
    let fresh_path = tmp.path().join("imgsvc.h");
    bindings.write_to_file(&fresh_path);
    let fresh = std::fs::read_to_string(&fresh_path).expect("reading the generated header");

    if std::env::var_os("IMGSVC_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&committed_path, &fresh).expect("writing include/imgsvc.h");
        eprintln!("wrote {}", committed_path.display());
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != fresh {
        let first = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or(committed.lines().count().min(fresh.lines().count()));
        panic!(
            "include/imgsvc.h is out of date (first difference at line {}: committed {:?}, cbindgen {:?}); \
             regenerate it with IMGSVC_BLESS=1 cargo test -p imgsvc-capi --release --test header",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            fresh.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}
