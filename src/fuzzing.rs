//! Entry points for the `cargo fuzz` targets in `fuzz/`. Compiled only with
//! `--cfg fuzzing` (which cargo-fuzz sets), so the parsers stay private in
//! every normal build. Each function feeds arbitrary bytes to one parser and
//! checks the properties a caller relies on; a panic here is a finding.

use crate::manifest::{self, Document, ImageConfig};
use crate::reference::Reference;

/// Reference parsing: never panics; what it accepts normalizes to a fixed
/// point (parsing the printed form gives the same reference).
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} normalized to {printed:?}, which does not parse: {e}"));
        assert_eq!(again.to_string(), printed, "normalization of {s:?} is not stable");
        assert!(r.tag().is_some() != r.digest().is_some(), "{s:?}: exactly one of tag and digest");
    }
}

/// Manifest and index parsing with whatever content type the first byte picks,
/// then the checks the pull applies to what parsed.
pub fn document(data: &[u8]) {
    let types = [None, Some(manifest::OCI_MANIFEST), Some(manifest::OCI_INDEX), Some(manifest::DOCKER_LIST)];
    let (ct, body) = match data.split_first() {
        Some((b, rest)) => (types[usize::from(*b) % types.len()], rest),
        None => (None, data),
    };
    match manifest::parse_document(body, ct, "fuzz") {
        Ok(Document::Manifest { manifest, .. }) => {
            let _ = manifest.check_is_image("fuzz");
        }
        Ok(Document::Index { index }) => {
            let (os, arch, variants) = manifest::host_platform();
            if let Some(d) = manifest::choose_platform(&index.manifests, &os, &arch, &variants) {
                assert!(index.manifests.contains(d));
            }
        }
        Err(_) => {}
    }
}

/// Image config parsing and the uid/username rule applied to its `User`.
pub fn config(data: &[u8]) {
    if let Ok(cfg) = ImageConfig::parse(data) {
        let user = cfg.user();
        let (uid, name) = manifest::user_to_uid(user);
        assert!(uid.is_none() || name.is_empty(), "{user:?}: both a uid and a username");
    }
}
