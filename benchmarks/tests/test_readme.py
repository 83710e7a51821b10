"""README's generated blocks (performance with goals, samedge-tiny accuracy); markdown views."""

from __future__ import annotations

import json
import logging
import math

import pytest
from readme import (
    EVAL_BEGIN,
    EVAL_END,
    README_BEGIN,
    README_END,
    rerender_markdown,
    update_readme,
)

from samedge.errors import InputError
from samedge.evaluate import EvalReport, save_eval
from tests.bench._rows import _report, _row

README = """# project

Intro text.

## Performance

Numbers below.

{begin}
old table
{end}

## After

More text, untouched.
"""

EVAL_README = f"""# project

{README_BEGIN}
{README_END}

## samedge-tiny

Trained for a while.

{EVAL_BEGIN}
| prompt | all |
| 1 click | 0.123 |
{EVAL_END}

Tail.
"""


def _eval_report() -> EvalReport:
    prompts = ("click", "2 clicks", "3 clicks", "box")
    return EvalReport(
        miou=dict(zip(prompts, (0.705, 0.731, 0.746, 0.862), strict=True)),
        by_size={
            "click": {"small": 0.512, "medium": 0.797, "large": 0.839},
            "2 clicks": {"small": 0.578, "medium": 0.8, "large": 0.85},
            "3 clicks": {"small": 0.6, "medium": 0.81, "large": 0.86},
            "box": {"small": math.nan, "medium": 0.9, "large": 0.95},
        },
        counts={"small": 0, "medium": 400, "large": 590},
        objects=990,
        scenes=200,
        seed=2026,
        photos=True,
        model="samedge_tiny",
        backend="openvino",
    )


def test_readme_block_rewrite_is_idempotent_and_local(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    rows = [
        _row(gflops=77.5, fraction_of_peak=0.4, accuracy={"mean_iou_vs_fp32": 0.97}),
        _row(part="decoder", objects=1, ms=2.0),
        _row(part="decoder", objects=16, ms=6.0),
        _row(part="predictor", objects=1, ms=15.0),
    ]
    _report(rows).save(results / "test-2c", "bench_mobile_sam")
    readme = tmp_path / "README.md"
    readme.write_text(README.format(begin=README_BEGIN, end=README_END))
    before, after = (
        readme.read_text().split(README_BEGIN)[0],
        readme.read_text().split(README_END)[1],
    )
    assert update_readme(readme, results) is True
    text = readme.read_text()
    assert text.split(README_BEGIN)[0] == before
    assert text.split(README_END)[1] == after
    block = text.split(README_BEGIN)[1].split(README_END)[0]
    assert "old table" not in block
    assert (
        "| mobile_sam | fp32 | openvino | bf16 | 10.0 | 40% | 2.00 | 6.00 | 15.0 | 0.970 |" in block
    )
    assert "[bench_mobile_sam.json](benchmarks/results/test-2c/bench_mobile_sam.json)" in block
    # Measurements only: the project's goal verdicts are not the README's.
    assert "goal" not in block.lower()
    assert "PyTorch predictor" not in block  # no goal verdicts in the README
    assert update_readme(readme, results) is False
    assert readme.read_text() == text


def test_readme_flags_a_fraction_above_peak(tmp_path):
    results = tmp_path / "results"
    _report([_row(fraction_of_peak=1.09)]).save(results / "m", "bench_mobile_sam")
    readme = tmp_path / "README.md"
    readme.write_text(README.format(begin=README_BEGIN, end=README_END))
    update_readme(readme, results)
    block = readme.read_text().split(README_BEGIN)[1]
    assert "| 109% (!) |" in block
    assert "the peak GEMM was measured too low" in block


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(InputError, match="marker"):
        update_readme(readme, tmp_path)
    readme.write_text(f"{README_END}\n{README_BEGIN}\n")
    with pytest.raises(InputError, match="before"):
        update_readme(readme, tmp_path)
    readme.write_text(f"{README_BEGIN}\n{README_END}\n{EVAL_END}\n{EVAL_BEGIN}\n")
    with pytest.raises(InputError, match="before"):
        update_readme(readme, tmp_path)
    with pytest.raises(InputError, match="not a file"):
        update_readme(tmp_path / "missing.md", tmp_path)


def test_eval_block_from_an_eval_file(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    command = "samedge eval samedge_tiny --scenes 200 --output x.json"
    save_eval(_eval_report().to_dict(), results / "m1" / "eval_samedge_tiny.json", command=command)
    readme = tmp_path / "README.md"
    readme.write_text(EVAL_README)
    assert update_readme(readme, results) is True
    text = readme.read_text()
    assert text.startswith(f"# project\n\n{README_BEGIN}\n")
    assert text.endswith(f"{EVAL_END}\n\nTail.\n")
    assert "Trained for a while." in text
    block = text.split(EVAL_BEGIN)[1].split(EVAL_END)[0]
    assert "0.123" not in block
    assert f"`{command}`" in block
    assert "[eval_samedge_tiny.json](benchmarks/results/m1/eval_samedge_tiny.json)" in block
    assert "200 scenes (seed 2026, with held-out photo backgrounds), 990 objects" in block
    assert "| prompt | all | small < 500 px | medium | large ≥ 4000 px |" in block
    assert "| 1 click | 0.705 | 0.512 | 0.797 | 0.839 |" in block
    assert "| 3 clicks | 0.746 | 0.600 | 0.810 | 0.860 |" in block
    assert "| box | 0.862 | n/a | 0.900 | 0.950 |" in block  # no small objects: nan -> null
    assert "goal" not in block.lower()
    assert update_readme(readme, results) is False


def test_eval_block_without_a_file_says_what_to_run(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(EVAL_README)
    update_readme(readme, tmp_path)
    block = readme.read_text().split(EVAL_BEGIN)[1].split(EVAL_END)[0]
    assert "| 1 click |" not in block
    assert "No result file yet: run `samedge eval samedge_tiny --scenes 200 --output" in block


def test_a_malformed_eval_file_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "m1").mkdir()
    data = _eval_report().to_dict()
    del data["by_size"]
    (tmp_path / "m1" / "eval_samedge_tiny.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(EVAL_README)
    with caplog.at_level(logging.WARNING, logger="samedge.bench.readme"):
        update_readme(readme, tmp_path)
    assert "missing by_size" in caplog.text
    assert "No result file yet" in readme.read_text()


def test_eval_file_without_eval_markers_is_logged_not_lost(tmp_path, caplog):
    save_eval(_eval_report().to_dict(), tmp_path / "m1" / "eval_samedge_tiny.json", command="x")
    readme = tmp_path / "README.md"
    readme.write_text(README.format(begin=README_BEGIN, end=README_END))
    with caplog.at_level(logging.WARNING, logger="samedge.bench.readme"):
        assert update_readme(readme, tmp_path) is True
    assert "no <!-- eval:begin -->" in caplog.text


def test_rerender_markdown_rewrites_stale_views_only(tmp_path):
    report = _report([_row(fraction_of_peak=0.5)])
    paths = report.save(tmp_path / "m", "bench_mobile_sam")
    assert rerender_markdown(tmp_path) == []  # already what the JSON gives
    paths["markdown"].write_text("# an older view, without goals\n")
    assert rerender_markdown(tmp_path) == [paths["markdown"]]
    png = paths["plot"].read_bytes()
    paths["plot"].write_bytes(b"an older plot")
    assert rerender_markdown(tmp_path) == [paths["plot"]]
    assert paths["plot"].read_bytes() == png
    text = paths["markdown"].read_text()
    assert "## Goals" not in text
    assert "![latency vs accuracy](bench_mobile_sam.png)" in text
