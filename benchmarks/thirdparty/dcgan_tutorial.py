"""A GAN from "another code base": the PyTorch DCGAN tutorial architecture, trained outside gankd.

This file stands in for a user's own project. It does not import gankd: it defines its
generator and discriminator in the tutorial's layout (one ``nn.Sequential`` of
ConvTranspose2d / BatchNorm2d / ReLU ending in Tanh; latent (N, nz, 1, 1); 64x64 RGB),
trains them with the tutorial's recipe (BCE, Adam 2e-4, betas 0.5/0.999, N(0, 0.02)
init), and saves them the way the tutorial does::

    torch.save({"netG_state_dict": ..., "netD_state_dict": ..., "optimizerG_state_dict": ...,
                "optimizerD_state_dict": ..., "step": ..., ...}, "checkpoint.tar")

gankd then brings the generator in with ``gankd import`` (see docs/own-gan.md).

Data: any folder of images (PNG/JPEG), transparent pixels composited onto white, resized
to 64x64. The default is the unit sprites of Battle for Wesnoth
(``apt-get install -y wesnoth-1.16-data``). Files whose sorted index is 4 mod 10 are left
out: that is gankd's ``test`` split of a folder, kept unseen for honest evaluation.

    python benchmarks/thirdparty/dcgan_tutorial.py --out runs/tutorial --minutes 60

The run resumes from ``--out/checkpoint.tar`` when it exists (atomic saves every
``--save-every`` steps), so it can be stopped and restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

WESNOTH = "/usr/share/games/wesnoth/1.16/data/core/images/units"
EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class Generator(nn.Module):
    """z (N, nz, 1, 1) -> image (N, nc, 64, 64) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # 1 -> 4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # 4 -> 8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 8 -> 16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # 16 -> 32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 32 -> 64
            nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    """image (N, nc, 64, 64) -> probability (N,)."""

    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # 64 -> 32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # 32 -> 16
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # 16 -> 8
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # 8 -> 4
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # 4 -> 1
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m: nn.Module) -> None:
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def load_images(root: str, size: int = 64) -> torch.Tensor:
    """All images under ``root`` except every 10th from the 5th (sorted), as uint8 (N, 3, size, size)."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in EXTS)
    if not files:
        raise SystemExit(f"no images under {root}: apt-get install -y wesnoth-1.16-data, or pass --data DIR")
    out = []
    for i, f in enumerate(files):
        if i % 10 == 4:  # gankd's folder test split stays unseen
            continue
        with Image.open(f) as im:
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im).convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            out.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()))
    return torch.stack(out)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    rows = (n + nrow - 1) // nrow
    canvas = torch.full((c, rows * (h + 2) + 2, nrow * (w + 2) + 2), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[:, 2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = x[i]
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=WESNOTH, help="image folder (default: Wesnoth unit sprites)")
    ap.add_argument("--out", default="runs/tutorial", help="folder for checkpoint.tar, samples, log")
    ap.add_argument("--nz", type=int, default=100)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget, counted across resumes")
    ap.add_argument("--steps", type=int, default=10**9)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=999)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_images(args.data)
    torch.manual_seed(args.seed)
    netG, netD = Generator(args.nz, args.ngf, 3), Discriminator(args.ndf, 3)
    netG.apply(weights_init)
    netD.apply(weights_init)
    optG = torch.optim.Adam(netG.parameters(), lr=args.lr, betas=(0.5, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=args.lr, betas=(0.5, 0.999))
    criterion = nn.BCELoss()
    fixed = torch.randn(64, args.nz, 1, 1, generator=torch.Generator().manual_seed(0))
    ckpt, step, used = out / "checkpoint.tar", 0, 0.0
    if ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        netG.load_state_dict(st["netG_state_dict"])
        netD.load_state_dict(st["netD_state_dict"])
        optG.load_state_dict(st["optimizerG_state_dict"])
        optD.load_state_dict(st["optimizerD_state_dict"])
        step, used = int(st["step"]), float(st["wall_s"])
        print(f"resumed at step {step} ({used / 60:.1f} min used)", flush=True)

    def save() -> None:
        tmp = ckpt.with_suffix(".tar.tmp")
        torch.save({"netG_state_dict": netG.state_dict(), "netD_state_dict": netD.state_dict(),
                    "optimizerG_state_dict": optG.state_dict(), "optimizerD_state_dict": optD.state_dict(),
                    "step": step, "wall_s": used + time.monotonic() - t0, "nz": args.nz, "ngf": args.ngf,
                    "ndf": args.ndf, "images": len(data)}, tmp)  # fmt: skip
        os.replace(tmp, ckpt)
        with torch.no_grad():
            netG.eval()
            save_grid(netG(fixed), out / "samples.png")
            netG.train()

    t0 = time.monotonic()
    log = open(out / "log.jsonl", "a")
    while step < args.steps and used + time.monotonic() - t0 < args.minutes * 60:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(0, len(data), (args.batch_size,), generator=g)
        real = data[idx].float() / 127.5 - 1.0
        if torch.rand((), generator=g) < 0.5:  # horizontal flip
            real = real.flip(3)
        b = real.shape[0]
        # (1) D: maximise log D(x) + log(1 - D(G(z)))
        optD.zero_grad()
        err_real = criterion(netD(real), torch.ones(b))
        z = torch.randn(b, args.nz, 1, 1, generator=g)
        fake = netG(z)
        err_fake = criterion(netD(fake.detach()), torch.zeros(b))
        (err_real + err_fake).backward()
        optD.step()
        # (2) G: maximise log D(G(z))
        optG.zero_grad()
        err_g = criterion(netD(fake), torch.ones(b))
        err_g.backward()
        optG.step()
        step += 1
        if step % 50 == 0:
            rec = {"step": step, "loss_d": float(err_real + err_fake), "loss_g": float(err_g),
                   "wall_s": round(used + time.monotonic() - t0, 1)}  # fmt: skip
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if step % args.save_every == 0:
            save()
    save()
    print(f"done: step {step}, {(used + time.monotonic() - t0) / 60:.1f} min; {ckpt}", flush=True)


if __name__ == "__main__":
    main()
