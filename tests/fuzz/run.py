"""Run one fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.run TARGET``.

Options: ``--seconds N`` (default 10), ``--runs N`` (0 = no limit), ``--seed N``. The
corpus starts from the target's valid seeds plus every input kept under
``tests/fuzz/crashes/TARGET/``; a new finding is written there (``crash-<sha1>``) and the
exit status is non-zero. ``make fuzz`` runs every target for longer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["edge", "sync"]):
    from tests.fuzz import targets

CRASHES = Path(__file__).resolve().parent / "crashes"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=sorted(targets.TARGETS))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    kept = CRASHES / args.target
    kept.mkdir(parents=True, exist_ok=True)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    for i, seed in enumerate(targets.seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    for f in kept.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    flags = [f"-max_total_time={args.seconds}", f"-seed={args.seed}", "-max_len=4096",
             f"-artifact_prefix={kept}/", "-print_final_stats=1"]
    if args.runs:
        flags.append(f"-runs={args.runs}")
    atheris.Setup([sys.argv[0], *flags, str(corpus)], targets.TARGETS[args.target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
