"""benchmarks/d_probe.py: a fresh discriminator against a frozen generator, per augmentation policy."""

import pytest
import torch
from testkit import load_benchmark

from gankd.adapter import adapter_for
from gankd.models import GeneratorConfig
from gankd.registry import GENERATORS


@pytest.fixture(scope="module")
def d_probe():
    return load_benchmark("d_probe")


def test_a_separable_generator_is_separated_and_the_trace_is_kept(d_probe):
    torch.manual_seed(0)
    g = adapter_for(GENERATORS.get("dcgan")(GeneratorConfig(resolution=8, image_channels=3, num_classes=0,
                                                            base_channels=8, z_dim=8)).eval())  # fmt: skip
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)  # noise; an untrained G gives near-flat gray
    res = d_probe.probe(g, images, "none", steps=100, batch=16, seed=0, lr=1e-3)
    assert res["policy"] == "none" and [t["step"] for t in res["trace"]] == [25, 50, 75, 100]
    assert res["loss_d_last50"] < 1.0 and res["logit_gap_last50"] > 1.0  # 2 = chance
    aug = d_probe.probe(g, images, "translation,cutout", steps=25, batch=16, seed=0, lr=1e-3)
    assert len(aug["trace"]) == 1 and aug["trace"][0]["loss_d"] >= 0
