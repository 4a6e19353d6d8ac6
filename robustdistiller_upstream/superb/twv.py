"""Term-weighted value of a QbE system output: our stand-in for the scorer QUESST 2014 ships.

QUESST 2014's ``scoring/score-TWV-Cnxe.sh STDLIST_DIR GROUNDTRUTH_DIR [DEFAULT_SCORE]`` runs MediaEval's Java
tool (``MediaEvalQUESST2014.jar``); only the dataset has it. This module takes the same arguments and files
(the ``*.stdlist.xml`` in ``STDLIST_DIR``, the NIST STD 2006 ``*.ecf.xml``, ``*.tlist.xml`` and ``*.rttm`` in
``GROUNDTRUTH_DIR``), prints the tool's result line ``actTWV: A  maxTWV: M  Threshold: T`` and writes it to
``STDLIST_DIR/score.out``, so the sweep parses either the same way. It is not the MediaEval tool: no Cnxe, no
DET/TWV plots, and its numbers are not checked against the tool's.

Trials are (query, document) pairs, as QUESST scores them (a detection names a file, not a time):
``TWV(t) = 1 - mean_q [P_miss(q, t) + beta * P_fa(q, t)]`` over queries with at least one occurrence,
``P_miss = 1 - hits / occurrences``, ``P_fa = false alarms / (documents - occurrences)``, a trial detected when
its score is at or above ``t`` (``score >= t``: ``Threshold: T`` is the lowest score detected);
``beta = (C_fa / C_miss) (1 / P_target - 1)`` with the MediaEval SWS 2013 / QUESST 2014 costs ``C_miss = 100``,
``C_fa = 1``, ``P_target = 0.0008`` (beta 12.49). actTWV counts the system's YES decisions; maxTWV is the best TWV
over thresholds (a threshold above every score: no detections, TWV 0). Trials the system
did not score get ``DEFAULT_SCORE`` (decision NO).

``python -m robustdistiller_upstream.superb.twv STDLIST_DIR GROUNDTRUTH_DIR [DEFAULT_SCORE]``
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.files import write_text_atomic

C_MISS, C_FA, P_TARGET = 100.0, 1.0, 0.0008
BETA = C_FA / C_MISS * (1 / P_TARGET - 1)


@dataclass(frozen=True)
class TWVResult:
    """actTWV (the system's decisions), maxTWV and the threshold where it is reached."""

    act_twv: float
    max_twv: float
    threshold: float

    def line(self) -> str:
        """The result line MediaEval's tool prints (and the sweep parses)."""
        return f"actTWV: {self.act_twv:.8f}  maxTWV: {self.max_twv:.8f}  Threshold: {self.threshold:.4f}"


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise ConfigError(f"{folder}: expected one {pattern} file, found {[p.name for p in found]}")
    return found[0]


def read_truth(folder: Path) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """(documents of the ecf, queries of the tlist, (query, document) occurrences of the rttm)."""
    docs = [e.get("audio_filename") for e in ElementTree.parse(_one(folder, "*.ecf.xml")).getroot().iter("excerpt")]
    queries = [t.get("termid") for t in ElementTree.parse(_one(folder, "*.tlist.xml")).getroot().iter("term")]
    occurrences = set()
    for number, line in enumerate(_one(folder, "*.rttm").read_text().splitlines(), 1):
        fields = line.split()
        if fields and fields[0] == "LEXEME":
            if len(fields) < 6:
                raise ConfigError(f"{folder}: rttm line {number} has {len(fields)} fields: {line!r}")
            occurrences.add((fields[5], fields[1]))
    return [d for d in docs if d], [q for q in queries if q], occurrences


def read_system(path: Path) -> dict[tuple[str, str], tuple[float, bool]]:
    """``{(query, document): (score, decision is YES)}`` of a NIST ``stdlist.xml``."""
    trials = {}
    for term_list in ElementTree.parse(path).getroot().iter("detected_termlist"):
        query = term_list.get("termid")
        for term in term_list.iter("term"):
            trials[(query, term.get("file"))] = (float(term.get("score")), term.get("decision") == "YES")
    return trials


def _twv(detected: np.ndarray, truth: np.ndarray) -> float:
    """TWV of boolean ``(queries, documents)`` detections against the occurrences (queries with some)."""
    n_true = truth.sum(1)
    keep = n_true > 0
    p_miss = 1 - (detected & truth).sum(1)[keep] / n_true[keep]
    p_fa = (detected & ~truth).sum(1)[keep] / np.maximum(truth.shape[1] - n_true[keep], 1)
    return float(1 - np.mean(p_miss + BETA * p_fa))


def trials(stdlist: Path, truth_dir: Path, default_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(queries, documents)`` arrays of ``stdlist`` against ``truth_dir``: scores (``default_score`` where the
    system scored no trial), YES decisions and occurrences."""
    docs, queries, occurrences = read_truth(truth_dir)
    if not any(q in {o[0] for o in occurrences} for q in queries):
        raise ConfigError(f"{truth_dir}: no query of the tlist occurs in the rttm")
    system = read_system(stdlist)
    scores = np.full((len(queries), len(docs)), default_score, dtype=float)
    decisions = np.zeros_like(scores, dtype=bool)
    truth = np.zeros_like(decisions)
    for i, query in enumerate(queries):
        for j, doc in enumerate(docs):
            scores[i, j], decisions[i, j] = system.get((query, doc), (default_score, False))
            truth[i, j] = (query, doc) in occurrences
    return scores, decisions, truth


def score(stdlist: Path, truth_dir: Path, default_score: float) -> TWVResult:
    """actTWV and maxTWV of ``stdlist`` against ``truth_dir``."""
    scores, decisions, truth = trials(stdlist, truth_dir, default_score)
    best, at = max_twv(scores, truth)
    return TWVResult(_twv(decisions, truth), best, at)


def max_twv(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(maxTWV, its threshold) of ``(queries, documents)`` scores against boolean occurrences: the best TWV of
    detecting every trial scored at or above a threshold, over the scores; 0 (nothing detected, the threshold the
    top score) when no threshold does better."""
    best, at = 0.0, float(scores.max())
    for threshold in np.unique(scores):
        value = _twv(scores >= threshold, truth)
        if value > best:
            best, at = value, float(threshold)
    return best, at


def random_control(scores: np.ndarray, truth: np.ndarray, default_score: float, draws: int = 4000,
                   seed: int = 0) -> np.ndarray:
    """``(draws,)`` maxTWVs of random-score controls of a system: the same ``(queries, documents)`` trials as its
    ``scores``, each trial it scored (``scores != default_score``) given a uniform random score instead, the
    unscored ones keeping ``default_score``."""
    scored = scores != default_score
    rng = np.random.default_rng(seed)
    return np.array([max_twv(np.where(scored, rng.random(scores.shape), scores), truth)[0] for _ in range(draws)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stdlist_dir", type=Path)
    parser.add_argument("groundtruth_dir", type=Path)
    parser.add_argument("default_score", type=float, nargs="?", default=float("-inf"))
    args = parser.parse_args(argv)
    result = score(_one(args.stdlist_dir, "*.stdlist.xml"), args.groundtruth_dir, args.default_score)
    print(result.line())
    write_text_atomic(args.stdlist_dir / "score.out", result.line() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
