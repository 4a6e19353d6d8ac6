"""Locks on a shared filesystem (real processes): a second holder waits, a killed holder leaves no stale lock, and
the noise bank's index cache is built under the lock (a concurrent indexer waits, then reads the cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("filelock")

from filelock import FileLock, Timeout  # noqa: E402

from robustdistiller_upstream.locks import exclusive  # noqa: E402

HOLD = """
import sys, time
from robustdistiller_upstream.locks import exclusive
with exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""

INDEX = """
import json, logging, sys
from robustdistiller_upstream.augment.banks import index_files, noise_files
from robustdistiller_upstream.augment.config import NoiseSourceConfig
logging.basicConfig(level=logging.INFO)
files = noise_files(NoiseSourceConfig(kind="musan", path=sys.argv[1]))
print(json.dumps([e.status for e in index_files(files, sys.argv[2], 16000, 8000, "noise")]), flush=True)
"""


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / "shared" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Timeout):  # another process holds it
            FileLock(str(lock)).acquire(timeout=0.3)
    finally:
        holder.kill()  # SIGKILL: no clean-up of its own
        holder.wait()
    start = time.monotonic()
    with exclusive(lock):
        assert time.monotonic() - start < 5  # the kernel released it with its holder


def test_bank_index_waits_for_a_concurrent_indexer_and_reads_its_cache(tmp_path):
    from robustdistiller_upstream.synthetic import write_musan_noise

    write_musan_noise(tmp_path / "musan", 4, seconds=1.0)
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, "-c", INDEX, str(tmp_path / "musan"), str(cache)], env=env,
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    (index,) = cache.glob("noise-*.json")
    (lock,) = cache.glob(".noise-*.json.lock")
    written = index.stat().st_ino
    with exclusive(lock):  # an indexer of the same files is at work
        second = subprocess.Popen([sys.executable, "-c", INDEX, str(tmp_path / "musan"), str(cache)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = ""
        while f"waiting for bank index {index}" not in seen:
            line = second.stderr.readline()
            assert line, f"the second indexer did not wait for the lock: {seen}"
            seen += line
        assert second.poll() is None
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, seen + err
    assert out.strip() == first.stdout.strip()
    assert index.stat().st_ino == written  # it read the cache the first one wrote, and did not rewrite it
