"""Where a generator's batch-1 time goes in ONNX Runtime: per-op kernel time and the session's own overhead.

    python benchmarks/ort_profile.py [--models fmnist-teacher,fmnist-student-w025,fmnist-student-w0125]

Each model is exported by ``gankd export`` (fp32) and run ``--calls`` times at batch 1 on one thread with
ONNX Runtime's profiler on (CPU execution provider, default graph optimisations); the first ``--warmup``
calls are left out. Per call: the session's ``model_run`` time, the sum of the kernels' times by op type, and
the rest (the session's own work between kernels). It explains why a student with 15x fewer MACs is not 15x
faster at batch 1: the elementwise ops and the per-call overhead do not shrink with the width.

Writes benchmarks/results/deploy/ort_profile.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import shlex
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

from gankd.checkpoint import atomic_write_bytes, load_generator
from gankd.export import example_inputs, export_generator
from gankd.metrics.efficiency import count_macs, fingerprint, generator_inputs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "deploy" / "ort_profile.json"


def profile(name: str, calls: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="gankd-prof-") as tmp:
        path = export_generator(name, Path(tmp) / "g.onnx", force=True)["path"]
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.enable_profiling, so.profile_file_prefix = True, str(Path(tmp) / "prof")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        g = load_generator(name)
        feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), example_inputs(g, 1))}
        for _ in range(warmup + calls):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"][warmup:]
    start = runs[0]["ts"]
    ops: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            ops[e["args"]["op_name"]] += e["dur"]
    n = len(runs)
    run_us = sum(e["dur"] for e in runs) / n
    kernels = {k: v / n for k, v in sorted(ops.items(), key=lambda kv: -kv[1])}
    return {"model": name, "macs": count_macs(g, generator_inputs(g, 1))["macs"], "calls": n,
            "model_run_us": run_us, "kernels_us": kernels, "kernel_total_us": sum(kernels.values()),
            "overhead_us": run_us - sum(kernels.values())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="fmnist-teacher,fmnist-student-w025,fmnist-student-w0125")
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--load", default="quiet", help="what else ran on the machine (recorded)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [profile(m.strip(), args.calls, args.warmup) for m in args.models.split(",") if m.strip()]
    res = {"schema": "gankd.ort-profile/1", "rows": rows, "onnxruntime": ort.__version__, "threads": 1,
           "command": shlex.join(["python", "benchmarks/ort_profile.py", *sys.argv[1:]]), "load": args.load,
           "fingerprint": fingerprint()}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT, (json.dumps(res, indent=1) + "\n").encode())
    for r in rows:
        top = ", ".join(f"{k} {v:.0f}" for k, v in list(r["kernels_us"].items())[:4])
        print(f"{r['model']}: {r['model_run_us']:.0f} us per call; kernels {r['kernel_total_us']:.0f} ({top}); "
              f"overhead {r['overhead_us']:.0f}")


if __name__ == "__main__":
    main()
