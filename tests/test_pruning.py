"""Students of any architecture by torch-pruning: shapes, MACs, init, save + reload elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from foreign_models import ResNetGenerator, TutorialDCGAN, UNetGenerator, trained_like
from safetensors.torch import load_file
from testkit import tiny_generator

from gankd.adapter import GeneratorAdapter, InputSpec, IOSpec, native_spec
from gankd.importer import load_module_generator, save_module_generator
from gankd.pruning import prune_generator

pytest.importorskip("torch_pruning")
ROOT = Path(__file__).resolve().parent.parent
SEEDS = list(range(4))


def _lat(*shape, classes=0, rng=(-1, 1)):
    inputs = [InputSpec("z", "latent", shape)]
    if classes:
        inputs.append(InputSpec("y", "label", (), classes))
    return IOSpec(inputs, rng, "none")


# name: (class path, kwargs, factory, spec)
STYLES = {
    "tutorial": ("foreign_models:TutorialDCGAN", {"nz": 16, "ngf": 8}, lambda: TutorialDCGAN(16, 8), _lat(16, 1, 1)),
    "resnet": ("foreign_models:ResNetGenerator", {}, lambda: ResNetGenerator(), _lat(16)),
    "resnet-cond": ("foreign_models:ResNetGenerator", {"num_classes": 5}, lambda: ResNetGenerator(num_classes=5),
                    _lat(16, classes=5)),
    "unet": ("foreign_models:UNetGenerator", {}, lambda: UNetGenerator(), _lat(16, rng=(0, 1))),
}  # fmt: skip


def _adapter(name: str) -> GeneratorAdapter:
    if name == "dcgan":  # gankd's own family, class-conditional, through its native spec
        g = tiny_generator(base_channels=8)
        return GeneratorAdapter(g, native_spec(g))
    torch.manual_seed(0)
    return GeneratorAdapter(trained_like(STYLES[name][2]()), STYLES[name][3])


def _images(a: GeneratorAdapter) -> torch.Tensor:
    with torch.no_grad():
        return a(a.seeded_inputs(SEEDS))


@pytest.mark.parametrize("width", [0.5, 0.25])
@pytest.mark.parametrize("name", [*STYLES, "dcgan"])
def test_prune_width(name, width):
    t = _adapter(name)
    before = {k: v.clone() for k, v in t.state_dict().items()}
    s = prune_generator(t, width=width)
    info = s.prune_info
    assert s.output_shape() == t.output_shape()
    assert s.spec.to_dict() == t.spec.to_dict()
    # the first layer eats the latent and the last emits the image channels: between w^2 and w
    assert width**2 - 0.03 <= info["macs_ratio"] <= width + 0.05, info["macs_ratio"]
    if name in ("dcgan", "unet"):  # Linear -> view(B, -1, 4, 4): the 4x4 stage is pruned too
        assert any(g["root"].endswith("(reshaped)") for g in info["groups"])
        assert info["macs_ratio"] <= width**2 + 0.05
    if name.startswith("resnet"):  # view(B, self.ch * 4, 4, 4) fixes that stage: kept, and said so
        assert any("fixes the channels" in k for k in info["kept_whole"])
    assert info["student_params"] < info["teacher_params"] and info["importance"].startswith("L1")
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items())  # teacher untouched
    assert torch.isfinite(_images(s)).all()


def test_init_random_keeps_shapes_and_target_macs():
    t = _adapter("tutorial")
    p = prune_generator(t, width=0.5)
    r = prune_generator(t, width=0.5, init="random", seed=3)
    assert {k: v.shape for k, v in p.state_dict().items()} == {k: v.shape for k, v in r.state_dict().items()}
    assert not torch.equal(p.state_dict()["main.0.weight"], r.state_dict()["main.0.weight"])
    r2 = prune_generator(t, width=0.5, init="random", seed=3)
    assert all(torch.equal(v, r2.state_dict()[k]) for k, v in r.state_dict().items())
    m = prune_generator(t, target_macs=0.3)
    assert 0.2 <= m.prune_info["macs_ratio"] <= 0.3 and m.prune_info["target_macs"] == 0.3
    json.dumps(m.prune_info)  # goes into the run's JSON as is
    with pytest.raises(ValueError, match="--width"):
        prune_generator(t, width=1.5)
    with pytest.raises(ValueError, match="--init"):
        prune_generator(t, width=0.5, init="zeros")


def test_pruned_save_reload_in_fresh_process(tmp_path):
    expected = {}
    for name in ("tutorial", "resnet-cond", "unet"):
        cls, kwargs, _, _ = STYLES[name]
        s = prune_generator(_adapter(name), width=0.25)
        folder = save_module_generator(s, None, cls, kwargs, tmp_path / name, extra={"prune": s.prune_info})
        expected[name] = _images(s)
        assert load_module_generator(folder).state_dict().keys() == s.state_dict().keys()
    code = (
        "import sys, torch\n"
        "from safetensors.torch import save_file\n"
        "from gankd.importer import load_module_generator\n"
        "out = {}\n"
        "for name in sys.argv[2:]:\n"
        "    a = load_module_generator(f'{sys.argv[1]}/{name}')\n"
        f"    with torch.no_grad(): out[name] = a(a.seeded_inputs({SEEDS!r})).contiguous()\n"
        "save_file(out, f'{sys.argv[1]}/out.safetensors')\n"
    )
    # the same thread count as this process: bit-identical needs the same reduction order
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(tmp_path), *expected], check=True, env=env, timeout=120)
    got = load_file(str(tmp_path / "out.safetensors"))
    for name, img in expected.items():
        assert torch.equal(got[name], img), name
