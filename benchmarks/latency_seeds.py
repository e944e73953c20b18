"""More seeds of the latency-layout student, after its recipe was chosen on val (benchmarks/deploy.py).

    python benchmarks/latency_seeds.py [--seeds 0,1] [--samples 2000]

Trains (or reuses) the chosen recipe's run at each seed (``deploy.latency_run``: width 1/4, ``--student-layout
latency``, two threads) and scores each selected student the way the deploy table scores fp32 models: FID of
``--samples`` samples (seeds 0..) against the Fashion-MNIST test split under the domain's extractor. The seeds
after 0 ran after the choice; they report its spread, they choose nothing.

Writes benchmarks/results/deploy/latency_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys

from deploy import OUT, _write_json, latency_run

from gankd.adapter import adapter_for
from gankd.checkpoint import load_generator
from gankd.fileio import portable_path
from gankd.metrics.efficiency import fingerprint
from gankd.precision import quality_gate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    chosen = json.loads((OUT / "results.json").read_text())["latency_choice"]["chosen"]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        run = latency_run(chosen, seed=seed)
        gen = adapter_for(load_generator(run / "student")).eval()
        gate = quality_gate(gen, gen.call_positional, run / "student", float("inf"), args.samples)
        rows.append({"seed": seed, "run": portable_path(run), "fid_vs_test": gate["fid_fp32"],
                     "reference": gate["reference"], "extractor": gate["extractor"]})  # fmt: skip
        print(f"seed {seed}: FID {gate['fid_fp32']:.3f}", flush=True)
    fids = [r["fid_vs_test"] for r in rows]
    _write_json(OUT / "latency_seeds.json", {
        "schema": "gankd.latency-seeds/1", "recipe": chosen, "rows": rows, "samples": args.samples,
        "fid_mean": statistics.mean(fids), "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
        "command": shlex.join(["python", "benchmarks/latency_seeds.py", *sys.argv[1:]]),
        "fingerprint": fingerprint()})  # fmt: skip


if __name__ == "__main__":
    main()
