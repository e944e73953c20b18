"""Render evaluation JSONs (from :func:`gankd.evaluate.evaluate` / ``real_floor``) as a
markdown table and a PNG plot of FID against MACs and against measured latency.

Rows: every result; a JSON may hold one result, a list of them, ``{"results": [...]}``,
and an ``eval`` result may nest its ``real_floor``. Results of the same model under the
same protocol (e.g. several ``first_seed`` values) are merged into mean ± std. The
teacher (role ``teacher``, or a model another result names as its teacher) is marked.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path

from gankd.checkpoint import atomic_write_bytes

QUALITY = ("fid", "isc_mean", "kid_mean", "precision", "recall")
# precision/recall come from k-NN radii (k = 3) around each reference image: with fewer reference
# images than this the radii are too coarse for the numbers to mean much, and the table says so
MIN_PRC_REFERENCE = 500
# "this model has not learned the data": recall at most this and FID at least NOT_LEARNED_FID_X times the
# real floor (without a floor: precision at most NOT_LEARNED_RECALL too, i.e. no overlap either way)
NOT_LEARNED_RECALL = 0.02
NOT_LEARNED_FID_X = 10.0


def prc_unreliable(num_reference) -> bool:
    """Whether precision/recall over ``num_reference`` reference images are too coarse to read."""
    n = value_of(num_reference)
    return n is not None and n < MIN_PRC_REFERENCE


def not_learned(fid, recall, precision=None, floor_fid=None) -> str | None:
    """Why a model plainly has not learned the data (recall ~0 and FID many times the real floor),
    or None. Values may be (mean, std) pairs."""
    fid, recall, precision, floor_fid = (value_of(v) for v in (fid, recall, precision, floor_fid))
    if fid is None or recall is None or recall > NOT_LEARNED_RECALL:
        return None
    if floor_fid is not None and floor_fid > 0:
        if fid < NOT_LEARNED_FID_X * floor_fid:
            return None
        return f"recall {recall:.3f}, FID {fid:.4g} = {fid / floor_fid:.0f}× the real floor {floor_fid:.4g}"
    if precision is None or precision > NOT_LEARNED_RECALL:
        return None
    return f"recall {recall:.3f} and precision {precision:.3f}: no generated image near the data, nor the reverse"


PRC_NOTE = ("† precision/recall from k-NN radii over fewer than {min} reference images ({n} here): unreliable, "
            "do not read or compare them; score against a larger reference (--reference, --num-reference).")


def load_results(items: Iterable[str | Path | dict]) -> list[dict]:
    """Paths of JSON files (or dicts) -> flat list of result dicts (nested real floors included)."""
    out: list[dict] = []

    def add(obj, origin: str) -> None:
        if isinstance(obj, list):
            for o in obj:
                add(o, origin)
        elif isinstance(obj, dict) and "results" in obj and isinstance(obj["results"], list):
            add(obj["results"], origin)
        elif isinstance(obj, dict) and obj.get("kind") == "eval-i2i":
            out.append({**obj, "_origin": origin})
        elif isinstance(obj, dict) and obj.get("kind") in ("eval", "real-floor"):
            obj = dict(obj)
            floor = obj.pop("real_floor", None)
            obj.setdefault("_origin", origin)
            out.append(obj)
            if floor:
                add(floor, origin)
        else:
            raise ValueError(f"{origin} is not a gankd evaluation JSON (written by `gankd eval --out`)")

    for item in items:
        if isinstance(item, dict):
            add(item, "<dict>")
            continue
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation JSON {path} does not exist; write it with `gankd eval --out`")
        try:
            add(json.loads(path.read_text()), str(path))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); re-run `gankd eval --out {path}`") from e
    if not out:
        raise ValueError("no evaluation results to report")
    return out


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def _speed(r: dict, runtime: str, which: str) -> float | None:
    s = _get(r, "efficiency", "speed", runtime, which)
    if not s:
        return None
    return s["median_ms"] if which == "latency" else s["images_per_s"]


def _ratio(r: dict, runtime: str, which: str = "latency") -> dict | None:
    """The interleaved speed-up over the teacher ``{"median", "min", "max", ...}``, if measured."""
    return _get(r, "efficiency", "speed_vs_teacher", "ratio", runtime, which)


def row(r: dict) -> dict:
    """The numbers of one result that the table and plot show (None where not measured)."""
    q = r.get("quality", {})
    tf = r.get("teacher_fidelity", {})
    return {
        # results sharing a "group" (e.g. one benchmark cell over several seeds) merge into one row
        "name": r.get("group") or r.get("name") or r.get("model") or "?",
        "group": r.get("group"),
        "model": r.get("model"),
        "kind": r.get("kind"),
        "role": r.get("role"),
        "teacher": r.get("teacher"),
        "params": _get(r, "efficiency", "params"),
        "macs": _get(r, "efficiency", "macs"),
        "weights_bytes": _get(r, "efficiency", "weights_bytes"),
        **{k: q.get(k) for k in QUALITY},
        "class_acc": _get(r, "class_consistency", "accuracy"),
        "psnr_db": tf.get("psnr_db"),
        "ssim": tf.get("ssim"),
        "lpips": tf.get("lpips"),
        "eval_lpips": tf.get("evaluator_lpips_style"),
        "eager_ms": _speed(r, "eager", "latency"),
        "onnx_ms": _speed(r, "onnx", "latency"),
        "compile_ms": _speed(r, "compile", "latency"),
        "eager_ips": _speed(r, "eager", "throughput"),
        "onnx_ips": _speed(r, "onnx", "throughput"),
        # speed-ups over the teacher measured interleaved in one process (median, min, max over rounds)
        **{
            f"x_{rt}{suffix}": (_ratio(r, rt) or {}).get(stat)
            for rt in ("eager", "onnx")
            for suffix, stat in (("", "median"), ("_lo", "min"), ("_hi", "max"))
        },
        "extractor": _get(r, "protocol", "extractor"),
        "extractor_sha": _get(r, "protocol", "extractor_sha256_16"),
        "warnings": tuple(_get(r, "protocol", "warnings", default=[])),
        "num_generated": _get(r, "protocol", "num_generated"),
        "num_reference": _get(r, "protocol", "num_reference"),
        "reference": _get(r, "protocol", "reference"),
        "machine": (_get(r, "fingerprint", "cpu"), _get(r, "fingerprint", "torch_threads")),
    }


_PROTOCOL_KEYS = {"num_generated", "num_reference"}  # settings, not measurements: never averaged


def aggregate(results: list[dict]) -> list[dict]:
    """Rows, merging results of one model under one protocol: numbers become (mean, std, n)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        x = row(r)
        key = (
            x["kind"],
            x["group"] or x["model"] or x["name"],
            x["role"],
            x["extractor"],
            x["num_generated"],
            x["reference"],
        )
        groups.setdefault(key, []).append(x)
    rows = []
    teachers = {x["teacher"] for g in groups.values() for x in g if x["teacher"]}
    for g in groups.values():
        merged = dict(g[0])
        merged["n_runs"] = len(g)
        for k, v in g[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _PROTOCOL_KEYS:
                vals = [x[k] for x in g if isinstance(x.get(k), (int, float))]
                std = statistics.stdev(vals) if len(vals) > 1 else None
                merged[k] = (statistics.fmean(vals), std) if len(g) > 1 else v
        merged["is_teacher"] = merged["role"] == "teacher" or (merged["model"] in teachers)
        rows.append(merged)
    order = {"floor": 0}
    rows.sort(key=lambda x: (order.get(x["role"], 1), not x["is_teacher"], x["name"]))
    return rows


def value_of(v) -> float | None:
    if isinstance(v, tuple):
        return v[0]
    return v


def _fmt(v, spec: str = ".3g", scale: float = 1.0) -> str:
    if v is None:
        return "–"
    if isinstance(v, tuple):
        m, s = v
        return f"{m * scale:{spec}}" + (f" ± {s * scale:{spec}}" if s is not None else "")
    return f"{v * scale:{spec}}"


def _si(v) -> str:
    v = value_of(v)
    if v is None:
        return "–"
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.3g}"


def render_table(results: list[dict]) -> str:
    """Markdown: protocol summary, one row per model/floor, ratios against the teacher."""
    rows = aggregate(results)
    teacher = next((x for x in rows if x["is_teacher"]), None)
    cols = [
        "model",
        "role",
        "params",
        "MACs/img",
        "FID",
        "IS",
        "KID",
        "precision",
        "recall",
        "class acc",
        "PSNR→T dB",
        "SSIM→T",
        "LPIPS→T",
        "eval-dist→T",
        "eager b1 ms",
        "ONNX b1 ms",
        "eager img/s",
        "ONNX img/s",
        "× teacher (eager b1)",
        "× teacher (ONNX b1)",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    separate = False  # a speed-up from two separate timings (no interleaved record)
    coarse = sorted({value_of(x["num_reference"]) for x in rows if prc_unreliable(x["num_reference"])
                     and (x["precision"] is not None or x["recall"] is not None)})  # fmt: skip
    floors = [x for x in rows if x["role"] == "floor" and value_of(x["fid"]) is not None]
    unlearned = []
    for x in rows:
        speedups = [_speedup_cell(x, teacher, rt) for rt in ("eager", "onnx")]
        separate = separate or any(c.endswith("*") for c in speedups)
        name = ("**" + x["name"] + "** (teacher)") if x["is_teacher"] else x["name"]
        if x["n_runs"] > 1:
            name += f" ({x['n_runs']} runs)"
        floor = next((f for f in floors if (f["extractor"], f["reference"]) == (x["extractor"], x["reference"])),
                     floors[0] if floors else None)  # fmt: skip
        why = None if x["role"] == "floor" else not_learned(x["fid"], x["recall"], x["precision"],
                                                             floor["fid"] if floor else None)  # fmt: skip
        if why:
            name += " ⚠ not learned"
            unlearned.append(f"**This model has not learned the data:** {x['name']} ({why}).")
        dagger = " †" if prc_unreliable(x["num_reference"]) else ""
        cells = [
            name,
            x["role"] or "",
            _si(x["params"]),
            _si(x["macs"]),
            _fmt(x["fid"], ".4g"),
            _fmt(x["isc_mean"]),
            _fmt(x["kid_mean"], ".3g"),
            _fmt(x["precision"]) + (dagger if x["precision"] is not None else ""),
            _fmt(x["recall"]) + (dagger if x["recall"] is not None else ""),
            _fmt(x["class_acc"]),
            _fmt(x["psnr_db"], ".3g"),
            _fmt(x["ssim"], ".3f"),
            _fmt(x["lpips"]),
            _fmt(x["eval_lpips"]),
            _fmt(x["eager_ms"], ".3g"),
            _fmt(x["onnx_ms"], ".3g"),
            _fmt(x["eager_ips"], ".4g"),
            _fmt(x["onnx_ips"], ".4g"),
            *speedups,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _table_notes(rows, unlearned, coarse, separate)) + "\n"


def _speedup_cell(x: dict, teacher: dict | None, rt: str) -> str:
    """× teacher in runtime ``rt``: interleaved (median, min–max), else from two separate timings on the same
    machine (marked ``*``), else a dash."""
    med = value_of(x[f"x_{rt}"])
    if med:
        lo, hi = value_of(x[f"x_{rt}_lo"]), value_of(x[f"x_{rt}_hi"])
        return f"{med:.2f}× ({lo:.2f}–{hi:.2f})" if lo and hi else f"{med:.2f}×"
    if teacher is not None and x is not teacher and x["machine"] == teacher["machine"]:
        te, se = value_of(teacher[f"{rt}_ms"]), value_of(x[f"{rt}_ms"])
        if te and se:
            return f"{te / se:.2f}×*"
    return "–"


def _table_notes(rows: list[dict], unlearned: list[str], coarse: list, separate: bool) -> list[str]:
    """The lines under the table: protocols, models that learned nothing, caveats, machine, what × means."""
    protos = {(x["extractor"], x["extractor_sha"], x["num_generated"], x["num_reference"], x["reference"])
              for x in rows}  # fmt: skip
    machines = {x["machine"] for x in rows if x["machine"][0]}
    notes = [
        "",
        "Protocol: "
        + "; ".join(
            f"extractor {e} (sha256 {sha}), {value_of(g)} generated vs {value_of(n)} reference images ({ref})"
            for e, sha, g, n, ref in protos
            if e
        ),
    ]
    notes += unlearned
    if coarse:
        notes.append(PRC_NOTE.format(min=MIN_PRC_REFERENCE, n=", ".join(f"{n:g}" for n in coarse)))
    notes += sanity_notes(rows)
    notes.append(
        "Machine: "
        + "; ".join(f"{cpu}, {t} torch threads" for cpu, t in machines)
        + ". Latency = median at batch 1; img/s = throughput at the large batch. "
        "→T: to the teacher's image for the same inputs. LPIPS→T is the lpips package (only where "
        "its ImageNet trunk was present); eval-dist→T is an LPIPS-style distance on the evaluator's "
        "features, not LPIPS."
    )
    notes.append(
        "× teacher: the teacher's batch-1 time over the model's, measured interleaved with the teacher in one "
        "process (A B A B ...): median over rounds (min–max)."
        + (" * = from two separate timings, not interleaved: noisy (20-60 % between runs)." if separate else "")
    )
    if len(protos) > 1:
        notes.append("**Warning:** rows use different protocols; compare only rows with the same one.")
    return notes


def sanity_notes(rows: list[dict]) -> list[str]:
    """Report sanity: the real-data floor (or a warning that it is missing) and the protocol's
    warnings (a reference under 2,000 images, an extractor of another domain)."""
    floors = [x for x in rows if x["role"] == "floor" and value_of(x["fid"]) is not None]
    if floors:
        out = ["Real-data floor (real vs real, same protocol): "
               + "; ".join(f"FID {_fmt(x['fid'], '.4g')} ({x['name']})" for x in floors)]  # fmt: skip
    else:
        out = ["**Warning:** no real-data floor in these results: add one with `gankd eval --real-floor` "
               "(same protocol), or FID has no scale to read it against."]  # fmt: skip
    for w in sorted({w for x in rows for w in x["warnings"]}):
        out.append(f"**Warning:** {w}.")
    return out


def plot_quality_vs_speed(results: list[dict], title: str = "quality vs cost") -> bytes:
    """PNG bytes: FID against MACs/image (left) and against batch-1 latency (right; eager
    circles, ONNX Runtime triangles). Teacher as a star, real floor as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = aggregate(results)
    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    ax_m, ax_t = fig.subplots(1, 2)
    floors = [x for x in rows if x["role"] == "floor" and value_of(x["fid"]) is not None]
    models = [x for x in rows if x["role"] != "floor" and value_of(x["fid"]) is not None]

    def point(ax, x, y, r, marker, label=None):
        color = "tab:red" if r["is_teacher"] else "tab:blue"
        mk = "*" if r["is_teacher"] else marker
        size = 220 if r["is_teacher"] else 60
        ax.scatter([x], [y], marker=mk, s=size, c=color, zorder=3, label=label)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)

    for r in models:
        if value_of(r["macs"]):
            point(ax_m, value_of(r["macs"]), value_of(r["fid"]), r, "o")
    any_speed = False
    for r in models:
        if value_of(r["eager_ms"]):
            point(ax_t, value_of(r["eager_ms"]), value_of(r["fid"]), r, "o")
            any_speed = True
        if value_of(r["onnx_ms"]):
            ax_t.scatter([value_of(r["onnx_ms"])], [value_of(r["fid"])], marker="^", s=60, c="tab:green", zorder=3)
            any_speed = True
    for ax, xl in ((ax_m, "MACs per image"), (ax_t, "latency at batch 1 (ms)")):
        for f in floors:
            ax.axhline(value_of(f["fid"]), ls="--", c="gray", lw=1)
            ax.annotate(
                "real floor",
                (0.01, value_of(f["fid"])),
                xycoords=("axes fraction", "data"),
                fontsize=8,
                color="gray",
                va="bottom",
            )
        ax.set_xlabel(xl)
        ax.set_ylabel("FID (lower is better)")
        ax.grid(True, alpha=0.3)
        if ax.collections and all(v > 0 for c in ax.collections for v in c.get_offsets()[:, 0] if not math.isnan(v)):
            ax.set_xscale("log")
    if not any_speed:
        ax_t.text(
            0.5,
            0.5,
            "no speed measured\n(run gankd eval --speed)",
            ha="center",
            va="center",
            transform=ax_t.transAxes,
            color="gray",
        )
    else:
        from matplotlib.lines import Line2D

        ax_t.legend(
            handles=[
                Line2D([], [], marker="o", ls="", c="tab:blue", label="eager PyTorch"),
                Line2D([], [], marker="^", ls="", c="tab:green", label="ONNX Runtime"),
                Line2D([], [], marker="*", ls="", c="tab:red", ms=12, label="teacher (eager)"),
            ],
            fontsize=8,
            loc="best",
        )
    if not models:
        ax_m.text(0.5, 0.5, "no FID measured", ha="center", va="center", transform=ax_m.transAxes)
    ext = {x["extractor"] for x in rows if x["extractor"]}
    fig.suptitle(f"{title} (FID features: {', '.join(sorted(ext)) or '–'})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def summary_lines(result: dict) -> list[str]:
    """A short two-column text summary of one evaluation result (what ``gankd eval`` prints)."""
    x = row(result)
    p = result.get("protocol", {})
    lines = [f"{'model':<26}{x['model'] or x['name']}"]
    if p:
        lines.append(
            f"{'protocol':<26}{p['extractor']}, {p['num_generated']} generated vs "
            f"{p['num_reference']} reference ({p['reference']}), resize {p['resize']}"
        )
        where = f", {p['extractor_weights']}" if p.get("extractor_weights") else ""
        lines.append(f"{'extractor':<26}{p['extractor']} (sha256 {p.get('extractor_sha256_16')}{where})"
                     + (f": {p['extractor_reason']}" if p.get("extractor_reason") else ""))  # fmt: skip
        for w in p.get("warnings", []):
            lines.append(f"{'warning':<26}{w}")
    q = result.get("quality", {})
    for k, why in (q.get("skipped") or {}).items():
        lines.append(f"{k.upper() + ' skipped':<26}{why}")
    for key, label in (
        ("fid", "FID"),
        ("isc_mean", "IS"),
        ("kid_mean", "KID"),
        ("precision", "precision"),
        ("recall", "recall"),
    ):
        if key in q:
            std = q.get(key.replace("_mean", "_std")) if key.endswith("_mean") else None
            coarse = key in ("precision", "recall") and prc_unreliable(p.get("num_reference"))
            lines.append(f"{label:<26}{q[key]:.5g}" + (f" ± {std:.3g}" if std is not None else "")
                         + (f"  (unreliable: k-NN radii over {p['num_reference']} reference images, "
                            f"< {MIN_PRC_REFERENCE})" if coarse else ""))  # fmt: skip
    cc = result.get("class_consistency")
    if cc and "accuracy" in cc:
        lines.append(f"{'class consistency':<26}{cc['accuracy']:.4f} ({cc['num_samples']} samples)")
    elif cc and cc.get("skipped"):
        lines.append(f"{'class consistency':<26}skipped: {cc['skipped']}")
    tf = result.get("teacher_fidelity")
    if tf:
        lines.append(f"{'PSNR to teacher':<26}{tf['psnr_db']:.3f} dB ({tf['num_samples']} samples)")
        if tf.get("ssim") is not None:
            lines.append(f"{'SSIM to teacher':<26}{tf['ssim']:.4f}")
        for k, label in (("evaluator_lpips_style", "eval-distance"), ("lpips", "LPIPS")):
            if tf.get(k) is not None:
                lines.append(f"{label + ' to teacher':<26}{tf[k]:.4g}")
            elif tf.get(f"{k}_skipped"):
                lines.append(f"{label + ' to teacher':<26}skipped (weights absent; reason in the JSON)")
    e = result.get("efficiency")
    if e:
        lines.append(
            f"{'params / MACs/img':<26}{_si(e['params'])} / {_si(e['macs'])}, weights {e['weights_bytes'] / 1e6:.3g} MB"
        )
        for rt, sp in e.get("speed", {}).items():
            lat, thr = sp["latency"], sp["throughput"]
            fl = f" {lat['memory_format']}" if "memory_format" in lat else ""
            ft = f" {thr['memory_format']}" if "memory_format" in thr else ""
            lines.append(
                f"{rt + ' speed':<26}b1 median {lat['median_ms']:.3g} ms (p90 {lat['p90_ms']:.3g}){fl}, "
                f"b{thr['batch']} {thr['images_per_s']:.4g} img/s{ft}"
            )
        vt = e.get("speed_vs_teacher")
        if vt:
            p = vt.get("protocol", {})
            for rt, ratio in vt.get("ratio", {}).items():
                lat, thr = ratio["latency"], ratio["throughput"]
                lines.append(
                    f"{rt + ' × teacher':<26}b1 {lat['median']:.3g}× ({lat['min']:.3g}–{lat['max']:.3g}), "
                    f"b{p.get('big_batch', '?')} {thr['median']:.3g}× ({thr['min']:.3g}–{thr['max']:.3g}); "
                    f"interleaved, {p.get('rounds', '?')} rounds"
                )
        mem = e.get("peak_memory", {})
        if mem:
            lines.append(f"{'peak memory':<26}" + ", ".join(f"b{b} {m['bytes'] / 1e6:.3g} MB" for b, m in mem.items()))
    fl = result.get("real_floor")
    if fl and "fid" in fl.get("quality", {}):
        lines.append(f"{'real floor FID':<26}{fl['quality']['fid']:.5g}")
    why = not_learned(q.get("fid"), q.get("recall"), q.get("precision"), _get(fl or {}, "quality", "fid"))
    if why and result.get("kind") == "eval":
        lines.append(f"{'verdict':<26}this model has not learned the data ({why})")
    fp = result.get("fingerprint")
    if fp:
        lines.append(f"{'machine':<26}{fp['cpu']}, {fp['torch_threads']} threads, torch {fp['torch']}")
    return lines


def render_i2i_table(results: list[dict]) -> str:
    """Markdown table of image-to-image evaluations (``gankd eval`` on such models)."""
    sizes = sorted({int(k) for r in results for k in r["efficiency"]["model"]["macs"]})
    speed_sizes = sorted({int(k) for r in results for k in r.get("speed", {})})
    head = ["model", "test pairs", "params", *[f"MMACs@{s}" for s in sizes], "PSNR dB", "SSIM", "LPIPS",
            "PSNR→T dB", "gap to T dB", "FID", *[f"ONNX b1 ms@{s}" for s in speed_sizes]]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results[0]
    src = base["source_vs_target"]
    lines.append("| source (do nothing) | " + f"{base['num_pairs']} | – | " + "– | " * len(sizes)
                 + f"{src['psnr_db']['mean']:.2f} | {src['ssim']['mean']:.3f} | "
                 + (f"{src['lpips']['mean']:.3f}" if "lpips" in src else "–") + " | – | – | – |"
                 + " – |" * len(speed_sizes))  # fmt: skip
    for r in results:
        eff, vt = r["efficiency"]["model"], r["vs_target"]
        vteach = r.get("vs_teacher")
        cells = [r["model"], str(r["num_pairs"]), f"{eff['params']:,}",
                 *[f"{eff['macs'].get(str(s), float('nan')) / 1e6:,.1f}" for s in sizes],
                 f"{vt['psnr_db']['mean']:.2f} ± {vt['psnr_db']['std']:.2f}", f"{vt['ssim']['mean']:.3f}",
                 f"{vt['lpips']['mean']:.3f}" if "lpips" in vt else "–",
                 f"{vteach['psnr_db']['mean']:.2f}" if vteach else "–",
                 f"{r['psnr_gap_db']:+.2f}" if "psnr_gap_db" in r else "–",
                 f"{r['distribution']['fid']:.3g}" if r.get("distribution") else "–"]  # fmt: skip
        for sz in speed_sizes:
            sp = r.get("speed", {}).get(str(sz))
            cells.append(f"{sp['models']['model']['onnx']['latency']['median_ms']:.2f}"
                         if sp and "onnx" in sp["models"]["model"] else "–")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    ex = base.get("protocol", {})
    notes = [f"Test pairs of `{base['data']}` ({base['task']}); FID of outputs against targets with "
             f"`{ex.get('extractor', 'n/a')}` (sha256 {ex.get('extractor_sha256_16', 'n/a')})."]  # fmt: skip
    notes += [f"{k}: {v}" for k, v in base.get("skipped", {}).items()] + base.get("warnings", [])
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def plot_psnr_vs_macs(results: list[dict]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        macs = r["efficiency"]["model"]["macs"]
        m = macs[min(macs, key=int)]
        ax.scatter([m / 1e6], [r["vs_target"]["psnr_db"]["mean"]], s=30)
        ax.annotate(Path(r["model"]).parent.name or r["model"], (m / 1e6, r["vs_target"]["psnr_db"]["mean"]),
                    fontsize=7)  # fmt: skip
    ax.axhline(results[0]["source_vs_target"]["psnr_db"]["mean"], color="gray", ls="--", lw=1, label="source")
    ax.set_xscale("log")
    ax.set_xlabel("MMACs per image (trained size)")
    ax.set_ylabel("PSNR to target, dB (test pairs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_report(items: Iterable[str | Path | dict], out_dir: str | Path) -> dict:
    """Write ``report.md`` and ``quality_vs_speed.png`` into ``out_dir``; returns their paths.
    Image-to-image evaluations get their own table (PSNR/SSIM/LPIPS vs target and teacher)."""
    from gankd.fileio import writable_location

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; a report is a folder (report.md and quality_vs_speed.png): "
                              "choose a folder for --out")  # fmt: skip
    writable_location(out / "report.md")
    items = list(items)
    sources = [str(i) for i in items if not isinstance(i, dict)]
    results = load_results(items)
    kinds = {r.get("kind") == "eval-i2i" for r in results}
    if len(kinds) > 1:
        raise ValueError("report image-to-image and noise-to-image evaluations separately (one gankd report each)")
    if kinds == {True}:
        md = "# gankd evaluation report (image-to-image)\n\n" + render_i2i_table(results)
        md += "\n![PSNR against MACs](quality_vs_speed.png)\n"
        md_path, png_path = out / "report.md", out / "quality_vs_speed.png"
        atomic_write_bytes(md_path, md.encode())
        atomic_write_bytes(png_path, plot_psnr_vs_macs(results))
        return {"markdown": str(md_path), "plot": str(png_path), "rows": len(results)}
    md = "# gankd evaluation report\n\n" + render_table(results)
    md += "\n![FID against MACs and latency](quality_vs_speed.png)\n"
    if sources:
        md += "\nSources: " + ", ".join(f"`{s}`" for s in sources) + "\n"
    cmds = sorted({r["command"] for r in results if r.get("command")})
    if cmds:
        md += "\nCommands:\n\n" + "\n".join(f"    {c}" for c in cmds) + "\n"
    md_path, png_path = out / "report.md", out / "quality_vs_speed.png"
    atomic_write_bytes(md_path, md.encode())
    atomic_write_bytes(png_path, plot_quality_vs_speed(results))
    return {"markdown": str(md_path), "plot": str(png_path), "rows": len(aggregate(results))}
