"""``robustdistiller export CKPT --to onnx|hf OUT``: an upstream for ONNX Runtime (fp32, int8) or transformers."""

from __future__ import annotations

import argparse

HELP = "export a student or pruned checkpoint to ONNX (fp32/int8, checked in ONNX Runtime) or Hugging Face"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="student checkpoint (ours or s3prl DistilHuBERT format) or pruned RD-DPWavLM export")
    parser.add_argument("--to", choices=("onnx", "hf"), required=True, help="onnx: one .onnx file; hf: a folder")
    parser.add_argument("out", help="the .onnx file (onnx) or the folder (hf) to write")
    int8 = parser.add_mutually_exclusive_group()
    int8.add_argument("--int8", dest="int8", action="store_const", const="auto",
                      help="onnx: checked int8: static int8 (calibrated on the --calibrate files, else on generated "
                           "espeak-ng speech) if every hidden state keeps a cosine to fp32 >= --min-cosine on "
                           "generated espeak-ng speech it was not calibrated on, else dynamic int8 if it does, else "
                           "nothing is written")
    int8.add_argument("--int8-static", dest="int8", action="store_const", const="static",
                      help="onnx: static int8 whatever its cosines (CNN convolutions too; activation ranges "
                           "calibrated as for --int8)")
    int8.add_argument("--int8-dynamic", dest="int8", action="store_const", const="dynamic",
                      help="onnx: dynamic int8 whatever its cosines (int8 weights of the linear layers; no data)")
    parser.add_argument("--calibrate", nargs="+", default=[], metavar="AUDIO",
                        help="onnx: audio files to calibrate static int8 on (default: generated espeak-ng speech); "
                             "the fp32 graph is also checked on them")
    parser.add_argument("--min-cosine", type=float, metavar="C",
                        help="onnx: the cosine to fp32 (mean over frames) every hidden state must keep for --int8 to "
                             "accept an int8 mode; the forced modes warn below it (default: 0.99)")
    parser.add_argument("--keep-heads", action="store_true",
                        help="hf: also write the prediction heads to prediction_heads.safetensors")
    parser.add_argument("--results", metavar="RESULTS_MD",
                        help="hf: a `robustdistiller report` results.md to put in the model card")
    parser.add_argument("--force", action="store_true", help="replace an existing file / non-empty folder")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow pickled objects (only for trusted files)")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.export.errors import ExportError
    from robustdistiller_upstream.export.source import load_export_source

    if args.to == "hf" and (args.int8 or args.calibrate or args.min_cosine is not None):
        raise ExportError("--int8*, --calibrate and --min-cosine apply to --to onnx only")
    if args.to == "onnx" and args.min_cosine is not None and not args.int8:
        raise ExportError("--min-cosine applies with --int8, --int8-static or --int8-dynamic only")
    if args.to == "onnx" and (args.keep_heads or args.results):
        raise ExportError("--keep-heads and --results apply to --to hf only")
    source = load_export_source(args.ckpt, args.trust_checkpoint)
    if args.to == "hf":
        from robustdistiller_upstream.export.hf import export_hf

        report = export_hf(source, args.out, args.force, args.keep_heads, args.results)
        print(f"wrote {report.path} (AutoModel: {report.auto_class}); HubertModel vs ours, max |diff|:")
        for name, diff in report.max_diff.items():
            print(f"  {name:<22} {diff:.2e}")
        return 0
    from robustdistiller_upstream.export.onnx import INT8_COSINE_GOAL, export_onnx

    min_cosine = INT8_COSINE_GOAL if args.min_cosine is None else args.min_cosine
    report = export_onnx(source, args.out, args.int8, args.calibrate, args.force, min_cosine)
    print(f"wrote {report.path} ({report.precision}, {report.size_bytes / 1e6:.1f} MB)")
    tried = report.int8_tried
    print(f"  {'hidden state':<22} {'fp32 max|diff|':>14}" + "".join(f" {mode + ' cosine':>15}" for mode in tried))
    for name, diff in report.fp32_max_diff.items():
        print(f"  {name:<22} {diff:>14.2e}" + "".join(f" {cosines[name]:>15.4f}" for cosines in tried.values()))
    if tried:
        print(f"  int8 cosines to fp32 (mean over frames) on {report.int8_speech['check']}")
        if "calibration" in report.int8_speech:
            print(f"  static int8 calibrated on {report.int8_speech['calibration']}")
        if args.int8 == "auto":
            print(f"  kept {report.precision}: the first of {', '.join(tried)} with every cosine >= "
                  f"{min_cosine:g}")
    return 0
