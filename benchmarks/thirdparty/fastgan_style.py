"""A FastGAN-style ("lightweight GAN") generator from "another code base", trained outside gankd.

This file stands in for a user's FastGAN project. It does not import gankd. The generator is
written the way the public FastGAN implementation writes it, at 64 px:

- a 4x4 start from the latent (ConvTranspose2d, BatchNorm, GLU);
- up-sampling blocks: nearest 2x upsample, 3x3 conv to twice the channels, BatchNorm, GLU (which
  halves the channels: the second half gates the first); every other block ("comp") has two
  convs and noise injection with a learned strength;
- skip-layer excitation (SLE): a low-resolution map, pooled to 4x4, through a 4x4 conv, Swish,
  1x1 conv and sigmoid, gates the channels of a high-resolution map (8 -> 32 px, 4 -> 64 px... here
  4 px gates 32 px and 8 px gates 64 px);
- spectral normalisation on every convolution; two output heads (64 px and 32 px, tanh), returned
  as a list ``[img_64, img_32]`` as FastGAN returns ``[im_1024, im_128]``.

Training follows FastGAN: hinge loss, a discriminator with a self-supervised reconstruction
decoder on its 8x8 features (here an MSE reconstruction of the downsampled real image), the
DiffAugment policy color,translation, Adam 2e-4 betas (0.5, 0.999), batch 8, an EMA copy of G.
Saved as FastGAN saves::

    torch.save({"g": ..., "d": ..., "g_ema": ..., "opt_g": ..., "opt_d": ..., "step": ...}, "checkpoint.pt")

Data: the unit sprites of Battle for Wesnoth (``apt-get install -y wesnoth-1.16-data``), RGBA
composited onto white, 64x64; files whose sorted index is 4 mod 10 are left out (gankd's ``test``
split of a folder).

    python benchmarks/thirdparty/fastgan_style.py --out runs/fastgan --minutes 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import spectral_norm

WESNOTH = "/usr/share/games/wesnoth/1.16/data/core/images/units"
EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def conv2d(*a, **k) -> nn.Module:
    return spectral_norm(nn.Conv2d(*a, **k))


def convT2d(*a, **k) -> nn.Module:
    return spectral_norm(nn.ConvTranspose2d(*a, **k))


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class GLU(nn.Module):
    def forward(self, x):
        nc = x.size(1) // 2
        return x[:, :nc] * torch.sigmoid(x[:, nc:])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, feat, noise=None):
        if noise is None:
            b, _, h, w = feat.shape
            noise = torch.randn(b, 1, h, w, device=feat.device)
        return feat + self.weight * noise


class SEBlock(nn.Module):
    """Skip-layer excitation: ``feat_big * gate(feat_small)``."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), conv2d(ch_in, ch_out, 4, 1, 0, bias=False), Swish(),
                                  conv2d(ch_out, ch_out, 1, 1, 0, bias=False), nn.Sigmoid())  # fmt: skip

    def forward(self, feat_small, feat_big):
        return feat_big * self.main(feat_small)


class InitLayer(nn.Module):
    def __init__(self, nz: int, channel: int):
        super().__init__()
        self.init = nn.Sequential(convT2d(nz, channel * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(channel * 2), GLU())

    def forward(self, noise):
        return self.init(noise.view(noise.shape[0], -1, 1, 1))


def up_block(in_planes: int, out_planes: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         conv2d(in_planes, out_planes * 2, 3, 1, 1, bias=False), nn.BatchNorm2d(out_planes * 2),
                         GLU())  # fmt: skip


def up_block_comp(in_planes: int, out_planes: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         conv2d(in_planes, out_planes * 2, 3, 1, 1, bias=False), NoiseInjection(),
                         nn.BatchNorm2d(out_planes * 2), GLU(),
                         conv2d(out_planes, out_planes * 2, 3, 1, 1, bias=False), NoiseInjection(),
                         nn.BatchNorm2d(out_planes * 2), GLU())  # fmt: skip


class Generator(nn.Module):
    """z (N, nz) -> [image (N, nc, 64, 64), image (N, nc, 32, 32)] in [-1, 1]."""

    def __init__(self, ngf: int = 16, nz: int = 128, nc: int = 3):
        super().__init__()
        nfc = {4: 16, 8: 8, 16: 4, 32: 2, 64: 1}
        ch = {k: int(v * ngf) for k, v in nfc.items()}
        self.init = InitLayer(nz, ch[4])
        self.feat_8 = up_block_comp(ch[4], ch[8])
        self.feat_16 = up_block(ch[8], ch[16])
        self.feat_32 = up_block_comp(ch[16], ch[32])
        self.feat_64 = up_block(ch[32], ch[64])
        self.se_32 = SEBlock(ch[4], ch[32])
        self.se_64 = SEBlock(ch[8], ch[64])
        self.to_64 = conv2d(ch[64], nc, 3, 1, 1, bias=False)
        self.to_32 = conv2d(ch[32], nc, 1, 1, 0, bias=False)

    def forward(self, z):
        f4 = self.init(z)
        f8 = self.feat_8(f4)
        f16 = self.feat_16(f8)
        f32 = self.se_32(f4, self.feat_32(f16))
        f64 = self.se_64(f8, self.feat_64(f32))
        return [torch.tanh(self.to_64(f64)), torch.tanh(self.to_32(f32))]


class Discriminator(nn.Module):
    """Hinge-loss D on 64 px with a reconstruction decoder on its 8x8 features, and a 32 px head."""

    def __init__(self, ndf: int = 16, nc: int = 3):
        super().__init__()

        def down(a, b):
            return nn.Sequential(conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2))

        self.down_from_big = nn.Sequential(conv2d(nc, ndf, 3, 1, 1), nn.LeakyReLU(0.2), down(ndf, ndf * 2),  # 32
                                           down(ndf * 2, ndf * 4), down(ndf * 4, ndf * 8))  # 16, 8  # fmt: skip
        self.rf_big = nn.Sequential(conv2d(ndf * 8, ndf * 8, 1, 1, 0, bias=False), nn.LeakyReLU(0.2),
                                    conv2d(ndf * 8, 1, 4, 1, 0, bias=False))  # fmt: skip
        self.down_from_small = nn.Sequential(conv2d(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2), down(ndf, ndf * 2),
                                             down(ndf * 2, ndf * 4))  # 32 -> 4  # fmt: skip
        self.rf_small = conv2d(ndf * 4, 1, 4, 1, 0, bias=False)
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), conv2d(ndf * 8, ndf * 2, 3, 1, 1), nn.GLU(1),
                                     nn.Upsample(scale_factor=2), conv2d(ndf, nc, 3, 1, 1), nn.Tanh())  # fmt: skip

    def forward(self, imgs, label: str = "fake"):
        big, small = imgs
        f8 = self.down_from_big(big)
        logits = torch.cat([self.rf_big(f8).flatten(1), self.rf_small(self.down_from_small(small)).flatten(1)], 1)
        if label == "real":
            return logits, self.decoder(f8)  # a 32 px reconstruction of the input
        return logits


# DiffAugment (color, translation), as FastGAN trains with
def diff_augment(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1) - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1) * 2) + mean
    mean = x.mean([1, 2, 3], keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1) + 0.5) + mean
    shift = int(x.shape[2] * 0.125 + 0.5)
    tx, ty = torch.randint(-shift, shift + 1, (2,)).tolist()
    return torch.roll(x, shifts=(tx, ty), dims=(2, 3))


def load_images(root: str, size: int = 64) -> torch.Tensor:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in EXTS)
    files = [f for i, f in enumerate(files) if i % 10 != 4]  # gankd's test split stays unseen
    out = []
    for f in files:
        im = Image.open(f).convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im).convert("RGB").resize((size, size), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(out).float().div(127.5).sub(1.0)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    x = images.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    canvas = torch.zeros(c, math.ceil(n / nrow) * h, nrow * w, dtype=torch.uint8)
    for i in range(n):
        canvas[:, (i // nrow) * h:(i // nrow + 1) * h, (i % nrow) * w:(i % nrow + 1) * w] = x[i]
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=WESNOTH, help="image folder (default: Wesnoth unit sprites)")
    ap.add_argument("--out", default="runs/fastgan")
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--ndf", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget, counted across resumes")
    ap.add_argument("--steps", type=int, default=10**9)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    G, D, G_ema = Generator(args.ngf), Discriminator(args.ndf), Generator(args.ngf)
    G_ema.load_state_dict(G.state_dict())
    G_ema.eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    step, elapsed = 0, 0.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        s = torch.load(ckpt, weights_only=True)
        G.load_state_dict(s["g"]), D.load_state_dict(s["d"]), G_ema.load_state_dict(s["g_ema"])
        opt_g.load_state_dict(s["opt_g"]), opt_d.load_state_dict(s["opt_d"])
        step, elapsed = s["step"], s["elapsed_s"]
        torch.set_rng_state(s["rng"])
    data = load_images(args.data)
    fixed = torch.randn(64, 128, generator=torch.Generator().manual_seed(1234))
    t0 = time.time() - elapsed

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"g": G.state_dict(), "d": D.state_dict(), "g_ema": G_ema.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "step": step, "elapsed_s": time.time() - t0,
                    "rng": torch.get_rng_state(), "args": vars(args)}, tmp)  # fmt: skip
        os.replace(tmp, ckpt)
        with torch.no_grad():
            save_grid(G_ema(fixed)[0], out / "samples.png")

    log = open(out / "log.jsonl", "a")
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        real = data[torch.randint(len(data), (args.batch_size,))]
        fake = G(torch.randn(args.batch_size, 128))
        real_aug = diff_augment(real)
        real_pair = [real_aug, F.interpolate(real_aug, size=32, mode="bilinear", align_corners=False)]
        fake_pair = [diff_augment(f) for f in fake]
        logits_r, rec = D(real_pair, "real")
        loss_d = (F.relu(1 - logits_r).mean() + F.mse_loss(rec, real_pair[1])
                  + F.relu(1 + D([f.detach() for f in fake_pair])).mean())  # fmt: skip
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = -D(fake_pair).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 0.001)
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        step += 1
        if step % 50 == 0:
            log.write(json.dumps({"step": step, "loss_d": loss_d.item(), "loss_g": loss_g.item(),
                                  "elapsed_s": round(time.time() - t0, 1)}) + "\n")
            log.flush()
        if step % args.save_every == 0:
            save()
    save()
    print(f"step {step}, {time.time() - t0:.0f} s: {ckpt}")


if __name__ == "__main__":
    main()
