"""A StyleGAN2-style GAN from "another code base", trained outside gankd.

This file stands in for a user's StyleGAN2 project. It does not import gankd. Its generator is
written the way the public StyleGAN2 implementations write theirs:

- a mapping network z -> w (pixel norm, then fully connected layers with equalized learning rate
  and a 0.01 learning-rate multiplier, leaky ReLU with gain sqrt(2)); a tracked average ``w_avg``
  for truncation (``truncation_psi``);
- a learned constant 4x4 input;
- synthesis layers = a modulated, demodulated 3x3 convolution (weight ``(1, out, in, k, k)``,
  per-sample scales from a ``modulation`` Linear on ``w``, run as one grouped convolution), a
  noise input with a learned strength, a per-channel bias and leaky ReLU;
- bilinear upsampling in front of the first convolution of each block;
- toRGB layers (modulated 1x1 convolution, no demodulation) summed into a skip image that is
  upsampled from block to block.

``noise_mode``: ``random`` (fresh noise every call, as in training), ``const`` (the fixed noise
buffers: the same image for the same z) or ``none``.

Training follows the official small-resolution configuration (non-saturating logistic loss,
lazy R1 on reals every 16 steps, Adam lr 0.002 betas (0, 0.99), a ResNet discriminator with
equalized learning rate and minibatch standard deviation, an exponential moving average ``g_ema``
of the generator, no style mixing, no path-length penalty). Saved the way those code bases save::

    torch.save({"g": ..., "d": ..., "g_ema": ..., "g_optim": ..., "d_optim": ..., "args": {...},
                "step": ...}, "checkpoint.pt")

Data: Fashion-MNIST's 60,000 training images (its 10,000 test images never seen), zero-padded
from 28 to 32 px, one channel, in [-1, 1].

    python benchmarks/thirdparty/stylegan2_style.py --out runs/stylegan2 --minutes 40

Resumes from ``--out/checkpoint.pt`` when it exists (atomic saves every ``--save-every`` steps).
"""

from __future__ import annotations

import argparse
import gzip
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

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate: weights stored at N(0, 1/lr_mul^2)
    and scaled by lr_mul / sqrt(in) at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(out) if self.act else out


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, n_mlp: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * n_mlp
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=0.01, act=True) for a, b in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution; the shapes come from the weight, as in the official code."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate
        self.upsample = upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        _, out_ch, in_ch, kh, kw = self.weight.shape
        b = x.shape[0]
        style = self.modulation(w).view(b, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, out_ch, 1, 1, 1)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h, wd = x.shape[-2:]
        out = F.conv2d(x.reshape(1, b * in_ch, h, wd), weight.reshape(b * out_ch, in_ch, kh, kw),
                       padding=kh // 2, groups=b)
        return out.view(b, out_ch, h, wd)


class StyledConv(nn.Module):
    """Modulated conv + noise (learned strength) + per-channel bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return lrelu(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, img_ch: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, img_ch, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, img_ch, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
        return out


class Generator(nn.Module):
    """z (N, z_dim) -> image (N, img_channels, resolution, resolution), roughly in [-1, 1]."""

    def __init__(self, z_dim: int = 128, w_dim: int = 128, n_mlp: int = 2, resolution: int = 32,
                 img_channels: int = 1, channel_base: int = 1024, channel_max: int = 128):
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, n_mlp)
        res = [4 * 2**i for i in range(int(math.log2(resolution)) - 1)]
        ch = {r: min(channel_base // r, channel_max) for r in res}
        self.input = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv1 = StyledConv(ch[4], ch[4], w_dim, 4)
        self.to_rgb1 = ToRGB(ch[4], img_channels, w_dim)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for prev, r in zip(res, res[1:]):
            self.convs.append(StyledConv(ch[prev], ch[r], w_dim, r, upsample=True))
            self.convs.append(StyledConv(ch[r], ch[r], w_dim, r))
            self.to_rgbs.append(ToRGB(ch[r], img_channels, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random",
                w_avg_beta: float = 0.995) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:  # the tracked average that truncation pulls toward
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, w_avg_beta))
        if truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
        x = self.input.repeat(z.shape[0], 1, 1, 1)
        x = self.conv1(x, w, noise_mode)
        img = self.to_rgb1(x, w, None)
        for i, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * i](x, w, noise_mode)
            x = self.convs[2 * i + 1](x, w, noise_mode)
            img = to_rgb(x, w, img)
        return img


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (weights N(0, 1), scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class DBlock(nn.Module):
    """ResNet discriminator block: two 3x3 convs and a 2x downsample, plus a 1x1 skip."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, padding=1)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, padding=1)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.skip(x), 2)
        x = lrelu(self.conv0(x))
        x = F.avg_pool2d(lrelu(self.conv1(x)), 2)
        return (x + y) / SQRT2


class Discriminator(nn.Module):
    def __init__(self, resolution: int = 32, img_channels: int = 1, channel_base: int = 1024, channel_max: int = 128):
        super().__init__()
        res = [resolution // 2**i for i in range(int(math.log2(resolution)) - 1)]  # 32, 16, 8, 4
        ch = {r: min(channel_base // r, channel_max) for r in res}
        self.from_rgb = EqualConv2d(img_channels, ch[resolution], 1)
        self.blocks = nn.ModuleList(DBlock(ch[r], ch[r // 2]) for r in res[:-1])
        self.conv = EqualConv2d(ch[4] + 1, ch[4], 3, padding=1)
        self.fc = EqualLinear(ch[4] * 16, ch[4])
        self.out = EqualLinear(ch[4], 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = lrelu(self.from_rgb(img))
        for block in self.blocks:
            x = block(x)
        g = min(4, x.shape[0])  # minibatch standard deviation
        b, c, h, w = x.shape
        y = x.view(g, -1, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean([1, 2, 3]).view(-1, 1, 1, 1).repeat(g, 1, h, w)
        x = lrelu(self.conv(torch.cat([x, y], 1)))
        return self.out(lrelu(self.fc(x.flatten(1)))).squeeze(1)


def load_fashion(path: str = FASHION) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    x = torch.from_numpy(raw.copy()).float().div(127.5).sub(1.0).unsqueeze(1)
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    x = images.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * h, nrow * w, dtype=torch.uint8)
    for i in range(n):
        canvas[:, (i // nrow) * h:(i // nrow + 1) * h, (i % nrow) * w:(i % nrow + 1) * w] = x[i]
    arr = canvas.permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if c == 1 else arr).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/stylegan2", help="folder for checkpoint.pt, samples, log")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--r1", type=float, default=0.05, help="R1 weight (gamma / 2 of the official config)")
    ap.add_argument("--r1-every", type=int, default=16)
    ap.add_argument("--ema-kimg", type=float, default=5.0, help="g_ema half-life in thousands of images")
    ap.add_argument("--channel-max", type=int, default=128)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget, counted across resumes")
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
    kw = {"channel_max": args.channel_max}
    G, D, G_ema = Generator(**kw), Discriminator(**kw), Generator(**kw)
    G_ema.load_state_dict(G.state_dict())
    G_ema.eval().requires_grad_(False)
    g_opt = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99))
    c = args.r1_every / (args.r1_every + 1)  # lazy regularization: the official rescaling of lr and betas
    d_opt = torch.optim.Adam(D.parameters(), lr=args.lr * c, betas=(0.0, 0.99**c))
    step, elapsed = 0, 0.0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        s = torch.load(ckpt, weights_only=True)
        G.load_state_dict(s["g"]), D.load_state_dict(s["d"]), G_ema.load_state_dict(s["g_ema"])
        g_opt.load_state_dict(s["g_optim"]), d_opt.load_state_dict(s["d_optim"])
        step, elapsed = s["step"], s["elapsed_s"]
        torch.set_rng_state(s["rng"])
    data = load_fashion()
    fixed = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(1234))
    beta = 0.5 ** (args.batch_size / (args.ema_kimg * 1000))
    t0 = time.time() - elapsed

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"g": G.state_dict(), "d": D.state_dict(), "g_ema": G_ema.state_dict(),
                    "g_optim": g_opt.state_dict(), "d_optim": d_opt.state_dict(), "args": vars(args),
                    "step": step, "elapsed_s": time.time() - t0, "rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt)
        with torch.no_grad():
            save_grid(G_ema(fixed, noise_mode="const"), out / "samples.png")

    log = open(out / "log.jsonl", "a")
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        real = data[torch.randint(len(data), (args.batch_size,))]
        z = torch.randn(args.batch_size, G.z_dim)
        # D: logistic loss, lazy R1 on reals
        fake = G(z).detach()
        loss_d = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        if step % args.r1_every == 0:
            real.requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
            loss_d = loss_d + args.r1 * args.r1_every * grad.pow(2).sum([1, 2, 3]).mean()
        d_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        d_opt.step()
        # G: non-saturating loss
        loss_g = F.softplus(-D(G(torch.randn(args.batch_size, G.z_dim)))).mean()
        g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        g_opt.step()
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - beta)
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
