"""``samedge cache``: list or clear the engine and compiled-blob cache."""

from __future__ import annotations

import argparse
import json

HELP = "list or clear cached TensorRT engines and OpenVINO compiled blobs"
DESCRIPTION = (
    "Engines and compiled blobs are cached under $SAMEDGE_CACHE_DIR (default "
    "~/.cache/samedge), one entry per graph and configuration. `samedge cache list` shows "
    "each with its model, backend, size, age and path; `samedge cache clear` removes them "
    "all, or one model's with --model (the next run rebuilds what it needs)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "clear"), help="what to do")
    p.add_argument("--model", help="clear only this model's entries (e.g. mobile_sam)")
    p.add_argument("--dir", help="cache root (default: $SAMEDGE_CACHE_DIR or ~/.cache/samedge)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def run(args: argparse.Namespace) -> int:
    from samedge.runtimes.cache import clear_cache, default_cache_root, list_cache

    root = getattr(args, "dir", None) or default_cache_root()
    model = getattr(args, "model", None)
    if args.action == "clear":
        entries = clear_cache(root, model=model)
        verb = "removed"
    else:
        entries = [e for e in list_cache(root) if model is None or e.model == model]
        verb = "cached"
    if getattr(args, "json", False):
        print(json.dumps({"root": str(root), verb: [e.to_dict() for e in entries]}, indent=2))
        return 0
    total = sum(e.size_bytes for e in entries)
    print(f"{root}: {len(entries)} entries {verb}, {_size(total)}")
    for e in entries:
        print(
            f"  {e.backend:<9} {e.model:<16} {_size(e.size_bytes):>10}  {_age(e.age_s):>6} old  "
            f"{e.detail}\n  {'':<9} {e.path}"
        )
    return 0
