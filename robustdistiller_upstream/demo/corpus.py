"""Spoken command corpora (espeak-ng speech) for the demo's downstream task and the SUPERB end-to-end tests.

- ``write_speech_commands(root)``: ``root/speech_commands_v0.01/WORD/SPK_nohash_0.wav`` (+ ``_background_noise_``)
  and ``root/speech_commands_test_set_v0.01/{WORD,_unknown_,_silence_}/*.wav`` (Speech Commands v0.01, KS);
- ``write_fluent_commands(root)``: ``root/fluent_speech_commands_dataset/wavs/speakers/SPK/*.wav`` and
  ``data/{train,valid,test}_data.csv`` (Fluent Speech Commands, IC).

Speakers are espeak-ng voice x pitch x speed variants; train, dev and test speakers are disjoint.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.synthetic import make_noise, speak

KS_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
KS_UNKNOWN = ["bird", "tree"]
# Fluent Speech Commands intents: (transcription, action, object, location); IC counts an utterance right when all
# three slots are
IC_INTENTS = [
    ("turn on the lights in the kitchen", "activate", "lights", "kitchen"),
    ("switch off the kitchen lights", "deactivate", "lights", "kitchen"),
    ("play the music", "activate", "music", "none"),
    ("stop the music", "deactivate", "music", "none"),
    ("make the bedroom warmer", "increase", "heat", "bedroom"),
    ("make the bedroom cooler", "decrease", "heat", "bedroom"),
    ("turn up the volume", "increase", "volume", "none"),
    ("turn down the volume", "decrease", "volume", "none"),
    ("turn on the lamp", "activate", "lamp", "none"),
    ("turn off the lamp", "deactivate", "lamp", "none"),
    ("bring me the newspaper", "bring", "newspaper", "none"),
    ("switch off the washroom lights", "deactivate", "lights", "washroom"),
]
_VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd"]


def speakers(n: int, offset: int = 0) -> list[tuple[str, str, int, int]]:
    """``n`` speaker variants ``(id, voice, pitch, speed)``; ``offset`` starts further in the same sequence."""
    grid = itertools.product([25, 45, 65, 85], [130, 165, 200], _VOICES)
    chosen = list(itertools.islice(grid, offset, offset + n))
    return [(hashlib.sha1(f"{v}{p}{s}".encode()).hexdigest()[:8], v, p, s) for p, s, v in chosen]


def speak_all(jobs: list[tuple[str, Path, str, int, int]]) -> None:
    """Speaks every ``(text, path, voice, pitch, speed)`` job (espeak-ng, 4 at a time)."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: speak(j[0], j[1], voice=j[2], pitch=j[3], speed=j[4]), jobs))


def write_speech_commands(root: Path, n_train_speakers: int = 12, n_test_speakers: int = 3) -> tuple[Path, Path]:
    """(train root, test root) of a 12-class KS corpus (10 words, ``_unknown_``, ``_silence_``)."""
    train, test = root / "speech_commands_v0.01", root / "speech_commands_test_set_v0.01"
    jobs = []
    for word in KS_WORDS + KS_UNKNOWN:
        for spk, voice, pitch, speed in speakers(n_train_speakers):
            jobs.append((word, train / word / f"{spk}_nohash_0.wav", voice, pitch, speed))
        for spk, voice, pitch, speed in speakers(n_test_speakers, offset=n_train_speakers):
            folder = word if word in KS_WORDS else "_unknown_"
            jobs.append((word, test / folder / f"{spk}_nohash_{word}.wav", voice, pitch, speed))
    speak_all(jobs)
    for i, kind in enumerate(["white", "pink"]):
        noise = 0.05 * make_noise(kind, 3.0, 16000, seed=i)
        write_audio_atomic(train / "_background_noise_" / f"{kind}_noise.wav", noise, 16000)
    for i in range(n_test_speakers):
        quiet = 0.02 * make_noise("brown", 1.0, 16000, seed=10 + i)
        write_audio_atomic(test / "_silence_" / f"silence_{i}.wav", quiet, 16000)
    return train, test


def write_fluent_commands(root: Path, n_train_speakers: int = 12, n_valid_speakers: int = 2,
                          n_test_speakers: int = 6, intents: list[tuple[str, str, str, str]] = IC_INTENTS) -> Path:
    """Root of an IC corpus: every speaker says every one of ``intents`` once."""
    base = root / "fluent_speech_commands_dataset"
    splits = {"train": speakers(n_train_speakers), "valid": speakers(n_valid_speakers, n_train_speakers),
              "test": speakers(n_test_speakers, n_train_speakers + n_valid_speakers)}
    jobs, rows = [], {name: [] for name in splits}
    for name, group in splits.items():
        for spk, voice, pitch, speed in group:
            for i, (text, action, obj, location) in enumerate(intents):
                rel = f"wavs/speakers/{spk}/{spk}_{i}.wav"
                jobs.append((text, base / rel, voice, pitch, speed))
                rows[name].append({"path": rel, "speakerId": spk, "transcription": text, "action": action,
                                   "object": obj, "location": location})
    speak_all(jobs)
    (base / "data").mkdir(parents=True, exist_ok=True)
    for name, split_rows in rows.items():
        with open(base / "data" / f"{name}_data.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["", *split_rows[0]])
            writer.writeheader()
            for index, row in enumerate(split_rows):
                writer.writerow({"": index, **row})
    return base
