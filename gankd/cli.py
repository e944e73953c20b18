"""Command line: parses flags, calls one API function, prints. No logic lives here.

User errors (bad flags, missing files, bad data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from gankd.config import apply_overrides, from_dict, load_json

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, RuntimeError, OSError)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON file with config values (applied before --set)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set generator.width=0.5 (repeatable)")  # fmt: skip


def _build_cfg(cls, args, direct: dict):
    cfg = cls()
    if getattr(args, "config", None):
        cfg = from_dict(cls, {**_merge(_asdict(cfg), load_json(args.config))})
    cfg = apply_overrides(cfg, [f"{k}={json.dumps(v)}" for k, v in direct.items() if v is not None])
    return apply_overrides(cfg, args.set)


def _asdict(cfg):
    from gankd.config import to_dict

    return to_dict(cfg)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------- subcommands
def cmd_sample(args) -> int:
    from gankd.adapter import adapter_for
    from gankd.checkpoint import load_generator
    from gankd.fileio import check_out_file
    from gankd.sampling import check_seed_count, grid_px, parse_seeds, sample_grid, save_png, seed_ranges

    check_out_file(args.out, args.force, example="grid.png")
    seed_ranges(args.seeds)  # a malformed or negative --seeds before the model is loaded
    model = load_generator(args.model, map_location=args.device)
    _, h, w = adapter_for(model).output_shape()
    if _is_i2i(model):  # rows of test pairs: source | model | target
        check_seed_count(args.seeds, args.max_images, lambda n: grid_px(3 * n, 3, h, w))
        from gankd.checkpoint import resolve_model_path
        from gankd.evaluate_i2i import model_pairs
        from gankd.sampling import pair_grid

        params = {k: getattr(args, k) for k in TASK_PARAM_FLAGS if getattr(args, k) is not None}
        pairs = model_pairs(model, resolve_model_path(args.model), "test", args.data, args.task, params,
                            label=f"model {args.model}")  # fmt: skip
        g = pair_grid(model, pairs, indices=parse_seeds(args.seeds), device=args.device,
                      name=f"model {args.model}")  # fmt: skip
        print(save_png(g, args.out))
        return 0
    classes = None
    if args.classes == "all":  # checked before int(): 'all' is not a number
        classes = list(range(model.num_classes))
    elif args.classes:
        try:
            classes = [int(c) for c in args.classes.split(",")]
        except ValueError:
            raise ValueError(f"--classes '{args.classes}' is not a list like 0,1,2 or 'all'") from None
    check_seed_count(args.seeds, args.max_images, lambda n: grid_px(n, args.nrow, h, w))
    g = sample_grid(model, parse_seeds(args.seeds), classes, args.nrow, args.device, name=f"model {args.model}")
    print(save_png(g, args.out))
    return 0


def cmd_train_teacher(args) -> int:
    from gankd.train import GANTrainConfig, train_gan

    saved = Path(args.out) / "train_config.json"
    if args.resume and not args.config and saved.is_file():
        args.config = str(saved)  # resume the run as it was configured; flags still override
    cfg = _build_cfg(GANTrainConfig, args, {
        "data": args.data, "steps": args.steps, "batch_size": args.batch_size, "loss": args.loss,
        "lr_g": args.lr_g, "lr_d": args.lr_d, "diffaug": args.diffaug, "diffaug_p": args.diffaug_p,
        "d_steps": args.d_steps, "r1": args.r1,
        "seed": args.seed, "max_minutes": args.max_minutes, "device": args.device, "select": args.select,
        "eval_every": args.eval_every, "task": args.task, "l1": args.l1, "g_family": args.g_family,
        "perceptual": args.perc,
        "snapshot_minutes": _floats(args.snapshot_minutes, "--snapshot-minutes"),
        **_shape_flags(args), **_task_params(args),
    })  # fmt: skip
    out = train_gan(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(out)
    return 0


TASK_PARAM_FLAGS = ("noise_sigma", "hole_frac", "blur_sigma", "scale")


def _task_params(args) -> dict:
    """--noise-sigma, --hole-frac, --blur-sigma, --scale as ``task_params.*`` overrides."""
    return {f"task_params.{k}": getattr(args, k, None) for k in TASK_PARAM_FLAGS}


def _add_task_flags(p: argparse.ArgumentParser, training: bool = True) -> None:
    from gankd.paired import DEGRADATIONS

    p.add_argument("--task", help=f"image-to-image: make pairs by degrading --data ({', '.join(DEGRADATIONS.names())}"
                   "; join with +, e.g. denoise+inpaint), or paired for --data "
                   "paired:SRC_DIR,TGT_DIR" + ("" if training else " (default: the model's own task)"))
    p.add_argument("--noise-sigma", type=float, help="denoise: noise std on the [-1, 1] scale (default 0.2)")
    p.add_argument("--hole-frac", type=float, help="inpaint: hole side as a fraction of the image (default 0.25)")
    p.add_argument("--blur-sigma", type=float, help="deblur: Gaussian blur sigma in px (default 1.5)")
    p.add_argument("--scale", type=int, help="sr: downsampling factor (default 4)")


def _shape_flags(args) -> dict:
    """--image-channels, --resolution, --num-classes (None = from the data)."""
    return {"image_channels": args.image_channels, "resolution": args.resolution, "num_classes": args.num_classes}


def _add_shape_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--image-channels", type=int, choices=(1, 3),
                   help=f"1 = gray, 3 = RGB for {what} (default: the data's; 1 on colour data converts to gray)")
    p.add_argument("--resolution", type=int,
                   help=f"image size in px for {what}, a power of two such as 32, 64, 128, 256 (default: the "
                        "power of two nearest the images' size, in 32..256)")  # fmt: skip
    p.add_argument("--num-classes", type=int,
                   help=f"classes for {what} (default: the data's class folders"
                        + ("; 0 = unconditional)" if "generator" in what else ")"))


def cmd_train_classifier(args) -> int:
    from gankd.train import ClassifierTrainConfig, train_classifier

    saved = Path(args.out) / "train_config.json"
    if args.resume and not args.config and saved.is_file():
        args.config = str(saved)  # resume the run as it was configured; flags still override
    kd_flags = [f for f, v in (("--kd-temperature", args.kd_temperature), ("--kd-alpha", args.kd_alpha))
                if v is not None]  # fmt: skip
    if kd_flags and not args.teacher and not args.resume:
        raise ValueError(f"{' and '.join(kd_flags)} need --teacher (a teacher classifier, e.g. fmnist-evaluator)")
    cfg = _build_cfg(ClassifierTrainConfig, args, {
        "data": args.data, "split": args.split, "family": args.family, "epochs": args.epochs, "seed": args.seed,
        "batch_size": args.batch_size, "device": args.device, "teacher": args.teacher,
        "kd_temperature": args.kd_temperature, "kd_alpha": args.kd_alpha, "max_minutes": args.max_minutes,
        "model.width": args.width, **_shape_flags(args),
    })  # fmt: skip
    result = train_classifier(cfg, args.out, progress=not args.no_progress, resume=args.resume)
    print(json.dumps(result))
    return 0


def cmd_compress(args) -> int:
    from gankd.distill import PRESETS, DistillConfig, compress

    direct = dict(PRESETS[args.preset]) if args.preset else {}
    flags = {
        "teacher": args.teacher, "width": args.width, "init": args.init, "steps": args.steps,
        "batch_size": args.batch_size, "lr_g": args.lr_g, "lr_d": args.lr_d, "pixel": args.pixel,
        "perceptual": args.perc, "perceptual_net": args.perceptual, "feat": args.feat, "adv": args.adv,
        "adv_loss": args.adv_loss, "d_init": args.d_init, "real": args.real, "kd": args.kd,
        "kd_temperature": args.kd_temperature, "seed": args.seed, "max_minutes": args.max_minutes,
        "device": args.device, "data": args.data, "select": args.select, "eval_every": args.eval_every,
        "channels": _ints(args.channels, "--channels"), "feat_layers": _taps(args.feat_layers),
        "target_macs": args.target_macs, "task": args.task, "gt": args.gt,
        "snapshot_minutes": _floats(args.snapshot_minutes, "--snapshot-minutes"),
        "d_feat": args.d_feat, "lr_schedule": args.lr_schedule, "init_from": args.init_from,
        "d_freeze": args.d_freeze, "adv_warmup": args.adv_warmup, "adv_start": args.adv_start,
        "adv_max_steps": args.adv_max_steps, "lr_phases": args.lr_phases,
        "qat_start": args.qat_start, "d_width": args.d_width, "target_latency": args.target_latency,
        "latency_runtime": args.latency_runtime,
        "latency_batch": args.latency_batch, "latency_threads": args.latency_threads,
        "latency_size": args.latency_size,
        "student_upsample": args.student_upsample,
        "student_layout": args.student_layout, "keep_layers": _paths(args.keep_layers),
        "student_kwargs": _kwargs(args.student_kwargs, "--student-kwargs"),
        "export": args.export, "max_fid_rise": args.max_fid_rise,
    }  # fmt: skip
    direct.update({k: v for k, v in flags.items() if v is not None})
    params = {k: getattr(args, k) for k in TASK_PARAM_FLAGS if getattr(args, k) is not None}
    if params:  # the other parameters stay the teacher's
        from gankd.distill import teacher_task_params

        direct["task_params"] = {**teacher_task_params(args.teacher or "fmnist-teacher"), **params}
    if args.channels:
        direct["width"] = None
    cfg = _build_cfg(DistillConfig, args, direct)
    out = compress(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # torchrun: join gloo/NCCL threads before the process exits
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(out)
        run_cfg = Path(args.out) / "config.json"
        lat = (load_json(run_cfg).get("resolved") or {}).get("latency_budget") if run_cfg.is_file() else None
        if lat:
            print(f"latency: {lat['measured_ms']:.3g} ms measured for a budget of {lat['budget_ms']:.3g} ms "
                  f"({lat['runtime']}, batch {lat['batch']}, {lat['threads']} thread(s); teacher "
                  f"{lat['teacher_ms']:.3g} ms; width {lat['width']:.3g})")  # fmt: skip
        if cfg.export:
            _print_deploy(load_json(Path(args.out) / "deploy.json"))
    return 0


def _print_deploy(d: dict) -> None:
    """compress --export: the exported file, its gate and its measured latency against the budget."""
    print(f"export: {d['path']} ({d['precision']})")
    g = d.get("quality_gate")
    if g:
        print(f"  FID {g['fid_fp32']:.3g} (fp32) -> {g['fid_reduced']:.3g} ({d['precision']}), "
              f"{100 * g['fid_rise']:+.1f}% (limit {100 * g['max_fid_rise']:.0f}%) against {g['reference']}")
    lat = d.get("latency")
    if lat:
        print(f"  the exported file: {lat['exported_ms']:.3g} ms at batch {lat['batch']}, {lat['threads']} "
              f"thread(s), for a budget of {lat['budget_ms']:.3g} ms: {'met' if lat['met'] else 'NOT met'}")


def _taps(text: str | None) -> list | None:
    """--feat-layers: stage indices (1,2,3) or module paths (main.5,main.8)."""
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",") if v.strip()]
    return [int(v) if v.lstrip("-").isdigit() else v for v in parts]


def _paths(text: str | None) -> list[str] | None:
    """A comma-separated list of module paths (None when not given)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _kwargs(text: str | None, flag: str) -> dict | None:
    """A JSON object (or .json file) flag; None when not given."""
    from gankd.importer import parse_kwargs

    return parse_kwargs(text, flag) if text else None


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be numbers separated by commas, e.g. 5,10,20, got '{text}'") from None
    if any(v <= 0 for v in vals):
        raise ValueError(f"{flag} values must be > 0 minutes, got '{text}'")
    return vals


def _ints(text: str | None, flag: str) -> list[int] | None:
    from gankd.importer import parse_ints

    ints = parse_ints(text, flag)
    return None if ints is None else list(ints)


def cmd_demo(args) -> int:
    from gankd.demo import run_demo

    res = run_demo(args.out, args.teacher, args.width, args.preset, args.num_samples, not args.no_speed,
                   args.device, progress=not args.no_progress, max_minutes=args.max_minutes)  # fmt: skip
    print(res["table"])
    print(f"teacher (top row) vs student (bottom row), same seeds: {res['grid']}")
    print(f"report: {res['markdown']} and {res['plot']}")
    return 0


def _select_flags(p: argparse.ArgumentParser, rules) -> None:
    p.add_argument("--select", choices=rules,
                   help="checkpoint selection: perceptual-fid = FID on the val split with the perceptual net "
                        "(default; never the evaluator), teacher-l1 = pixel L1 to the teacher, last = no selection")
    p.add_argument("--eval-every", type=int, help="steps between validations for selection (0 = only at the end)")


def add_sample(sub) -> None:
    from gankd.sampling import MAX_IMAGES

    p = sub.add_parser("sample", help="write a PNG grid of a generator's samples")
    p.add_argument("--model", required=True, help="generator folder (config.json + model.safetensors)")
    p.add_argument("--seeds", default="0-63", help="seeds, e.g. 0-63 or 1,5,9")
    p.add_argument("--classes", help="conditional models: one class per row, e.g. 0,1,2 or all")
    p.add_argument("--nrow", type=int, default=8, help="images per row")
    p.add_argument("--out", required=True, help="output PNG path (an existing file is replaced only if gankd "
                   "wrote it, or with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out that gankd did not write")
    p.add_argument("--max-images", type=int, default=MAX_IMAGES,
                   help=f"refuse --seeds naming more images than this (default {MAX_IMAGES})")
    p.add_argument("--data", help="image-to-image models: data whose test pairs to show (--seeds are pair "
                   "indices; default: the model's data)")
    _add_task_flags(p, training=False)
    _add_common(p)
    p.set_defaults(fn=cmd_sample)


def add_train_teacher(sub) -> None:
    from gankd.losses import ADVERSARIAL

    p = sub.add_parser("train-teacher", help="train a GAN from data (a teacher to compress)")
    p.add_argument("--data", help="fashion-mnist (default), folder:PATH (your images; class sub-folders make a "
                   "conditional model) or wesnoth-units")
    p.add_argument("--out", required=True, help="run folder")
    _add_shape_flags(p, "generator and discriminator")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--loss", choices=("auto", *ADVERSARIAL.names()),
                   help="adversarial loss (default auto: ns with a BatchNorm D on RGB data, else hinge)")
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--diffaug", help="DiffAugment policy, e.g. translation,cutout (noise-to-image; "
                   "color,translation,cutout helps small data sets)")
    p.add_argument("--diffaug-p", type=float, help="share of images each --diffaug op reaches (default 1: all)")
    p.add_argument("--d-steps", type=int, help="discriminator updates per generator update (default 1; each on "
                   "its own batch and noise)")
    p.add_argument("--r1", type=float, help="R1 gradient penalty weight on real images (default 0 = off; usually "
                   "with --set discriminator.norm=none)")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this wall time")
    p.add_argument("--snapshot-minutes", help="save the (EMA) model as it is at these training wall minutes, "
                   "e.g. 5,10,20, under RUN/snapshots/ (quality-vs-time curves)")
    _add_task_flags(p)
    p.add_argument("--g-family", choices=("dcgan", "unet", "resnet"),
                   help="generator family (default dcgan; unet with --task)")
    p.add_argument("--l1", type=float, help="image-to-image: weight of L1 to the target (default 100)")
    p.add_argument("--perc", type=float, help="image-to-image: weight of a perceptual loss to the target "
                   "(default 0; LPIPS, needs its ImageNet trunk, else off with a warning)")
    _select_flags(p, ("perceptual-fid", "val-l1", "last"))
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly (with its saved train_config.json)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_train_teacher)


def add_train_classifier(sub) -> None:
    from gankd.registry import CLASSIFIERS

    p = sub.add_parser("train-classifier",
                       help="train a classifier from labels, or distil one from a teacher (--teacher)")  # fmt: skip
    p.add_argument("--data", help="fashion-mnist (default), folder:PATH (one sub-folder per class) or wesnoth-units")
    _add_shape_flags(p, "the classifier's input")
    p.add_argument("--split", help="training split: train (default) or fit (holds val out for val_acc)")
    p.add_argument("--family", choices=CLASSIFIERS.names())
    p.add_argument("--out", required=True, help="model folder to write (also holds the run's state and logs)")
    p.add_argument("--width", type=float, help="channel multiplier of every stage (model.width)")
    p.add_argument("--teacher", help="teacher classifier folder or shipped name (e.g. fmnist-evaluator): soft-label KD")
    p.add_argument("--kd-temperature", type=float, help="KD temperature T (default 4)")
    p.add_argument("--kd-alpha", type=float, help="weight of the T^2-scaled KD term, 1 - alpha on CE (default 0.9)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this wall time")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly (with its saved train_config.json)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_train_classifier)



def _add_deploy_flags(p) -> None:
    """compress: the student's shape for deployment, the export after training and how --target-latency times."""
    from gankd.latency import RUNTIMES
    from gankd.models.dcgan import LAYOUTS
    from gankd.models.layers import UPSAMPLES
    from gankd.precision import PRECISIONS

    p.add_argument("--export", choices=PRECISIONS,
                   help="after training, export the selected student to ONNX at this precision through the quality "
                   "gate (--max-fid-rise) and time the file against --target-latency (run folder: deploy.json)")
    p.add_argument("--max-fid-rise", type=float,
                   help="--export fp16/int8: refuse an export whose FID rises more than this fraction over fp32 "
                   "(default 0.10; the trained student is kept)")
    p.add_argument("--student-upsample", choices=UPSAMPLES,
                   help="gankd's dcgan students: how a stage doubles; nearest-conv quantizes to int8 in ONNX Runtime "
                   "(its layers start fresh, the rest inherit the teacher's channels; default: the teacher's)")
    p.add_argument("--student-layout", choices=LAYOUTS,
                   help="gankd's dcgan students: latency conditions on the class once at the input (plain BatchNorm) "
                   "and lets the last doubling write the pixels: fewer ops, faster at batch 1 (the new last layer "
                   "starts fresh; default: the teacher's layout)")
    p.add_argument("--latency-runtime", choices=RUNTIMES.accepted(),
                   help="--target-latency: what to time (default onnxruntime, as deployed; with --export int8, "
                   "onnx-int8: the int8 export)")
    p.add_argument("--latency-batch", type=int, help="--target-latency: batch size timed (default 1)")
    p.add_argument("--latency-size", type=int, help="--target-latency, image-to-image teachers: the source side in "
                   "px timed (default: the trained resolution)")
    p.add_argument("--latency-threads", type=int, help="--target-latency: threads timed (default 1)")


def add_compress(sub) -> None:
    from gankd.distill import D_INITS, PRESETS, REAL_SOURCES
    from gankd.losses import ADVERSARIAL
    from gankd.perceptual import PERCEPTUAL_NETS
    from gankd.selection import SELECT_RULES
    from gankd.students import INITS

    p = sub.add_parser("compress", help="distil a teacher generator into a slim student")
    p.add_argument("--teacher", help="teacher folder or shipped name (default: fmnist-teacher)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="quick (~10 min on 2 CPU cores), full (2,712 steps, student lr 1.6e-3 with cosine decay, "
                   "no perceptual or KD term: ~30 min on a CPU thread) or plain (the baseline a user writes: "
                   "pixel L1 to the teacher, batch 32, Adam 2e-4, no D, no selection)")
    p.add_argument("--width", type=float, help="student width relative to the teacher (e.g. 0.25)")
    p.add_argument("--channels", help="explicit per-stage student channels, e.g. 128,64,32,8")
    p.add_argument("--init", choices=INITS, help="prune: inherit the teacher's top channels; random")
    p.add_argument("--init-from", help="prune the student from this wider student folder instead of the teacher "
                   "(iterative prune-and-distill, e.g. 1/2 -> 1/4)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--pixel", type=float, help="weight of the L1 pixel loss to the teacher")
    p.add_argument("--perc", type=float, help="weight of the perceptual loss")
    p.add_argument("--perceptual", choices=PERCEPTUAL_NETS, help="perceptual network (default fmnist)")
    p.add_argument("--feat", type=float, help="weight of the intermediate-feature loss")
    p.add_argument("--feat-layers", help="feature taps for the feature loss: stage indices of gankd's "
                   "generators (e.g. 1,2,3) or module paths of an imported one (e.g. main.5,main.8)")
    p.add_argument("--adv", type=float, help="weight of the adversarial loss (0 = no discriminator)")
    p.add_argument("--adv-loss", choices=ADVERSARIAL.choices())
    p.add_argument("--d-init", choices=D_INITS,
                   help="start D from the teacher's, fresh, or auto (the teacher's if it ships one)")
    p.add_argument("--d-freeze", type=int, help="keep the first N blocks of the teacher's discriminator frozen "
                   "(FreezeD; default 0)")
    p.add_argument("--adv-warmup", type=float, help="fraction of the run over which the adversarial weight ramps "
                   "from 0 to --adv (default 0)")
    p.add_argument("--adv-start", type=float, help="fraction of the run before which there is no discriminator "
                   "(a cheap pixel/feature phase first; default 0.9)")
    p.add_argument("--adv-max-steps", type=int, help="the adversarial phase's most steps: it then starts at the later "
                   "of --adv-start and this many steps before the end (default 4000; 0 = no cap)")
    p.add_argument("--lr-phases", action=argparse.BooleanOptionalAction, help="where --adv-max-steps binds: the "
                   "learning rates decay over each phase as in a run whose phases fit --adv-start (default on)")
    p.add_argument("--d-width", type=float, help="width multiplier of a fresh discriminator (default 0.25)")
    p.add_argument("--real", choices=REAL_SOURCES, help="what D sees as real")
    p.add_argument("--qat-start", type=float, help="fraction of the budget after which the student trains through "
                   "the int8 rounding of export --precision int8 (quantization-aware; default 1 = never)")
    p.add_argument("--kd", type=float, help="weight of soft-label KD (perceptual net's class head)")
    p.add_argument("--kd-temperature", type=float, help="KD temperature T")
    p.add_argument("--d-feat", type=float, help="weight of feature matching through the discriminator (DCD-style; 0)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine", "linear"),
                   help="decay of both learning rates over the run (steps or --max-minutes, whichever binds)")
    p.add_argument("--data", help="real images for D and selection: fashion-mnist, folder:PATH, "
                   "paired:SRC_DIR,TGT_DIR (image-to-image), or none (data-free); default: the data the teacher "
                   "records, else none")
    p.add_argument("--target-latency", help="the widest student that runs this fast on this machine, e.g. 0.4ms or "
                   "400us (measured per candidate width, cached per machine; overrides --width)")
    p.add_argument("--keep-layers", help="imported generators: module paths whose output channels stay whole "
                   "when pruning, comma-separated (e.g. a layer the pruner cannot follow)")
    p.add_argument("--student-kwargs", help="imported generators (and gankd's unet/resnet): build the student as "
                   "the teacher's class with these constructor arguments over the teacher's (JSON object or .json "
                   "file; fresh weights), e.g. "
                   "'{\"channel_max\": 32}', instead of pruning the teacher")
    _add_deploy_flags(p)
    p.add_argument("--target-macs", type=float,
                   help="student MACs as a fraction of the teacher's, e.g. 0.1 (instead of --width)")
    _add_task_flags(p, training=False)
    p.add_argument("--gt", type=float, help="image-to-image: weight of L1 to the ground-truth target (default 0)")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this wall time")
    p.add_argument("--snapshot-minutes", help="save the (EMA) model as it is at these training wall minutes, "
                   "e.g. 5,10,20, under RUN/snapshots/ (quality-vs-time curves)")
    _select_flags(p, SELECT_RULES)
    p.add_argument("--no-select-on-val", dest="select", action="store_const", const="teacher-l1",
                   help=argparse.SUPPRESS)  # old spelling of --select teacher-l1
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_compress)


def add_demo(sub) -> None:
    from gankd.distill import PRESETS

    p = sub.add_parser("demo", help="compress the shipped teacher (quick preset) and print quality vs speed")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--teacher", default="fmnist-teacher", help="teacher folder or shipped name")
    p.add_argument("--width", type=float, default=0.25, help="student width (default 0.25)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--num-samples", type=int, default=10000, help="samples for FID/IS/KID/PRC")
    p.add_argument("--no-speed", action="store_true", help="skip latency/throughput timing")
    p.add_argument("--max-minutes", type=float, help="training budget (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_common(p)
    p.set_defaults(fn=cmd_demo)

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gankd", description="Compress GAN generators by distillation.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (add_sample, add_train_teacher, add_train_classifier, add_compress, add_demo, *_EXTRA_COMMANDS):
        add(sub)
    return ap


# Later subcommands (compress, eval, export, report) register here.
_EXTRA_COMMANDS: list = []


# ---------------------------------------------------------------- eval / export / report
def _eval_command(args) -> str:
    """The canonical command line of an eval run (every flag, defaults included)."""
    import shlex

    parts = ["gankd", "eval"]
    for flag in ("model", "metrics", "num_samples", "num_reference", "reference", "extractor", "evaluator",
                 "inception_weights", "teacher", "teacher_samples", "lpips", "lpips_weights", "first_seed",
                 "big_batch", "role", "device"):  # fmt: skip
        v = getattr(args, flag)
        if v is not None:
            parts += [f"--{flag.replace('_', '-')}", str(v)]
    switches = ("speed", "compile", "no_onnx", "real_floor")
    parts += [f"--{f.replace('_', '-')}" for f in switches if getattr(args, f)]
    return shlex.join(parts)


def cmd_eval(args) -> int:
    from gankd.evaluate import Quality, evaluate, real_floor, save_result
    from gankd.fileio import check_out_file
    from gankd.metrics.fidelity import DEFAULT_REFERENCE
    from gankd.report import summary_lines

    if not args.model and not args.real_floor:
        raise ValueError("pass --model DIR (a generator folder), or --real-floor for the real floor alone")
    if args.out:
        out = Path(args.out)
    else:
        out = Path(args.model) / "eval.json" if args.model else Path("real_floor.json")
    check_out_file(out, args.force, example="eval.json")  # before any metric is computed
    runtimes = ["eager"] + (["compile"] if args.compile else []) + ([] if args.no_onnx else ["onnx"])
    lpips = {"auto": "auto", "on": True, "off": False}[args.lpips]
    command = _eval_command(args)
    if args.model:
        from gankd.evaluate import Fidelity, Pairs, Reference, Speed, check_counts

        check_counts(big_batch=args.big_batch, num_reference=args.num_reference, teacher_samples=args.teacher_samples)

        i2i = _is_i2i(args.model)
        metrics = args.metrics if not (i2i and args.metrics == _NOISE_METRICS) else None
        params = {k: getattr(args, k) for k in TASK_PARAM_FLAGS if getattr(args, k) is not None}
        quality = Quality(metrics, args.num_samples, args.extractor, args.evaluator, args.inception_weights,
                          args.first_seed)  # fmt: skip
        result = evaluate(
            args.model, args.teacher, quality=quality,
            reference=Reference(args.reference, args.num_reference, args.real_floor),
            fidelity=Fidelity(args.teacher_samples, lpips, args.lpips_weights),
            speed=Speed(runtimes, args.big_batch) if args.speed else None,
            pairs=Pairs(args.data, args.task, params, tuple(_ints(args.sizes, "--sizes") or (256, 512))),
            device=args.device, role=args.role, command=command,
        )  # fmt: skip
        if i2i:
            from gankd.evaluate_i2i import summary_lines_i2i

            print("\n".join(summary_lines_i2i(result)))
            print(f"{'wrote':<26}{save_result(result, out)}")
            return 0
    else:
        result = real_floor(args.reference or DEFAULT_REFERENCE, num_reference=args.num_reference,
                            quality=Quality(metrics=args.metrics, num_samples=args.num_samples or 10000,
                                            extractor=args.extractor, evaluator=args.evaluator,
                                            inception_weights=args.inception_weights),
                            device=args.device, command=command)  # fmt: skip
    print("\n".join(summary_lines(result)))
    print(f"{'wrote':<26}{save_result(result, out)}")
    return 0


def _is_i2i(model) -> bool:
    from gankd.evaluate_i2i import is_i2i_model

    return is_i2i_model(model)


_NOISE_METRICS = "fid,isc,kid,prc"


def add_eval(sub) -> None:
    from gankd.evaluate import METRICS
    from gankd.metrics.fidelity import DEFAULT_REFERENCE, EXTRACTORS

    p = sub.add_parser("eval", help="measure a generator: FID/IS/KID/PRC, class consistency, cost, speed")
    p.add_argument("--model", help="generator folder (config.json + model.safetensors)")
    p.add_argument("--metrics", default=",".join(METRICS), help="comma list of fid,isc,kid,prc (or none)")
    p.add_argument("--num-samples", type=int, help="generated images (default 10000; image-to-image: every test pair)")
    p.add_argument("--num-reference", type=int,
                   help="reference images (default: all with the evaluator, --num-samples with Inception)")
    p.add_argument("--reference",
                   help="reference split, e.g. folder:PATH:test (default: the test split of the data the model "
                        f"records; {DEFAULT_REFERENCE} for --real-floor alone)")  # fmt: skip
    p.add_argument("--extractor", default=EXTRACTORS[0], choices=EXTRACTORS,
                   help="feature extractor; auto (default) = --evaluator if given, else Inception-V3 when its "
                        "weights are present, else fmnist-evaluator on Fashion-MNIST, else random-conv "
                        "(seed-fixed random conv features: domain-agnostic)")  # fmt: skip
    p.add_argument("--evaluator", help="evaluator classifier folder trained on the model's data (gankd "
                   "train-classifier); also used for class consistency")
    p.add_argument("--inception-weights", help="path of weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--speed", action="store_true", help="measure latency/throughput (eager + ONNX Runtime)")
    p.add_argument("--compile", action="store_true", help="with --speed: also torch.compile (slow)")
    p.add_argument("--no-onnx", action="store_true", help="with --speed: skip ONNX Runtime")
    p.add_argument("--big-batch", type=int, default=256, help="batch size of the throughput measurement")
    p.add_argument("--teacher", help="teacher folder: adds PSNR/LPIPS of this model to the teacher")
    p.add_argument("--teacher-samples", type=int, default=1000, help="samples for teacher fidelity")
    p.add_argument("--lpips", choices=("auto", "on", "off"), default="auto",
                   help="LPIPS to the teacher: auto = when the ImageNet trunk is present")
    p.add_argument("--lpips-weights", help="path of alexnet-owt-7be5be79.pth for LPIPS")
    p.add_argument("--real-floor", action="store_true",
                   help="also score real images vs the reference under the same protocol (Fashion-MNIST: train "
                        "vs test; a folder: its fit split vs its test split)")  # fmt: skip
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed..first-seed+N-1")
    p.add_argument("--role", choices=("teacher", "student", "model"), help="label for reports")
    p.add_argument("--data", help="image-to-image models: the data whose test pairs score it (default: the "
                   "model's own)")
    _add_task_flags(p, training=False)
    p.add_argument("--sizes", default="256,512",
                   help="image-to-image models: input sizes in px for MACs and --speed besides the trained one")
    p.add_argument("--out", help="JSON path (default MODEL/eval.json, or real_floor.json; an existing file is "
                   "replaced only if gankd wrote it, or with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out that gankd did not write")
    _add_common(p)
    p.set_defaults(fn=cmd_eval)


def cmd_export(args) -> int:
    from gankd.export import export_generator

    r = export_generator(args.model, args.out, args.format, tolerance=args.tolerance, force=args.force,
                         precision=args.precision, max_fid_rise=args.max_fid_rise, gate_samples=args.gate_samples,
                         convtranspose=args.convtranspose)  # fmt: skip
    print(r["path"])
    red = r.get("reduced")
    if red is None:
        print(f"parity max abs diff vs eager: {r['max_abs_diff']:.3g} (tolerance {r['tolerance']:g})")
        return 0
    ops = ", ".join(f"{op}: " + "/".join(f"{n} {k}" for k, n in c.items() if n) for op, c in red["ops"]["ops"].items())
    print(f"{args.precision}: {ops}")
    rw = red["ops"].get("rewritten") or {}
    if rw.get("qualifying"):
        how = ("rewritten as Conv + DepthToSpace (the same function)" if rw["ConvTranspose"] else "kept fp32")
        timed = rw.get("timed_b1_ms")
        why = (f": int8 batch 1 rewritten {timed['rewrite']:.3g} ms, kept {timed['keep']:.3g} ms" if timed else "")
        print(f"  {rw['qualifying']} ConvTranspose {how} (--convtranspose {rw['mode']}{why})")
        for refused in rw.get("refused_by_gate", []):
            form, g = ("rewritten" if refused["ConvTranspose"] else "kept"), refused["quality_gate"]
            print(f"  the {form} form failed the quality gate (FID {g['fid_fp32']:.3g} -> {g['fid_reduced']:.3g}): "
                  "the other form was gated and written")
    for op, why in red["ops"]["why_fp32"].items():
        print(f"  {op} stays fp32: {why}")
    g = red["quality_gate"]
    if g:
        to_t = (f"; to its teacher {g['psnr_to_teacher_db']:.1f} dB" if g.get("psnr_to_teacher_db") is not None
                else "")  # fmt: skip
        if g.get("psnr_to_target_db"):  # image-to-image: the test pairs' targets
            tt = g["psnr_to_target_db"]
            to_t += f"; to the targets {tt['fp32']:.2f} -> {tt['reduced']:.2f} dB on {g['num_samples']} test pairs"
        print(f"FID {g['fid_fp32']:.3g} (fp32) -> {g['fid_reduced']:.3g} ({args.precision}), "
              f"{100 * g['fid_rise']:+.1f}% (limit {100 * g['max_fid_rise']:.0f}%); PSNR to fp32 "
              f"{g['psnr_to_fp32_db']:.1f} dB, SSIM {g['ssim_to_fp32']:.3f}{to_t}")  # fmt: skip
    lat = red["latency_b1_ms"]
    print(f"batch-1 latency, 1 thread: fp32 {lat['fp32']:.3g} ms, {args.precision} {lat[args.precision]:.3g} ms "
          f"({red['speedup_b1']:.2f}x)")  # fmt: skip
    return 0


def add_export(sub) -> None:
    from gankd.export import FORMATS

    p = sub.add_parser("export", help="export a generator to ONNX or TorchScript (dynamic batch)")
    p.add_argument("--model", required=True, help="generator folder")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="onnx or torchscript")
    p.add_argument("--out", help="output file (default MODEL/export/generator.onnx|.pt; an existing file is "
                   "replaced only if gankd wrote it, or with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out that gankd did not write")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed vs eager")
    from gankd.precision import PRECISIONS

    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp16 or int8 (static, per-channel, calibrated on the generator's activations): ONNX only")
    p.add_argument("--max-fid-rise", type=float, default=0.10,
                   help="fp16/int8: refuse a model whose FID rises more than this fraction over fp32 (default "
                   "0.10; inf records the FIDs and never refuses)")
    p.add_argument("--gate-samples", type=int, default=2000,
                   help="fp16/int8: samples for the FID gate (2000; 0 skips the FID measurement)")
    from gankd.export import CONVTRANSPOSE

    p.add_argument("--convtranspose", default="auto", choices=CONVTRANSPOSE,
                   help="int8: rewrite ConvTranspose layers as their exact Conv + DepthToSpace form (which quantizes), "
                   "keep them fp32, or auto (default: quantize both, keep the faster at batch 1 here)")
    _add_common(p)
    p.set_defaults(fn=cmd_export)


def cmd_report(args) -> int:
    from gankd.report import write_report

    r = write_report(args.results, args.out)
    print(r["markdown"])
    print(r["plot"])
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="markdown table + PNG plot from eval JSONs")
    p.add_argument("results", nargs="+", help="JSON files written by gankd eval")
    p.add_argument("--out", required=True, help="folder for report.md and quality_vs_speed.png")
    _add_common(p)
    p.set_defaults(fn=cmd_report)


def cmd_import(args) -> int:
    from gankd.importer import Declared, import_generator, parse_ints, parse_kwargs, summary

    feat = [s.strip() for s in args.feat_layers.split(",") if s.strip()] if args.feat_layers else None
    declared = Declared(parse_ints(args.latent, "--latent"), args.num_classes, args.output_range,
                        parse_ints(args.input_image, "--input-image"), args.input_range, feat,
                        parse_kwargs(args.forward_kwargs, "--forward-kwargs"))  # fmt: skip
    out = import_generator(args.class_path, parse_kwargs(args.kwargs), args.weights, args.out,
                           state_key=args.state_key, declared=declared, force=args.force)  # fmt: skip
    print(out)
    print(summary(out))
    return 0


def add_import(sub) -> None:
    p = sub.add_parser("import", help="bring your own generator (nn.Module class + state dict) into a gankd folder",
                       description="Imports the class's module (your code runs, as on import); the checkpoint "
                       "is read as data only (safetensors, or torch.load with weights_only=True).")  # fmt: skip
    p.add_argument("--class", dest="class_path", required=True, help="generator class, e.g. mypkg.models:Generator")
    p.add_argument("--kwargs", help="constructor keyword arguments: a JSON object or a .json file")
    p.add_argument("--weights", required=True, help="checkpoint: .safetensors, or .pt/.pth/.tar/.ckpt")
    p.add_argument("--state-key", help="key of the generator's state dict in the checkpoint (default: detected)")
    p.add_argument("--latent", help="per-sample latent shape, e.g. 100,1,1 or 128 (default: detected)")
    p.add_argument("--num-classes", type=int, default=0, help="class-conditional: labels are the 2nd input")
    p.add_argument("--forward-kwargs", help="keyword arguments every call of the generator gets, as JSON, e.g. "
                   "'{\"truncation_psi\": 0.7}' (noise_mode=const / randomize_noise=false are set for you)")
    p.add_argument("--input-image", help="image-to-image: the source image's shape C,H,W at the trained size, "
                   "e.g. 3,256,256 (instead of a latent)")
    p.add_argument("--input-range", default="-1,1", help="image-to-image: range the model expects of its source "
                   "images: -1,1 (default) or 0,1")
    p.add_argument("--output-range", default="-1,1", help="range of the raw output: -1,1 (default) or 0,1")
    p.add_argument("--feat-layers", help="module paths for feature taps, e.g. main.5,main.8 (default: auto)")
    p.add_argument("--out", required=True, help="model folder to write (one that holds a model only with --force)")
    p.add_argument("--force", action="store_true", help="replace the model an existing --out holds")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.set_defaults(fn=cmd_import)


def cmd_vs_plain(args) -> int:
    from gankd.versus import summary, versus_plain

    rec = versus_plain(args.run, num_samples=args.num_samples, device=args.device, progress=not args.no_progress)
    print(summary(rec))
    print(Path(args.run) / "vs_plain.json")
    return 0


def add_vs_plain(sub) -> None:
    p = sub.add_parser("vs-plain", help="train the plain baseline (prune + pixel L1) for a compress run's wall "
                       "time and score both students the same way")  # fmt: skip
    p.add_argument("run", help="the --out folder of a finished gankd compress")
    p.add_argument("--num-samples", type=int, default=2000, help="samples (or test pairs) per score (default 2000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(fn=cmd_vs_plain)


_EXTRA_COMMANDS += [add_eval, add_export, add_report, add_import, add_vs_plain]


def main(argv: list[str] | None = None) -> int:
    import gankd  # noqa: F401  (registers model families)

    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("gankd: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and str(e).startswith("[Errno"):  # the OS's words, not ours: no errno code
            hint = "; choose a writable --out" if isinstance(e, PermissionError) else ""
            where = f"{e.filename}: " if e.filename else ""
            msg = f"{where}{(e.strerror or type(e).__name__).lower()}{hint}"
        msg = (str(msg).strip().splitlines() or [type(e).__name__])[0]  # one line, whatever raised
        print(f"gankd {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
