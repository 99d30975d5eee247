#!/usr/bin/python3
"""The imgsvc benchmark driver (run it through scripts/bench, which installs
and builds what it needs and passes --imgsvc, --inproc and --criclient).

One run, one loopback registry, every system measured in the same run,
alternating (A B C ... B C A ...):

  pull     cold pull (fresh store every run) of each image: imgsvc CLI,
           imgsvc's CRI PullImage, skopeo copy to an OCI dir, podman pull,
           ctr images pull, containerd's CRI PullImage, and the floor
           (curl | sha256sum of every blob); wall time and peak RSS; then
           re-pulls of the image just pulled
  conc     16 concurrent pulls of one image, 16 concurrent pulls of 16 images,
           against a single pull (fresh store each)
  store    list / status / fs_info latency with N images in the store for
           each N in --sizes: in process, over gRPC (one Go client for imgsvc
           and containerd), and the CLIs (imgsvc, crictl, podman)

Ratios are imgsvc / peer of the medians: below 1.0 imgsvc is faster.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import oci  # noqa: E402

T0 = time.monotonic()
MiB = 1 << 20


def log(msg):
    print("[%5.0fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


class Failure(Exception):
    """A measurement (or its setup) failed."""


def tail(text, n=15):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-n:])


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------
# Processes and directories


class Procs:
    """Every long-running process this run started, to stop on exit."""

    def __init__(self):
        self.live = []

    def spawn(self, argv, logpath, env=None, cwd=None):
        with open(logpath, "ab") as f:
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        self.live.append(p)
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in reversed(list(self.live)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log("stopping pid %d: %s" % (p.pid, e))


PROCS = Procs()


def mounts_under(path):
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1].encode().decode("unicode_escape")
            if mp == real or mp.startswith(real + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def rmtree(path):
    """rm -rf that unmounts what containerd or podman left mounted first."""
    if not os.path.lexists(path):
        return
    for mp in mounts_under(path):
        if subprocess.run(["umount", mp], stderr=subprocess.DEVNULL).returncode:
            subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], stderr=subprocess.DEVNULL)


def run(argv, env=None, timeout=7200, cwd=None):
    """Run, return stdout; Failure (with stderr) on a non-zero exit."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise Failure("%s: timed out after %d s" % (" ".join(argv[:4]), timeout))
    except OSError as e:
        raise Failure("%s: %s" % (argv[0], e))
    if p.returncode:
        raise Failure("%s exited %d: %s" % (" ".join(argv[:6]), p.returncode, tail(p.stderr or p.stdout)))
    return p.stdout.decode(errors="replace")


class Timer:
    """Wall time (perf_counter) and peak RSS (/usr/bin/time %M) of one command."""

    def __init__(self, work):
        self.tf = os.path.join(work, "time.out")

    def __call__(self, argv, env=None, timeout=7200, capture=False):
        full = ["/usr/bin/time", "-f", "%M", "-o", self.tf] + list(argv)
        t = time.perf_counter()
        try:
            p = subprocess.run(
                full,
                stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise Failure("%s: timed out after %d s" % (" ".join(argv[:4]), timeout))
        wall = time.perf_counter() - t
        if p.returncode:
            raise Failure("%s exited %d: %s" % (" ".join(argv[:6]), p.returncode, tail(p.stderr)))
        with open(self.tf) as f:
            rss = int(f.read().split()[-1])
        return wall, rss, (p.stdout.decode(errors="replace") if capture else "")


def proc_status(pid, key):
    """A kB field (VmHWM, VmRSS) of /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise Failure("no %s for pid %d" % (key, pid))


def wait_ready(proc, check, what, logpath, timeout=60):
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure("%s exited (%d) during start: %s" % (what, proc.returncode, tail(open(logpath, "rb").read())))
        try:
            check()
            return
        except Failure as e:
            last = str(e)
        time.sleep(0.1)
    raise Failure("%s not ready after %d s: %s" % (what, timeout, last))


# ---------------------------------------------------------------------------
# The systems


class ImgsvcServe:
    """`imgsvc serve`, the CRI ImageService over gRPC, on its own store."""

    def __init__(self, b, name, root=None):
        self.b = b
        self.dir = b.fresh(name)
        self.root = root or os.path.join(self.dir, "store")
        self.sock = os.path.join(self.dir, "imgsvc.sock")
        self.endpoint = "unix://" + self.sock
        self.proc = None

    def start(self):
        os.makedirs(self.dir)
        logpath = os.path.join(self.dir, "serve.log")
        self.proc = PROCS.spawn([self.b.imgsvc, "--root", self.root, "serve", "--listen", self.endpoint], logpath)
        wait_ready(self.proc, lambda: self.b.cri(self.endpoint, "list", n=0, timeout=5), "imgsvc serve", logpath)
        return self

    def hwm(self):
        return proc_status(self.proc.pid, "VmHWM")

    def rss(self):
        return proc_status(self.proc.pid, "VmRSS")

    def stop(self, remove=True):
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None
        if remove:
            self.b.discard(self.dir)


class Containerd:
    """containerd with its own root, state, sockets and config; its CRI plugin
    knows the loopback registry as a plain-HTTP mirror."""

    def __init__(self, b, name):
        self.b = b
        self.dir = b.fresh(name)
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.endpoint = "unix://" + self.sock
        self.proc = None

    def start(self):
        os.makedirs(self.dir)
        d = self.dir
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(
                """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{reg}"]
    endpoint = ["http://{reg}"]
""".format(d=d, reg=self.b.addr)
            )
        logpath = os.path.join(d, "containerd.log")
        self.proc = PROCS.spawn(["containerd", "--config", cfg], logpath)
        wait_ready(self.proc, lambda: self.b.cri(self.endpoint, "list", n=0, timeout=5), "containerd", logpath)
        return self

    def ctr(self, *args, ns="default"):
        return ["ctr", "-a", self.sock, "-n", ns] + list(args)

    def hwm(self):
        return proc_status(self.proc.pid, "VmHWM")

    def rss(self):
        return proc_status(self.proc.pid, "VmRSS")

    def stop(self, remove=True):
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None
        if remove:
            self.b.discard(self.dir)


class Podman:
    """podman with its own storage (root, runroot, storage.conf, tmp dirs)."""

    def __init__(self, b, name):
        self.b = b
        self.dir = b.fresh(name)
        self.conf = os.path.join(self.dir, "storage.conf")
        # podman refuses a runroot longer than 50 characters: keep it short.
        self.run = os.path.join(b.runbase, "p%d" % b.counter)

    def setup(self):
        for sub in ("root", "tmp"):
            os.makedirs(os.path.join(self.dir, sub))
        os.makedirs(self.run)
        with open(self.conf, "w") as f:
            f.write(
                '[storage]\ndriver = "%s"\ngraphroot = "%s/root"\nrunroot = "%s"\n'
                % (self.b.podman_driver, self.dir, self.run)
            )
        return self

    @property
    def env(self):
        return dict(os.environ, CONTAINERS_STORAGE_CONF=self.conf, TMPDIR=os.path.join(self.dir, "tmp"))

    def argv(self, *args):
        d = self.dir
        return [
            "podman",
            "--root", d + "/root",
            "--runroot", self.run,
            "--storage-driver", self.b.podman_driver,
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            "--tmpdir", d + "/tmp",
            "--log-level", "error",
        ] + list(args)

    def remove(self):
        self.b.discard(self.dir)
        self.b.discard(self.run)


# ---------------------------------------------------------------------------


SMOKE = dict(
    images="small", rounds=1, big_rounds=1, repulls=2, conc=16, conc_rounds=1, multi="16x1x1",
    sizes="10", calls=10, cli_calls=2, lat_rounds=1, podman_max=10, loopfs_gb=0,
)
FULL = dict(
    images="debian,big", rounds=5, big_rounds=3, repulls=5, conc=16, conc_rounds=3, multi="16x2x32",
    sizes="10,1000,10000", calls=100, cli_calls=6, lat_rounds=3, podman_max=1000, loopfs_gb=64,
)


class Bench:
    def __init__(self, a):
        self.a = a
        self.smoke = a.smoke
        self.imgsvc = os.path.abspath(a.imgsvc)
        self.inproc_bin = os.path.abspath(a.inproc)
        self.criclient = os.path.abspath(a.criclient)
        self.cache = a.cache
        self.failures = []
        self.results = {"pull": {}, "repull": {}, "conc": {}, "store": {}, "seed": {}, "daemon_rss": {}, "images": {}}
        self.base = tempfile.mkdtemp(prefix="imgsvc-bench.", dir=os.environ.get("TMPDIR", "/var/tmp"))
        self.work = self.base
        self.runbase = tempfile.mkdtemp(prefix="imgsvc-bench.", dir="/run" if os.access("/run", os.W_OK) else None)
        self.fs_note = None
        self.timed = Timer(self.base)
        self.addr = None
        self.counter = 0
        self.trash = []
        self.podman_driver = "overlay"
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def path(self, *p):
        return os.path.join(self.work, *p)

    def fresh(self, name):
        """A new, never used directory path for one run's store."""
        self.counter += 1
        return self.path("%s-%d" % (name, self.counter))

    def discard(self, path):
        """Delete `path` at the end of the round (see settle)."""
        self.trash.append(path)

    def settle(self):
        """Delete the round's stores, then wait. ext4 does not reuse an inode
        freed less than 60 s ago (300 s while its inode-table block is dirty):
        its allocator scans past them (recently_deleted()), so creating
        thousands of files right after deleting thousands costs several times
        the CPU. Deleting between runs would charge that to whichever system
        runs next."""
        if not self.trash:
            return
        for p in self.trash:
            rmtree(p)
        self.trash = []
        os.sync()
        if self.work != self.base:
            subprocess.run(["fstrim", self.work], stderr=subprocess.DEVNULL)  # give the space back to the sparse file
        if self.a.settle > 0:
            log("  deleted this round's stores; waiting %d s for the filesystem to settle" % self.a.settle)
            time.sleep(self.a.settle)

    def fail(self, what, e):
        msg = "%s: %s" % (what, e)
        log("FAILED " + msg)
        self.failures.append(msg)

    # --- clients -----------------------------------------------------------

    def cri(self, endpoint, op, n=None, image=None, c=None, verbose=False, timeout=None):
        argv = [self.criclient, "-endpoint", endpoint]
        if n is not None:
            argv += ["-n", str(n)]
        if image:
            argv += ["-image", image if isinstance(image, str) else ",".join(image)]
        if c:
            argv += ["-c", str(c)]
        if verbose:
            argv += ["-verbose"]
        if timeout:
            argv += ["-timeout", "%ds" % timeout]
        argv.append(op)
        out = run(argv, timeout=(timeout or 3600) + 30)
        try:
            return json.loads(out)
        except ValueError:
            raise Failure("criclient %s: not JSON: %s" % (op, tail(out)))

    def inproc(self, root, op, image="", n=100, full=False):
        env = dict(
            os.environ, IMGSVC_BENCH_ROOT=root, IMGSVC_BENCH_OPS=op, IMGSVC_BENCH_IMAGE=image, IMGSVC_BENCH_N=str(n)
        )
        out = run([self.inproc_bin, "--ignored", "--exact", "--nocapture", "run"], env=env)
        res = {}
        for line in out.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                res[d["op"]] = d
        if op not in res:
            raise Failure("inproc %s: no result in %s" % (op, tail(out)))
        return res if full else res[op]

    def crictl_conf(self, name, endpoint):
        p = self.path("crictl-%s.yaml" % name)
        with open(p, "w") as f:
            f.write("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 600\ndebug: false\n" % (endpoint, endpoint))
        return p

    # --- setup -------------------------------------------------------------

    def loopfs(self):
        """A fresh ext4 (journaled, mkfs defaults) on a loop device backed by a
        sparse file: every store, daemon and the registry live on it. Real
        nodes run journaled file systems; and the journal-less ext4 some VM
        images use (this one's /) skips recently freed inodes on allocation
        (recently_deleted(), up to 6 minutes after a delete), so creating files
        after deleting the previous run's store would cost several times the
        kernel CPU and charge it to whichever system ran next."""
        img = os.path.join(self.base, "fs.img")
        mnt = os.path.join(self.base, "fs")
        os.makedirs(mnt)
        with open(img, "wb") as f:
            f.truncate(self.a.loopfs_gb << 30)
        run(["mkfs.ext4", "-q", "-F", "-L", "imgsvc-bench", img])
        # noinit_itable: no background inode-table zeroing during the run.
        run(["mount", "-o", "loop,noinit_itable", img, mnt])
        self.work = mnt
        self.fs_note = "ext4 (journaled, mkfs.ext4 defaults), fresh for this run, on a loop device backed by a sparse file"

    def setup(self):
        if self.a.loopfs_gb > 0:
            try:
                self.loopfs()
            except Failure as e:
                log("no loop-mounted file system (%s); running in %s" % (e, self.base))
        log("work dir %s" % self.work)
        self.machine = machine_info(self.work)
        if self.fs_note:
            self.machine.insert(3, ("Stores, daemons and registry on", self.fs_note))
        if self.a.podman_driver:
            self.podman_driver = self.a.podman_driver
        else:
            for drv in ("overlay", "vfs"):
                self.podman_driver = drv
                p = Podman(self, "podman-probe").setup()
                try:
                    got = run(p.argv("info", "--format", "{{.Store.GraphDriverName}}"), env=p.env).strip()
                    rmtree(p.dir)
                    rmtree(p.run)
                    if got == drv:
                        break
                except Failure as e:
                    log("podman %s driver: %s" % (drv, e))
                    rmtree(p.dir)
                    rmtree(p.run)
        log("podman storage driver: %s" % self.podman_driver)
        self.versions = versions(self)
        self.addr = run([os.path.join(REPO, "scripts", "registry.sh"), "start", self.path("registry")]).strip()
        log("registry at %s" % self.addr)
        self.reg = oci.Registry(self.addr)

    def cleanup(self):
        log("cleaning up")
        PROCS.stop_all()
        if self.addr:
            subprocess.run([os.path.join(REPO, "scripts", "registry.sh"), "stop", self.path("registry")], stderr=subprocess.DEVNULL)
        if self.a.keep:
            log("kept work dir %s" % self.work)
        else:
            rmtree(self.base)
        rmtree(self.runbase)

    def image_info(self, key, layout, ref, repo, tag):
        lay = oci.Layout(layout)
        m = lay.read_json(lay.ref(ref)["digest"])
        blobs = [m["config"]] + m["layers"]
        return {
            "key": key,
            "ref": "%s/%s:%s" % (self.addr, repo, tag),
            "repo": repo,
            "layout": layout,
            "layout_ref": ref,
            "layers": len(m["layers"]),
            "bytes": sum(d["size"] for d in blobs),
            "blobs": [d["digest"] for d in blobs],
        }

    def push(self, info):
        t = time.monotonic()
        tag = info["ref"].rsplit(":", 1)[1]
        self.reg.push_layout(info["layout"], info["layout_ref"], info["repo"], tag)
        log("pushed %s (%.0f MB) in %.1f s" % (info["ref"], info["bytes"] / 1e6, time.monotonic() - t))

    def random_image(self, key, layers, layer_mib, repo):
        t = time.monotonic()
        os.makedirs(self.cache, exist_ok=True)
        root = oci.build_random_image(self.cache, key, layers, layer_mib * MiB)
        if time.monotonic() - t > 1:
            log("built %s in %.0f s (cached in %s)" % (key, time.monotonic() - t, self.cache))
        return self.image_info(key, root, "latest", repo, "latest")

    def prepare_images(self):
        imgs = {}
        for key in self.a.images.split(","):
            if key == "debian":
                log("scripts/fixtures.sh build (the Debian fixture; cached)")
                cache = run([os.path.join(REPO, "scripts", "fixtures.sh"), "build"]).strip().splitlines()[-1]
                imgs[key] = self.image_info(key, os.path.join(cache, "debian"), "v1", "fixture/debian", "v1")
            elif key == "big":
                imgs[key] = self.random_image("big-8x128M", 8, 128, "bench/big")
            elif key == "small":
                imgs[key] = self.random_image("small-2x8M", 2, 8, "bench/small")
            else:
                raise SystemExit("unknown image %r (debian, big, small)" % key)
        for key, info in imgs.items():
            info["key"] = key
            self.push(info)
        self.images = imgs
        self.results["images"] = {k: {x: v[x] for x in ("ref", "layers", "bytes")} for k, v in imgs.items()}
        n, layers, mib = (int(x) for x in self.a.multi.split("x"))
        self.multi = []
        for i in range(n):
            info = self.random_image("multi%02d-%dx%dM" % (i, layers, mib), layers, mib, "bench/multi-%02d" % i)
            self.push(info)
            self.multi.append(info)
        self.results["images"]["multi"] = {
            "ref": "%d images bench/multi-NN:latest" % n, "layers": layers, "bytes": sum(m["bytes"] for m in self.multi)
        }

    # --- cold pull and re-pull ------------------------------------------------

    def pull_imgsvc(self, info, flags=()):
        root = self.fresh("pull-imgsvc")
        argv = [self.imgsvc, "--root", root] + list(flags) + ["pull", info["ref"]]
        wall, rss, _ = self.timed(argv)
        rep = [self.timed(argv)[0] for _ in range(self.a.repulls)]
        if not flags and info["key"] == self.repull_image:
            inp = self.inproc(root, "pull", info["ref"], n=self.a.repulls)
            self.add_repull("imgsvc (in process)", [x / 1e6 for x in inp["lat_us"]])
        self.discard(root)
        return {"wall": wall, "rss": rss}, rep

    def pull_skopeo(self, info):
        dest = self.fresh("pull-skopeo")
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                "docker://" + info["ref"], "oci:%s:img" % dest]
        wall, rss, _ = self.timed(argv)
        rep = [self.timed(argv)[0] for _ in range(self.a.repulls)]
        self.discard(dest)
        return {"wall": wall, "rss": rss}, rep

    def pull_podman(self, info):
        p = Podman(self, "pull-podman").setup()
        argv = p.argv("pull", "-q", "--tls-verify=false", info["ref"])
        try:
            wall, rss, _ = self.timed(argv, env=p.env)
            rep = [self.timed(argv, env=p.env)[0] for _ in range(self.a.repulls)]
        finally:
            p.remove()
        return {"wall": wall, "rss": rss}, rep

    def pull_ctr(self, info):
        c = Containerd(self, "pull-ctr").start()
        try:
            argv = c.ctr("images", "pull", "--plain-http", info["ref"])
            wall, client_rss, _ = self.timed(argv)
            hwm = c.hwm()
            rep = [self.timed(argv)[0] for _ in range(self.a.repulls)]
        finally:
            c.stop()
        return {"wall": wall, "rss": hwm, "client_rss": client_rss}, rep

    def pull_cri(self, daemon_cls, name, info):
        d = daemon_cls(self, name).start()
        try:
            r = self.cri(d.endpoint, "pull", image=info["ref"])
            hwm = d.hwm()
            rep = [self.cri(d.endpoint, "pull", image=info["ref"])["wall_s"] for _ in range(self.a.repulls)]
        finally:
            d.stop()
        return {"wall": r["wall_s"], "rss": hwm}, rep

    def floor(self, info, streams):
        urls = self.path("floor-urls")
        with open(urls, "w") as f:
            for dg in info["blobs"]:
                f.write("http://%s/v2/%s/blobs/%s\n" % (self.addr, info["repo"], dg))
        t = time.perf_counter()
        run(["xargs", "-P", str(streams), "-n", "1", "-a", urls, "bash", "-c",
             'set -o pipefail; curl -sSfL "$0" | sha256sum >/dev/null'])
        return {"wall": time.perf_counter() - t, "rss": None}, None

    def add_repull(self, system, walls):
        self.results["repull"].setdefault(system, []).extend(walls)

    def bench_pull(self):
        systems = [
            ("imgsvc", self.pull_imgsvc),
            ("imgsvc --no-unpack", lambda i: self.pull_imgsvc(i, ["--no-unpack"])),
            ("skopeo copy (OCI dir)", self.pull_skopeo),
            ("imgsvc (CRI PullImage)", lambda i: self.pull_cri(ImgsvcServe, "pull-imgsvc-cri", i)),
            ("containerd (CRI PullImage)", lambda i: self.pull_cri(Containerd, "pull-containerd-cri", i)),
            ("containerd (ctr pull)", self.pull_ctr),
            ("podman pull", self.pull_podman),
            ("floor: curl | sha256sum, 1 stream", lambda i: self.floor(i, 1)),
            ("floor: curl | sha256sum, 4 streams", lambda i: self.floor(i, 4)),
        ]
        for key, info in self.images.items():
            rounds = self.a.big_rounds if key == "big" else self.a.rounds
            res = self.results["pull"].setdefault(key, {})
            for r in range(rounds):
                log("cold pull %s, round %d/%d" % (key, r + 1, rounds))
                # Each round starts one system later: whoever follows a large
                # write that is still being flushed pays for it, so every
                # system takes every place in turn.
                k = r % len(systems)
                for name, fn in systems[k:] + systems[:k]:
                    try:
                        m, rep = fn(info)
                        res.setdefault(name, []).append(m)
                        if rep is not None and key == self.repull_image:
                            self.add_repull(name, rep)
                        log("  %-36s %8.2f s  %s" % (name, m["wall"], "%.0f MiB" % (m["rss"] / 1024) if m["rss"] else ""))
                    except Failure as e:
                        self.fail("pull %s with %s" % (key, name), e)
                    os.sync()
                self.settle()

    @property
    def repull_image(self):
        return self.a.images.split(",")[0]

    # --- concurrent pulls ----------------------------------------------------

    def conc_cri(self, daemon_cls, name, refs, c):
        d = daemon_cls(self, name).start()
        try:
            r = self.cri(d.endpoint, "pull", image=refs, c=c)
            if r["distinct_ids"] != len(refs):
                raise Failure("%d images pulled, %d distinct ids" % (len(refs), r["distinct_ids"]))
            return r["wall_s"]
        finally:
            d.stop()

    def conc_cli(self, mk_argv, refs, c, env=None):
        procs = []
        t = time.perf_counter()
        for ref in refs:
            for _ in range(c):
                procs.append(subprocess.Popen(mk_argv(ref), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env))
        errs = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                errs.append(tail(err, 3))
        wall = time.perf_counter() - t
        if errs:
            raise Failure("%d of %d pulls failed: %s" % (len(errs), len(procs), errs[0]))
        return wall

    def conc_imgsvc_cli(self, refs, c):
        root = self.fresh("conc-imgsvc")
        try:
            return self.conc_cli(lambda ref: [self.imgsvc, "--root", root, "pull", ref], refs, c)
        finally:
            self.discard(root)

    def conc_podman(self, refs, c):
        p = Podman(self, "conc-podman").setup()
        try:
            return self.conc_cli(lambda ref: p.argv("pull", "-q", "--tls-verify=false", ref), refs, c, env=p.env)
        finally:
            p.remove()

    def bench_conc(self):
        one = self.images[self.repull_image]["ref"]
        multi = [m["ref"] for m in self.multi]
        n = self.a.conc
        scenarios = [
            ("1 image, 1 pull", [one], 1),
            ("1 image, %d concurrent pulls" % n, [one], n),
            ("%d images, 1 pull each, concurrently" % len(multi), multi, 1),
        ]
        self.results["conc_scenarios"] = [s[0] for s in scenarios]
        systems = [
            ("imgsvc (CRI PullImage)", lambda refs, c: self.conc_cri(ImgsvcServe, "conc-imgsvc-cri", refs, c)),
            ("containerd (CRI PullImage)", lambda refs, c: self.conc_cri(Containerd, "conc-containerd-cri", refs, c)),
            ("imgsvc (CLI processes)", self.conc_imgsvc_cli),
            ("podman pull (processes)", self.conc_podman),
        ]
        for r in range(self.a.conc_rounds):
            log("concurrent pulls, round %d/%d" % (r + 1, self.a.conc_rounds))
            for sname, refs, c in scenarios:
                for name, fn in systems:
                    try:
                        wall = fn(refs, c)
                        self.results["conc"].setdefault(name, {}).setdefault(sname, []).append(wall)
                        log("  %-28s %-40s %8.2f s" % (name, sname, wall))
                    except Failure as e:
                        self.fail("concurrent pulls (%s) with %s" % (sname, name), e)
                    os.sync()
            self.settle()

    # --- store size ----------------------------------------------------------

    def seed(self, lo, hi):
        many = self.many
        seed = self.results["seed"].setdefault(str(hi), {})
        t = time.monotonic()
        start = lo
        if lo == 0:
            self.reg.push_many(many, 0)
            start = 1
        base = oci.Many.repo("", 0).lstrip("/")
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: self.reg.push_many(many, i, base), range(start, hi)))
        seed["registry push"] = time.monotonic() - t
        log("  pushed images %d..%d in %.0f s" % (lo, hi - 1, seed["registry push"]))

        t = time.monotonic()
        names = [oci.Many.repo(self.addr, i) + ":v1" for i in range(lo, hi)]
        for k in range(0, len(names), 64):
            self.cri(self.many_imgsvc.endpoint, "pull", image=names[k:k + 64])
        seed["imgsvc (CRI PullImage, 64 at a time)"] = time.monotonic() - t
        log("  imgsvc pulled them in %.0f s" % seed["imgsvc (CRI PullImage, 64 at a time)"])

        t = time.monotonic()
        arch = self.path("many.tar")
        for k in range(lo, hi, 1000):
            oci.containerd_archive(arch, many, self.addr, k, min(hi, k + 1000))
            run(self.many_ctd.ctr("images", "import", "--no-unpack", arch, ns="k8s.io"))
        seed["containerd (ctr images import --no-unpack)"] = time.monotonic() - t
        log("  containerd imported them in %.0f s" % seed["containerd (ctr images import --no-unpack)"])
        # The CRI plugin learns of imported images from containerd's event
        # stream, asynchronously: wait until its ListImages has them all.
        t = time.monotonic()
        deadline = t + 1800
        while True:
            count = self.cri(self.many_ctd.endpoint, "list", n=0)["count"]
            if count == hi:
                break
            if time.monotonic() > deadline:
                raise Failure("containerd's CRI lists %d images, expected %d" % (count, hi))
            time.sleep(1)
        seed["containerd CRI plugin catching up (event stream)"] = time.monotonic() - t
        log("  containerd's CRI plugin listed them all %.0f s later" % seed["containerd CRI plugin catching up (event stream)"])

        if hi <= self.a.podman_max:
            t = time.monotonic()
            p = self.many_podman
            for k in range(lo, hi, 1000):
                oci.docker_archive(arch, many, self.addr, k, min(hi, k + 1000))
                run(p.argv("load", "-q", "-i", arch), env=p.env)
            seed["podman (podman load)"] = time.monotonic() - t
            log("  podman loaded them in %.0f s" % seed["podman (podman load)"])
        os.unlink(arch)
        os.sync()

    def lat_batch(self, system, op, size, name, n):
        """One batch of n calls of op on system -> latencies in seconds."""
        srv, ctd, pod = self.many_imgsvc, self.many_ctd, self.many_podman
        if system == "imgsvc (in process)":
            rr = self.inproc(srv.root, op, name, n=n, full=True)
            r = rr[op]
            cold = self.results.setdefault("inproc_cold", {})
            cold.setdefault("open", {}).setdefault(str(size), []).append(rr["open"]["lat_us"][0] / 1e6)
            cold.setdefault(op, {}).setdefault(str(size), []).append(r["cold_us"] / 1e6)
            if op == "list" and r["result"] != size:
                raise Failure("in-process list: %d images, expected %d" % (r["result"], size))
            return [x / 1e6 for x in r["lat_us"]]
        if system in ("imgsvc (gRPC)", "containerd CRI (gRPC)"):
            ep = srv.endpoint if system.startswith("imgsvc") else ctd.endpoint
            r = self.cri(ep, op, n=n, image=name if op == "status" else None)
            if op == "list" and r["count"] != size:
                raise Failure("%s ListImages: %d images, expected %d" % (system, r["count"], size))
            return [x / 1e6 for x in r["lat_us"]]
        # command-line tools: wall time of the whole command
        env = None
        if system == "imgsvc CLI":
            base = [self.imgsvc, "--root", srv.root]
            argv = {"list": ["images"], "status": ["inspect", name], "fsinfo": ["fsinfo"]}[op]
            argv = base + argv
        elif system.startswith("crictl"):
            conf = self.crictl_imgsvc if "imgsvc" in system else self.crictl_ctd
            argv = ["crictl", "--config", conf] + {"list": ["images"], "status": ["inspecti", name], "fsinfo": ["imagefsinfo"]}[op]
        elif system == "podman":
            argv = pod.argv(*{"list": ["images"], "status": ["image", "inspect", name]}[op])
            env = pod.env
        else:
            raise Failure("unknown system " + system)
        lat = []
        budget = time.monotonic() + self.a.cli_budget
        for _ in range(n):
            t = time.perf_counter()
            out = run(argv, env=env)
            lat.append(time.perf_counter() - t)
            if op == "list":
                rows = len(out.splitlines()) - 1
                if rows != size:
                    raise Failure("%s images: %d rows, expected %d" % (system, rows, size))
            if time.monotonic() > budget:
                break
        return lat

    def bench_store(self):
        self.many = oci.Many()
        self.many_imgsvc = ImgsvcServe(self, "many-imgsvc").start()
        self.many_ctd = Containerd(self, "many-containerd").start()
        self.many_podman = Podman(self, "many-podman").setup()
        self.crictl_imgsvc = self.crictl_conf("imgsvc", self.many_imgsvc.endpoint)
        self.crictl_ctd = self.crictl_conf("containerd", self.many_ctd.endpoint)
        api = ["imgsvc (in process)", "imgsvc (gRPC)", "containerd CRI (gRPC)"]
        cli = ["imgsvc CLI", "crictl -> imgsvc", "crictl -> containerd", "podman"]
        have = 0
        for size in sorted(int(s) for s in self.a.sizes.split(",")):
            log("store size %d: seeding" % size)
            try:
                self.seed(have, size)
            except Failure as e:
                self.fail("seeding %d images" % size, e)
                break
            have = size
            self.results["daemon_rss"][str(size)] = {
                "imgsvc serve": self.many_imgsvc.rss(), "containerd": self.many_ctd.rss()
            }
            name = oci.Many.repo(self.addr, size // 2) + ":v1"
            for op in ("list", "status", "fsinfo"):
                log("store size %d: %s" % (size, op))
                for r in range(self.a.lat_rounds):
                    for system in api + cli:
                        if system == "podman" and (op == "fsinfo" or size > self.a.podman_max):
                            continue
                        n = self.a.calls if system in api else self.a.cli_calls
                        n = max(1, n // self.a.lat_rounds)
                        try:
                            lat = self.lat_batch(system, op, size, name, n)
                            st = self.results["store"].setdefault(op, {}).setdefault(system, {})
                            st.setdefault(str(size), []).extend(lat)
                        except Failure as e:
                            self.fail("%s with %d images on %s" % (op, size, system), e)
                for system, per in self.results["store"].get(op, {}).items():
                    if str(size) in per:
                        log("  %-24s median %s" % (system, fmt_t(median(per[str(size)]))))
        log("stopping the store-size daemons")
        self.many_imgsvc.stop()
        self.many_ctd.stop()
        self.many_podman.remove()


# ---------------------------------------------------------------------------
# Report


def fmt_t(s):
    if s is None:
        return "–"
    if s < 1e-3:
        return "%.0f µs" % (s * 1e6)
    if s < 1:
        return "%.1f ms" % (s * 1e3) if s < 0.1 else "%.0f ms" % (s * 1e3)
    return "%.2f s" % s


def fmt_mib(kb):
    return "–" if kb is None else "%.0f MiB" % (kb / 1024)


def fmt_ratio(x):
    return "–" if x is None else "%.2fx" % x


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60).stdout.decode().strip()
    except Exception as e:
        return "? (%s)" % e


def machine_info(work):
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    os_ = sh(". /etc/os-release; echo $PRETTY_NAME")
    fs = sh("df -T %s | awk 'NR==2 {print $2\" on \"$1}'" % work)
    virt = sh("systemd-detect-virt 2>/dev/null || echo unknown")
    return [
        ("CPU", "%s, %d cores" % (cpu, os.cpu_count())),
        ("Memory", mem),
        ("OS", "%s, kernel %s" % (os_, platform.release())),
        ("Filesystem (stores and registry)", fs),
        ("Virtualization", virt),
        ("Load average at start", sh("cut -d' ' -f1-3 /proc/loadavg")),
    ]


def versions(b):
    rev = sh("git -C %s rev-parse --short HEAD" % REPO)
    if sh("git -C %s status --porcelain -- src cli Cargo.toml Cargo.lock | head -1" % REPO):
        rev += " (with uncommitted changes)"
    return [
        ("imgsvc", "%s, commit %s" % (sh("%s --version" % b.imgsvc), rev)),
        ("rustc", sh("rustc --version")),
        ("skopeo", sh("skopeo --version")),
        ("podman", "%s (storage driver %s)" % (sh("podman --version"), b.podman_driver)),
        ("containerd", sh("containerd --version")),
        ("ctr", sh("ctr --version")),
        ("crictl", sh("go version -m $(command -v crictl) 2>/dev/null | awk '$1 == \"mod\" {print \"crictl \" $3; exit}' | grep . "
                       "|| crictl --version")),
        ("docker-registry (distribution)", sh("docker-registry --version")),
        ("curl", sh("curl --version | head -1 | cut -d' ' -f1-3")),
        ("Go (criclient)", sh("go version")),
        ("Python", platform.python_version()),
    ]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |")
    return "\n".join(out)


def spread(xs):
    if not xs:
        return "–"
    if len(xs) == 1:
        return "1 run"
    return "%s – %s (%d runs)" % (fmt_t(min(xs)), fmt_t(max(xs)), len(xs))


def evaluate(b):
    """Targets -> rows (target, measured, met)."""
    R = b.results
    rows = []

    def row(target, measured, ok):
        rows.append((target, measured, "—" if ok is None else ("**met**" if ok else "**missed**")))

    unpacking = ("podman pull", "containerd (ctr pull)", "containerd (CRI PullImage)")
    for key, res in R["pull"].items():
        wall = {n: median([m["wall"] for m in v]) for n, v in res.items() if v}
        rss = {n: median([m["rss"] for m in v if m["rss"]]) for n, v in res.items() if v and v[0]["rss"]}
        fl = [w for n, w in wall.items() if n.startswith("floor")]
        floor = "; floor (curl | sha256sum) %s" % fmt_t(min(fl)) if fl else ""
        im, sk = "imgsvc --no-unpack", "skopeo copy (OCI dir)"
        if im in wall and sk in wall:
            row(
                "Cold pull of %s, same work as skopeo (OCI layout, no unpack): wall ≤ 1.0x `skopeo copy`, lower peak RSS"
                % key,
                "`imgsvc --no-unpack` %s vs %s = **%s**; peak RSS %s vs %s = %s%s"
                % (fmt_t(wall[im]), fmt_t(wall[sk]), fmt_ratio(wall[im] / wall[sk]), fmt_mib(rss.get(im)),
                   fmt_mib(rss.get(sk)), fmt_ratio(rss[im] / rss[sk]) if im in rss and sk in rss else "–", floor),
                wall[im] <= wall[sk] and rss.get(im, 1e18) < rss.get(sk, 0),
            )
        # Issue 9's target: the CLI against the two unpacking CLIs, podman and ctr.
        clis = {n: wall[n] for n in ("podman pull", "containerd (ctr pull)") if n in wall}
        if "imgsvc" in wall and clis:
            best = min(clis, key=clis.get)
            lower = all(rss.get("imgsvc", 1e18) < rss.get(n, 0) for n in clis)
            row(
                "Cold pull of %s with unpacking: ≤ 0.5x the faster of `podman pull` and `ctr images pull`, "
                "lower peak RSS than both" % key,
                "`imgsvc` %s vs %s %s = **%s**; peak RSS %s vs %s"
                % (fmt_t(wall["imgsvc"]), best, fmt_t(clis[best]), fmt_ratio(wall["imgsvc"] / clis[best]),
                   fmt_mib(rss.get("imgsvc")), ", ".join("%s %s" % (n, fmt_mib(rss.get(n))) for n in clis)),
                wall["imgsvc"] <= 0.5 * clis[best] and lower,
            )
        peers = {n: wall[n] for n in unpacking if n in wall}
        for mine in ("imgsvc", "imgsvc (CRI PullImage)"):
            if mine in wall and peers:
                best = min(peers, key=peers.get)
                row(
                    "Cold pull of %s with unpacking (%s) against the best unpacking peer (no target; for reference)"
                    % (key, "CLI" if mine == "imgsvc" else "CRI"),
                    "%s vs %s %s = **%s**; peak RSS %s vs %s"
                    % (fmt_t(wall[mine]), best, fmt_t(peers[best]), fmt_ratio(wall[mine] / peers[best]),
                       fmt_mib(rss.get(mine)), fmt_mib(rss.get(best))),
                    None,
                )
    for sysname in ("imgsvc", "imgsvc (CRI PullImage)", "imgsvc (in process)"):
        xs = R["repull"].get(sysname)
        if xs:
            m = median(xs)
            label = {"imgsvc": "CLI, process start included", "imgsvc (CRI PullImage)": "gRPC",
                     "imgsvc (in process)": "in process"}[sysname]
            row("Re-pull of a present image under 50 ms (%s)" % label, fmt_t(m), m < 0.050)
    lst = R["store"].get("list", {})
    g, c = lst.get("imgsvc (gRPC)", {}), lst.get("containerd CRI (gRPC)", {})
    common = sorted(set(g) & set(c), key=int)
    if common:
        s = common[-1]
        mi, mc = median(g[s]), median(c[s])
        note = "" if s == "10000" else " (largest size run: %s images)" % s
        row("`list` at 10,000 images over gRPC ≤ 0.2x containerd CRI ListImages%s" % note,
            "%s vs %s = **%s**" % (fmt_t(mi), fmt_t(mc), fmt_ratio(mi / mc)), mi / mc <= 0.2)
    for op in ("status", "fsinfo"):
        for sysname in ("imgsvc (in process)", "imgsvc (gRPC)"):
            per = R["store"].get(op, {}).get(sysname, {})
            if per:
                worst = max(per, key=lambda s: median(per[s]))
                m = median(per[worst])
                row("`%s` under 1 ms at any store size (%s)" % ("fs_info" if op == "fsinfo" else op, sysname.split("(")[1][:-1]),
                    "worst median %s (at %s images)" % (fmt_t(m), worst), m < 1e-3)
    scen = R.get("conc_scenarios")
    if scen:
        for sysname in ("imgsvc (CRI PullImage)", "imgsvc (CLI processes)"):
            per = R["conc"].get(sysname, {})
            if per.get(scen[0]) and per.get(scen[1]):
                one, many = median(per[scen[0]]), median(per[scen[1]])
                row("%d concurrent pulls of one image within 1.2x of a single pull (%s)" % (b.a.conc, sysname),
                    "%s vs %s = **%s**" % (fmt_t(many), fmt_t(one), fmt_ratio(many / one)), many / one <= 1.2)
    return rows


def plot(b, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for system, per in b.results["store"].get("list", {}).items():
        pts = sorted((int(s), median(v)) for s, v in per.items() if v)
        if not pts:
            continue
        style = "-o" if "imgsvc" in system else "--s"
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], style, label=system)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images in the store")
    ax.set_ylabel("list latency, median (ms)")
    ax.set_title("List images vs store size (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(b, out_dir, png_name, elapsed):
    R = b.results
    a = b.a
    L = []
    L.append("# Benchmarks\n")
    L.append(
        "Generated by `scripts/bench%s` on %s (the run took %.0f min). Every number below comes from this one run: "
        "imgsvc and its peers ran alternately (A B C … B C A …) against the same loopback registry "
        "(Debian's docker-registry, distribution 2.8). Medians; ratios are **imgsvc / peer** "
        "(below 1.0x imgsvc is faster or smaller). Do not compare with numbers from another run or machine.\n"
        % (" --smoke" if b.smoke else "", b.started.strftime("%Y-%m-%d %H:%M UTC"), elapsed / 60)
    )
    L.append("Parameters: images `%s`, rounds: %d (%d for the 1 GiB image), %d re-pulls per run, store sizes %s, "
             "%d API calls and up to %d CLI calls per operation and size in %d alternating batches, "
             "podman seeded up to %d images, %d-way concurrency.\n"
             % (a.images, a.rounds, a.big_rounds, a.repulls, a.sizes, a.calls, a.cli_calls, a.lat_rounds,
                a.podman_max, a.conc))
    L.append("## Targets\n")
    L.append(table(["target", "measured (this run)", ""], evaluate(b)) + "\n")

    L.append("## Machine\n")
    L.append(table(["", ""], getattr(b, "machine", None) or machine_info("/var/tmp")) + "\n")
    L.append("## Versions\n")
    L.append(table(["", ""], getattr(b, "versions", None) or versions(b)) + "\n")

    L.append("## Cold pull\n")
    L.append(
        "A fresh, empty store for every run. `imgsvc --no-unpack` and skopeo write an OCI image layout and "
        "nothing else: the same work. imgsvc by default (CLI and CRI) also unpacks every layer into its layer "
        "store, as podman, `ctr images pull` and containerd's CRI `PullImage` unpack into their snapshotter "
        "(overlay): compare those with each other; the table's last columns do that. "
        "Peak RSS: `/usr/bin/time -f %%M` of the command for the CLIs (imgsvc, "
        "skopeo, podman); for daemons, VmHWM of a daemon started fresh for that run, read right after the pull "
        "(so it includes the daemon's own start-up footprint); for `ctr pull` the containerd daemon's VmHWM is shown "
        "and the `ctr` client's own peak is given in brackets. The floor is `curl | sha256sum` of every blob of the "
        "image from the same registry, one blob after another (1 stream) or 4 at a time (imgsvc downloads 4 blobs "
        "at a time by default), and writes nothing. Runs write into new directories; a round's stores are deleted "
        "together after the round (then sync, fstrim%s). Each round starts one system further down the list, so "
        "no system always runs right after the same one. imgsvc returns once every blob and unpacked layer is "
        "on disk (fsync per blob, syncfs per layer); podman and containerd 1.6 do not sync the files of the layers "
        "they unpack (containerd's opt-in `image_pull_with_sync_fs` came in 2.x), so theirs may still be in the "
        "page cache when they return. The `sync` after every run is not timed for anyone. %s\n"
        % (", and a %d s pause" % a.settle if a.settle else "",
           "Everything ran on a fresh journaled ext4 (see Machine). On this VM's own root file system, a "
           "journal-less ext4, creating the Debian image's 5,000 files shortly after a large delete cost every "
           "system up to 4x more kernel CPU (the allocator skipping recently freed inodes), whichever ran next."
           if b.fs_note else "This run used $TMPDIR directly (no loop-mounted file system).")
    )
    for key, res in R["pull"].items():
        info = R["images"].get(key, {})
        L.append("### %s: `%s`, %s layers, %.0f MB\n" % (key, info.get("ref", "?"), info.get("layers", "?"),
                                                         info.get("bytes", 0) / 1e6))
        wall = {n: median([m["wall"] for m in ms]) for n, ms in res.items() if ms}
        rss = {n: median([m["rss"] for m in ms if m["rss"]]) for n, ms in res.items() if ms and ms[0]["rss"]}
        rows = []
        for name, ms in res.items():
            # Compare like with like: OCI-layout-only work with imgsvc --no-unpack,
            # unpacking pulls with imgsvc (CLI) and imgsvc's CRI with containerd's CRI.
            if name.startswith("imgsvc"):
                base = None
            elif name.startswith(("skopeo", "floor")):
                base = "imgsvc --no-unpack"
            elif name == "containerd (CRI PullImage)":
                base = "imgsvc (CRI PullImage)"
            else:
                base = "imgsvc"
            crss = [m["client_rss"] for m in ms if m.get("client_rss")]
            rtxt = fmt_mib(rss.get(name)) + (" (ctr %s)" % fmt_mib(median(crss)) if crss else "")
            ok = base in wall
            rows.append((
                name, fmt_t(wall[name]), spread([m["wall"] for m in ms]), rtxt,
                "`%s`" % base if ok else "–",
                fmt_ratio(wall[base] / wall[name]) if ok else "–",
                fmt_ratio(rss[base] / rss[name]) if ok and base in rss and name in rss else "–",
            ))
        L.append(table(["system", "wall (median)", "min – max", "peak RSS", "imgsvc run doing the same work",
                        "its wall / this", "its RSS / this"], rows) + "\n")

    L.append("## Re-pull of a present image\n")
    L.append("The image of the first cold-pull table pulled again into the store that already has it, %d times per "
             "run right after each cold pull. CLI numbers include process start; gRPC is the PullImage call as the "
             "Go client times it; in process is `BlockingService::pull` (benches/inproc.rs).\n" % a.repulls)
    base = median(R["repull"].get("imgsvc", [])) if R["repull"].get("imgsvc") else None
    rows = [(n, fmt_t(median(xs)), spread(xs), fmt_ratio(base / median(xs)) if base else "–")
            for n, xs in R["repull"].items() if not n.startswith("floor")]
    L.append(table(["system", "re-pull (median)", "min – max", "imgsvc CLI / this"], rows) + "\n")

    scen = R.get("conc_scenarios", [])
    if scen:
        L.append("## Concurrent pulls\n")
        L.append(
            "Cold store for every cell. The gRPC rows start all calls at once from one Go client (`criclient pull -c N`) "
            "against a freshly started daemon; the CLI rows start N processes at once on one store. "
            "The single image is the first cold-pull image (%s); the %d images are `bench/multi-NN:latest`, "
            "%d random layers each (%.0f MB in all). Stores are deleted after each round, as for cold pulls.\n"
            % (b.repull_image, len(b.multi), R["images"]["multi"]["layers"], R["images"]["multi"]["bytes"] / 1e6)
        )
        rows = []
        for name, per in R["conc"].items():
            one = median(per.get(scen[0], [])) if per.get(scen[0]) else None
            cells = [name] + [fmt_t(median(per[s])) if per.get(s) else "–" for s in scen]
            cells.append(fmt_ratio(median(per[scen[1]]) / one) if one and per.get(scen[1]) else "–")
            rows.append(cells)
        L.append(table(["system"] + scen + ["N pulls of 1 / 1 pull"], rows) + "\n")
        ic, cc = R["conc"].get("imgsvc (CRI PullImage)", {}), R["conc"].get("containerd (CRI PullImage)", {})
        rows = []
        for s in scen:
            if ic.get(s) and cc.get(s):
                rows.append((s, fmt_ratio(median(ic[s]) / median(cc[s]))))
        if rows:
            L.append(table(["scenario", "imgsvc / containerd (CRI)"], rows) + "\n")

    if R["store"]:
        L.append("## Store size: list, status, fs_info\n")
        L.append(
            "N small images in the store (each: a base layer shared by all and a tiny layer of its own). "
            "imgsvc pulled them over its CRI API; containerd got them by `ctr -n k8s.io images import --no-unpack` "
            "(its CRI plugin lists them); podman by `podman load`. In process: `BlockingService` "
            "(benches/inproc.rs). gRPC: the same Go client (tools/bench/criclient, k8s.io/cri-api) for imgsvc "
            "and containerd, one warm connection, per-call latency. CLI rows are whole commands (process start "
            "included): `imgsvc images|inspect|fsinfo`, `crictl images|inspecti|imagefsinfo` against each daemon, "
            "`podman images|image inspect`. Status asks for image N/2 by name.\n"
        )
        sizes = sorted({int(s) for per in R["store"].values() for sysd in per.values() for s in sysd})
        for op in ("list", "status", "fsinfo"):
            per = R["store"].get(op, {})
            if not per:
                continue
            L.append("### %s\n" % {"list": "list (ListImages)", "status": "status (ImageStatus)",
                                   "fsinfo": "fs_info (ImageFsInfo)"}[op])
            rows = [[name] + [fmt_t(median(d[str(s)])) if d.get(str(s)) else "not run" for s in sizes]
                    for name, d in per.items()]
            cold = R.get("inproc_cold", {})
            if cold.get(op):
                rows.insert(1, ["imgsvc (in process), first call after opening the store"] +
                            [fmt_t(median(cold[op][str(s)])) if cold[op].get(str(s)) else "–" for s in sizes])
            if cold.get("open") and op == "list":
                rows.insert(2, ["imgsvc (in process), opening the store (`BlockingService::new`)"] +
                            [fmt_t(median(cold["open"][str(s)])) if cold["open"].get(str(s)) else "–" for s in sizes])
            g, c = per.get("imgsvc (gRPC)", {}), per.get("containerd CRI (gRPC)", {})
            rows.append(["**imgsvc / containerd (gRPC)**"] +
                        [fmt_ratio(median(g[str(s)]) / median(c[str(s)])) if g.get(str(s)) and c.get(str(s)) else "–"
                         for s in sizes])
            L.append(table(["system"] + ["%d images" % s for s in sizes], rows) + "\n")
            if op == "list":
                L.append("![list latency against store size](%s)\n" % png_name)
        if R["seed"]:
            L.append("### Seeding and daemon memory\n")
            systems = sorted({k for v in R["seed"].values() for k in v})
            rows = [[s] + [fmt_t(R["seed"].get(str(n), {}).get(s)) if s in R["seed"].get(str(n), {}) else "–"
                           for n in sizes] for s in systems]
            for d in ("imgsvc serve", "containerd"):
                rows.append(["%s VmRSS after seeding" % d] +
                            [fmt_mib(R["daemon_rss"].get(str(n), {}).get(d)) for n in sizes])
            L.append(table(["step (from the previous size)"] + ["to %d images" % s for s in sizes], rows) + "\n")
        if a.podman_max < max(sizes or [0]):
            L.append("podman was seeded only up to %d images (`--podman-max`): on this machine `podman load` and "
                     "`podman images` are too slow for larger stores to fit the run (see the seeding times above)."
                     "\n" % a.podman_max)

    L.append("## Failures\n")
    L.append("\n".join("- " + f for f in b.failures) + "\n" if b.failures else "None: every measurement ran.\n")
    L.append("## How to run\n")
    L.append("`scripts/bench` (this file; this run took %.0f min) or `scripts/bench --smoke` (one short round, "
             "what CI runs; report in a temp dir). `scripts/bench --help` lists the knobs (sizes, rounds, images). "
             "Raw numbers of the last full run: `target/bench/results.json`.\n" % (elapsed / 60))
    md = os.path.join(out_dir, "benchmarks.md")
    with open(md, "w") as f:
        f.write("\n".join(L))
    return md


def main():
    ap = argparse.ArgumentParser(description="imgsvc against skopeo, podman and containerd (see docs/benchmarks.md)")
    ap.add_argument("--smoke", action="store_true", help="one short round with small sizes; report to a temp dir")
    ap.add_argument("--out", help="report directory (default: docs/, or a new temp dir with --smoke)")
    ap.add_argument("--imgsvc", required=True, help="the imgsvc binary (scripts/bench passes it)")
    ap.add_argument("--inproc", required=True, help="the benches/inproc.rs test binary (scripts/bench passes it)")
    ap.add_argument("--criclient", required=True, help="tools/bench/criclient, built (scripts/bench passes it)")
    ap.add_argument("--cache", default=os.environ.get("IMGSVC_BENCH_CACHE", "/var/tmp/imgsvc-bench"),
                    help="where generated images are cached")
    ap.add_argument("--sections", default="pull,conc,store", help="which parts to run (pull,conc,store)")
    ap.add_argument("--images", help="cold-pull images: debian, big (1 GiB, 8 layers), small (16 MiB, 2 layers)")
    ap.add_argument("--rounds", type=int, help="rounds of cold pulls")
    ap.add_argument("--big-rounds", type=int, help="rounds of cold pulls of the 1 GiB image")
    ap.add_argument("--repulls", type=int, help="re-pulls after each cold pull")
    ap.add_argument("--conc", type=int, help="concurrent pulls of one image")
    ap.add_argument("--conc-rounds", type=int)
    ap.add_argument("--multi", help="the N distinct images pulled concurrently: NxLAYERSxMIB")
    ap.add_argument("--sizes", help="store sizes, comma separated")
    ap.add_argument("--calls", type=int, help="API calls per operation and size")
    ap.add_argument("--cli-calls", type=int, help="CLI calls per operation and size")
    ap.add_argument("--cli-budget", type=float, default=20, help="seconds per CLI batch (at least one call)")
    ap.add_argument("--lat-rounds", type=int, help="alternating batches per operation and size")
    ap.add_argument("--podman-max", type=int, help="largest store size seeded into podman")
    ap.add_argument("--podman-driver", help="overlay or vfs (default: overlay if it works)")
    ap.add_argument("--settle", type=int, default=0,
                    help="seconds to wait after deleting a round's stores (for journal-less ext4's inode reuse)")
    ap.add_argument("--loopfs-gb", type=int,
                    help="run on a fresh ext4 of this size (sparse file, loop device); 0: in $TMPDIR directly")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (stores, logs)")
    a = ap.parse_args()
    for k, v in (SMOKE if a.smoke else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out:
        out_dir = os.path.abspath(a.out)
    elif a.smoke:
        out_dir = tempfile.mkdtemp(prefix="imgsvc-bench-smoke.")
    else:
        out_dir = os.path.join(REPO, "docs")
    os.makedirs(out_dir, exist_ok=True)

    b = Bench(a)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    sections = a.sections.split(",")
    try:
        b.setup()
        b.prepare_images()
        # The registry has just written every image: flush that now, or the
        # first round's runs pay for it.
        os.sync()
        if "pull" in sections:
            b.bench_pull()
        if "conc" in sections:
            b.bench_conc()
        if "store" in sections:
            try:
                b.bench_store()
            except Failure as e:
                b.fail("store-size benchmark", e)
    except Failure as e:
        b.fail("setup", e)
    except KeyboardInterrupt:
        b.fail("run", "interrupted")
        raise
    except Exception as e:
        b.fail("run", "%s\n%s" % (e, traceback.format_exc()))
    finally:
        b.cleanup()

    elapsed = time.monotonic() - T0
    log("writing the report")
    png = "benchmarks-list.png"
    try:
        if b.results["store"].get("list"):
            plot(b, os.path.join(out_dir, png))
    except Exception as e:
        b.fail("plot", e)
    md = report(b, out_dir, png, elapsed)
    raw = os.path.join(out_dir, "results.json") if (a.smoke or a.out) else os.path.join(REPO, "target", "bench", "results.json")
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "w") as f:
        json.dump({"results": b.results, "failures": b.failures, "args": vars(a), "elapsed_s": elapsed}, f, indent=1)
    log("report: %s (raw numbers: %s)" % (md, raw))
    print()
    print(table(["target", "measured", ""], evaluate(b)))
    if b.failures:
        log("%d measurement(s) FAILED:" % len(b.failures))
        for f in b.failures:
            log("  " + f.splitlines()[0])
        return 1
    log("done in %.0f s, every measurement ran" % elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
