"""A Ctrl-C inside an SDK's native import must interrupt, not read as "not installed".

A SIGINT that lands inside a native extension's import can come out of the
import as an ``ImportError`` (the extension's init fails because a signal
check raised inside it: OpenVINO 2026.4 did this about 0.35 s into
``samedge run``). Code that takes ``ImportError`` to mean "not installed"
then carries on with another backend and the run completes, exit 0.
:func:`import_module` notices the signal and raises :class:`KeyboardInterrupt`
instead. (SIGTERM's counterpart, which makes a command unwind, is the CLI's
``sigterm_unwinds``.)
"""

from __future__ import annotations

import importlib
import signal
import threading
from types import FrameType, ModuleType

__all__ = ["import_module"]


def import_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``, where a Ctrl-C during it always interrupts.

    For the import, a SIGINT handler records the signal and raises
    :class:`KeyboardInterrupt` as Python's own does. If the import then fails
    in any way (a native init may have turned the interrupt into
    ``ImportError``), or even completes after the signal, the recorded signal
    wins and :class:`KeyboardInterrupt` is raised. Outside the main thread, or
    where an application installed its own SIGINT handler, this is a plain import.

    Raises:
        KeyboardInterrupt: Ctrl-C arrived during the import.
        ImportError: the module is not installed or failed to import.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        return importlib.import_module(name)
    interrupted = False

    def record(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, record)
    try:
        module = importlib.import_module(name)
    except BaseException as e:
        if interrupted and not isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt from e
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
    return module
