"""The one command-line interface every section script shares (``--scale``, ``--out``, ``--seed``, ``--force``).

Scripts call ``args = cli.parse(__doc__)``; the docstring's first line (post, section, table/figure)
becomes ``--help``. ``--scale sam3`` is accepted but stops with a clear message where a script has
no real-model path (it needs a local SAM3 checkpoint and the real datasets).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from common.io import RESULTS


def parse(doc: str | None, argv: list[str] | None = None, extra=None, sam3_ok: bool = False) -> argparse.Namespace:
    """Parse the shared flags (plus any added by ``extra(parser)``); sets torch's thread count. ``sam3_ok``: the
    script has a real-SAM3 path; without it ``--scale sam3`` stops with a message (after checking ``--checkpoint``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=("micro", "tiny", "sam3"),
                    help="micro (tests, seconds), tiny (the embedded default), sam3 (real model; needs --checkpoint)")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default: results/, micro: results/micro/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="recompute cached evaluations")
    ap.add_argument("--checkpoint", type=Path, default=None, help="sam3 scale: local SAM3 directory")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", "0")) or None,
                    help="torch CPU threads (default: torch's; 1 is faster when other jobs share the cores)")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = RESULTS if args.scale == "tiny" else RESULTS / args.scale
    if args.scale == "sam3":
        if args.checkpoint is None:
            ap.error("--scale sam3 needs --checkpoint DIR (a local copy of the real SAM3; nothing is downloaded)")
        if not args.checkpoint.is_dir() or not (args.checkpoint / "config.json").exists():
            ap.error(f"--checkpoint {args.checkpoint}: not a SAM3 directory (it needs config.json and the safetensors "
                     "weights of a local copy of facebook/sam3; nothing is downloaded)")
        if not sam3_ok:
            ap.error(f"{ap.prog} runs at micro / tiny scale only; its real-SAM3 path (scale sam3) is not built yet")
    return args
