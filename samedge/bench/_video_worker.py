"""``python -m samedge.bench._video_worker JOB.json RESULT.json``: one backend of ``bench --video``.

Started by :func:`samedge.bench.video.run_video_job`, one process per backend
configuration, so its engine builds, peak memory and crashes are its own.
"""

from __future__ import annotations

import sys

from samedge.bench.video import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
