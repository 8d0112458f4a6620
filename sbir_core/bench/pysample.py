"""A tiny sampling profiler for the app server (no py-spy here): where its CPU goes per pen lift.

    python -m sbir_core.bench.pysample OUT.json -m streamlit run app.py ...

Runs the given module with a thread that samples every thread's Python stack every few ms, and on
exit (SIGTERM included) writes the functions seen by self and inclusive times (ms; each sweep weighted by the time since the previous one, since a busy server delays the
sampler), per thread kind, to OUT.json. Used by `sbir_core.bench.browser_profile --server-profile`.
"""
from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import threading
import time
from collections import Counter

INTERVAL_S = 0.003


def _where(code) -> str:
    f = code.co_filename
    for cut in ("site-packages/", "/wt22b/", "/main/"):
        if cut in f:
            f = f.split(cut, 1)[1]
            break
    return f"{code.co_name} ({f}:{code.co_firstlineno})"


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    me = None
    self_c, incl, threads = Counter(), Counter(), Counter()
    state = {"n": 0, "running": True}

    def sample() -> None:
        reset = out + ".reset"
        last = time.perf_counter()
        while state["running"]:
            t0 = time.thread_time()
            now = time.perf_counter()
            w, last = round((now - last) * 1000, 2), now     # ms this sweep stands for: a busy server delays
                                                              # the sampler (the GIL), so sweeps are weighted
            if os.path.exists(reset):              # the profiler's warm-up is over: count from here
                self_c.clear(), incl.clear(), threads.clear()
                state["n"] = 0
                os.remove(reset)
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                stack, f = [], frame
                while f is not None:
                    stack.append(f.f_code)
                    f = f.f_back
                top = _where(stack[0])
                if "wait (threading" in top or "select (" in top or "_run_once" in top and "asyncio" in top:
                    continue                      # an idle thread: not CPU
                if top.startswith(("wait ", "select ", "poll ", "sleep ", "_worker (")) or "acquire" in top:
                    continue
                names = {c.co_name for c in stack}
                if "task" in names and any("watcher" in c.co_filename for c in stack):
                    continue                      # a polling file watcher, asleep between polls
                kind = ("script thread" if "_run_script_thread" in names else
                        "event loop" if "run_forever" in names else "other threads")
                threads[kind] += w
                self_c[(kind, top)] += w
                for c in set(stack):
                    incl[(kind, _where(c))] += w
            state["n"] += 1
            time.sleep(max(0.0, INTERVAL_S - (time.thread_time() - t0)))

    def dump(*_: object) -> None:
        state["running"] = False
        data = {"interval_s": INTERVAL_S, "sweeps": state["n"], "unit": "ms (sweeps weighted by the time since the last)",
                "ms_by_thread_kind": {k: round(v) for k, v in threads.items()},
                "self": [(k[0], k[1], round(v)) for k, v in self_c.most_common(60)],
                "inclusive": [(k[0], k[1], round(v)) for k, v in incl.most_common(200)]}
        with open(out, "w") as fh:
            json.dump(data, fh, indent=0)

    def on_term(*_: object) -> None:
        dump()
        sys.exit(0)
    atexit.register(dump)
    signal.signal(signal.SIGTERM, on_term)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    me = th.ident
    sys.argv = args[1:] if args[0] == "-m" else args
    if args[0] == "-m":
        sys.argv = [args[1]] + args[2:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
