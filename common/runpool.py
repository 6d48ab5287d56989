"""Train and score many recipes at once, in parallel worker processes (Post 01 §9–§10 sweeps).

A sweep (the α ladder of Table 9.15, the rank sweep of Table 9.2) is many independent runs that differ
in one knob. :func:`train_and_score` returns ``{name: (RunResult, scores)}``: finished runs and cached
evaluations are read straight from disk; the missing ones are trained (``common.runs.train``) and
scored (``common.evaluate.evaluate_run``, only the ``suites`` asked for) in ``jobs`` worker
processes, each with one torch thread — on a small CPU, separate single-threaded runs use the
cores better than one multi-threaded run. Every run keeps its own cached run directory, so the result
is the same as training them one after another.

The base model and the worlds are made ready in the calling process first, so workers never race to
build them. Workers are spawned (not forked: torch's thread pools do not survive a fork) and get the
caller's environment, ``$SAM3_REPRO_RUNS`` included (tests point it at a temporary directory).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence


def default_jobs() -> int:
    """``$JOBS`` if set, else the number of CPUs (at least 1)."""
    return max(1, int(os.environ.get("JOBS", "0")) or (os.cpu_count() or 1))


def _eval_cache(name: str, scale: str, suites: Sequence[str]) -> Path:
    from common.evaluate import eval_cache_path

    return eval_cache_path(name, scale, suites, train_if_missing=False)


def is_cached(name: str, scale: str, suites: Sequence[str]) -> bool:
    """Whether recipe ``name`` is trained and its ``suites`` evaluation is on disk."""
    from common import runs

    if name == "base":
        return False  # cheap: scored in the calling process
    return runs.trained(name, scale) and _eval_cache(name, scale, suites).exists()


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


#: Seconds between the progress lines of runs training in worker processes.
PROGRESS_EVERY_S = 30.0


def progress_line(name: str, scale: str) -> str | None:
    """``name: step s/total, loss, ETA`` of a run in progress, read from its run directory (config.json and the
    last line of log.jsonl); None before its first logged step."""
    from common import runs
    from common.io import read_json
    from common.train import read_log

    d = runs.run_dir(name, scale)
    log = read_log(d / "log.jsonl") if (d / "log.jsonl").exists() else []
    if not log or not (d / "config.json").exists():
        return None
    total = read_json(d / "config.json")["recipe"].get("steps") or 0
    last = log[-1]
    step, el = int(last["step"]), float(last.get("elapsed_s", 0.0))
    loss = last.get("loss_per_sample", last.get("loss"))
    eta = el / max(step, 1) * max(total - step, 0)
    return f"{name}: step {step}/{total}, loss {loss:.3f}, ETA {eta / 60:.1f} min"


def _work(name: str, scale: str, suites: tuple[str, ...]) -> tuple[str, float]:
    from common import evaluate, runs

    t0 = time.time()
    runs.train(name, scale, progress=False)
    evaluate.evaluate_run(name, scale, suites)
    return name, time.time() - t0


def train_and_score(names: Sequence[str], scale: str, suites: Sequence[str] = ("watch", "saco", "lvis"),
                    jobs: int | None = None, threads_per_job: int = 1, verbose: bool = True) -> dict:
    """``{name: (RunResult | None, scores)}`` for recipes ``names`` ("base" gives ``(None, scores)``)."""
    from common import evaluate, runs
    from common.worlds import ensure_worlds

    suites = tuple(suites)
    names = list(dict.fromkeys(names))
    ensure_worlds(scale=scale)
    todo = [n for n in names if n != "base" and not is_cached(n, scale, suites)]
    jobs = min(default_jobs() if jobs is None else max(1, jobs), max(1, len(todo)))
    if todo:
        runs.base_state(scale)  # train/verify the base once, here, not in every worker
        if verbose:
            print(f"training+scoring {len(todo)} run(s) on {jobs} worker(s): {', '.join(todo)}", flush=True)
        t0 = time.time()
        if jobs == 1:
            for n in todo:
                _, dt = _work(n, scale, suites)
                if verbose:
                    print(f"  {n}: {dt:.0f} s", flush=True)
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(threads_per_job,)) as pool:
                futs = {pool.submit(_work, n, scale, suites): n for n in todo}
                pending = set(futs)
                while pending:
                    done, pending = wait(pending, timeout=PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
                    for f in done:
                        n, dt = f.result()
                        if verbose:
                            print(f"  {n}: {dt:.0f} s (at {time.time() - t0:.0f} s)", flush=True)
                    if verbose and not done:  # a periodic line per run in progress: step, loss, ETA
                        lines = [line for line in (progress_line(futs[f], scale) for f in pending) if line]
                        if lines:
                            print(f"  [{time.time() - t0:.0f} s] " + "; ".join(lines), flush=True)
    out = {}
    for n in names:
        scores = evaluate.evaluate_run(n, scale, suites)
        out[n] = (None if n == "base" else runs.train(n, scale, progress=False), scores)
    return out
