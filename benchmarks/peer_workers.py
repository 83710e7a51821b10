"""The code each peer runs in its own process (see ``benchmarks/peers.py``).

Run as a script by ``benchmarks/peers.py``: ``python peer_workers.py JOB.json RESULT.json``.

:func:`main` reads a job (JSON), runs it and writes the result (JSON). The
parent picks the interpreter: the main environment for the PyTorch peer and the
OpenVINO notebook recipe, samexporter's own environment for samexporter. One
process per job keeps peak RSS per peer and keeps one peer's thread pools,
allocator state and imports (samexporter re-registers TinyViT in timm) away
from the next.

Every timed call is the peer's own code on the same 640×480 frame; what
surrounds it (the frame, the clicks, the timing loop) is shared, so the only
difference between rows is the peer. Two encoder and decoder rows per peer:

* ``engine:`` the network alone, tensors in and out, as the peer feeds it
  (what samedge's ``encoder.onnx`` / ``decoder.onnx`` compute);
* ``api:`` the peer's user-facing call, its own pre/post-processing included
  (``SamPredictor.set_image`` / ``predict``, samexporter's ``encode`` /
  ``predict_masks``, the notebook's ``preprocess_image`` + encoder /
  mask predictor + ``postprocess_masks``).

This script imports only numpy and samedge's public record types at import
time: it runs under samexporter's interpreter too.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import logging
import os
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samedge.bench import Measurement, Timing

log = logging.getLogger(__name__)

#: The frame every peer segments: height, width (a VGA camera frame).
FRAME_SIZE = (480, 640)
#: Prefix of the rows that time the network alone / the peer's user-facing call.
ENGINE = "engine"
API = "api"

# Registry name -> (upstream package, key of its sam_model_registry). The peers
# load checkpoints the way their users do; other models (samedge_tiny, the
# reduced test SAM) come from samedge's builders and are segment_anything Sams.
UPSTREAM = {
    "sam_vit_b": ("segment_anything", "vit_b"),
    "sam_vit_l": ("segment_anything", "vit_l"),
    "sam_vit_h": ("segment_anything", "vit_h"),
    "mobile_sam": ("mobile_sam", "vit_t"),
}

Job = dict[str, Any]


# --------------------------------------------------------------------------- shared


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak / 2**20 if sys.platform == "darwin" else peak / 1024)


def bench_frame() -> np.ndarray:
    """The 480×640 RGB uint8 frame every peer runs on (a procedural scene, seed 0)."""
    from samedge.scenes import make_scene

    return make_scene(np.random.default_rng(0), FRAME_SIZE, num_objects=6).image


def clicks(objects: int) -> np.ndarray:
    """One foreground click per object, ``objects×2`` (x, y) in frame pixels, spread out."""
    h, w = FRAME_SIZE
    xs = (np.arange(objects) + 0.5) * w / objects
    ys = h / 2 + (np.arange(objects) % 3 - 1) * h / 4
    return np.stack([xs, ys], axis=1).astype(np.float32)


def time_calls(fn: Callable[[], object], warmup: int, runs: int) -> Timing:
    """Median/p90/p99 of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing.from_seconds(seconds)


#: Frames × clicks on which a lower-precision path is compared with fp32.
ACCURACY_FRAMES = 4
ACCURACY_CLICKS = 4


def accuracy_frames() -> list[np.ndarray]:
    """The bench frame and a few other scenes, for agreement with the fp32 path."""
    from samedge.scenes import make_scene

    others = [
        make_scene(np.random.default_rng(2026 + i), FRAME_SIZE, num_objects=6).image
        for i in range(ACCURACY_FRAMES - 1)
    ]
    return [bench_frame(), *others]


def agreement(
    embeddings: Sequence[tuple[np.ndarray, np.ndarray]],
    masks: Sequence[tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """Mask IoU (``logits > 0``) and embedding cosine of (fp32, other) pairs."""
    from samedge.masks import mask_iou

    ious = []
    for ref, other in masks:
        a, b = np.asarray(ref) > 0, np.asarray(other) > 0
        # One IoU over all of a frame's masks (pooled), as 2-D masks.
        ious.append(mask_iou(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])))
    cosines = []
    for ref, other in embeddings:
        r, o = np.ravel(ref).astype(np.float64), np.ravel(other).astype(np.float64)
        cosines.append(float(r @ o / max(np.linalg.norm(r) * np.linalg.norm(o), 1e-30)))
    return {
        "mask_iou_vs_fp32": round(float(np.mean(ious)), 4),
        "min_mask_iou_vs_fp32": round(float(np.min(ious)), 4),
        "embedding_cosine_vs_fp32": round(float(np.mean(cosines)), 6),
    }


class Rows:
    """Collects the Measurements of one job; fills in the fields every row shares."""

    def __init__(self, job: Job, *, backend: str, precision: str, threads: int | None) -> None:
        self.job = job
        self.backend = backend
        self.precision = precision
        self.threads = threads
        self.rows: list[Measurement] = []

    def time(
        self,
        part: str,
        fn: Callable[[], object],
        note: str,
        *,
        objects: int | None = None,
        build_s: float | None = None,
        engine_mib: float | None = None,
    ) -> None:
        timing = time_calls(fn, self.job["warmup"], self.job["runs"])
        items = objects if part == "decoder" and objects else 1
        self.rows.append(
            Measurement(
                suite=self.job["suite"],
                model=self.job["model"],
                backend=self.backend,
                precision=self.precision,
                part=part,
                timing=timing,
                objects=objects,
                threads=self.threads,
                throughput_per_s=items * 1e3 / timing.median_ms,
                # Peak of the whole process so far: model load + every run before.
                peak_rss_mib=round(peak_rss_mib(), 1),
                build_s=None if build_s is None else round(build_s, 3),
                engine_mib=engine_mib,
                note=note,
            )
        )
        log.info(
            "%s %s %s %s B=%s: median %.2f ms",
            self.job["suite"],
            self.job["model"],
            self.precision,
            part,
            objects or "-",
            timing.median_ms,
        )

    def set_accuracy(self, accuracy: dict[str, float]) -> None:
        """Attach the fp32 agreement of this job's path to every row it timed."""
        self.rows = [dataclasses.replace(m, accuracy=dict(accuracy)) for m in self.rows]

    def json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.rows]


def load_upstream(model: str, checkpoint: str) -> tuple[Any, Any, str]:
    """The PyTorch model, its package's ``SamPredictor`` class, and how it was loaded."""
    import importlib

    with warnings.catch_warnings():
        # timm's deprecation notices from MobileSAM's TinyViT: upstream noise.
        warnings.simplefilter("ignore")
        if model in UPSTREAM:
            package, key = UPSTREAM[model]
            module = importlib.import_module(package)
            sam = module.sam_model_registry[key](checkpoint=checkpoint)
            return sam.eval(), module.SamPredictor, f"{package}.sam_model_registry[{key!r}]"
        from segment_anything import SamPredictor

        from samedge.exporters import build_model, reduced_sam_spec
        from samedge.models import get_model_spec

        spec = reduced_sam_spec() if model == reduced_sam_spec().name else get_model_spec(model)
        sam = build_model(spec, checkpoint)
        return sam, SamPredictor, "samedge.exporters builder + segment_anything.SamPredictor"


def _mib(*paths: Path) -> float:
    return round(sum(p.stat().st_size for p in paths if p.exists()) / 2**20, 2)


# --------------------------------------------------------------------------- pytorch


def run_pytorch(job: Job) -> dict[str, Any]:
    """segment_anything's (MobileSAM's) ``SamPredictor`` on the job's checkpoint.

    EfficientViT-SAM runs its own package's predictor (``peers_efficientvit.py``).
    """
    from peers_efficientvit import is_efficientvit_sam, run_efficientvit_pytorch

    if is_efficientvit_sam(job["model"]):
        return run_efficientvit_pytorch(job)
    import torch

    if job["threads"] is not None:
        torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    sam, predictor_cls, loaded_with = load_upstream(job["model"], job["checkpoint"])
    load_s = time.perf_counter() - start
    predictor = predictor_cls(sam)
    rows = Rows(job, backend="torch", precision="fp32", threads=torch.get_num_threads())
    frame = bench_frame()

    # The tensor set_image feeds the encoder: resized, normalised, padded.
    resized = predictor.transform.apply_image(frame)
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    x = sam.preprocess(x.float())

    def encoder() -> object:
        with torch.no_grad():
            return sam.image_encoder(x)

    rows.time("encoder", encoder, f"{ENGINE}: image_encoder forward on the set_image tensor")
    rows.time("encoder", lambda: predictor.set_image(frame), f"{API}: SamPredictor.set_image")

    prompt_encoder, mask_decoder = sam.prompt_encoder, sam.mask_decoder
    for b in job["objects"]:
        xy = clicks(b)
        coords = predictor.transform.apply_coords_torch(torch.as_tensor(xy)[:, None, :], FRAME_SIZE)
        labels = torch.ones((b, 1), dtype=torch.int)

        def decoder(coords: torch.Tensor = coords, labels: torch.Tensor = labels) -> object:
            with torch.no_grad():
                sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)
                return mask_decoder(
                    image_embeddings=predictor.features,
                    image_pe=prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                )

        rows.time(
            "decoder",
            decoder,
            f"{ENGINE}: prompt_encoder + mask_decoder, low-res masks",
            objects=b,
        )
        if b == 1:
            point, label = xy[:1], np.ones(1, np.int64)
            api = functools.partial(
                predictor.predict, point_coords=point, point_labels=label, multimask_output=True
            )
            note = f"{API}: SamPredictor.predict, 3 masks at frame size"
        else:
            api = functools.partial(predictor.predict_torch, coords, labels, multimask_output=True)
            note = f"{API}: SamPredictor.predict_torch, {b} objects x 3 masks at frame size"
        rows.time("decoder", api, note, objects=b)

    point = clicks(1)

    def predict_frame() -> object:
        predictor.set_image(frame)
        return predictor.predict(
            point_coords=point, point_labels=np.ones(1, np.int64), multimask_output=True
        )

    rows.time("predictor", predict_frame, f"{API}: set_image + predict", objects=1)
    return {
        "measurements": rows.json(),
        "info": {"loaded_with": loaded_with, "load_s": round(load_s, 3)},
    }


# --------------------------------------------------------------------------- samexporter


class _Recorder:
    """Stands in for an onnxruntime session: remembers the feeds, then runs the real one."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, output_names: Any, feeds: dict[str, np.ndarray], *args: Any) -> Any:
        self.feeds.append(dict(feeds))
        return self.session.run(output_names, feeds, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def run_samexporter(job: Job) -> dict[str, Any]:
    """samexporter's ``SegmentAnythingONNX`` on the graphs its exporter wrote (its env)."""
    import cv2
    import onnxruntime

    threads = job["threads"]
    if threads is not None:
        # samexporter creates its sessions with onnxruntime's defaults; the one
        # change made here is the intra-op thread count, so every peer runs on
        # the same number of threads. Graph, providers and code path are its own.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        onnxruntime.InferenceSession = functools.partial(  # type: ignore[misc]
            onnxruntime.InferenceSession, sess_options=options
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import samexporter
        from samexporter.sam_onnx import SegmentAnythingONNX

    encoder_path, decoder_path = Path(job["encoder"]), Path(job["decoder"])
    start = time.perf_counter()
    # providers="cpu": the CPU is what is measured (its default also tries every
    # other provider onnxruntime lists).
    sam = SegmentAnythingONNX(str(encoder_path), str(decoder_path), providers="cpu")
    session_s = time.perf_counter() - start  # both sessions: counted in every row's build_s
    build = job["build_s"]
    enc = {"build_s": build["encoder"] + session_s, "engine_mib": _mib(encoder_path)}
    dec = {"build_s": build["decoder"] + session_s, "engine_mib": _mib(decoder_path)}
    both = {
        "build_s": build["encoder"] + build["decoder"] + session_s,
        "engine_mib": _mib(encoder_path, decoder_path),
    }
    rows = Rows(job, backend="onnxruntime", precision=job["precision"], threads=threads)
    bgr = cv2.cvtColor(bench_frame(), cv2.COLOR_RGB2BGR)  # encode() takes an OpenCV BGR image

    recorder = _Recorder(sam.encoder_session)
    sam.encoder_session = recorder
    embedding = sam.encode(bgr)
    sam.encoder_session = recorder.session
    feeds = recorder.feeds[0]
    rows.time(
        "encoder",
        lambda: sam.encoder_session.run(None, feeds),
        f"{ENGINE}: encoder session.run on encode()'s input",
        **enc,
    )
    rows.time("encoder", lambda: sam.encode(bgr), f"{API}: SegmentAnythingONNX.encode", **enc)

    def prompts(b: int) -> list[list[dict[str, Any]]]:
        return [[{"type": "point", "data": [float(x), float(y)], "label": 1}] for x, y in clicks(b)]

    if job["decoder_rows"]:
        for b in job["objects"]:
            objects = prompts(b)
            recorder = _Recorder(sam.decoder_session)
            sam.decoder_session = recorder
            for prompt in objects:
                sam.predict_masks(embedding, prompt)
            sam.decoder_session = recorder.session
            # Its decoder graph takes one object per call (batch fixed at 1).
            loop = "" if b == 1 else f", {b} calls (its decoder takes one object per call)"

            def engine(all_feeds: list[dict[str, np.ndarray]] = recorder.feeds) -> None:
                for f in all_feeds:
                    sam.decoder_session.run(None, f)

            def api(all_prompts: list[list[dict[str, Any]]] = objects) -> None:
                for prompt in all_prompts:
                    sam.predict_masks(embedding, prompt)

            rows.time("decoder", engine, f"{ENGINE}: decoder session.run{loop}", objects=b, **dec)
            rows.time(
                "decoder",
                api,
                f"{API}: SegmentAnythingONNX.predict_masks, best mask at frame size{loop}",
                objects=b,
                **dec,
            )

    one = prompts(1)[0]
    providers = sam.encoder_session.get_providers()
    rows.time(
        "predictor",
        lambda: sam.predict_masks(sam.encode(bgr), one),
        f"{API}: encode + predict_masks",
        objects=1,
        **both,
    )
    if job.get("reference_encoder"):
        # After the timing, and one model at a time (a ViT-B session holds GiBs),
        # so the reference neither counts in the rows' peak RSS nor doubles it.
        def outputs(model: Any) -> list[tuple[np.ndarray, list[np.ndarray]]]:
            found = []
            for frame in accuracy_frames():
                e = model.encode(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                masks = [model.predict_masks(e, p) for p in prompts(ACCURACY_CLICKS)]
                found.append((e["image_embedding"], masks))
            return found

        new = outputs(sam)
        del recorder
        sam = None  # the timing closures share this cell: this frees the sessions
        gc.collect()
        ref = outputs(
            SegmentAnythingONNX(job["reference_encoder"], str(decoder_path), providers="cpu")
        )
        rows.set_accuracy(
            agreement(
                [(r[0], n[0]) for r, n in zip(ref, new, strict=True)],
                [p for r, n in zip(ref, new, strict=True) for p in zip(r[1], n[1], strict=True)],
            )
        )
    return {
        "measurements": rows.json(),
        "info": {
            "session_s": round(session_s, 3),
            "samexporter_file": samexporter.__file__,
            "providers": providers,
        },
    }


def run_samexporter_quantize(job: Job) -> dict[str, Any]:
    """samexporter's ``--quantize-out``: onnxruntime's dynamic quantization, its settings."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.quantize import quantize_dynamic

    start = time.perf_counter()
    # The arguments samexporter.export_encoder passes for --quantize-out.
    quantize_dynamic(
        model_input=job["source"],
        model_output=job["output"],
        per_channel=False,
        reduce_range=False,
        weight_type=QuantType.QUInt8,
    )
    return {"seconds": round(time.perf_counter() - start, 3)}


def versions(job: Job) -> dict[str, Any]:
    """Versions of the libraries this interpreter imports (for the results' provenance)."""
    import importlib.metadata as md

    found: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in job["packages"]:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


# --------------------------------------------------------------------------- OpenVINO notebook


def notebook_preprocess(frame: np.ndarray, size: int) -> np.ndarray:
    """The notebook's ``preprocess_image``: resize longest side (PIL), normalise, NCHW, pad."""
    from segment_anything.utils.transforms import ResizeLongestSide

    from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    resized = ResizeLongestSide(size).apply_image(frame).astype(np.float32)
    x = (resized - np.array(SAM_PIXEL_MEAN, np.float32)) / np.array(SAM_PIXEL_STD, np.float32)
    x = x.transpose(2, 0, 1)[None]
    h, w = x.shape[-2:]
    return np.pad(x, ((0, 0), (0, 0), (0, size - h), (0, size - w))).astype(np.float32)


def notebook_postprocess(masks: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The notebook's ``postprocess_masks``: crop the padding, bilinear resize to the frame."""
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    h, w = ResizeLongestSide.get_preprocess_shape(*frame_size, masks.shape[-1])
    cropped = torch.from_numpy(np.ascontiguousarray(masks[..., :h, :w]))
    return torch.nn.functional.interpolate(
        cropped, size=frame_size, mode="bilinear", align_corners=False
    ).numpy()


def notebook_prompt(objects: int, size: int) -> dict[str, np.ndarray]:
    """One click per object plus SAM's (0, 0) padding point, in the encoder's frame."""
    from segment_anything.utils.transforms import ResizeLongestSide

    xy = clicks(objects)[:, None, :]
    coords = np.concatenate([xy, np.zeros((objects, 1, 2), np.float32)], axis=1)
    coords = ResizeLongestSide(size).apply_coords(coords, FRAME_SIZE).astype(np.float32)
    labels = np.tile(np.array([[1.0, -1.0]], np.float32), (objects, 1))
    return {"point_coords": coords, "point_labels": labels}


def _mask_predictor(sam: Any) -> Any:
    """The notebook's mask predictor: points in, the best mask at S×S and its score out.

    Built on segment_anything's own ONNX helper (its point embedding and
    single-mask selection); as in the notebook there is no mask input and no
    original-size input, and the masks are upscaled to the encoder's S×S.
    """
    import torch
    from segment_anything.utils.onnx import SamOnnxModel

    class MaskPredictor(SamOnnxModel):  # type: ignore[misc]
        @torch.no_grad()
        def forward(  # type: ignore[override]
            self,
            image_embeddings: torch.Tensor,
            point_coords: torch.Tensor,
            point_labels: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            prompts = self.model.prompt_encoder
            sparse = self._embed_points(point_coords, point_labels)
            h, w = image_embeddings.shape[-2:]
            dense = prompts.no_mask_embed.weight.reshape(1, -1, 1, 1)
            dense = dense.expand(point_coords.shape[0], -1, h, w)
            masks, scores = self.model.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=prompts.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            masks, scores = self.select_masks(masks, scores, point_coords.shape[1])
            size = (self.img_size, self.img_size)
            masks = torch.nn.functional.interpolate(
                masks, size=size, mode="bilinear", align_corners=False
            )
            return masks, scores

    return MaskPredictor(sam, return_single_mask=True).eval()


def run_notebook_build(job: Job) -> dict[str, Any]:
    """Convert the encoder and the mask predictor to OpenVINO IR as the notebook does."""
    import openvino as ov
    import torch

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    sam, _, loaded_with = load_upstream(job["model"], job["checkpoint"])
    size = int(sam.image_encoder.img_size)
    seconds: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings, as the notebook silences them
        start = time.perf_counter()
        encoder = ov.convert_model(
            sam.image_encoder,
            example_input=torch.zeros(1, 3, size, size),
            input=([1, 3, size, size],),
        )
        ov.save_model(encoder, out / "encoder.xml")
        seconds["encoder"] = time.perf_counter() - start
        del encoder
        start = time.perf_counter()
        embed = sam.prompt_encoder
        c = int(embed.embed_dim)
        h, w = (int(v) for v in embed.image_embedding_size)
        example = {
            "image_embeddings": torch.randn(1, c, h, w),
            "point_coords": torch.randint(0, size, (1, 5, 2)).float(),
            "point_labels": torch.randint(0, 4, (1, 5)).float(),
        }
        decoder = ov.convert_model(_mask_predictor(sam), example_input=example)
        ov.save_model(decoder, out / "decoder.xml")
        seconds["decoder"] = time.perf_counter() - start
    return {
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "info": {"loaded_with": loaded_with, "image_size": size},
    }


def run_notebook_quantize(job: Job) -> dict[str, Any]:
    """The notebook's NNCF post-training INT8 quantization of the encoder IR."""
    import nncf
    import openvino as ov

    from samedge.calibration import read_frames

    out = Path(job["out"])
    # The notebook calibrates on coco128; nothing can be downloaded here, so the
    # frames are samedge's own INT8 calibration frames (same source and count).
    frames = read_frames("synthetic", job["subset_size"]).calibration
    start = time.perf_counter()
    model = ov.Core().read_model(out / "encoder.xml")
    size = int(model.input(0).get_shape()[-1])
    dataset = nncf.Dataset(list(frames), functools.partial(notebook_preprocess, size=size))
    quantized = nncf.quantize(
        model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=job["subset_size"],
    )
    ov.save_model(quantized, out / "encoder_int8.xml")
    return {"seconds": round(time.perf_counter() - start, 3)}


_OV_PRECISIONS = {"bf16": "bf16", "f16": "fp16", "f32": "fp32"}


def run_notebook_time(job: Job) -> dict[str, Any]:
    """Compile with defaults (threads aside) and time the notebook's inference path."""
    import openvino as ov

    out = Path(job["out"])
    encoder_xml = out / ("encoder_int8.xml" if job["precision"] == "int8" else "encoder.xml")
    decoder_xml = out / "decoder.xml"
    core = ov.Core()
    # compile_model(model, "CPU") with the plugin's defaults, as the notebook does;
    # only the thread count is set when the bench asks for one.
    config = {} if job["threads"] is None else {"INFERENCE_NUM_THREADS": job["threads"]}
    start = time.perf_counter()
    encoder = core.compile_model(core.read_model(encoder_xml), "CPU", config)
    encoder_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    decoder = core.compile_model(core.read_model(decoder_xml), "CPU", config)
    decoder_compile_s = time.perf_counter() - start
    hint = encoder.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    precision = "int8" if job["precision"] == "int8" else _OV_PRECISIONS.get(hint, hint)
    threads = int(encoder.get_property("INFERENCE_NUM_THREADS"))
    rows = Rows(job, backend="openvino", precision=precision, threads=threads)
    build = job["build_s"]
    enc_files = (encoder_xml, encoder_xml.with_suffix(".bin"))
    dec_files = (decoder_xml, decoder_xml.with_suffix(".bin"))
    enc = {"build_s": build["encoder"] + encoder_compile_s, "engine_mib": _mib(*enc_files)}
    dec = {"build_s": build["decoder"] + decoder_compile_s, "engine_mib": _mib(*dec_files)}
    both = {
        "build_s": enc["build_s"] + dec["build_s"],
        "engine_mib": _mib(*enc_files, *dec_files),
    }

    size = int(encoder.input(0).get_shape()[-1])
    frame = bench_frame()
    x = notebook_preprocess(frame, size)
    out_embedding, out_masks = encoder.output(0), decoder.output(0)
    rows.time(
        "encoder", lambda: encoder(x), f"{ENGINE}: compiled encoder on preprocess_image()", **enc
    )

    def encode() -> np.ndarray:
        return encoder(notebook_preprocess(frame, size))[out_embedding]  # type: ignore[no-any-return]

    rows.time("encoder", encode, f"{API}: preprocess_image + compiled encoder", **enc)
    embedding = encode()
    dynamic_batch = decoder.input("point_coords").get_partial_shape()[0].is_dynamic

    def decode(prompt: dict[str, np.ndarray], post: bool) -> None:
        if dynamic_batch:
            calls = [prompt]
        else:  # a static batch of 1: one call per object
            n = len(prompt["point_labels"])
            calls = [{k: v[i : i + 1] for k, v in prompt.items()} for i in range(n)]
        for feeds in calls:
            masks = decoder({"image_embeddings": embedding, **feeds})[out_masks]
            if post:
                notebook_postprocess(masks, FRAME_SIZE)

    if job["decoder_rows"]:
        for b in job["objects"]:
            prompt = notebook_prompt(b, size)
            loop = "" if b == 1 or dynamic_batch else f", {b} calls"
            rows.time(
                "decoder",
                functools.partial(decode, prompt, False),
                f"{ENGINE}: compiled mask predictor (best mask at {size}x{size}){loop}",
                objects=b,
                **dec,
            )
            rows.time(
                "decoder",
                functools.partial(decode, prompt, True),
                f"{API}: mask predictor + postprocess_masks, best mask at frame size{loop}",
                objects=b,
                **dec,
            )

    one = notebook_prompt(1, size)

    def predict_frame() -> None:
        nonlocal embedding
        embedding = encode()
        decode(one, True)

    rows.time(
        "predictor",
        predict_frame,
        f"{API}: preprocess + encoder + mask predictor + postprocess",
        objects=1,
        **both,
    )
    # The same path compiled in f32 is the reference: after the timing, and one
    # compiled pair at a time, so it neither counts in nor doubles the peak RSS.
    info = {
        "compile_s": round(encoder_compile_s + decoder_compile_s, 3),
        "inference_precision_hint": hint,
        "performance_hint": str(encoder.get_property("PERFORMANCE_HINT")),
        "decoder_dynamic_batch": bool(dynamic_batch),
    }
    new = _notebook_outputs(encoder, decoder, size)
    # Drop the timed pair (the timing closures share these cells) before the next one.
    encoder = decoder = None
    gc.collect()
    f32 = {**config, "INFERENCE_PRECISION_HINT": "f32"}
    ref = _notebook_outputs(
        core.compile_model(core.read_model(out / "encoder.xml"), "CPU", f32),
        core.compile_model(core.read_model(decoder_xml), "CPU", f32),
        size,
    )
    rows.set_accuracy(
        agreement(
            [(r[0], n[0]) for r, n in zip(ref, new, strict=True)],
            [p for r, n in zip(ref, new, strict=True) for p in zip(r[1], n[1], strict=True)],
        )
    )
    return {"measurements": rows.json(), "info": info}


def _notebook_outputs(
    encoder: Any, decoder: Any, size: int
) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Embedding and one-click masks (at frame size) per accuracy frame, notebook path."""
    prompt = notebook_prompt(ACCURACY_CLICKS, size)
    found = []
    for frame in accuracy_frames():
        embedding = encoder(notebook_preprocess(frame, size))[encoder.output(0)]
        masks = []
        for i in range(ACCURACY_CLICKS):
            click = {k: v[i : i + 1] for k, v in prompt.items()}
            low = decoder({"image_embeddings": embedding, **click})[decoder.output(0)]
            masks.append(notebook_postprocess(low, FRAME_SIZE))
        found.append((embedding, masks))
    return found


# --------------------------------------------------------------------------- entry point

KINDS: dict[str, Callable[[Job], dict[str, Any]]] = {
    "pytorch": run_pytorch,
    "samexporter": run_samexporter,
    "samexporter-quantize": run_samexporter_quantize,
    "notebook-build": run_notebook_build,
    "notebook-quantize": run_notebook_quantize,
    "notebook-time": run_notebook_time,
    "versions": versions,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``main JOB.json RESULT.json``: run the job, write ``{"ok": ..., ...}``; exit 0 or 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.stderr.write("usage: peer_workers.py JOB.json RESULT.json\n")
        return 2
    job_path, result_path = Path(args[0]), Path(args[1])
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    job = json.loads(job_path.read_text())
    try:
        result = {"ok": True, **KINDS[job["kind"]](job)}
        code = 0
    except Exception as e:  # reported to the parent, which records the peer as skipped
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(e).__name__}: {e}".strip()}
        code = 1
    tmp = result_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
