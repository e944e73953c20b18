"""Measure the shipped networks with gankd's own code and write their model cards.

    python benchmarks/pretrained_cards.py [--num-samples 10000]

For pretrained/fmnist-teacher: FID, IS, KID, precision/recall (evaluator, 10k samples from
seeds 0..9999 vs the 10k test split), class consistency (overall and per class), the
real-data floor under the same protocol, params/MACs and measured speed. For the two
classifiers: test accuracy. Each folder gets metrics.json (every number, the command)
and MODEL_CARD.md rendered from it, with the sha256 of every weights file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from gankd.checkpoint import atomic_write_bytes, file_sha256, load_classifier, pretrained_dir
from gankd.config import load_json
from gankd.data import FMNIST_CLASSES, load_dataset
from gankd.evaluate import Pairs, Quality, Reference, Speed, evaluate, save_result
from gankd.metrics.fidelity import classifier_accuracy

ROOT = Path(__file__).resolve().parents[1]

# How each network was trained (the commands that made the shipped weights).
TRAINING = {
    "fmnist-teacher": [
        "gankd train-teacher --out runs/teacher --steps 60000 --max-minutes 5 --set generator.base_channels=32 "
        "--set 'generator.channel_mults=[16,8,4,1]' --set discriminator.base_channels=32 --set threads=4 "
        "--set sample_every=2500 --set checkpoint_every=2500 --seed 0 --device cuda",
        "cp runs/teacher/generator/{config.json,model.safetensors,discriminator.safetensors} "
        "pretrained/fmnist-teacher/",
    ],
    "fmnist-evaluator": [
        "gankd train-classifier --family vgg --out runs/fmnist-evaluator --epochs 30 --seed 0 "
        "--set model.base_channels=32 --set 'model.convs_per_stage=[1,2,2]' --set threads=4 --device cuda",
        "cp runs/fmnist-evaluator/{config.json,model.safetensors} pretrained/fmnist-evaluator/",
    ],
    "fmnist-perceptual": [
        "gankd train-classifier --family resnet --out runs/fmnist-perceptual --epochs 3 --seed 1 "
        "--set model.base_channels=16 --set threads=1",
        "cp runs/fmnist-perceptual/{config.json,model.safetensors} pretrained/fmnist-perceptual/",
    ],
    "wesnoth-restore64": [
        "gankd train-teacher --data wesnoth-units --resolution 64 --task denoise+inpaint --batch-size 16 "
        "--max-minutes 40 --out runs/restore/teacher",
        "cp runs/restore/teacher/generator/{config.json,model.safetensors,discriminator.safetensors} "
        "pretrained/wesnoth-restore64/",
    ],
}
# Where each network was trained (the GPU runs: benchmarks/gpu_pretrained.sh, logs in benchmarks/results/gpu/).
HARDWARE = {
    "fmnist-teacher": "one NVIDIA H200 (a GPU lent for one session; `benchmarks/gpu_pretrained.sh`); the 5-minute "
    "budget stopped it there. The same command without `--device cuda --max-minutes 5` and with "
    "`--steps` set to that step runs on a CPU (not measured end to end: at the ~1.4 s per training step "
    "measured for a 128-channel DCGAN G+D at batch 64 on a 2-core CPU it would take ~4 h)",
    "fmnist-evaluator": "one NVIDIA H200 (`benchmarks/gpu_pretrained.sh`, under 5 min, beside the teacher run). "
    "Two candidates were "
    "trained side by side with a rule fixed beforehand: ship the cheaper one (convs [1,2,2]) if it reaches 93% "
    "test accuracy, else the wider [2,2,2] one (benchmarks/results/gpu/: 0.9395 vs 0.9400). Its CPU time was "
    "not measured",
    "fmnist-perceptual": "a 2-core CPU",
    "wesnoth-restore64": "one CPU thread (OMP_NUM_THREADS=1) of a 2-core machine, with another 1-thread training "
    "beside it the whole time",
}
ROLE = {
    "fmnist-teacher": "The large class-conditional generator that gankd compresses by default.",
    "fmnist-evaluator": "Feature extractor for FID/IS/KID/PRC and class consistency. Used ONLY for "
    "evaluation, never in a training loss.",
    "fmnist-perceptual": "Trunk of the LPIPS-style perceptual loss and class head for soft-label KD. "
    "Used ONLY in training losses, never for scoring.",
    "wesnoth-restore64": "An image-to-image teacher (pix2pix recipe, U-Net): restores 64x64 RGB sprites with "
    "Gaussian noise and a missing square (denoise+inpaint).",
}


def hashes(folder: Path) -> dict:
    return {p.name: file_sha256(p) for p in sorted(folder.glob("*.safetensors"))}


def training_facts(run: Path) -> dict:
    """Steps and wall time summed over resumed segments (wall_s restarts on resume)."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "loss_d" in r]  # training lines (validation lines have no losses)
    wall, prev = 0.0, 0.0
    for r in recs:
        w = r.get("wall_s", 0.0)
        if w < prev:
            wall += prev
        prev = w
    wall += prev
    return {"steps": recs[-1]["step"], "epochs": round(recs[-1].get("epoch", 0.0), 2),
            "wall_minutes": round(wall / 60, 1), "last_losses": {k: recs[-1][k] for k in ("loss_d", "loss_g")}}


def fmt(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


def teacher_card(folder: Path, m: dict) -> str:
    q, f, cc, e = m["quality"], m["real_floor"]["quality"], m["class_consistency"], m["efficiency"]
    tr, sp = dict(m["training"]), e.get("speed", {})
    steps = load_json(folder / "config.json").get("trained_steps")  # exact; the log has every 50th step
    if steps:
        tr.update(steps=steps, epochs=round(steps * 64 / 60000, 2))
    per = "\n".join(f"| {i} {FMNIST_CLASSES[i]} | {fmt(a)} |" for i, a in enumerate(cc["per_class"]))
    lines = [
        "# fmnist-teacher", "", ROLE["fmnist-teacher"], "",
        f"- Family: `dcgan` generator, class-conditional (10 classes, conditional BatchNorm), 32x32 gray, "
        f"z=128, stage channels {m['model_info'].get('feature_channels')}; spectral-norm projection "
        "discriminator shipped beside it (`discriminator.safetensors`), students start their D from it.",
        f"- Size: {e['params'] / 1e6:.2f} M parameters, {e['macs'] / 1e6:.1f} M MACs per image.",
        "- Data: Fashion-MNIST train split (60k), zero-padded 28 -> 32.",
        f"- Training: hinge loss, Adam 2e-4/2e-4 (0.5, 0.999), batch 64, EMA 0.999 of G; {tr['steps']} steps "
        f"({tr['epochs']} epochs) in {tr['wall_minutes']} min of wall time on {HARDWARE['fmnist-teacher']}.",
        "", "Commands:", "", *[f"    {c}" for c in TRAINING["fmnist-teacher"]], "",
        "## Measured (gankd's own code; `python benchmarks/pretrained_cards.py`)", "",
        f"Protocol: {m['protocol'].get('extractor')} features, {m['protocol'].get('num_generated')} samples "
        f"(seeds 0..N-1, class-balanced) vs {m['protocol'].get('num_reference')} images of "
        f"{m['protocol'].get('reference')}. The floor is real train images vs the same test split.", "",
        "| | FID | IS | KID | precision | recall |", "|---|---|---|---|---|---|",
        f"| teacher | {fmt(q.get('fid'))} | {fmt(q.get('isc_mean'))} | {fmt(q.get('kid_mean'), '.4f')} | "
        f"{fmt(q.get('precision'))} | {fmt(q.get('recall'))} |",
        f"| real floor | {fmt(f.get('fid'))} | {fmt(f.get('isc_mean'))} | {fmt(f.get('kid_mean'), '.4f')} | "
        f"{fmt(f.get('precision'))} | {fmt(f.get('recall'))} |", "",
        f"Class consistency (evaluator accuracy on samples vs the conditioning class): **{cc['accuracy']:.3f}** "
        f"overall (target >= 0.85). For scale, the evaluator's accuracy on the real images of the floor "
        f"(10k train images) is {fmt(m['real_floor'].get('class_consistency', {}).get('accuracy'))}, "
        f"on the test split {fmt(m.get('evaluator_test_acc'))}.", "",
        "| class | accuracy |", "|---|---|", per, "",
    ]
    if sp:
        fp = m.get("fingerprint", {})
        when = next((s["measured_utc"] for s in sp.values() if isinstance(s, dict) and s.get("measured_utc")), None)
        at = f" at {when}" if when else ""
        lines += [f"Speed (batch 1 median latency / batch 256 throughput), the teacher timed alone{at} on "
                  f"{fp.get('cpu', 'an unrecorded machine')}, {fp.get('torch_threads', '?')} torch threads. Such "
                  "absolute numbers move 20-60 % between runs; students' speed-ups come from interleaved runs "
                  "(benchmarks/results/*/speed.json):", ""]  # fmt: skip
        for rt, s in sp.items():
            if isinstance(s, dict) and "latency" in s:
                lines.append(f"- {rt}: {s['latency']['median_ms']:.2f} ms, "
                             f"{s['throughput']['images_per_s']:.0f} img/s")  # fmt: skip
        lines.append("")
    lines += ["## sha256", "", *[f"- `{k}`: `{v}`" for k, v in m["sha256"].items()], ""]
    return "\n".join(lines)


def classifier_card(name: str, folder: Path, m: dict) -> str:
    cfg = m["config"]
    return "\n".join([
        f"# {name}", "", ROLE[name], "",
        f"- Family: `{m['family']}` classifier, 32x32 gray input in [-1, 1], config: `{json.dumps(cfg)}`.",
        f"- Parameters: {m['params']}.",
        f"- Data: Fashion-MNIST train split (60k; the test split is never used for training), "
        f"{m['train'].get('epochs')} epochs, AdamW + one-cycle, random flips and 2-px shifts, seed "
        f"{m['train'].get('seed')}.",
        f"- Hardware: {HARDWARE[name]}.",
        "", "Command:", "", *[f"    {c}" for c in TRAINING[name]], "",
        "## Measured (`python benchmarks/pretrained_cards.py`)", "",
        f"- Test accuracy (10k Fashion-MNIST test images): **{m['test_acc']:.4f}**", "",
        "## sha256", "", *[f"- `{k}`: `{v}`" for k, v in m["sha256"].items()], "",
    ])  # fmt: skip


def restore_card(folder: Path, m: dict) -> str:
    """MODEL_CARD.md of an image-to-image teacher from its evaluate_i2i record."""
    name = folder.name
    meta = load_json(folder / "config.json")
    tr = m["training"]
    eff = m["efficiency"]["model"]
    trio = m["vs_target"]
    src = m["source_vs_target"]
    speed = m.get("speed", {})
    lines = [f"# {name}", "", ROLE[name], "",
             f"- Family: `{meta['family']}` ({', '.join(f'{k}={v}' for k, v in meta['config'].items())}); "
             f"discriminator `{load_json(folder / 'config.json').get('discriminator', {}).get('family', 'patch')}` "
             "(conditional PatchGAN, shipped: compress starts its D from it).",
             f"- Data: `{m['data']}` (Battle for Wesnoth unit sprites, `apt-get install -y wesnoth-1.16-data`; "
             "transparency on white, 64x64), task `" + m["task"] + "` with "
             + ", ".join(f"{k}={v}" for k, v in m["task_params"].items()) + " (degradations seeded per image).",
             f"- Training: pix2pix recipe (hinge adversarial + 100 x L1 to the target, Adam 2e-4, batch 16, EMA "
             f"0.999), {tr['steps']} steps ({tr['epochs']} epochs) in {tr['wall_minutes']} min on "
             f"{HARDWARE[name]}; checkpoint selected on L1 to the val split's targets "
             f"(step {meta.get('selected_on', {}).get('step')}).",
             "  Commands: " + "; ".join(f"`{c}`" for c in TRAINING[name]),
             f"- Size: {eff['params']:,} parameters; "
             + ", ".join(f"{v / 1e6:,.1f} M MACs at {k} px" for k, v in eff["macs"].items()) + ".",
             f"- Quality on the {m['num_pairs']} test pairs (degradation seed 0): PSNR "
             f"{trio['psnr_db']['mean']:.2f} dB (the degraded input: {src['psnr_db']['mean']:.2f} dB), "
             f"SSIM {trio['ssim']['mean']:.3f} (input {src['ssim']['mean']:.3f})"
             + (f", LPIPS {trio['lpips']['mean']:.3f}" if "lpips" in trio else
                "; LPIPS not measured (no ImageNet trunk on this machine)")
             + (f"; FID of outputs vs targets {m['distribution']['fid']:.3g} "
                f"({m['protocol'].get('extractor')}, sha256 {m['protocol'].get('extractor_sha256_16')})"
                if m.get("distribution") else "") + "."]  # fmt: skip
    for size, rec in speed.items():
        mm = rec["models"]["model"]
        parts = [f"{rt} {mm[rt]['latency']['median_ms']:.2f} ms" for rt in rec["protocol"]["runtimes"]]
        lines.append(f"- Batch-1 latency at {size} px: {', '.join(parts)} ({rec['fingerprint'].get('cpu', '')}, "
                     f"{rec['created_utc']}).")
    lines += ["- Weights: " + ", ".join(f"`{k}` sha256 {v}" for k, v in m["sha256"].items()) + ".", "",
              f"Numbers: `{folder.name}/metrics.json` (rerun: `{m['command']}`).", ""]  # fmt: skip
    return "\n".join(lines)


def write_card(path: Path, text: str) -> None:
    """MODEL_CARD.md, written atomically (a reader never sees half a card)."""
    atomic_write_bytes(path, text.encode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--teacher-run", default=str(ROOT / "benchmarks" / "results" / "gpu"),
                    help="folder with the teacher run's metrics.jsonl (for steps/time)")
    ap.add_argument("--restore-run", default=str(ROOT / "runs" / "restore" / "teacher"),
                    help="the wesnoth-restore64 training run (for steps/time; --only wesnoth-restore64)")
    ap.add_argument("--only", help="comma list of model names to redo")
    ap.add_argument("--no-speed", action="store_true", help="wesnoth-restore64: skip the latency runs")
    ap.add_argument("--render-only", action="store_true", help="re-render MODEL_CARD.md from metrics.json")
    args = ap.parse_args()
    cmd = " ".join(map(shlex.quote, ["python", *sys.argv]))
    root = pretrained_dir()
    only = set(args.only.split(",")) if args.only else None
    test = load_dataset("fashion-mnist", "test")
    for name in ("fmnist-evaluator", "fmnist-perceptual"):
        if only and name not in only:
            continue
        if args.render_only:
            m = load_json(root / name / "metrics.json")
            write_card(root / name / "MODEL_CARD.md", classifier_card(name, root / name, m))
            continue
        folder = root / name
        meta = load_json(folder / "config.json")
        clf = load_classifier(folder)
        m = {"name": name, "family": meta["family"], "config": meta["config"], "train": meta.get("train", {}),
             "params": sum(p.numel() for p in clf.parameters()),
             "test_acc": classifier_accuracy(test.images, test.labels, clf)["accuracy"],
             "sha256": hashes(folder), "command": cmd}  # fmt: skip
        save_result(m, folder / "metrics.json")
        write_card(folder / "MODEL_CARD.md", classifier_card(name, folder, m))
    if only and "wesnoth-restore64" in only:
        from gankd.evaluate_i2i import evaluate_i2i

        folder = root / "wesnoth-restore64"
        if args.render_only:
            write_card(folder / "MODEL_CARD.md", restore_card(folder, load_json(folder / "metrics.json")))
        else:
            m = evaluate_i2i(folder, speed=not args.no_speed, pairs=Pairs(sizes=(256, 512)), command=cmd)
            m["training"] = training_facts(Path(args.restore_run))
            m["sha256"] = hashes(folder)
            save_result(m, folder / "metrics.json")
            write_card(folder / "MODEL_CARD.md", restore_card(folder, m))
    if not only or "fmnist-teacher" in only:
        folder = root / "fmnist-teacher"
        if args.render_only:
            write_card(folder / "MODEL_CARD.md", teacher_card(folder, load_json(folder / "metrics.json")))
            return 0
        m = evaluate(folder, quality=Quality(num_samples=args.num_samples), reference=Reference(real_floor=True),
                     speed=Speed(), role="teacher", command=cmd)  # fmt: skip
        m["training"] = training_facts(Path(args.teacher_run))
        m["sha256"] = hashes(folder)
        m["evaluator_test_acc"] = load_json(root / "fmnist-evaluator" / "metrics.json").get("test_acc")
        save_result(m, folder / "metrics.json")
        write_card(folder / "MODEL_CARD.md", teacher_card(folder, m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
