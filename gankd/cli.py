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
    from gankd.checkpoint import load_generator
    from gankd.sampling import parse_seeds, sample_grid, save_png

    model = load_generator(args.model, map_location=args.device)
    classes = None
    if args.classes == "all":  # checked before int(): 'all' is not a number
        classes = list(range(model.num_classes))
    elif args.classes:
        try:
            classes = [int(c) for c in args.classes.split(",")]
        except ValueError:
            raise ValueError(f"--classes '{args.classes}' is not a list like 0,1,2 or 'all'") from None
    g = sample_grid(model, parse_seeds(args.seeds), classes, args.nrow, args.device)
    print(save_png(g, args.out))
    return 0


def cmd_train_teacher(args) -> int:
    from gankd.train import GANTrainConfig, train_gan

    saved = Path(args.out) / "train_config.json"
    if args.resume and not args.config and saved.is_file():
        args.config = str(saved)  # resume the run as it was configured; flags still override
    cfg = _build_cfg(GANTrainConfig, args, {
        "data": args.data, "steps": args.steps, "batch_size": args.batch_size, "loss": args.loss,
        "lr_g": args.lr_g, "lr_d": args.lr_d, "diffaug": args.diffaug, "seed": args.seed,
        "max_minutes": args.max_minutes, "device": args.device,
    })  # fmt: skip
    out = train_gan(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(out)
    return 0


def cmd_train_classifier(args) -> int:
    from gankd.train import ClassifierTrainConfig, train_classifier

    cfg = _build_cfg(ClassifierTrainConfig, args, {
        "data": args.data, "family": args.family, "epochs": args.epochs, "seed": args.seed,
        "batch_size": args.batch_size, "device": args.device,
    })  # fmt: skip
    result = train_classifier(cfg, args.out, progress=not args.no_progress)
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
        "device": args.device, "data": args.data,
        "channels": _ints(args.channels, "--channels"), "feat_layers": _ints(args.feat_layers, "--feat-layers"),
    }  # fmt: skip
    direct.update({k: v for k, v in flags.items() if v is not None})
    if args.channels:
        direct["width"] = None
    cfg = _build_cfg(DistillConfig, args, direct)
    out = compress(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                   val_scorer=_val_scorer(cfg, args.select_on_val))  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        print(out)
    return 0


def _ints(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated integers, got '{text}'") from None


def _val_scorer(cfg, enabled: bool):
    """Held-out FID (evaluator features, val split) for checkpoint selection, if available."""
    if not enabled:
        return None
    try:
        from gankd.evaluate import val_scorer
    except ImportError:
        return None
    return val_scorer(cfg)


def build_parser() -> argparse.ArgumentParser:
    from gankd.losses import ADV_LOSSES
    from gankd.registry import CLASSIFIERS

    ap = argparse.ArgumentParser(prog="gankd", description="Compress GAN generators by distillation.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("sample", help="write a PNG grid of a generator's samples")
    p.add_argument("--model", required=True, help="generator folder (config.json + model.safetensors)")
    p.add_argument("--seeds", default="0-63", help="seeds, e.g. 0-63 or 1,5,9")
    p.add_argument("--classes", help="conditional models: one class per row, e.g. 0,1,2 or all")
    p.add_argument("--nrow", type=int, default=8, help="images per row")
    p.add_argument("--out", required=True, help="output PNG path")
    _add_common(p)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("train-teacher", help="train a GAN from data (a teacher to compress)")
    p.add_argument("--data", help="fashion-mnist or folder:PATH")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--loss", choices=ADV_LOSSES)
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--diffaug", help="DiffAugment policy, e.g. translation,cutout")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this wall time")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly (with its saved train_config.json)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_train_teacher)

    p = sub.add_parser("train-classifier", help="train a classifier (evaluator or perceptual net)")
    p.add_argument("--data", help="fashion-mnist or folder:PATH")
    p.add_argument("--family", choices=CLASSIFIERS.names())
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_train_classifier)

    from gankd.distill import PRESETS, REAL_SOURCES
    from gankd.perceptual import PERCEPTUAL_NETS
    from gankd.students import INITS

    p = sub.add_parser("compress", help="distil a teacher generator into a slim student")
    p.add_argument("--teacher", help="teacher folder or shipped name (default: fmnist-teacher)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--preset", choices=sorted(PRESETS), help="quick (~10 min on 2 CPU cores) or full")
    p.add_argument("--width", type=float, help="student width relative to the teacher (e.g. 0.25)")
    p.add_argument("--channels", help="explicit per-stage student channels, e.g. 128,64,32,8")
    p.add_argument("--init", choices=INITS, help="prune: inherit the teacher's top channels; random")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr-g", type=float)
    p.add_argument("--lr-d", type=float)
    p.add_argument("--pixel", type=float, help="weight of the L1 pixel loss to the teacher")
    p.add_argument("--perc", type=float, help="weight of the perceptual loss")
    p.add_argument("--perceptual", choices=PERCEPTUAL_NETS, help="perceptual network (default fmnist)")
    p.add_argument("--feat", type=float, help="weight of the intermediate-feature loss")
    p.add_argument("--feat-layers", help="teacher feature indices for the feature loss, e.g. 1,2,3")
    p.add_argument("--adv", type=float, help="weight of the adversarial loss (0 = no discriminator)")
    p.add_argument("--adv-loss", choices=ADV_LOSSES)
    p.add_argument("--d-init", choices=("teacher", "fresh"), help="start D from the teacher's or fresh")
    p.add_argument("--real", choices=REAL_SOURCES, help="what D sees as real")
    p.add_argument("--kd", type=float, help="weight of soft-label KD (perceptual net's class head)")
    p.add_argument("--kd-temperature", type=float, help="KD temperature T")
    p.add_argument("--data", help="dataset for D's real images (fashion-mnist or folder:PATH)")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this wall time")
    p.add_argument("--no-select-on-val", dest="select_on_val", action="store_false",
                   help="select the checkpoint by pixel L1 to the teacher instead of val-split FID")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _overrides(p)
    _add_common(p)
    p.set_defaults(fn=cmd_compress)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return ap


# Later subcommands (compress, eval, export, report) register here.
_EXTRA_COMMANDS: list = []


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
        print(f"gankd {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
