"""``python -m robustdistiller_upstream.superb`` (what ``run_superb.sh`` runs): the SUPERB sweep of one upstream.

Arguments after ``--`` go to every stock runner call (e.g. ``-- -s last_hidden_state``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from robustdistiller_upstream.cluster.slurm import add_launcher_arguments
from robustdistiller_upstream.errors import ConfigError, UserError
from robustdistiller_upstream.log_setup import setup_logging
from robustdistiller_upstream.superb.cluster import DEFAULT_MAX_PARALLEL, run_on_cluster, sbatch_preview
from robustdistiller_upstream.superb.sweep import Sweep, SweepConfig


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _folds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected fold numbers, e.g. 1 or 1,2,3,4,5") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_superb.sh", description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, help="any s3prl hub name (robustdistiller_local, distiller_local, "
                                                     "wavlm_base_plus, fbank_no_cmvn, ...)")
    p.add_argument("--ckpt", default="", help="upstream checkpoint (-k of the runner) for *_local/*_url upstreams")
    p.add_argument("--upstream-config", default="", help="upstream model config (-g of the runner)")
    p.add_argument("--tag", default="", help="name of this upstream's results (default: the --ckpt folder's name, "
                                             "else --upstream)")
    p.add_argument("--tasks", default="all", help="'all' or a comma list of PR,KS,IC,SID,ER,ASR,QbE,SF,ASV,SD,SE,SS")
    p.add_argument("--conditions", default="", help="conditions YAML (default: downstream_configs/conditions.yaml)")
    p.add_argument("--only-conditions", type=_csv, default=[], help="comma list of condition names to run")
    p.add_argument("--er-folds", type=_folds, default=[1, 2, 3, 4, 5],
                   help="ER: IEMOCAP folds to train and test (fold N tests on Session N); default all five, whose "
                        "mean is SUPERB's ER score; 1 for a quick run")
    p.add_argument("--data-root", default="", help="folder holding the datasets (${DATA_ROOT} in the configs)")
    p.add_argument("--s3prl-dir", default="", help="an s3prl git checkout, for the data files and modules the PyPI "
                                                   "s3prl lacks (PR's lexicons, ER, ASV); default $S3PRL_DIR")
    p.add_argument("--exp-root", default="exp/superb", help="results go to EXP_ROOT/TAG/TASK/...")
    p.add_argument("--cond-root", default="", help="condition copies (default EXP_ROOT/_conditions), shared by "
                                                   "all upstreams")
    p.add_argument("--gpus", type=_csv, default=[], help="e.g. 0,1: tasks run in parallel, one per GPU; "
                                                         "0+1,2+3: one per GPU group (with --nproc 2)")
    p.add_argument("--nproc", type=int, default=1, help="processes per training run: torchrun DDP over the "
                                                        "run's GPU group (each gets --local_rank $LOCAL_RANK)")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="config override KEY=VALUE for all tasks or TASK:KEY=VALUE for one "
                        "(e.g. KS:runner.total_steps=2000); repeatable")
    p.add_argument("--contaminate-workers", type=int, default=1, help="processes per condition copy")
    add_launcher_arguments(p)
    p.add_argument("--max-parallel", type=int, default=0,
                   help=f"cluster launchers: jobs in flight (queued or running) at most (default "
                        f"{DEFAULT_MAX_PARALLEL})")
    p.add_argument("--dry-run", action="store_true", help="print the plan (and the runner commands; with "
                                                          "--launcher slurm the sbatch script) and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    runner_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    setup_logging(args.verbose)
    cfg = SweepConfig(
        upstream=args.upstream, ckpt=args.ckpt, upstream_config=args.upstream_config, tag=args.tag,
        tasks=args.tasks, conditions=args.conditions, only_conditions=args.only_conditions,
        data_root=args.data_root, s3prl_dir=args.s3prl_dir, exp_root=args.exp_root, cond_root=args.cond_root,
        gpus=args.gpus, nproc=args.nproc, overrides=args.override, runner_args=runner_args,
        contaminate_workers=args.contaminate_workers, launcher=args.launcher, slurm=args.slurm,
        max_parallel=args.max_parallel, er_folds=args.er_folds)
    try:
        if args.max_parallel and args.launcher == "local":
            raise ConfigError("--max-parallel caps cluster jobs (--launcher slurm or local-submitit); locally "
                              "--gpus decides what runs at once")
        sweep = Sweep(cfg)
        if args.dry_run:
            print(sweep.plan_text())
            script = sbatch_preview(sweep)
            if script:
                print(f"\n# sbatch script of each job (condition copies without GPUs):\n{script}")
            return 0
        if args.launcher != "local":
            run_on_cluster(sweep)
            return sweep.finish()
        return sweep.run()
    except UserError as exc:
        logging.getLogger("robustdistiller.superb").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
