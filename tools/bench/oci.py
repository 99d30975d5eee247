"""Small OCI image writer and registry pusher for scripts/bench.

Builds images as OCI image layouts (blobs/sha256, index.json), pushes them to
a plain-HTTP registry with the distribution API (monolithic uploads), and
writes the bulk archives the store-size benchmark seeds peers with
(an OCI archive for `ctr images import`, a docker-archive for `podman load`).
"""

import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CTR_NAME = "io.containerd.image.name"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    """An OCI image layout on disk."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.index_path = os.path.join(root, "index.json")
        if os.path.exists(self.index_path):
            with open(self.index_path) as f:
                self.index = json.load(f)
        else:
            self.index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}

    def blob_path(self, digest):
        return os.path.join(self.root, "blobs", "sha256", digest.split(":", 1)[1])

    def add_bytes(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        p = self.blob_path(digest)
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.rename(p + ".tmp", p)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_file(self, path, media_type):
        digest = sha256_file(path)
        size = os.path.getsize(path)
        p = self.blob_path(digest)
        if not os.path.exists(p):
            shutil.move(path, p)
        else:
            os.unlink(path)
        return {"mediaType": media_type, "digest": digest, "size": size}

    def add_image(self, ref, layers, diff_ids, labels=None):
        """Config + manifest for `layers` (descriptors); point `ref` at it."""
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Cmd": ["/bin/sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "User": "0",
                "Labels": labels or {},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "imgsvc bench"} for _ in layers],
        }
        cdesc = self.add_bytes(canonical(config), MT_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": layers}
        mdesc = self.add_bytes(canonical(manifest), MT_MANIFEST)
        self.set_ref(ref, mdesc)
        return mdesc, cdesc

    def set_ref(self, ref, desc):
        ms = [m for m in self.index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
        ms.append(dict(desc, annotations={REF_NAME: ref}))
        self.index["manifests"] = ms

    def save(self):
        with open(self.index_path + ".tmp", "w") as f:
            json.dump(self.index, f)
        os.rename(self.index_path + ".tmp", self.index_path)

    def ref(self, ref):
        for m in self.index["manifests"]:
            if m.get("annotations", {}).get(REF_NAME) == ref:
                return {k: v for k, v in m.items() if k != "annotations"}
        raise KeyError(ref)

    def read_json(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return json.loads(f.read())


class _Random(io.RawIOBase):
    """A readable stream of `n` random bytes."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left, 1 << 20)
        if k <= 0:
            return 0
        b[:k] = os.urandom(k)
        self.left -= k
        return k


def random_layer(layout, size, name, tmpdir):
    """A gzip layer holding one file of `size` random bytes -> (descriptor, diff_id)."""
    tar_path = os.path.join(tmpdir, name + ".tar")
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("data/" + name + ".bin")
        info.size = size
        info.mode = 0o644
        info.mtime = 1704067200
        t.addfile(info, io.BufferedReader(_Random(size), 1 << 20))
    diff_id = sha256_file(tar_path)
    gz_path = tar_path + ".gz"
    with open(gz_path, "wb") as out:
        subprocess.run(["gzip", "-1", "-n", "-c", tar_path], stdout=out, check=True)
    os.unlink(tar_path)
    return layout.add_file(gz_path, MT_LAYER_GZIP), diff_id


def _tar_one(path, data):
    """A deterministic uncompressed tar holding one file -> (tar bytes, gzip bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 1704067200
        t.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    return tar, gzip.compress(tar, compresslevel=6, mtime=0)


def small_layer_bytes():
    """A tiny deterministic layer (uncompressed tar, gzip) shared by the many-image stores."""
    return _tar_one("etc/bench.txt", b"shared layer of the store-size benchmark\n")


def build_random_image(cache_dir, key, layers, layer_bytes):
    """Cached layout at cache_dir/key with ref 'latest': `layers` random layers."""
    root = os.path.join(cache_dir, key)
    if os.path.exists(os.path.join(root, "DONE")):
        return root
    tmp = tempfile.mkdtemp(prefix=".tmp-" + key + ".", dir=cache_dir)
    lay = Layout(os.path.join(tmp, "oci"))
    descs, diffs = [], []
    for i in range(layers):
        d, diff = random_layer(lay, layer_bytes, "layer%02d" % i, tmp)
        descs.append(d)
        diffs.append(diff)
    lay.add_image("latest", descs, diffs, {"org.imgsvc.bench": key})
    lay.save()
    open(os.path.join(lay.root, "DONE"), "w").close()
    shutil.rmtree(root, ignore_errors=True)
    os.rename(lay.root, root)
    shutil.rmtree(tmp, ignore_errors=True)
    return root


# ---------------------------------------------------------------------------
# The store-size benchmark: N small images. Each has two layers, as real images
# do: a base layer shared by all of them and a tiny top layer of its own (so
# no two images share a top layer, which tools that build an image tree from
# top layers, like podman, would otherwise have to disambiguate N^2 times),
# and its own config (so its own image id) and manifest. Numbers are
# zero-padded so that every config and manifest has the same length.


def _sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Many:
    """The N-image set, generated in memory (deterministic)."""

    def __init__(self):
        self.tar, self.gz = small_layer_bytes()
        self.diff_id = _sha(self.tar)
        self.layer = {"mediaType": MT_LAYER_GZIP, "digest": _sha(self.gz), "size": len(self.gz)}
        self._cache = {}

    def top(self, i):
        """Image i's own layer -> (tar, gz, descriptor, diff_id)."""
        tar, gz = _tar_one("etc/bench-image", b"image %06d\n" % i)
        return tar, gz, {"mediaType": MT_LAYER_GZIP, "digest": _sha(gz), "size": len(gz)}, _sha(tar)

    def image(self, i):
        """-> (config bytes, config descriptor, manifest bytes, manifest descriptor)."""
        if i not in self._cache:
            _, _, tdesc, tdiff = self.top(i)
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": {"Cmd": ["/bin/sh"], "User": "0", "Labels": {"org.imgsvc.bench.n": "%06d" % i}},
                "rootfs": {"type": "layers", "diff_ids": [self.diff_id, tdiff]},
            }
            cbytes = canonical(config)
            cdesc = {"mediaType": MT_CONFIG, "digest": _sha(cbytes), "size": len(cbytes)}
            manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": [self.layer, tdesc]}
            mbytes = canonical(manifest)
            mdesc = {"mediaType": MT_MANIFEST, "digest": _sha(mbytes), "size": len(mbytes)}
            self._cache[i] = (cbytes, cdesc, mbytes, mdesc)
        return self._cache[i]

    @staticmethod
    def repo(registry, i):
        return "%s/bench/many-%06d" % (registry, i)


def write_blob(dir_, digest, data):
    p = os.path.join(dir_, digest.split(":", 1)[1])
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)


def containerd_archive(path, many, registry, lo, hi):
    """OCI archive for `ctr images import`: images lo..hi-1, each named by tag
    and by repo digest, as a CRI pull names them. Not by id: containerd's CRI
    plugin adds that name itself when it sees the image, and naming it here
    too races with it ("image sha256:...: already exists")."""
    with tarfile.open(path, "w") as t:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("blobs/sha256/" + many.layer["digest"][7:], many.gz)
        entries = []
        for i in range(lo, hi):
            cbytes, cdesc, mbytes, mdesc = many.image(i)
            _, gz, tdesc, _ = many.top(i)
            add("blobs/sha256/" + tdesc["digest"][7:], gz)
            add("blobs/sha256/" + cdesc["digest"][7:], cbytes)
            add("blobs/sha256/" + mdesc["digest"][7:], mbytes)
            repo = many.repo(registry, i)
            for name in (repo + ":v1", repo + "@" + mdesc["digest"]):
                entries.append(dict(mdesc, annotations={CTR_NAME: name}))
        add("index.json", canonical({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}))


def docker_archive(path, many, registry, lo, hi):
    """docker-archive (`docker save` format) with images lo..hi-1 for `podman load`."""
    base = many.diff_id[7:] + "/layer.tar"
    with tarfile.open(path, "w") as t:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))

        add(base, many.tar)
        manifest = []
        for i in range(lo, hi):
            cbytes, cdesc, _, _ = many.image(i)
            tar, _, _, tdiff = many.top(i)
            top = tdiff[7:] + "/layer.tar"
            add(top, tar)
            add(cdesc["digest"][7:] + ".json", cbytes)
            manifest.append(
                {"Config": cdesc["digest"][7:] + ".json", "RepoTags": [many.repo(registry, i) + ":v1"], "Layers": [base, top]}
            )
        add("manifest.json", json.dumps(manifest).encode())


# ---------------------------------------------------------------------------
# Pushing over the distribution API.


class Registry:
    def __init__(self, addr):
        self.addr = addr

    def _conn(self):
        host, port = self.addr.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=600)

    def _req(self, method, path, body=None, headers=None):
        c = self._conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, r.headers, data
        finally:
            c.close()

    def has_blob(self, repo, digest):
        st, _, _ = self._req("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        return st == 200

    def push_blob(self, repo, digest, size, opener):
        if self.has_blob(repo, digest):
            return
        st, hdr, data = self._req("POST", "/v2/%s/blobs/uploads/" % repo)
        if st != 202:
            raise RuntimeError("POST upload %s: HTTP %d %s" % (repo, st, data[:200]))
        loc = hdr["Location"]
        u = urllib.parse.urlsplit(loc)
        path = u.path + "?" + (u.query + "&" if u.query else "") + "digest=" + urllib.parse.quote(digest)
        with opener() as body:
            st, _, data = self._req(
                "PUT", path, body=body, headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            )
        if st != 201:
            raise RuntimeError("PUT blob %s %s: HTTP %d %s" % (repo, digest, st, data[:200]))

    def push_manifest(self, repo, tag, media_type, data):
        st, hdr, body = self._req("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=data, headers={"Content-Type": media_type})
        if st != 201:
            raise RuntimeError("PUT manifest %s:%s: HTTP %d %s" % (repo, tag, st, body[:300]))

    def push_layout(self, layout_root, ref, repo, tag):
        """Push one image (a manifest, not an index) from a layout."""
        lay = Layout(layout_root)
        mdesc = lay.ref(ref)
        manifest = lay.read_json(mdesc["digest"])
        for d in [manifest["config"]] + manifest["layers"]:
            p = lay.blob_path(d["digest"])
            self.push_blob(repo, d["digest"], d["size"], lambda p=p: open(p, "rb"))
        with open(lay.blob_path(mdesc["digest"]), "rb") as f:
            self.push_manifest(repo, tag, mdesc.get("mediaType") or manifest.get("mediaType") or MT_MANIFEST, f.read())
        return manifest

    def mount_blob(self, repo, digest, from_repo):
        """Cross-repository mount (one request); False if the registry would not."""
        st, _, _ = self._req(
            "POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (repo, urllib.parse.quote(digest), urllib.parse.quote(from_repo))
        )
        return st == 201

    def push_many(self, many, i, base_repo=None):
        """Push image i of `many`. With base_repo (a repo already holding the
        shared layer), the shared layer is mounted from it instead of uploaded;
        the image's own blobs are not probed first (they never exist)."""
        cbytes, cdesc, mbytes, mdesc = many.image(i)
        _, gz, tdesc, _ = many.top(i)
        repo = many.repo("", i).lstrip("/")
        if not (base_repo and base_repo != repo and self.mount_blob(repo, many.layer["digest"], base_repo)):
            self.push_blob(repo, many.layer["digest"], many.layer["size"], lambda: io.BytesIO(many.gz))
        self.upload(repo, tdesc["digest"], tdesc["size"], gz)
        self.upload(repo, cdesc["digest"], cdesc["size"], cbytes)
        self.push_manifest(repo, "v1", MT_MANIFEST, mbytes)

    def upload(self, repo, digest, size, data):
        """Monolithic upload without the existence probe."""
        st, hdr, body = self._req("POST", "/v2/%s/blobs/uploads/" % repo)
        if st != 202:
            raise RuntimeError("POST upload %s: HTTP %d %s" % (repo, st, body[:200]))
        u = urllib.parse.urlsplit(hdr["Location"])
        path = u.path + "?" + (u.query + "&" if u.query else "") + "digest=" + urllib.parse.quote(digest)
        st, _, body = self._req(
            "PUT", path, body=data, headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        )
        if st != 201:
            raise RuntimeError("PUT blob %s %s: HTTP %d %s" % (repo, digest, st, body[:200]))
