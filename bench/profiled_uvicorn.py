"""uvicorn under cProfile in every thread (the event loop and the threadpool running sync routes), for bench/web.py.

Run: python bench/profiled_uvicorn.py STATS_FILE [uvicorn arguments...]

Each thread gets a profiler of its own when it first runs Python code, timed by the thread's own CPU clock (time
waiting for the interpreter lock, a database lock or the network does not count); on exit (SIGTERM, SIGINT) the
profiles are merged and written to STATS_FILE (``python -m pstats STATS_FILE``, or ``pstats.Stats(STATS_FILE)``).
``bench/web.py --profile STATS_FILE`` starts the server this way.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
    """The first profile event of a new thread: replace this hook by a profiler of the thread's own."""
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    profile.enable()


def _dump(path: str) -> None:
    stats: pstats.Stats | None = None
    with _lock:
        profiles = list(_profiles)
    for profile in profiles:
        profile.create_stats()
        if not getattr(profile, "stats", None):
            continue
        if stats is None:
            stats = pstats.Stats(profile)
        else:
            stats.add(profile)
    if stats is not None:
        stats.dump_stats(path)
        print(f"profile of {len(profiles)} threads written to {path}", file=sys.stderr)


def main() -> None:
    """Profile every thread, run uvicorn's command line, write the merged profile at exit."""
    path = sys.argv[1]
    sys.argv = ["uvicorn", *sys.argv[2:]]
    atexit.register(_dump, path)
    # uvicorn restores the handlers it found and raises the signal again once it has shut down: exit through atexit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    threading.setprofile(_start_in_thread)
    main_profile = cProfile.Profile(time.thread_time)
    _profiles.append(main_profile)
    main_profile.enable()
    from uvicorn.main import main as uvicorn_main

    try:
        uvicorn_main()
    except SystemExit:
        pass
    finally:
        main_profile.disable()


if __name__ == "__main__":
    main()
