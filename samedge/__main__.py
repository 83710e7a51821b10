"""``python -m samedge``: the ``samedge`` command line (:func:`samedge.cli.main`).

The same commands as the console script, for a process that knows only its
interpreter (``samedge bench --builds`` runs ``samedge build`` this way).
"""

from __future__ import annotations

from samedge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
