"""How condition copies (``superb.conditions.build_condition``, what the sweep runs) grow with the test sets.

Real test sets, in their real layouts (DESIGN 5) and formats, with generated audio:

- LibriSpeech test-clean (PR, ASR): 2,620 FLAC files, 16 kHz, 7.42 s on average (5.4 h);
- VoxCeleb1 test (ASV's ``test/`` folder): 4,874 WAV, 16 kHz, 8.2 s on average (VoxCeleb1's mean);
- IEMOCAP (ER): 10,039 WAV, 16 kHz, 4.46 s (12.4 h), five sessions: one copy per fold (the fold's session);
- QUESST 2014 (QbE): 12,492 documents (8 kHz, 6.63 s: 23 h) and 555 eval queries (1 s), all listed as English
  (``nnenglish``): an upper bound, the expert contaminates only the English ones.

Three phases, each copy built by ``build_condition`` in a fresh process (the builder's and the ``robustdistiller
contaminate`` child's peak RSS from ``getrusage``), ``workers=1`` as the sweep's default:

- ``count``: ``white_snr5`` with 0.25 s utterances at 1%, 10% and 100% of the real counts: what grows with the
  number of files (listing, linking, manifests, one process start per copy), at the real count;
- ``length``: ``white_snr5`` at 1% and 10% of the counts with the real mean lengths: the cost per second of audio
  (its 1% -> 10% slope less the ``count`` phase's over the same files, per audio second added);
- ``conditions``: the 25 contaminated conditions of ``downstream_configs/conditions.yaml`` (``clean`` is the clean
  folder itself: no copy) on LibriSpeech at 2 and 26 files (1%) of real length, banks: a MUSAN-layout folder of
  8 noises (10 s) and an SLR28-layout folder of 4 RIRs: per condition, its fixed cost and cost per audio second.

The summary reads the real sizes off these, as an upper bound: per corpus 10 x the 10% time at real length (``count``
shows the growth is linear; this also scales the per-copy start-up by 10), disk from the bytes per audio second;
for the 25 conditions, 25 x that plus each condition's fixed cost per copy above ``white_snr5``'s (simulated rooms,
banks). The cost per audio second (the ``length`` slope less the ``count`` slope) is printed too.
Disk: allocated blocks (``du``), links not followed: contaminated audio, plus the links and folders of ``view/``
and ``root/``. Generated audio is Gaussian noise: FLAC compresses it less than speech, so FLAC disk is an upper bound.

Run: ``python bench/condition_copies_growth.py [--phase count,length,conditions] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from growth import disk_bytes, growth, mib  # noqa: E402
from machine import cpu_model  # noqa: E402

from robustdistiller_upstream.audio import write_audio_atomic  # noqa: E402
from robustdistiller_upstream.config import read_yaml  # noqa: E402
from robustdistiller_upstream.superb.conditions import EvalCondition, build_condition  # noqa: E402
from robustdistiller_upstream.superb.configs import config_dir  # noqa: E402
from robustdistiller_upstream.superb.tasks import TASKS  # noqa: E402
from robustdistiller_upstream.synthetic import write_musan_noise, write_slr28_rirs  # noqa: E402

SHORT_S = 0.25
ONE = "white_snr5"


@dataclass(frozen=True)
class Corpus:
    """A test set: its real count and mean length, and how to write it (``write(root, n, seconds)`` returns the
    copies to build: (task label, clean root, test parts), one per fold)."""

    name: str
    count: int
    seconds: float
    write: Callable[[Path, int, float], list[tuple[str, Path, list[str]]]]


def _audio(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    return (0.1 * rng.standard_normal(max(1, int(seconds * rate)))).astype(np.float32)


def write_librispeech(root: Path, n: int, seconds: float) -> list[tuple[str, Path, list[str]]]:
    """``LibriSpeech/test-clean/SPK/CH/SPK-CH-NNNN.flac`` (30 per chapter) + ``.trans.txt``; a 3-file
    ``train-clean-100`` that the copy links."""
    rng, base = np.random.default_rng(0), root / "LibriSpeech"
    for split, count in (("test-clean", n), ("train-clean-100", 3)):
        for i in range(count):
            speaker, chapter = 1000 + i // 60, 100 + i // 30
            folder = base / split / str(speaker) / str(chapter)
            write_audio_atomic(folder / f"{speaker}-{chapter}-{i % 30:04d}.flac", _audio(rng, seconds, 16000), 16000)
            with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as f:
                f.write(f"{speaker}-{chapter}-{i % 30:04d} A B C\n")
    parts = TASKS["ASR"].test_parts({"datarc": {"test-clean": ["test-clean"]}}, base)
    return [("ASR", base, parts)]


def write_voxceleb1(root: Path, n: int, seconds: float) -> list[tuple[str, Path, list[str]]]:
    """``VoxCeleb1/test/wav/idNNNNN/VIDEO/NNNNN.wav`` (40 speakers, 8 utterances a video); a 3-file ``dev``."""
    rng, base = np.random.default_rng(1), root / "VoxCeleb1"
    for split, count in (("test", n), ("dev", 3)):
        for i in range(count):
            path = base / split / "wav" / f"id{10270 + i % 40}" / f"video{i // 320:04d}" / f"{(i // 40) % 8:05d}.wav"
            write_audio_atomic(path, _audio(rng, seconds, 16000), 16000, "PCM_16")
    return [("ASV", base, TASKS["ASV"].test_parts({}, base))]


def write_iemocap(root: Path, n: int, seconds: float) -> list[tuple[str, Path, list[str]]]:
    """``IEMOCAP_full_release/SessionK/sentences/wav/SesK_dialog/SesK_dialog_NNN.wav`` (n / 5 a session, 60 a
    dialog) and s3prl's ``meta_data/SessionK/test_meta_data.json``: one copy per fold."""
    rng, base = np.random.default_rng(2), root / "IEMOCAP_full_release"
    meta_root, copies = root / "meta_data", []
    for session in range(1, 6):
        entries = []
        for i in range(n // 5 + (session <= n % 5)):
            dialog = f"Ses0{session}F_impro{i // 60:02d}"
            rel = f"Session{session}/sentences/wav/{dialog}/{dialog}_F{i % 60:03d}.wav"
            write_audio_atomic(base / rel, _audio(rng, seconds, 16000), 16000, "PCM_16")
            entries.append({"path": rel, "label": "neu", "speaker": f"Ses0{session}F"})
        meta = meta_root / f"Session{session}" / "test_meta_data.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"labels": {"neu": 0}, "meta_data": entries}))
        expert = {"datarc": {"test_fold": f"fold{session}", "meta_data": str(meta_root)}}
        copies.append((f"ER/fold{session}", base, TASKS["ER"].test_parts(expert, base)))
    return copies


def write_quesst14(root: Path, n: int, seconds: float) -> list[tuple[str, Path, list[str]]]:
    """``quesst14Database/{Audio,eval_queries}/*.wav`` (8 kHz; documents and eval queries 12,492 : 555, queries
    of 1 s at real length) and ``scoring/language_key_{utterances,eval}.lst`` listing them as English."""
    rng, base = np.random.default_rng(3), root / "quesst14Database"
    queries = max(1, round(n * 555 / 13047))
    lists = {"language_key_utterances.lst": [], "language_key_eval.lst": []}
    for i in range(n):
        query = i >= n - queries
        rel = f"eval_queries/quesst14_eval_{i:04d}.wav" if query else f"Audio/quesst14_{i:05d}.wav"
        write_audio_atomic(base / rel, _audio(rng, min(seconds, 1.0) if query else seconds, 8000), 8000, "PCM_16")
        lists["language_key_eval.lst" if query else "language_key_utterances.lst"].append(
            f"quesst14Database/{rel} nnenglish\n")
    for name, lines in lists.items():
        (base / "scoring").mkdir(parents=True, exist_ok=True)
        (base / "scoring" / name).write_text("".join(lines))
    return [("QbE", base, TASKS["QbE"].test_parts({}, base))]


CORPORA = [Corpus("LibriSpeech test-clean", 2620, 7.42, write_librispeech),
           Corpus("VoxCeleb1 test", 4874, 8.2, write_voxceleb1),
           Corpus("IEMOCAP 5 sessions", 10039, 4.46, write_iemocap),
           Corpus("QUESST 2014", 13047, 6.63, write_quesst14)]


def audio_seconds(root: Path) -> float:
    """Seconds of audio in the files under ``root`` (headers only)."""
    import soundfile as sf

    return sum(sf.info(os.path.join(folder, name)).duration for folder, _, files in os.walk(root)
               for name in files if name.endswith((".wav", ".flac")))


def build_worker(request: dict[str, Any]) -> dict[str, Any]:
    """Builds one copy (``--worker`` mode, a fresh process): seconds, the builder's and the contaminate child's
    peak RSS in bytes."""
    condition = EvalCondition(request["condition"], request["spec"], 0)
    start = time.perf_counter()
    build_condition(request["task"], condition, Path(request["clean_root"]), request["parts"],
                    Path(request["cond_root"]), Path(request["conditions_file"]), dict(os.environ))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "builder_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "child_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def build(task: str, clean_root: Path, parts: list[str], cond_root: Path, conditions_file: Path, name: str,
          spec: str) -> dict[str, Any]:
    """One copy built by ``build_worker`` in a fresh process, plus its disk: ``audio`` (``out/``) and ``links``
    (``view/`` and ``root/``)."""
    import subprocess

    request = {"task": task, "condition": name, "spec": spec, "clean_root": str(clean_root), "parts": parts,
               "cond_root": str(cond_root), "conditions_file": str(conditions_file)}
    # the request on stdin: a corpus's test parts (13,047 paths for QUESST) overflow an argument list
    result = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(request), capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building {task}/{name} failed: {result.stderr[-3000:]}")
    folder = cond_root / task / name
    return {**json.loads(result.stdout.splitlines()[-1]), "audio": disk_bytes(folder / "out"),
            "links": disk_bytes(folder / "view") + disk_bytes(folder / "root")}


@dataclass
class Copy:
    """A corpus's copies under one condition at one size, summed over folds; ``n`` files of ``audio_s``."""

    corpus: str
    size: str
    condition: str
    n: int
    audio_s: float
    seconds: float = 0.0
    builder_rss: int = 0
    child_rss: int = 0
    audio: int = 0
    links: int = 0
    clean_disk: int = 0


def measure(corpus: Corpus, size: str, n: int, seconds: float, conditions: dict[str, str], work: Path,
            conditions_file: Path) -> list[Copy]:
    """Writes ``corpus`` with ``n`` files of ``seconds`` under ``work``, builds every condition, cleans up."""
    clean = work / "clean"
    copies = corpus.write(clean, n, seconds)
    audio_s, clean_disk = audio_seconds(clean), disk_bytes(clean)
    rows = []
    for name, spec in conditions.items():
        row = Copy(corpus.name, size, name, n, audio_s, clean_disk=clean_disk)
        for task, root, parts in copies:
            got = build(task, root, parts, work / "cond", conditions_file, name, spec)
            row.seconds += got["seconds"]
            row.builder_rss = max(row.builder_rss, got["builder_rss"])
            row.child_rss = max(row.child_rss, got["child_rss"])
            row.audio += got["audio"]
            row.links += got["links"]
        rows.append(row)
        shutil.rmtree(work / "cond")
        print(f"  {corpus.name} {size} {name}: {n} files, {audio_s:.0f} s audio: {row.seconds:.1f} s, "
              f"{row.audio / 2**20:.1f} MiB", flush=True)
    shutil.rmtree(clean)
    return rows


def print_rows(rows: list[Copy]) -> None:
    print("| corpus | size | condition | files | audio s | time s | growth | builder / contaminate peak RSS MiB | "
          "copy audio MiB | links MiB | clean MiB |\n|" + "---|" * 11)
    previous: dict[tuple[str, str], Copy] = {}
    for r in rows:
        below = previous.get((r.corpus, r.condition))
        ratio = f"{growth(r.seconds, below.seconds, r.n, below.n):.2f}" if below and r.n > below.n else ""
        print(f"| {r.corpus} | {r.size} | {r.condition} | {r.n} | {r.audio_s:.0f} | {r.seconds:.1f} | {ratio} | "
              f"{mib(r.builder_rss)} / {mib(r.child_rss)} | {mib(r.audio)} | {mib(r.links)} | "
              f"{mib(r.clean_disk)} |")
        previous[(r.corpus, r.condition)] = r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", default="count,length,conditions", help="comma list of count, length, conditions")
    parser.add_argument("--corpora", default="all", help="comma list of corpus name prefixes (default all)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder (kept); default a temporary one")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # build_worker(JSON on stdin)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(build_worker(json.loads(sys.stdin.read()))))
        return
    phases = args.phase.split(",")
    corpora = [c for c in CORPORA if args.corpora == "all" or any(c.name.startswith(p) for p in args.corpora.split(","))]
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="condition_growth_"))
    specs = {name: entry["spec"] for name, entry in read_yaml(config_dir() / "conditions.yaml")["conditions"].items()}
    write_musan_noise(work / "musan", 8, 10.0)
    write_slr28_rirs(work, 4)
    conditions_file = work / "conditions.yaml"
    conditions_file.write_text((config_dir() / "conditions.yaml").read_text().replace("${DATA_ROOT}", str(work)))
    one = {ONE: specs[ONE]}
    results: dict[str, list[Copy]] = {}
    start = time.perf_counter()
    try:
        if "count" in phases:
            results["count"] = [row for c in corpora for frac, size in ((0.01, "1%"), (0.1, "10%"), (1.0, "100%"))
                                for row in measure(c, size, round(c.count * frac), SHORT_S, one, work / "w",
                                                   conditions_file)]
        if "length" in phases:
            results["length"] = [row for c in corpora for frac, size in ((0.01, "1%"), (0.1, "10%"))
                                 for row in measure(c, size, round(c.count * frac), c.seconds, one, work / "w",
                                                    conditions_file)]
        if "conditions" in phases:
            libri = CORPORA[0]
            noisy = {name: spec for name, spec in specs.items() if spec.strip() != "clean"}
            results["conditions"] = [row for n in (2, round(libri.count * 0.01))
                                     for row in measure(libri, f"{n} files", n, libri.seconds, noisy, work / "w",
                                                        conditions_file)]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{time.perf_counter() - start:.0f} s in all; load average after: {os.getloadavg()[0]:.1f}")
    for phase, rows in results.items():
        print(f"\n### {phase}\n")
        print_rows(sorted(rows, key=lambda r: (r.corpus, r.condition, r.n)) if phase == "conditions" else rows)
    project(results)


def project(results: dict[str, list[Copy]]) -> None:
    """The real sizes read off the phases (see the module docstring), for the phases that ran."""
    count = {(r.corpus, r.size): r for r in results.get("count", [])}
    length = {(r.corpus, r.size): r for r in results.get("length", [])}
    per_audio: dict[str, tuple[float, float]] = {}  # corpus -> (s, bytes) per added audio second
    for c in CORPORA:  # slopes 1% -> 10%, real lengths less short ones: same files, so fixed and per-file costs cancel
        rows = [table.get((c.name, size)) for table in (length, count) for size in ("1%", "10%")]
        if all(rows):
            real_1, real_10, short_1, short_10 = rows
            added = (real_10.audio_s - real_1.audio_s) - (short_10.audio_s - short_1.audio_s)
            per_audio[c.name] = (((real_10.seconds - real_1.seconds) - (short_10.seconds - short_1.seconds)) / added,
                                 ((real_10.audio - real_1.audio) - (short_10.audio - short_1.audio)) / added)
    if not per_audio:
        return
    print(f"\n### real size, {ONE} (upper bound: 10 x the 10% time at real length)\n")
    print("| corpus | files | audio h | s per audio s | time h | copy GiB |\n|---|---|---|---|---|---|")
    total_t = total_d = 0.0
    for c in CORPORA:
        if c.name not in per_audio or (c.name, "100%") not in count:
            continue
        full, real_10 = count[(c.name, "100%")], length[(c.name, "10%")]
        audio = c.count * c.seconds if c.name != "QUESST 2014" else 12492 * c.seconds + 555 * 1.0
        t = real_10.seconds * c.count / real_10.n
        d = real_10.audio + (audio - real_10.audio_s) * per_audio[c.name][1] + full.links
        total_t, total_d = total_t + t, total_d + d
        print(f"| {c.name} | {c.count} | {audio / 3600:.1f} | {per_audio[c.name][0]:.4f} | {t / 3600:.2f} | "
              f"{d / 2**30:.2f} |")
    print(f"| all four | | | | {total_t / 3600:.2f} | {total_d / 2**30:.2f} |")
    if results.get("conditions"):
        project_conditions(results["conditions"], total_t, total_d)


COPIES = 8  # copies per condition over the four corpora: ASR, ASV, QbE and ER's 5 folds


def project_conditions(rows: list[Copy], white_total: float, disk_total: float) -> None:
    """The 25 conditions at the real size: ``white_total`` (the four corpora's ``white_snr5`` bound) per condition,
    plus each condition's fixed cost per copy above ``white_snr5``'s (its smallest-size time: at a few files the
    copy is its fixed cost) for its ``COPIES`` copies. Per-audio-second differences between conditions are below
    a shared machine's noise at these sizes and are not modelled."""
    small = min(r.n for r in rows)
    fixed = {r.condition: r.seconds for r in rows if r.n == small}
    extra = sum(max(0.0, t - fixed[ONE]) for t in fixed.values()) * COPIES
    total = len(fixed) * white_total + extra
    print(f"\n### the {len(fixed)} contaminated conditions over the four corpora ({COPIES} copies each)\n")
    print(f"fixed cost per copy above {ONE}'s, over all copies: {extra / 60:.1f} min; time <= {len(fixed)} x "
          f"{white_total / 3600:.2f} h + that = {total / 3600:.1f} h; disk {len(fixed)} x {disk_total / 2**30:.2f} GiB = "
          f"{len(fixed) * disk_total / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
