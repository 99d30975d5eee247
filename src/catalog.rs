//! The catalog: CRI images derived from the layout's `index.json`.
//!
//! index.json holds one descriptor per (image, name). A tagged name sets
//! `org.opencontainers.image.ref.name`; an image known only by digest has a
//! descriptor without it. Our annotations carry what list and status need, so
//! answering them never reads a blob.

use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::store::{LayoutIndex, REF_NAME};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) const IMAGE_ID: &str = "io.imgsvc.image.id";
pub(crate) const REPO_DIGEST: &str = "io.imgsvc.repo-digest";
pub(crate) const IMAGE_SIZE: &str = "io.imgsvc.image.size";
pub(crate) const IMAGE_USER: &str = "io.imgsvc.image.user";
pub(crate) const INDEX_DIGEST: &str = "io.imgsvc.index.digest";
pub(crate) const PULLED_AT: &str = "io.imgsvc.pulled";

/// One image as the catalog knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    pub id: String,
    pub repo_tags: BTreeSet<String>,
    pub repo_digests: BTreeSet<String>,
    pub size: u64,
    pub user: String,
    pub manifests: BTreeSet<String>,
    pulled_at: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub images: BTreeMap<String, Record>,
    by_tag: HashMap<String, String>,
    by_digest: HashMap<String, String>,
}

pub(crate) fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations.get(key).map(String::as_str)
}

/// What a lookup found.
pub(crate) enum Found<'a> {
    Image(&'a Record),
    Absent,
}

impl Catalog {
    pub fn build(index: &LayoutIndex) -> Catalog {
        let mut cat = Catalog::default();
        for d in &index.manifests {
            let Some(id) = annotation(d, IMAGE_ID) else { continue };
            let rec =
                cat.images.entry(id.to_string()).or_insert_with(|| Record { id: id.to_string(), ..Default::default() });
            let pulled_at: u64 = annotation(d, PULLED_AT).and_then(|s| s.parse().ok()).unwrap_or(0);
            if pulled_at >= rec.pulled_at || rec.size == 0 {
                rec.pulled_at = pulled_at;
                rec.size = annotation(d, IMAGE_SIZE).and_then(|s| s.parse().ok()).unwrap_or(0);
            }
            rec.user = annotation(d, IMAGE_USER).unwrap_or("").to_string();
            rec.manifests.insert(d.digest.clone());
            if let Some(name) = annotation(d, REF_NAME) {
                rec.repo_tags.insert(name.to_string());
                cat.by_tag.insert(name.to_string(), id.to_string());
            }
            if let Some(rd) = annotation(d, REPO_DIGEST) {
                rec.repo_digests.insert(rd.to_string());
                // The name@digest lookup accepts the index and the platform manifest digest.
                if let Some((repo, _)) = rd.split_once('@') {
                    cat.by_digest.insert(rd.to_string(), id.to_string());
                    cat.by_digest.insert(format!("{repo}@{}", d.digest), id.to_string());
                    if let Some(ix) = annotation(d, INDEX_DIGEST) {
                        cat.by_digest.insert(format!("{repo}@{ix}"), id.to_string());
                    }
                }
            }
        }
        cat
    }

    /// Find an image by name, short name, name@digest, id, or id prefix (of at
    /// least 3 hex characters). Names are tried before id prefixes.
    pub fn lookup(&self, input: &str) -> Result<Found<'_>> {
        if input.is_empty() {
            return Err(Error::invalid("no image specified"));
        }
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex && hex.len() == 64 {
            return Ok(self.images.get(&format!("sha256:{hex}")).map_or(Found::Absent, Found::Image));
        }
        if is_hex && hex.len() > 64 {
            return Err(Error::invalid(format!("{} is longer than an image id", crate::reference::clipped(input))));
        }
        let parsed = if input.starts_with("sha256:") { None } else { Some(Reference::parse(input)) };
        if let Some(Ok(r)) = &parsed {
            if let Found::Image(rec) = self.lookup_name(r) {
                return Ok(Found::Image(rec));
            }
        }
        match parsed {
            Some(Err(e)) if !is_hex || hex.len() < 3 => Err(e),
            _ => self.lookup_id(input),
        }
    }

    /// The image a normalized name (tagged, or `repo@digest`) points to.
    pub fn lookup_name(&self, r: &Reference) -> Found<'_> {
        let key = r.to_string();
        let hit = if r.digest().is_some() { self.by_digest.get(&key) } else { self.by_tag.get(&key) };
        hit.and_then(|id| self.images.get(id)).map_or(Found::Absent, Found::Image)
    }

    /// The image an id or id prefix (at least 3 hex characters) names.
    pub fn lookup_id(&self, input: &str) -> Result<Found<'_>> {
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_hex {
            return if input.starts_with("sha256:") {
                Err(Error::invalid(format!("{} is not a valid image id", crate::reference::clipped(input))))
            } else {
                Ok(Found::Absent)
            };
        }
        if hex.len() < 3 {
            return if input.starts_with("sha256:") {
                Err(Error::invalid(format!("image id prefix {input:?} is too short (at least 3 hex characters)")))
            } else {
                Ok(Found::Absent)
            };
        }
        let from = format!("sha256:{hex}");
        let matches: Vec<&Record> =
            self.images.range(from.clone()..).take_while(|(id, _)| id.starts_with(&from)).map(|(_, r)| r).collect();
        match matches.as_slice() {
            [] => Ok(Found::Absent),
            [one] => Ok(Found::Image(one)),
            many => Err(Error::invalid(format!(
                "image id prefix {input:?} is ambiguous: it matches {}",
                many.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// What a finished pull adds to index.json.
pub(crate) struct NewEntry {
    pub id: String,
    pub manifest: Descriptor,
    /// The full tagged name, when pulled by tag.
    pub tag: Option<String>,
    pub repo_digest: String,
    pub index_digest: Option<String>,
    pub size: u64,
    pub user: String,
    /// Every blob the image needs (checked present before recording).
    pub blobs: Vec<String>,
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Record a pull: the tag moves to this image (the old image keeps its repo
/// digest as a nameless entry), and one config digest stays one image.
pub(crate) fn apply_pull(index: &mut LayoutIndex, new: NewEntry) {
    let mut desc = new.manifest;
    let a = &mut desc.annotations;
    a.insert(IMAGE_ID.into(), new.id.clone());
    a.insert(REPO_DIGEST.into(), new.repo_digest.clone());
    a.insert(IMAGE_SIZE.into(), new.size.to_string());
    a.insert(IMAGE_USER.into(), new.user);
    a.insert(PULLED_AT.into(), now_ns().to_string());
    if let Some(ix) = &new.index_digest {
        a.insert(INDEX_DIGEST.into(), ix.clone());
    }
    if let Some(tag) = &new.tag {
        a.insert(REF_NAME.into(), tag.clone());
    }
    let mut kept: Vec<Descriptor> = Vec::with_capacity(index.manifests.len() + 1);
    let mut orphaned: Vec<Descriptor> = Vec::new();
    for d in index.manifests.drain(..) {
        let same_image = annotation(&d, IMAGE_ID) == Some(new.id.as_str());
        let same_digest = annotation(&d, REPO_DIGEST) == Some(new.repo_digest.as_str());
        let name = annotation(&d, REF_NAME);
        if new.tag.is_some() && name == new.tag.as_deref() {
            if !same_image {
                // The tag moved: the old image stays, known by its digest.
                let mut old = d;
                old.annotations.remove(REF_NAME);
                orphaned.push(old);
            }
            continue;
        }
        if same_image && same_digest && name.is_none() {
            // The new entry (tagged or not) carries this repo digest now.
            continue;
        }
        kept.push(d);
    }
    for old in orphaned {
        let id = annotation(&old, IMAGE_ID);
        let rd = annotation(&old, REPO_DIGEST);
        if !kept.iter().any(|k| annotation(k, IMAGE_ID) == id && annotation(k, REPO_DIGEST) == rd) {
            kept.push(old);
        }
    }
    if new.tag.is_none()
        && kept.iter().any(|k| {
            annotation(k, IMAGE_ID) == Some(new.id.as_str())
                && annotation(k, REPO_DIGEST) == Some(new.repo_digest.as_str())
        })
    {
        // A tag entry already records this digest; refresh nothing else.
    } else {
        kept.push(desc);
    }
    index.manifests = kept;
}

/// Drop every entry of image `id`; returns the manifests they pointed to.
pub(crate) fn remove_image(index: &mut LayoutIndex, id: &str) -> Vec<Descriptor> {
    let (gone, kept): (Vec<_>, Vec<_>) = index.manifests.drain(..).partition(|d| annotation(d, IMAGE_ID) == Some(id));
    index.manifests = kept;
    gone
}

/// Drop the entries that `name` (a tagged or digested reference) names.
pub(crate) fn remove_name(index: &mut LayoutIndex, name: &Reference) -> Vec<Descriptor> {
    let key = name.to_string();
    let by_digest = name.digest().is_some();
    let (gone, kept): (Vec<_>, Vec<_>) = index.manifests.drain(..).partition(|d| {
        if by_digest {
            annotation(d, REF_NAME).is_none() && annotation(d, REPO_DIGEST) == Some(key.as_str())
        } else {
            annotation(d, REF_NAME) == Some(key.as_str())
        }
    });
    index.manifests = kept;
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn entry(image: &str, tag: Option<&str>, manifest: &str) -> NewEntry {
        let repo = tag.map(|t| t.rsplit_once(':').unwrap().0.to_string()).unwrap_or_else(|| "example.com/app".into());
        NewEntry {
            id: image.to_string(),
            manifest: Descriptor {
                media_type: crate::manifest::OCI_MANIFEST.into(),
                digest: manifest.into(),
                size: 10,
                ..Default::default()
            },
            tag: tag.map(str::to_string),
            repo_digest: format!("{repo}@{manifest}"),
            index_digest: None,
            size: 100,
            user: "0".into(),
            blobs: vec![],
        }
    }

    #[test]
    fn a_moved_tag_leaves_the_old_image_by_digest() {
        let mut ix = LayoutIndex::default();
        apply_pull(&mut ix, entry(&id('a'), Some("example.com/app:1"), &id('1')));
        apply_pull(&mut ix, entry(&id('b'), Some("example.com/app:1"), &id('2')));
        let cat = Catalog::build(&ix);
        let old = &cat.images[&id('a')];
        assert!(old.repo_tags.is_empty());
        assert_eq!(old.repo_digests.iter().collect::<Vec<_>>(), vec![&format!("example.com/app@{}", id('1'))]);
        let new = &cat.images[&id('b')];
        assert_eq!(new.repo_tags.iter().collect::<Vec<_>>(), vec!["example.com/app:1"]);
        // Pulling the same again changes nothing.
        apply_pull(&mut ix, entry(&id('b'), Some("example.com/app:1"), &id('2')));
        assert_eq!(ix.manifests.len(), 2);
        // By digest after by tag: no extra entry for the same repo digest.
        apply_pull(&mut ix, entry(&id('b'), None, &id('2')));
        assert_eq!(ix.manifests.len(), 2);
    }

    #[test]
    fn short_names_find_docker_hub_images() {
        let mut ix = LayoutIndex::default();
        apply_pull(&mut ix, entry(&id('a'), Some("docker.io/library/busybox:latest"), &id('1')));
        let cat = Catalog::build(&ix);
        for name in
            ["busybox", "busybox:latest", "library/busybox", "docker.io/busybox", "index.docker.io/library/busybox"]
        {
            assert!(matches!(cat.lookup(name).unwrap(), Found::Image(r) if r.id == id('a')), "{name}");
        }
        assert!(matches!(cat.lookup("busybox:1").unwrap(), Found::Absent));
    }

    #[test]
    fn ambiguous_id_prefixes_list_the_candidates() {
        let mut ix = LayoutIndex::default();
        let one = format!("sha256:abc1{}", "0".repeat(60));
        let two = format!("sha256:abc2{}", "0".repeat(60));
        apply_pull(&mut ix, entry(&one, Some("example.com/one:1"), &id('1')));
        apply_pull(&mut ix, entry(&two, Some("example.com/two:1"), &id('2')));
        let cat = Catalog::build(&ix);
        let err = cat.lookup("abc").err().expect("ambiguous");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains(&one) && err.message().contains(&two), "{err}");
        assert!(matches!(cat.lookup("abc1").unwrap(), Found::Image(r) if r.id == one));
        assert!(matches!(cat.lookup("sha256:abc2").unwrap(), Found::Image(r) if r.id == two));
        assert!(matches!(cat.lookup("abd").unwrap(), Found::Absent));
        assert_eq!(cat.lookup("ab").err().map(|e| e.kind()), None, "'ab' is a valid short name, absent");
        assert_eq!(cat.lookup("sha256:ab").err().map(|e| e.kind()), Some(crate::ErrorKind::InvalidArgument));
    }
}
