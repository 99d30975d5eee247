"""Pull: the GIL is released, callbacks run on the calling thread, an
exception from the callback or Ctrl-C cancels the pull and leaves no image."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import imgsvc
from servers import SilentServer, ThrottleProxy

DEBIAN = "fixture/debian:v1"
# fixture/debian:v1 is ~95 MB; at this rate its pull lasts about 4 s.
THROTTLE = 24 * 1024 * 1024


class Counter(threading.Thread):
    """Counts in pure Python; records when each ten-thousandth step ran."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.stamps: list[float] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            if n % 10_000 == 0:
                self.stamps.append(time.monotonic())

    def during(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.stamps)


@pytest.mark.parametrize("with_callback", [False, True])
def test_gil_released_during_pull(tmp_path: pathlib.Path, registry: str, with_callback: bool):
    events: list[imgsvc.Progress] = []
    callback_threads: set[int] = set()

    def progress(event: imgsvc.Progress) -> None:
        callback_threads.add(threading.get_ident())
        events.append(event)

    with ThrottleProxy(registry, THROTTLE) as proxy, imgsvc.ImageService(tmp_path) as svc:
        counter = Counter()
        counter.start()
        start = time.monotonic()
        image_id = svc.pull(f"{proxy.addr}/{DEBIAN}", progress=progress if with_callback else None)
        end = time.monotonic()
        counter.stop.set()
        counter.join()
    assert image_id.startswith("sha256:")
    assert end - start > 1.0, "the throttled pull should take seconds"
    # The middle half of the pull: if the GIL were held, the counter could not
    # run at all there (Python only switches threads at bytecode boundaries).
    quarter = (end - start) / 4
    middle = counter.during(start + quarter, end - quarter)
    assert middle > 10, f"counter advanced {middle} times in the middle of a {end - start:.1f}s pull"
    if with_callback:
        assert callback_threads == {threading.get_ident()}
        assert sum(e.kind == "bytes" for e in events) >= 3


def test_callback_exception_propagates_and_cancels(svc: imgsvc.ImageService, registry: str):
    class Stop(Exception):
        pass

    seen: list[str] = []

    def progress(event: imgsvc.Progress) -> None:
        seen.append(event.kind)
        if event.kind == "layer_started":
            raise Stop("enough")

    with pytest.raises(Stop, match="enough") as info:
        svc.pull(f"{registry}/{DEBIAN}", progress=progress)
    assert type(info.value) is Stop  # the same exception, not a wrapper
    assert seen[-1] == "layer_started" and seen.count("layer_started") == 1
    assert svc.list() == []
    # The store is fine afterwards: the same pull now succeeds.
    image_id = svc.pull(f"{registry}/{DEBIAN}")
    assert [i.id for i in svc.list()] == [image_id]


def test_callback_keyboard_interrupt(svc: imgsvc.ImageService, registry: str):
    def progress(event: imgsvc.Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        svc.pull(f"{registry}/{DEBIAN}", progress=progress)
    assert svc.list() == []


CHILD = textwrap.dedent(
    """
    import sys, time, imgsvc
    root, ref = sys.argv[1], sys.argv[2]
    svc = imgsvc.ImageService(root)
    def progress(event):
        if event.kind == "bytes":
            print("BYTES", event.done, event.total, flush=True)
        time.sleep(0.05)  # a slow (throttled) progress display
    print("PULLING", flush=True)
    svc.pull(ref, progress=progress)
    print("FINISHED", flush=True)
    """
)


def interrupt_child(root: pathlib.Path, ref: str, wait_for: str, delay: float) -> tuple[float, subprocess.CompletedProcess]:
    """Start a pull in a child, SIGINT it `delay` s after it prints `wait_for`;
    return how long it took to exit after the signal, and its output."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith(wait_for):
                break
        assert lines and lines[-1].startswith(wait_for), lines
        time.sleep(delay)
        assert child.poll() is None, "the pull ended before the interrupt"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        elapsed = time.monotonic() - sent
        return elapsed, subprocess.CompletedProcess(child.args, child.returncode, "".join(lines) + out, err)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_while_registry_is_silent(tmp_path: pathlib.Path):
    with SilentServer() as server:
        elapsed, done = interrupt_child(tmp_path, f"{server.addr}/{DEBIAN}", "PULLING", 1.0)
        assert server.accepted >= 1  # the child was really waiting on it
    assert "KeyboardInterrupt" in done.stderr, done.stderr
    assert "FINISHED" not in done.stdout
    assert done.returncode != 0
    assert elapsed < 2.0, f"took {elapsed:.2f}s to stop after SIGINT"
    with imgsvc.ImageService(tmp_path) as svc:
        assert svc.list() == []


def test_ctrl_c_during_real_pull(tmp_path: pathlib.Path, registry: str):
    with ThrottleProxy(registry, THROTTLE // 3) as proxy:
        ref = f"{proxy.addr}/{DEBIAN}"
        elapsed, done = interrupt_child(tmp_path, ref, "BYTES", 0.5)
    assert "KeyboardInterrupt" in done.stderr, done.stderr
    assert "FINISHED" not in done.stdout
    assert elapsed < 2.0, f"took {elapsed:.2f}s to stop after SIGINT"
    with imgsvc.ImageService(tmp_path) as svc:
        assert svc.list() == []
        assert svc.status(ref) is None
        # No partial blob is visible: the big layer never made it into blobs/.
        done_blobs = {p.name for p in (tmp_path / "blobs" / "sha256").iterdir()}
        svc.pull(f"{registry}/{DEBIAN}")
        [image] = svc.list()
        all_blobs = {p.name for p in (tmp_path / "blobs" / "sha256").iterdir()}
        assert done_blobs < all_blobs


def test_pull_from_threads_while_listing(svc: imgsvc.ImageService, registry: str):
    # Other calls on the same service proceed while a pull runs.
    with ThrottleProxy(registry, THROTTLE) as proxy:
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(svc.pull(f"{proxy.addr}/{DEBIAN}")))
        t.start()
        listed = 0
        while t.is_alive():
            svc.list()
            svc.fsinfo()
            listed += 1
            time.sleep(0.01)
        t.join()
    assert listed > 10
    assert [i.id for i in svc.list()] == result
