"""EfficientViT-SAM's own PyTorch predictor as the ``"pytorch"`` peer (see ``peers.py``).

Run inside a peer worker process (``peer_workers.py`` hands a ``"pytorch"``
job for an ``efficientvit_sam_*`` model to :func:`run_efficientvit_pytorch`).
The peer is what an EfficientViT-SAM user runs: the ``efficientsam``
package's ``EfficientViTSamPredictor`` on the model its zoo builds, fp32,
threads set with ``torch.set_num_threads``. Its predictor differs from
SamPredictor's in three ways the rows follow:

* the encoder's input is ``sam.transform(frame)`` (resize longest side to the
  encoder's 512/1024 px, normalise, pad); the model has no ``preprocess``;
* prompts live in the prompt encoder's 1024-px frame and are mapped with the
  predictor's ``apply_coords_torch``, which reads the frame sizes
  ``set_image`` records (so the decoder rows run after a ``set_image``);
* masks are upsampled to that 1024-px frame, cropped, then to the frame
  (``EfficientViTSam.postprocess_masks``), inside ``predict`` / ``predict_torch``.

Rows: ``engine:`` encoder (``image_encoder`` on the transformed tensor) and
decoder (prompt encoder + mask decoder, low-resolution masks); ``api:``
``set_image``, ``predict`` / ``predict_torch`` (masks at frame size) and the
whole ``set_image + predict`` predictor.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

__all__ = ["is_efficientvit_sam", "run_efficientvit_pytorch"]


def is_efficientvit_sam(model: str) -> bool:
    """Whether registry name ``model`` is an EfficientViT-SAM size."""
    return model.startswith("efficientvit_sam_")


def run_efficientvit_pytorch(job: dict[str, Any]) -> dict[str, Any]:
    """``EfficientViTSamPredictor`` on the job's checkpoint; the rows of ``run_pytorch``."""
    import torch
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor
    from peer_workers import API, ENGINE, Rows, bench_frame, clicks

    from samedge.exporters import build_model
    from samedge.models import get_model_spec

    if job["threads"] is not None:
        torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    # samedge's builder is the package's create_efficientvit_sam_model (pretrained=False)
    # with the checkpoint loaded: the model a user's zoo call returns, without a download.
    sam = build_model(get_model_spec(job["model"]), job["checkpoint"])
    load_s = time.perf_counter() - start
    predictor = EfficientViTSamPredictor(sam)
    rows = Rows(job, backend="torch", precision="fp32", threads=torch.get_num_threads())
    frame = bench_frame()

    # The tensor set_image feeds the encoder: the model's own transform.
    x = sam.transform(frame)[None]

    def encoder() -> object:
        with torch.inference_mode():
            return sam.image_encoder(x)

    rows.time("encoder", encoder, f"{ENGINE}: image_encoder forward on sam.transform(frame)")
    rows.time(
        "encoder", lambda: predictor.set_image(frame), f"{API}: EfficientViTSamPredictor.set_image"
    )

    prompt_encoder, mask_decoder = sam.prompt_encoder, sam.mask_decoder
    for b in job["objects"]:
        xy = clicks(b)
        # After set_image: the mapping reads the frame sizes it recorded.
        coords = predictor.apply_coords_torch(torch.as_tensor(xy)[:, None, :])
        labels = torch.ones((b, 1), dtype=torch.int)

        def decoder(coords: torch.Tensor = coords, labels: torch.Tensor = labels) -> object:
            with torch.inference_mode():
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
            note = f"{API}: EfficientViTSamPredictor.predict, 3 masks at frame size"
        else:
            api = functools.partial(predictor.predict_torch, coords, labels, multimask_output=True)
            note = (
                f"{API}: EfficientViTSamPredictor.predict_torch, {b} objects x 3 masks "
                "at frame size"
            )
        rows.time("decoder", api, note, objects=b)

    point = clicks(1)

    def predict_frame() -> object:
        predictor.set_image(frame)
        return predictor.predict(
            point_coords=point, point_labels=np.ones(1, np.int64), multimask_output=True
        )

    rows.time(
        "predictor",
        predict_frame,
        f"{API}: EfficientViTSamPredictor.set_image + predict",
        objects=1,
    )
    return {
        "measurements": rows.json(),
        "info": {
            "loaded_with": (
                "samedge.exporters builder (efficientsam.sam_model_zoo."
                "create_efficientvit_sam_model, pretrained=False) + "
                "efficientsam EfficientViTSamPredictor"
            ),
            "load_s": round(load_s, 3),
        },
    }
