"""Export rounding on the WavLM Base+ shape: our per-kind largest-remainder kept counts (``allocate_kept``) vs
DPHuBERT's per-gate rounding (``HardConcrete.forward`` in eval mode: ``n - round(n - expected)`` per gate), both
against the expected size the sparsity controller steers.

Gates: the Lagrangian controller alone (``bench/dpwavlm_speed.py`` ``controller_gates``: CNN channels, heads, FFN
units, random Base+-sized weights), then ``--spread`` N(0, spread) noise on every log_alpha per seed, so layers
differ as in a real run. Prints, per seed, the exported parameter count of each rounding and its error.

Run: ``python bench/dpwavlm_rounding.py [--sparsity 0.75] [--seeds 5] [--spread 1.0]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dpwavlm_speed import BASE_PLUS, controller_gates
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint


def per_gate_size(model) -> int:
    """Exported size with DPHuBERT's rounding: each gate keeps ``n - round(n - expected)`` units on its own."""
    model.eval()  # our kept counts, then replaced gate by gate
    for gate in model.gates():
        gate.kept_override = gate.n - round(gate.n - float(gate.expected_kept().detach()))
    train = model.train
    model.train = lambda mode=True: model  # export_pruned's eval() would re-allocate per kind
    try:
        return num_params(export_pruned(model))
    finally:
        model.train = train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.75)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--spread", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        teacher = write_wavlm_checkpoint(Path(tmp) / "wavlm_base_plus.pt", **BASE_PLUS)
        model = controller_gates(teacher, args.sparsity)
    original = num_params(model)
    start = [gate.log_alpha.detach().clone() for gate in model.gates()]
    print(f"WavLM Base+ shape, {original:,} parameters, sparsity target {args.sparsity}, spread {args.spread}")
    print(f"{'seed':>4} {'expected':>12} {'ours':>12} {'ours err':>9} {'per gate':>12} {'per-gate err':>12}")
    errors = {"ours": [], "per gate": []}
    for seed in range(args.seeds):
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for gate, alpha in zip(model.gates(), start):
                gate.log_alpha.copy_(alpha + torch.randn(gate.n, generator=generator) * args.spread)
        expected = float(expected_num_params(model).detach())
        ours = num_params(export_pruned(model))
        theirs = per_gate_size(model)
        errors["ours"].append(abs(ours / expected - 1))
        errors["per gate"].append(abs(theirs / expected - 1))
        print(f"{seed:>4} {expected:>12,.0f} {ours:>12,} {ours / expected - 1:>+9.2%} {theirs:>12,} "
              f"{theirs / expected - 1:>+12.2%}")
    print("mean |error|: ours {:.2%}, per gate (DPHuBERT) {:.2%}".format(
        *(sum(v) / len(v) for v in errors.values())))


if __name__ == "__main__":
    main()
