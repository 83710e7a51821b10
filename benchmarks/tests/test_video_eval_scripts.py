"""The video evaluation scripts: the held-out DAVIS writer and the markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import video_eval_table
import write_davis_scenes

from samedge.davis import read_davis
from samedge.evaluate_video import EventScore, ObjectScore, VideoEvalReport


def test_write_davis_scenes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "held"
    args = [str(out), "--sequences", "1", "--frames", "4", "--size", "48", "64", "--no-photos"]
    assert write_davis_scenes.main(args) == 0
    data = read_davis(out)
    assert len(data) == 1
    assert len(data.sequences[0]) == 4
    assert data.sequences[0].events is not None
    assert write_davis_scenes.main(args) == 1  # exists: refused, not replaced
    assert "--force" in capsys.readouterr().err
    assert write_davis_scenes.main([*args, "--force"]) == 0


def _saved(tracker: str, jf: float) -> dict:
    obj = ObjectScore("s", 1, jf, jf, 1.0, 1.0, 5)
    events = {"occlusion": EventScore(jf - 0.1, jf - 0.1, 7, 1), "all": EventScore(jf, jf, 5, 1)}
    report = VideoEvalReport((obj,), events, 0.5, 4, 1, 7, tracker=tracker, model="m")
    return {**report.to_dict(), "command": f"samedge eval m --tracker {tracker}"}


def test_table_puts_trackers_side_by_side(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_saved("reprompt", 0.4)))
    b.write_text(json.dumps(_saved("memory", 0.6)))
    text = video_eval_table.render([a, b])
    assert "| | reprompt (box) | memory (box) |" in text
    assert "| **J&F** | **0.400** | **0.600** |" in text
    assert "| occlusion | 0.300 (7) | 0.500 (7) |" in text
    assert "| reentry | – | – |" in text
    assert "samedge eval m --tracker memory" in text
