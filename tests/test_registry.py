import pytest

import gankd  # noqa: F401  (registers model families)
from gankd.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS, Registry


def test_builtin_families_are_registered():
    assert "dcgan" in GENERATORS and "dcgan" in DISCRIMINATORS
    assert {"vgg", "resnet"} <= set(CLASSIFIERS.names())


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError) as e:
        CLASSIFIERS.get("alexnet")
    msg = e.value.args[0]
    assert "alexnet" in msg and "resnet" in msg and "vgg" in msg


def test_double_registration_is_refused():
    reg = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(int)
    assert reg.get("a") is object and reg.names() == ["a"]


def test_ordered_registry_keeps_registration_order_and_resolves_aliases():
    reg = Registry("runtime", ordered=True)
    reg.add("zeta", 1)
    reg.add("alpha", 2, aliases=("a-long-name",))
    assert reg.names() == ["zeta", "alpha"] and list(reg) == ["zeta", "alpha"] and len(reg) == 2
    assert "a-long-name" in reg and reg.get("a-long-name") == 2 and reg.canonical("a-long-name") == "alpha"
    assert reg.accepted() == ("zeta", "alpha", "a-long-name")
    assert reg.check("zeta", "--runtime") == "zeta"
    with pytest.raises(ValueError, match="--runtime must be one of zeta, alpha, got 'beta'"):
        reg.check("beta", "--runtime")


@pytest.fixture
def scratch(monkeypatch):
    """Register into a live registry for one test only."""

    def add(registry, name, obj):
        monkeypatch.setitem(registry._items, name, obj)

    return add


def test_a_new_degradation_task_is_one_registration(scratch):
    import torch

    from gankd import paired

    scratch(paired.DEGRADATIONS, "invert", lambda x, gens, p: -x)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert paired.check_task("invert+denoise") == "invert+denoise"
    want = paired.degrade_batch(-x, "denoise", [0, 1])
    assert torch.equal(paired.degrade_batch(x, "invert+denoise", [0, 1]), want)
    with pytest.raises(ValueError, match="choose from denoise, .*, invert"):
        paired.check_task("nope")


def test_a_new_adversarial_loss_is_one_registration(scratch):
    import torch

    from gankd.distill import DistillConfig
    from gankd.losses import ADVERSARIAL, AdversarialLoss, d_loss, g_loss

    with pytest.raises(ValueError, match="--adv-loss must be one of hinge, ns"):
        DistillConfig(adv_loss="lsgan")
    scratch(ADVERSARIAL, "lsgan", AdversarialLoss(d=lambda r, f: ((r - 1) ** 2).mean() + (f**2).mean(),
                                                  g=lambda f: ((f - 1) ** 2).mean()))  # fmt: skip
    assert DistillConfig(adv_loss="lsgan").adv_loss == "lsgan"
    assert d_loss(torch.ones(4), torch.zeros(4), "lsgan").item() == 0.0
    assert g_loss(torch.zeros(4), "lsgan").item() == 1.0


def test_a_new_runtime_is_timed_beside_the_others(scratch):
    from torch import nn

    from gankd.metrics.efficiency import interleaved_speed
    from gankd.runtimes import RUNTIMES, Options, Prepared, Runtime

    calls = []

    def prepare(model, batches, opt):
        return Prepared(run={b: (lambda b=b: calls.append(b)) for b in batches}, info={"kind": "fake"})

    scratch(RUNTIMES, "fake", Runtime(prepare, host_clock=True))
    net = nn.Sequential(nn.Linear(4, 4))
    r = interleaved_speed({"a": net, "b": net}, runtimes=("fake",), rounds=2, latency_calls=3, throughput_calls=1,
                          big_batch=5, options=Options(warmup=1))  # fmt: skip
    assert r["models"]["a"]["fake"]["kind"] == "fake" and r["protocol"]["runtimes"] == ["fake"]
    assert calls.count(1) == 2 * 2 * 3 and calls.count(5) == 2 * 2 * 1  # rounds x models x calls


def test_a_pruner_that_refuses_hands_the_student_to_the_next(scratch, monkeypatch):
    from test_export import tiny

    from gankd import pruning
    from gankd.adapter import adapter_for

    def refuse(model, inputs, width, keep):
        raise pruning.PruneRefused("not today")

    first = pruning.Pruner(refuse, "refuses", "none")
    monkeypatch.setattr(pruning, "PRUNERS", pruning.Registry("pruner", ordered=True))
    pruning.PRUNERS.add("refuses", first)
    pruning.PRUNERS.add("torch-pruning", pruning.Pruner(pruning._torch_pruning, "torch-pruning DepGraph", "L1"))
    teacher = adapter_for(tiny(num_classes=0))
    student = pruning.prune_generator(teacher, width=0.5)
    assert student.prune_info["method"] == "torch-pruning DepGraph"
    pruning.PRUNERS._items.pop("torch-pruning")
    with pytest.raises(ValueError, match="no pruner takes this generator \\(refuses: not today\\); .*--keep-layers"):
        pruning.prune_generator(teacher, width=0.5)


def test_a_new_distribution_metric_is_one_registration(scratch):
    import torch

    from gankd.evaluate import parse_metrics
    from gankd.metrics import fidelity
    from gankd.metrics.distribution import FIDELITY_METRICS, FidelityMetric

    def mean_gap(f1, f2, layer, kwargs):  # distance between the mean features of the two sets
        return {"mean_gap": float((f1[layer].double().mean(0) - f2[layer].double().mean(0)).norm())}

    with pytest.raises(ValueError, match="choose from fid, isc, kid, prc"):
        parse_metrics("meangap")
    scratch(FIDELITY_METRICS, "meangap", FidelityMetric(mean_gap, {"mean_gap": "mean_gap"}, "fid", "mean gap",
                                                         min_images=3))  # fmt: skip
    assert parse_metrics("fid,meangap") == ("fid", "meangap")
    g = torch.Generator().manual_seed(0)
    a, b = ((torch.rand(20, 1, 32, 32, generator=g) * 255).to(torch.uint8) for _ in range(2))
    r = fidelity.fidelity_metrics(a, b, ("fid", "meangap"), 20, extractor="random-conv", cache=False)
    same = fidelity.fidelity_metrics(a, a, ("meangap",), 20, extractor="random-conv", cache=False)
    assert r["mean_gap"] > 0 and same["mean_gap"] == 0.0 and "fid" in r
    assert r["protocol"]["metrics"] == ["fid", "meangap"]
    with pytest.raises(ValueError, match="mean gap needs at least 3 images in each set"):
        fidelity.fidelity_metrics(a[:2], b[:2], ("meangap",), 2, extractor="random-conv", cache=False)
