"""The tensor names of samedge's graphs: a contract between exporters and runtimes.

The exporters write these names into ``encoder.onnx`` / ``decoder.onnx``; the
Predictor, calibration, benchmarks and every backend feed and read them. A
model directory built by any samedge version carries the same names, so
renaming one is a breaking change (CHANGELOG entry, a new exporter and a
loader that accepts both).

Encoder: ``image`` float32 ``[1, 3, S, S]`` (RGB 0..255, resized and padded;
normalisation is inside the graph) -> ``image_embeddings`` ``[1, C, h, w]``.

Decoder (``B`` objects, ``N`` points each): ``image_embeddings``,
``point_coords`` ``[B, N, 2]`` (x, y in the encoder's input frame),
``point_labels`` ``[B, N]`` (SAM's labels: 1 foreground, 0 background,
2/3 box corners, -1 padding), ``mask_input`` ``[B, 1, 4h, 4w]``,
``has_mask_input`` ``[B]`` -> ``low_res_masks`` ``[B, K, 4h, 4w]`` logits
and ``iou_predictions`` ``[B, K]``.

Extra features: a model may have more encoder outputs; each is also a decoder
input of the same name, passed through unchanged (the model spec's
``extra_features``). SAM-HQ's is :data:`HQ_FEATURES` ``[1, 32, 4h, 4w]``, its
early ViT features fused with the embedding (see ``samedge.exporters.sam_hq``).

Example:
    >>> from samedge import graph_names as names
    >>> names.DECODER_OUTPUTS
    ('low_res_masks', 'iou_predictions')
"""

from __future__ import annotations

__all__ = [
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "HAS_MASK_INPUT",
    "HQ_FEATURES",
    "IMAGE",
    "IMAGE_EMBEDDINGS",
    "IOU_PREDICTIONS",
    "LOW_RES_MASKS",
    "MASK_INPUT",
    "POINT_COORDS",
    "POINT_LABELS",
]

IMAGE = "image"
IMAGE_EMBEDDINGS = "image_embeddings"
POINT_COORDS = "point_coords"
POINT_LABELS = "point_labels"
MASK_INPUT = "mask_input"
HAS_MASK_INPUT = "has_mask_input"
LOW_RES_MASKS = "low_res_masks"
IOU_PREDICTIONS = "iou_predictions"
HQ_FEATURES = "hq_features"

ENCODER_INPUTS: tuple[str, ...] = (IMAGE,)
ENCODER_OUTPUTS: tuple[str, ...] = (IMAGE_EMBEDDINGS,)
DECODER_INPUTS: tuple[str, ...] = (
    IMAGE_EMBEDDINGS,
    POINT_COORDS,
    POINT_LABELS,
    MASK_INPUT,
    HAS_MASK_INPUT,
)
DECODER_OUTPUTS: tuple[str, ...] = (LOW_RES_MASKS, IOU_PREDICTIONS)
