"""``python -m samedge.bench._worker JOB.json RESULT.json``: run one benchmark job.

Started by :func:`samedge.bench.measure.run_job`, one process per job, so each
job's build time, peak memory and crashes are its own.
"""

from __future__ import annotations

import sys

from samedge.bench.measure import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
