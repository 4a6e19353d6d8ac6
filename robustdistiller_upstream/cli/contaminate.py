"""``robustdistiller contaminate``: a condition copy (noise / reverberation) of a dataset tree."""

from __future__ import annotations

import argparse
import logging

from robustdistiller_upstream.augment.banks import build_banks
from robustdistiller_upstream.augment.conditions import expand_path, load_conditions, parse_condition
from robustdistiller_upstream.augment.contaminator import Contaminator
from robustdistiller_upstream.augment.tree import contaminate_tree
from robustdistiller_upstream.errors import ConfigError

HELP = "copy a dataset tree with every audio file contaminated (noise, reverberation) for a test condition"

log = logging.getLogger("robustdistiller.contaminate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="dataset folder to read (never modified)")
    parser.add_argument("--dst", required=True, help="output folder (not inside --src); rerun to resume")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--condition", help="e.g. clean, noise:white:snr=5, noise:musan:snr=0..20, reverb:rt60=0.6, "
                                         "reverb:slr28, noise+reverb:musan:snr=5:rt60=0.6 (docs/contamination.md)")
    what.add_argument("--name", help="a condition named in --conditions")
    parser.add_argument("--conditions", help="conditions YAML: banks: {NAME: PATH}, conditions: {NAME: {spec, seed}}")
    parser.add_argument("--bank", action="append", default=[], metavar="NAME=PATH",
                        help="noise/RIR folder for the names used in conditions (musan, urbansound8k, dns, slr28, "
                             "dns_rirs, or any name = plain folder); overrides --conditions banks")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: the "
                                                                "condition's seed in --conditions, else 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--cache-dir", default=None, help="where bank indexes are cached "
                                                          "(default ~/.cache/robustdistiller/banks)")
    parser.add_argument("--run-pipes", action="store_true",
                        help="run 'cmd |' entries of wav.scp files (as Kaldi and s3prl do) instead of refusing")


def _bank_arguments(values: list[str]) -> dict[str, str]:
    banks = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--bank {value!r}: expected NAME=PATH")
        banks[name] = expand_path(path, f"--bank {name}")
    return banks


def run(args: argparse.Namespace) -> int:
    banks, conditions = load_conditions(args.conditions) if args.conditions else ({}, {})
    banks.update(_bank_arguments(args.bank))
    if args.name is not None:
        if args.name not in conditions:
            raise ConfigError(f"--name {args.name!r}: not in {args.conditions or 'a --conditions file (none given)'}"
                              f" (known: {sorted(conditions)})")
        spec, seed = conditions[args.name]
    else:
        spec, seed = args.condition, 0
    seed = args.seed if args.seed is not None else seed
    condition = parse_condition(spec, banks, seed, args.cache_dir)
    noise_bank, rir_bank = build_banks(condition.banks)
    contaminator = Contaminator(condition.contamination, noise_bank, rir_bank, condition.banks.sample_rate)
    state = {"spec": spec, "seed": seed}
    counts = contaminate_tree(args.src, args.dst, contaminator, state, args.workers, args.run_pipes)
    log.info("%s -> %s (%s): %s", args.src, args.dst, spec, counts)
    return 0
