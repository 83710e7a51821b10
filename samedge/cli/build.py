"""``samedge build``: an FP32 model directory -> an FP16 / INT8 one that passed its gate."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from samedge.cli._common import BACKEND_CHOICES, Terminated, default, given, sigterm_unwinds

HELP = "fp32 model directory -> fp16 / int8 model directory that passed an accuracy gate"
DESCRIPTION = (
    "Converts the encoder to FP16 (LayerNorm/Softmax/overflowing nodes kept FP32) or explicit "
    "INT8 Q/DQ calibrated on --calibration frames, measures it against FP32 on held-out frames "
    "(samedge_tiny: also against ground truth, which is then the default gate), and writes DIR "
    "only if it passes the gate; a failing build exits non-zero and leaves "
    "DIR.failed-report.json. A memory model (SAM 2.1, EdgeTAM) also converts memory attention, "
    "calibrated on the banks the fp32 tracker builds, and is gated over a clip: its tracker "
    "against the fp32 tracker, frame by frame; memory attention goes back to fp32 if the clip "
    "fails with it lowered, and the report lists each graph's precision."
)

_BUILD = (
    "calibration",
    "frames",
    "heldout",
    "seed",
    "decoder_fp16",
    "attention_int8",
    "int8_full_range",
    "fallback",
    "max_fallback_layers",
    "eval_scenes",
    "speed_runs",
    "backend",
    "clip_frames",
    "clip_objects",
)
_GATE = ("min_mean_iou", "min_p5_iou", "max_gt_miou_drop", "min_logit_corr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.calibration.build import BuildConfig
    from samedge.calibration.gate import GateConfig

    gate = GateConfig()
    p.add_argument("model", help="fp32 model directory or built-in name (e.g. samedge_tiny)")
    p.add_argument("--precision", required=True, choices=["fp16", "int8", "auto"])
    p.add_argument("--output", "-o", type=Path, required=True, help="model directory to write")
    p.add_argument(
        "--calibration",
        metavar="SOURCE",
        help="'synthetic' (default), a folder of images, a video file or a camera index",
    )
    p.add_argument(
        "--frames",
        type=int,
        help=f"calibration frames (default {default(BuildConfig, 'frames')})",
    )
    p.add_argument(
        "--heldout",
        type=int,
        help=f"held-out frames for the report (default {default(BuildConfig, 'heldout')}; "
        "memory models hold out --clip-frames instead)",
    )
    p.add_argument("--seed", type=int, help="seed of synthetic frames")
    p.add_argument(
        "--method",
        choices=["nncf", "onnxruntime"],
        help="int8 calibration engine (default nncf, chosen by measurement)",
    )
    p.add_argument("--decoder-fp16", action="store_true", help="convert the decoder to fp16 too")
    p.add_argument(
        "--no-attention-int8",
        action="store_false",
        dest="attention_int8",
        help="int8: keep attention MatMuls in float (ViT-B int8 fits in 12 GB without it)",
    )
    p.add_argument(
        "--int8-full-range",
        action="store_true",
        help="int8: weights in all 8 bits, for TensorRT and CPUs with VNNI/AMX only (the "
        "default 7 bits also run right on OpenVINO on CPUs without VNNI, e.g. AVX2)",
    )
    p.add_argument(
        "--min-mean-iou",
        type=float,
        help=f"fp32 gate: mean mask IoU vs fp32 (default {gate.mean_iou_threshold}); setting it "
        "or --min-p5-iou makes the fp32 gate decide for samedge_tiny too",
    )
    p.add_argument(
        "--min-p5-iou",
        type=float,
        help=f"fp32 gate: 5th-percentile mask IoU vs fp32 (default {gate.p5_iou_threshold})",
    )
    p.add_argument(
        "--max-gt-miou-drop",
        type=float,
        help="ground-truth gate (the default gate for samedge_tiny, whose procedural scenes "
        "have ground truth): largest drop of mIoU vs ground truth from fp32's, per prompt "
        f"type (default {gate.gt_miou_drop}); with --min-mean-iou/--min-p5-iou it also accepts "
        "a build the fp32 gate refused",
    )
    p.add_argument(
        "--min-logit-corr",
        type=float,
        help="video gate (memory models): 5th-percentile over the clip's frames of the low-res "
        f"mask logits' correlation with the fp32 tracker (default {gate.logit_corr_threshold})",
    )
    p.add_argument(
        "--clip-frames",
        type=int,
        help="memory models: frames of the video gate's clip (default "
        f"{default(BuildConfig, 'clip_frames')}; held out from calibration)",
    )
    p.add_argument(
        "--clip-objects",
        type=int,
        help="memory models: objects tracked through the clips (default "
        f"{default(BuildConfig, 'clip_objects')})",
    )
    p.add_argument(
        "--no-fallback",
        action="store_false",
        dest="fallback",
        help="int8: no layer fallback when the gate fails",
    )
    p.add_argument(
        "--max-fallback-layers",
        type=int,
        help="int8: most layers kept in float "
        f"(default {default(BuildConfig, 'max_fallback_layers')})",
    )
    p.add_argument(
        "--eval-scenes",
        type=int,
        help="samedge_tiny: ground-truth scenes in the report (0 skips; default "
        f"{default(BuildConfig, 'eval_scenes')})",
    )
    p.add_argument(
        "--speed-runs",
        type=int,
        help="timed encoder runs per backend (0 skips; default "
        f"{default(BuildConfig, 'speed_runs')})",
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        help="backend --precision auto picks for (default auto)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from samedge.calibration import BuildConfig, GateConfig, Int8Method, Precision, build

    fields = given(args, *_BUILD)
    if hasattr(args, "method"):
        fields["method"] = Int8Method(args.method)
    config = BuildConfig(
        precision=Precision(args.precision), gate=GateConfig(**given(args, *_GATE)), **fields
    )
    try:
        with sigterm_unwinds():
            report = build(args.model, args.output, config, force=getattr(args, "force", False))
    except Terminated:
        print("samedge build: terminated by SIGTERM; partial output removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(report.summary(str(args.output)))
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    return 0
