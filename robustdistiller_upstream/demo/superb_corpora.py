"""Small spoken corpora in the real SUPERB layouts (espeak-ng speech), for the end-to-end sweep tests and
``bench/superb_learns.py`` (larger sizes).

- ``write_speech_commands(root)``: the demo's KS corpus (``robustdistiller_upstream.demo.corpus``, Speech Commands
  v0.01 layout);
- ``write_fluent_commands(root)``: ``root/fluent_speech_commands_dataset/wavs/speakers/SPK/*.wav`` and
  ``data/{train,valid,test}_data.csv`` (Fluent Speech Commands layout);
- ``write_voicebank(root)``, ``write_libri2mix(root)``, ``write_quesst14(root)``: SE, SS and QbE corpora with the
  Kaldi dirs s3prl's ``data_prepare.py`` scripts make of them, and QUESST's lists and ground truth (signal tasks).

Speakers are espeak-ng voice x pitch x speed variants; train/test speakers are disjoint.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from robustdistiller_upstream.audio import read_audio, resample, write_audio_atomic
from robustdistiller_upstream.augment.ops import snr_gain
from robustdistiller_upstream.demo import corpus as demo_corpus
from robustdistiller_upstream.demo.corpus import speak_all, speakers, write_speech_commands  # noqa: F401 (re-export)
from robustdistiller_upstream.synthetic import make_noise

IC_INTENTS = demo_corpus.IC_INTENTS[:6]


def write_fluent_commands(root: Path, n_train: int = 8, n_valid: int = 2, n_test: int = 3) -> Path:
    """Root of a 6-intent IC corpus (``action``/``object``/``location`` slots)."""
    return demo_corpus.write_fluent_commands(root, n_train, n_valid, n_test, IC_INTENTS)


def class_counts(folder: Path) -> dict[str, int]:
    """Files per class folder (sanity checks of the generated layouts)."""
    return {d.name: len(list(d.glob("*.wav"))) for d in sorted(folder.iterdir()) if d.is_dir()}



# ---- signal tasks (SE, SS, QbE) -------------------------------------------------------------------------------

VB_SENTENCES = ["please call stella", "ask her to bring these things", "six spoons of fresh snow peas",
                "we also need a small plastic snake", "she can scoop these things into three red bags"]
# data_prepare.py: speakers p226 and p287 of the training set are the dev set
VB_SPEAKERS = {"trainset_28spk": ["p225", "p226", "p227", "p287"], "testset": ["p232", "p257"]}


def _scp_dir(folder: Path, entries: list[tuple[str, Path]]) -> None:
    """A Kaldi data dir as s3prl's data_prepare.py scripts write it: ``wav.scp`` (absolute paths), ``utt2spk``
    and ``spk2utt`` (utterance = speaker: the scripts' identity maps)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_text("".join(f"{utt} {path.resolve()}\n" for utt, path in entries))
    identity = "".join(f"{utt} {utt}\n" for utt, _ in entries)
    (folder / "utt2spk").write_text(identity)
    (folder / "spk2utt").write_text(identity)


def _scaled_noise(speech: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    """Generated noise of ``kind`` as long as ``speech``, scaled to ``snr_db`` (dB) against it."""
    noise = make_noise(kind, len(speech) / 16000, 16000, seed=seed)[: len(speech)].astype(np.float32)
    gain = snr_gain(torch.from_numpy(speech)[None], torch.from_numpy(noise)[None], torch.tensor([len(speech)]),
                    torch.tensor([snr_db]))
    return float(gain[0]) * noise


def write_voicebank(root: Path, per_speaker: int = 3) -> Path:
    """VoiceBank-DEMAND at 16 kHz (``root/noisy-vctk-16k/{clean,noisy}_{trainset_28spk,testset}_wav_16k/*.wav``;
    noisy = clean + generated noise at 0-10 dB instead of DEMAND) and s3prl's Kaldi dirs of it
    (``scripts/Voicebank/data_prepare.py``: ``root/voicebank/wav16k/{train,dev,test}/{clean,noisy}/``).
    Returns the Kaldi root (``.../wav16k``)."""
    source = root / "noisy-vctk-16k"
    voices = dict(zip([s for group in VB_SPEAKERS.values() for s in group], speakers(6, offset=30)))
    jobs, files = [], {}
    for dset, group in VB_SPEAKERS.items():
        for spk in group:
            _, voice, pitch, speed = voices[spk]
            for i in range(per_speaker):
                clean = source / f"clean_{dset}_wav_16k" / f"{spk}_{i + 1:03d}.wav"
                jobs.append((VB_SENTENCES[(i + len(files)) % len(VB_SENTENCES)], clean, voice, pitch, speed))
                files[clean] = (source / f"noisy_{dset}_wav_16k" / clean.name, len(files))
    speak_all(jobs)
    for clean, (noisy, index) in files.items():
        speech = read_audio(clean)[0]
        noise = _scaled_noise(speech, ["white", "pink", "brown"][index % 3], [0.0, 5.0, 10.0][index % 3], index)
        write_audio_atomic(noisy, np.clip(speech + noise, -1, 1), 16000)
    kaldi = root / "voicebank" / "wav16k"
    for part, dset in [("train", "trainset_28spk"), ("dev", "trainset_28spk"), ("test", "testset")]:
        for cond in ("clean", "noisy"):
            wavs = sorted((source / f"{cond}_{dset}_wav_16k").glob("*.wav"))
            dev = [w for w in wavs if w.stem.startswith(("p226", "p287"))]
            chosen = {"train": [w for w in wavs if w not in dev], "dev": dev, "test": wavs}[part]
            _scp_dir(kaldi / part / cond, [(w.stem, w) for w in chosen])
    return kaldi


def write_libri2mix(root: Path, n_mixtures: dict[str, int] | None = None) -> Path:
    """Libri2Mix (min, 16 kHz, clean mixtures): ``root/Libri2Mix/wav16k/min/{train-100,dev,test}/{s1,s2,mix_clean}/
    SPK-CH-UTT_SPK-CH-UTT.wav`` + ``metadata/mixture_*_mix_clean.csv`` (two espeak-ng speakers, trimmed to the
    shorter one), and s3prl's Kaldi dirs of it (``separation_stft/scripts/LibriMix/data_prepare.py``:
    ``root/separation_stft/Libri2Mix/wav16k/min/<part>/{s1,s2,mix_clean}/``). Returns the Kaldi root."""
    counts = n_mixtures or {"train-100": 8, "dev": 2, "test": 3}
    audio_root = root / "Libri2Mix" / "wav16k" / "min"
    kaldi = root / "separation_stft" / "Libri2Mix" / "wav16k" / "min"
    pool = speakers(32, offset=40)  # the voices left after offset 40; more mixtures reuse them, paired otherwise
    jobs, mixtures = [], []
    tmp = Path(tempfile.mkdtemp(prefix="librispeech_", dir=root))  # the LibriSpeech utterances mixed
    for part, n in counts.items():
        for i in range(n):
            m = len(mixtures)
            (_, va, pa, sa), (_, vb, pb, sb) = pool[2 * m % len(pool)], pool[(2 * m + 1 + m // 16) % len(pool)]
            ids = [f"{100 + 2 * m}-{200 + m}-{i:04d}", f"{101 + 2 * m}-{300 + m}-{i:04d}"]
            paths = [tmp / f"{ids[0]}.wav", tmp / f"{ids[1]}.wav"]
            jobs += [(VB_SENTENCES[m % len(VB_SENTENCES)], paths[0], va, pa, sa),
                     (IC_INTENTS[m % len(IC_INTENTS)][0], paths[1], vb, pb, sb)]
            mixtures.append((part, "_".join(ids), paths))
    speak_all(jobs)
    rows: dict[str, list[list[str]]] = {part: [] for part in counts}
    for part, name, (first, second) in mixtures:
        s1, s2 = read_audio(first)[0], read_audio(second)[0]
        length = min(len(s1), len(s2))
        s1, s2 = 0.5 * s1[:length], 0.5 * s2[:length]
        folder = audio_root / part
        for cond, signal in (("s1", s1), ("s2", s2), ("mix_clean", s1 + s2)):
            write_audio_atomic(folder / cond / f"{name}.wav", signal, 16000)
        rows[part].append([name, str(folder / "mix_clean" / f"{name}.wav"), str(folder / "s1" / f"{name}.wav"),
                           str(folder / "s2" / f"{name}.wav"), str(length)])
    shutil.rmtree(tmp)
    for part, part_rows in rows.items():
        meta = audio_root.parent.parent / "metadata" / f"mixture_{part}_mix_clean.csv"
        meta.parent.mkdir(parents=True, exist_ok=True)
        with open(meta, "w", newline="") as f:
            csv.writer(f).writerows([["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"],
                                     *part_rows])
        for cond in ("s1", "s2", "mix_clean"):
            wavs = sorted((audio_root / part / cond).glob("*.wav"))
            _scp_dir(kaldi / part / cond, [(w.stem, w) for w in wavs])
    return kaldi


# ---- speaker / emotion tasks (SID, ASV, ER, SD) ------------------------------------------------------------------

SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "a stitch in time saves nine", "every cloud has a silver lining", "the early bird catches the worm",
             "actions speak louder than words"]
# IEMOCAP's four SUPERB classes as espeak-ng prosody: (pitch offset, speed factor, amplitude)
EMOTIONS = {"neu": (0, 1.0, 100), "hap": (30, 1.25, 140), "ang": (10, 1.45, 200), "sad": (-20, 0.7, 60)}


def write_voxceleb1(root: Path, n_dev_speakers: int = 4, n_test_speakers: int = 3, n_utts: int = 4) -> Path:
    """``root/VoxCeleb1/{dev,test}/wav/idXXXXX/VIDEO/NNNNN.wav`` + ``iden_split.txt`` (SID: ``SPLIT PATH``, 1 train,
    2 dev, 3 test, every speaker in all three) + ``voxceleb1_test_v2.txt`` (ASV trials over ``test/wav``:
    ``LABEL PATH PATH``). Speaker ids as VoxCeleb1 numbers them (dev from id10001, test from id10270: s3prl's SID
    labels are the id number minus 10001); each utterance is another video. Returns the VoxCeleb1 folder."""
    base = root / "VoxCeleb1"
    groups = {"dev": [(f"id{10001 + i}", s) for i, s in enumerate(speakers(n_dev_speakers))],
              "test": [(f"id{10270 + i}", s) for i, s in enumerate(speakers(n_test_speakers, n_dev_speakers))]}
    jobs, split_lines, test_files = [], [], {}
    for folder, group in groups.items():
        for speaker, (_, voice, pitch, speed) in group:
            for u in range(n_utts):
                rel = f"{speaker}/video{u:02d}/{u + 1:05d}.wav"
                jobs.append((SENTENCES[u % len(SENTENCES)], base / folder / "wav" / rel, voice, pitch, speed))
                split_lines.append(f"{1 if u < n_utts - 2 else 2 if u == n_utts - 2 else 3} {rel}")
                if folder == "test":
                    test_files.setdefault(speaker, []).append(rel)
    speak_all(jobs)
    (base / "iden_split.txt").write_text("".join(f"{line}\n" for line in split_lines))
    trials, ids = [], sorted(test_files)
    for i, speaker in enumerate(ids):
        files = test_files[speaker]
        trials += [f"1 {files[0]} {other}" for other in files[1:]]
        trials += [f"0 {files[0]} {test_files[ids[(i + k) % len(ids)]][k]}" for k in range(1, len(ids))]
    (base / "voxceleb1_test_v2.txt").write_text("".join(f"{line}\n" for line in trials))
    return base


def write_iemocap(root: Path, n_sessions: int = 5, n_sentences: int = 2) -> Path:
    """``root/IEMOCAP_full_release/SessionN/sentences/wav/Ses0NF_impro01/Ses0NF_impro01_{F,M}NNN.wav`` and the
    labels as IEMOCAP ships them, ``SessionN/dialog/EmoEvaluation/Ses0NF_impro01.txt`` (``[START - END]\\tUTT\\tEMO\\t
    [V, A, D]``), from which s3prl's ``IEMOCAP_preprocess.py`` builds the expert's meta data. Per session one
    female and one male voice speak each sentence in each of ``EMOTIONS`` (pitch/speed/amplitude), plus one
    ``fru`` line the SUPERB classes drop. Returns the IEMOCAP_full_release folder."""
    base = root / "IEMOCAP_full_release"
    jobs, labels = [], {}
    voices = speakers(2 * n_sessions)
    for s in range(1, n_sessions + 1):
        dialog = f"Ses{s:02d}F_impro01"
        lines, start = [], 0.0
        for g, gender in enumerate("FM"):
            _, voice, pitch, speed = voices[2 * (s - 1) + g]
            n = 0
            for emotion, (dp, factor, amplitude) in EMOTIONS.items():
                for sentence in SENTENCES[:n_sentences]:
                    utt = f"{dialog}_{gender}{n:03d}"
                    path = base / f"Session{s}" / "sentences" / "wav" / dialog / f"{utt}.wav"
                    jobs.append((sentence, path, voice, min(99, max(0, pitch + dp)), int(speed * factor)))
                    labels[path] = amplitude
                    lines.append(f"[{start:.4f} - {start + 2:.4f}]\t{utt}\t{emotion}\t[2.5000, 2.5000, 2.5000]\n")
                    start, n = start + 2.5, n + 1
        lines.append(f"[{start:.4f} - {start + 2:.4f}]\t{dialog}_F999\tfru\t[2.5000, 2.5000, 2.5000]\n")
        label_file = base / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(lines))
    speak_all(jobs)
    for path, amplitude in labels.items():  # loudness is part of the emotion
        audio, rate = read_audio(path)
        write_audio_atomic(path, audio * amplitude / 100, rate)
    return base


def write_diarization(root: Path, n_recordings: dict[str, int] | None = None) -> Path:
    """Kaldi data dirs ``root/diarization/{train,dev,test}/{wav.scp,segments,utt2spk,spk2utt,reco2dur,rttm}`` as
    s3prl's SD recipe (LibriMix's ``prepare_diarization.py``) writes them, for two-speaker mixtures under
    ``root/Libri2Mix/wav16k/max/<split>/`` (sources in ``s1/``, ``s2/``, the mixture in ``mix_clean/``): speaker 2
    starts while speaker 1 still talks, so each recording has single-speaker and overlapped stretches. Returns
    the diarization folder."""
    counts = n_recordings or {"train": 8, "dev": 2, "test": 3}
    base, audio_root = root / "diarization", root / "Libri2Mix" / "wav16k" / "max"
    voices = speakers(sum(counts.values()) + 1)
    jobs, recordings = [], []
    for split, count in counts.items():
        for r in range(count):
            offset = len(recordings)
            pair = [voices[offset], voices[offset + 1]]
            rec = f"{pair[0][0]}_{pair[1][0]}_{r}"
            sources = [audio_root / split / f"s{k + 1}" / f"{rec}.wav" for k in range(2)]
            for k, ((_, voice, pitch, speed), path) in enumerate(zip(pair, sources)):
                jobs.append((SENTENCES[(offset + k) % len(SENTENCES)], path, voice, pitch, speed))
            recordings.append((split, rec, pair, sources))
    speak_all(jobs)
    rate = 16000
    for split in counts:
        lines: dict[str, list[str]] = {name: [] for name in ("wav.scp", "segments", "utt2spk", "reco2dur", "rttm")}
        spk2utt: dict[str, list[str]] = {}
        for _, rec, pair, sources in (r for r in recordings if r[0] == split):
            tracks = [read_audio(p)[0] for p in sources]
            start2 = int(0.6 * len(tracks[0]))  # overlap: the last 40% of speaker 1
            mix = np.zeros(start2 + len(tracks[1]), dtype=np.float32)
            mix[:len(tracks[0])] += tracks[0]
            mix[start2:] += tracks[1]
            wav = write_audio_atomic(audio_root / split / "mix_clean" / f"{rec}.wav", mix, rate)
            lines["wav.scp"].append(f"{rec} {wav.resolve()}")
            lines["reco2dur"].append(f"{rec} {len(mix) / rate:.4f}")
            for k, (st, n) in enumerate([(0, len(tracks[0])), (start2, len(tracks[1]))]):
                speaker, utt = pair[k][0], f"{pair[k][0]}_{rec}"
                lines["segments"].append(f"{utt} {rec} {st / rate:.4f} {(st + n) / rate:.4f}")
                lines["utt2spk"].append(f"{utt} {speaker}")
                lines["rttm"].append(f"SPEAKER {rec} 1 {st / rate:.4f} {n / rate:.4f} <NA> <NA> {speaker} <NA> <NA>")
                spk2utt.setdefault(speaker, []).append(utt)
        lines["spk2utt"] = [f"{spk} {' '.join(utts)}" for spk, utts in sorted(spk2utt.items())]
        (base / split).mkdir(parents=True, exist_ok=True)
        for name, rows in lines.items():
            (base / split / name).write_text("".join(f"{row}\n" for row in sorted(rows)))
    return base


QUESST_DOCS = ["please play the music in the kitchen", "turn on the lights in the kitchen", "stop the music now",
               "we also need a small plastic snake", "ask her to bring the snake", "six spoons of fresh snow peas",
               "she can scoop these things", "make the bedroom warmer"]
QUESST_QUERIES = {"dev": ["bedroom", "spoons"], "eval": ["music", "kitchen", "snake"]}
# the scorer QUESST 2014 ships is MediaEval's Java tool; the generated corpus gets ours (superb.twv) instead
QUESST_SCORER = """#!/usr/bin/env bash
# Written by robustdistiller's tests, NOT the scorer QUESST 2014 ships (score-TWV-Cnxe.sh + MediaEvalQUESST2014.jar):
# robustdistiller_upstream.superb.twv computes actTWV/maxTWV from the same files, same arguments, same output.
exec {python} -m robustdistiller_upstream.superb.twv "$@"
"""


def _trimmed(audio: np.ndarray, rate: int, margin_s: float = 0.02) -> np.ndarray:
    """``audio`` without its leading and trailing silence (below 1% of the peak), ``margin_s`` kept on each side:
    QUESST's queries are cut around the spoken term, espeak-ng pads its speech with digital silence."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    margin = int(margin_s * rate)
    return audio[max(loud[0] - margin, 0):loud[-1] + margin + 1]


def write_quesst14(root: Path, repeats: int = 1, cut_queries: bool = False, floor_snr_db: float | None = None) -> Path:
    """QUESST 2014 (8 kHz): ``root/quesst14Database/{Audio,dev_queries,eval_queries}/*.wav``,
    ``scoring/language_key_{utterances,dev,eval}.lst`` (``quesst14Database/Audio/NAME.wav LANGUAGE``; one Czech
    document the English-only expert skips) and ``scoring/groundtruth_quesst14_{dev,eval}/`` (NIST STD 2006 ecf,
    tlist, rttm), with our stand-in ``scoring/score-TWV-Cnxe.sh`` (``QUESST_SCORER``). Each of ``QUESST_DOCS`` and
    ``QUESST_QUERIES`` is spoken ``repeats`` times, by other voices (each query recording is a query). ``cut_queries``:
    queries cut around the word, as QUESST's are (``_trimmed``); ``floor_snr_db``: every file gets white noise at that
    SNR, a recording's noise floor instead of espeak-ng's digital silence."""
    base = root / "quesst14Database"
    docs = [(f"quesst14_{i + 1:05d}", text, "nnenglish") for i, text in enumerate(QUESST_DOCS * repeats)]
    docs.append((f"quesst14_{len(docs) + 1:05d}", "dobry den", "czech"))
    voices = speakers(22, offset=50)  # the voices left after offset 50; more recordings reuse them
    jobs = [(text, base / "Audio" / f"{name}.wav", "cs" if lang == "czech" else voices[i % len(voices)][1],
             voices[i % len(voices)][2], voices[i % len(voices)][3]) for i, (name, text, lang) in enumerate(docs)]
    queries = {split: [(f"quesst14_{split}_{i + 1:04d}", word) for i, word in enumerate(words * repeats)]
               for split, words in QUESST_QUERIES.items()}
    flat = [(split, name, word) for split, entries in queries.items() for name, word in entries]
    for k, (split, name, word) in enumerate(flat):
        _, voice, pitch, speed = voices[(len(docs) + k % (5 * repeats)) % len(voices)]
        jobs.append((word, base / f"{split}_queries" / f"{name}.wav", voice, pitch, speed))
    speak_all(jobs)
    for index, (_, path, *_) in enumerate(jobs):  # QUESST 2014 is 8 kHz (the expert resamples to 16 kHz with sox)
        audio = resample(read_audio(path)[0], 16000, 8000)
        if cut_queries and path.parent.name.endswith("_queries"):
            audio = _trimmed(audio, 8000)
        if floor_snr_db is not None:
            audio = audio + _scaled_noise(audio, "white", floor_snr_db, 1000 + index)
        write_audio_atomic(path, audio, 8000)
    scoring = base / "scoring"
    scoring.mkdir(parents=True, exist_ok=True)
    (scoring / "language_key_utterances.lst").write_text(
        "".join(f"quesst14Database/Audio/{name}.wav {lang}\n" for name, _, lang in docs))
    durations = {name: len(read_audio(base / "Audio" / f"{name}.wav")[0]) / 8000 for name, _, _ in docs}
    ecf = "".join(f'  <excerpt audio_filename="{name}" channel="1" tbeg="0.000" dur="{seconds:.3f}" '
                  f'source_type="splitcts"/>\n' for name, seconds in durations.items())
    for split, entries in queries.items():
        (scoring / f"language_key_{split}.lst").write_text(
            "".join(f"quesst14Database/{split}_queries/{name}.wav nnenglish\n" for name, _ in entries))
        truth = scoring / f"groundtruth_quesst14_{split}"
        truth.mkdir(exist_ok=True)
        (truth / "quesst14.ecf.xml").write_text(
            f'<ecf source_signal_duration="{sum(durations.values()):.3f}" language="multiple" version="1">\n'
            f"{ecf}</ecf>\n")
        terms = "".join(f'  <term termid="{name}"><termtext>{name}</termtext></term>\n' for name, _ in entries)
        (truth / f"quesst14_{split}.tlist.xml").write_text(
            f'<termlist ecf_filename="quesst14.ecf.xml" version="1" language="multiple" encoding="UTF-8">\n'
            f"{terms}</termlist>\n")
        # file-level ground truth: the occurrence times espeak-ng does not give are the whole document
        (truth / f"quesst14_{split}.rttm").write_text("".join(
            f"LEXEME {doc} 1 0.000 {durations[doc]:.3f} {name} lex <NA> <NA>\n"
            for name, word in entries for doc, text, _ in docs if word in text.split()))
    script = scoring / "score-TWV-Cnxe.sh"
    script.write_text(QUESST_SCORER.format(python=sys.executable))
    script.chmod(0o755)
    return base


# ---- text tasks (PR, ASR, SF) ------------------------------------------------------------------------------------

# ARPAbet (CMUdict) of every word synthetic.write_librispeech speaks, in s3prl's lexicon format (WORD<TAB>PHONEMES)
LEXICON = {
    "A": "AH0", "ABOVE": "AH0 B AH1 V", "AND": "AH0 N D", "BOOKS": "B UH1 K S", "BRIGHT": "B R AY1 T",
    "BROWN": "B R AW1 N", "BY": "B AY1", "CHILDREN": "CH IH1 L D R AH0 N", "DOG": "D AO1 G", "FOX": "F AA1 K S",
    "GREEN": "G R IY1 N", "HILL": "HH IH1 L", "HOUSE": "HH AW1 S", "IN": "IH0 N", "JUMPS": "JH AH1 M P S",
    "LAZY": "L EY1 Z IY0", "MUSIC": "M Y UW1 Z IH0 K", "NEAR": "N IH1 R", "OLD": "OW1 L D", "OVER": "OW1 V ER0",
    "PLAYS": "P L EY1 Z", "QUICK": "K W IH1 K", "QUIET": "K W AY1 AH0 T", "READ": "R IY1 D", "RIVER": "R IH1 V ER0",
    "SEVEN": "S EH1 V AH0 N", "SHINE": "SH AY1 N", "SOFTLY": "S AO1 F T L IY0", "STARS": "S T AA1 R Z",
    "THE": "DH AH0", "WHILE": "W AY1 L", "WINDOW": "W IH1 N D OW0",
}
LIBRI_SPLITS = ("train-clean-100", "dev-clean", "test-clean")


def write_librispeech_asr_pr(root: Path, n_speakers: int = 3, n_utterances: int = 3) -> tuple[Path, Path]:
    """(LibriSpeech root, lexicon file): ``root/LibriSpeech/{train-clean-100,dev-clean,test-clean}/SPK/CH/
    SPK-CH-NNNN.flac`` + ``SPK-CH.trans.txt`` (``synthetic.write_librispeech``: espeak-ng, other speaker ids per
    split) and ``root/librispeech-lexicon.txt`` covering every transcript word (PR; ASR derives its own files)."""
    from robustdistiller_upstream.synthetic import write_librispeech

    libri = root / "LibriSpeech"
    write_librispeech(libri, subsets=LIBRI_SPLITS, n_speakers=n_speakers, n_utterances=n_utterances, use_espeak=True)
    words = {w for t in libri.rglob("*.trans.txt") for line in t.read_text().splitlines() for w in line.split()[1:]}
    assert words <= set(LEXICON), sorted(words - set(LEXICON))
    lexicon = root / "librispeech-lexicon.txt"
    lexicon.write_text("".join(f"{word}\t{phones}\n" for word, phones in sorted(LEXICON.items())))
    return libri, lexicon


# (words, slot per word, intent): SNIPS intents and slot names
SNIPS_SENTENCES = [
    ("PLAY SOME JAZZ MUSIC", "O O genre O", "PlayMusic"),
    ("ADD THIS SONG TO MY ROAD TRIP PLAYLIST", "O O music_item O playlist_owner playlist playlist O",
     "AddToPlaylist"),
    ("WHAT IS THE WEATHER IN PARIS TOMORROW", "O O O O O city timeRange", "GetWeather"),
    ("BOOK A TABLE FOR TWO IN LONDON", "O O O O party_size_number O city", "BookRestaurant"),
    ("RATE THIS BOOK FIVE STARS", "O object_select object_type rating_value rating_unit", "RateBook"),
    ("FIND THE MOVIE SCHEDULE FOR TONIGHT", "O O object_type object_type O timeRange", "SearchScreeningEvent"),
]
# sf.yaml's train/valid/test speakers (Amazon Polly voices in Audio SNIPS), and the ones the tests' corpus holds
SNIPS_ALL_SPEAKERS = {"train": ["Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"],
                      "valid": ["Aditi", "Amy", "Geraint", "Nicole"], "test": ["Brian", "Emma", "Raveena", "Russell"]}
SNIPS_SPEAKERS = {"train": ["Ivy", "Joanna", "Joey", "Justin"], "valid": ["Aditi", "Amy"], "test": ["Brian", "Emma"]}


def write_snips(root: Path, split_speakers: dict[str, list[str]] = SNIPS_SPEAKERS) -> Path:
    """Root of an Audio SNIPS tree as s3prl's SF reads it: ``root/SNIPS/{train,valid,test}/
    <Speaker>-snips-<split>-<n>.wav``, ``all.iob.snips.txt`` (``UID BOS WORDS EOS<TAB>O SLOTS INTENT``) and
    ``slots.txt`` (slot names by frequency, ``O`` first, no final newline: s3prl's snips_preprocess.py); each
    speaker of ``split_speakers`` says every one of ``SNIPS_SENTENCES``."""
    base = root / "SNIPS"
    voices = iter(speakers(sum(map(len, split_speakers.values())), offset=56))
    jobs, lines, counts = [], [], {}
    for split, names in split_speakers.items():
        for name, (_, voice, pitch, speed) in zip(names, voices):
            for n, (text, slots, intent) in enumerate(SNIPS_SENTENCES):
                assert len(text.split()) == len(slots.split()), text
                uid = f"{name}-snips-{split}-{n}"
                jobs.append((text.lower(), base / split / f"{uid}.wav", voice, pitch, speed))
                lines.append(f"{uid} BOS {text} EOS\tO {slots} {intent}\n")
                for slot in slots.split():
                    counts[slot] = counts.get(slot, 0) + 1
    speak_all(jobs)
    (base / "all.iob.snips.txt").write_text("".join(lines))
    (base / "slots.txt").write_text("\n".join(sorted(counts, key=lambda s: (-counts[s], s))))
    return base
