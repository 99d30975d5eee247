//! CRI JSON forms, as crictl prints them (protojson: camelCase names, 64-bit
//! integers as strings, default values emitted, unset messages omitted).
//! Used by the CLI's `--json`, the C ABI and the Python `to_dict()`.

use crate::types::{FilesystemUsage, Image, ImageStatus, Progress};
use serde_json::{json, Map, Value};

/// One CRI `Image`.
pub fn image(i: &Image) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(i.id));
    m.insert("repoTags".into(), json!(i.repo_tags));
    m.insert("repoDigests".into(), json!(i.repo_digests));
    m.insert("size".into(), json!(i.size.to_string()));
    if let Some(uid) = i.uid {
        m.insert("uid".into(), json!({ "value": uid.to_string() }));
    }
    m.insert("username".into(), json!(i.username));
    m.insert("pinned".into(), json!(i.pinned));
    Value::Object(m)
}

/// `ListImagesResponse`: `{"images": [...]}`.
pub fn image_list(images: &[Image]) -> Value {
    json!({ "images": images.iter().map(image).collect::<Vec<_>>() })
}

/// crictl's `inspecti -o json` shape: `{"status": Image, "info": {...}}`, each
/// info value that is a JSON object parsed, others kept as strings.
pub fn image_status(s: &ImageStatus) -> Value {
    let mut out = Map::new();
    out.insert("status".into(), image(&s.image));
    for (k, v) in &s.info {
        let value = if v.starts_with('{') { serde_json::from_str(v).unwrap_or_else(|_| json!(v)) } else { json!(v) };
        out.insert(k.clone(), value);
    }
    Value::Object(out)
}

/// One CRI `FilesystemUsage`.
pub fn filesystem_usage(u: &FilesystemUsage) -> Value {
    json!({
        "timestamp": u.timestamp_ns.to_string(),
        "fsId": { "mountpoint": u.mountpoint },
        "usedBytes": { "value": u.used_bytes.to_string() },
        "inodesUsed": { "value": u.inodes_used.to_string() },
    })
}

/// `ImageFsInfoResponse`: image filesystems, container filesystems empty.
pub fn fs_info(u: &FilesystemUsage) -> Value {
    json!({ "imageFilesystems": [filesystem_usage(u)], "containerFilesystems": [] })
}

/// A progress event as a JSON object with a `type` field.
pub fn progress(p: &Progress) -> Value {
    match p {
        Progress::Resolved { image, manifest_digest, total_bytes, layers } => json!({
            "type": "resolved", "image": image, "manifestDigest": manifest_digest,
            "totalBytes": total_bytes, "layers": layers,
        }),
        Progress::LayerStarted { digest, size } => json!({ "type": "layer_started", "digest": digest, "size": size }),
        Progress::Bytes { digest, done, total } => {
            json!({ "type": "bytes", "digest": digest, "done": done, "total": total })
        }
        Progress::LayerDone { digest, size } => json!({ "type": "layer_done", "digest": digest, "size": size }),
        Progress::LayerSkipped { digest, size } => json!({ "type": "layer_skipped", "digest": digest, "size": size }),
        Progress::Committed { image_id } => json!({ "type": "committed", "imageId": image_id }),
    }
}
