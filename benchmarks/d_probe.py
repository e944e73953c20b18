"""Can a fresh discriminator tell a generator's samples from the data under a DiffAugment policy?

A GAN whose discriminator cannot separate real from generated images gives its generator no
signal. This probe freezes a generator, trains a fresh gankd discriminator (the family and
shape train-teacher uses) against it for ``--steps`` steps per policy, and records the hinge
loss (2 = chance, 0 = perfectly separated) and the mean logits on real and generated images.
Same seed, data order and noise for every policy.

    python benchmarks/d_probe.py --model runs/wesnoth_uncond/teacher/generator --data wesnoth-units \\
        --policies "none;translation;translation,cutout;color,translation,cutout" \\
        --out benchmarks/results/own_data/d_probe.json

Writes ``--out`` (JSON: per policy, the loss every 25 steps and the mean of the last 50).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from gankd.adapter import adapter_for
from gankd.augment import diff_augment
from gankd.checkpoint import atomic_write_bytes, load_generator
from gankd.data import load_dataset
from gankd.fileio import portable_path
from gankd.losses import d_loss
from gankd.models import DiscriminatorConfig
from gankd.registry import DISCRIMINATORS


def probe(gen_model, images: torch.Tensor, policy: str, steps: int, batch: int, seed: int, lr: float) -> dict:
    c, r = images.shape[1], images.shape[2]
    torch.manual_seed(seed)
    D = DISCRIMINATORS.get("dcgan")(DiscriminatorConfig(resolution=r, image_channels=c, num_classes=0))
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    trace, t0 = [], time.perf_counter()
    for step in range(steps):
        real = images[torch.randint(0, len(images), (batch,), generator=gen)].float() / 127.5 - 1
        with torch.no_grad():
            fake = gen_model.to_unit(gen_model(gen_model.random_inputs(batch, gen))) * 2 - 1
        aug = (lambda x: diff_augment(x, policy, gen)) if policy != "none" else (lambda x: x)
        lr_, lf = D(aug(real)), D(aug(fake))
        loss = d_loss(lr_, lf, "hinge")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trace.append({"step": step + 1, "loss_d": loss.item(), "real_logit": lr_.mean().item(),
                      "fake_logit": lf.mean().item()})  # fmt: skip
    last = trace[-50:]
    return {"policy": policy, "loss_d_last50": statistics.mean(t["loss_d"] for t in last),
            "logit_gap_last50": statistics.mean(t["real_logit"] - t["fake_logit"] for t in last),
            "seconds": round(time.perf_counter() - t0, 1), "trace": trace[24::25]}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="generator folder (frozen)")
    ap.add_argument("--data", required=True, help="data spec; the fit split is used")
    ap.add_argument("--policies", default="none;translation;translation,cutout;color,translation,cutout",
                    help="DiffAugment policies separated by ';' (none = no augmentation)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    g = adapter_for(load_generator(args.model))
    c, r, _ = g.output_shape()
    images = load_dataset(args.data, "fit", resolution=r, channels=c).images
    results = []
    for policy in args.policies.split(";"):
        res = probe(g, images, policy, args.steps, args.batch_size, args.seed, args.lr)
        print(f"{policy:28s} loss_d {res['loss_d_last50']:.3f} logit gap {res['logit_gap_last50']:.2f}", flush=True)
        results.append(res)
    out = {"model": portable_path(Path(args.model)), "data": f"{args.data}:fit", "steps": args.steps,
           "batch_size": args.batch_size, "lr_d": args.lr, "seed": args.seed, "loss": "hinge (2 = chance)",
           "command": " ".join(map(shlex.quote, ["python", *sys.argv])), "results": results}  # fmt: skip
    atomic_write_bytes(Path(args.out), (json.dumps(out, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
