"""Cost and speed: exact MACs on a hand-computed net (incl. ConvTranspose2d), params,
weights size, positive speed numbers, peak memory, and the machine fingerprint."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from torch import nn

from gankd.checkpoint import save_model
from gankd.metrics import efficiency as ef
from gankd.models.dcgan import DCGANGenerator, GeneratorConfig
from gankd.runtimes import Options


def hand_net() -> nn.Module:
    # Linear 8->16, view (4, 2, 2), ConvTranspose 4->2 k4 s2 p1 (2x2 -> 4x4), ReLU, BN, Conv 2->3 k3 at 4x4
    return nn.Sequential(
        nn.Linear(8, 16),
        nn.Unflatten(1, (4, 2, 2)),
        nn.ConvTranspose2d(4, 2, 4, 2, 1),
        nn.ReLU(),
        nn.BatchNorm2d(2),
        nn.Conv2d(2, 3, 3, 1, 1, bias=False),
    )


def test_macs_match_hand_count_including_conv_transpose():
    linear = 8 * 16
    convt = 4 * 2 * 4 * 4 * (2 * 2)  # C_in * C_out * k * k * input positions
    conv = 3 * 2 * 3 * 3 * (4 * 4)  # C_out * C_in * k * k * output positions
    net = hand_net().eval()
    for batch in (1, 3):
        r = ef.count_macs(net, (torch.randn(batch, 8),))
        assert r["macs"] == batch * (linear + convt + conv)
    assert sum(ef.count_macs(net, (torch.randn(1, 8),))["by_op"].values()) == linear + convt + conv
    assert ef.count_params(net) == (8 * 16 + 16) + (4 * 2 * 16 + 2) + 2 * 2 + 3 * 2 * 9


def test_dcgan_macs_follow_its_config():
    cfg = GeneratorConfig(base_channels=4, z_dim=16, num_classes=10)
    g = DCGANGenerator(cfg).eval()
    ch = cfg.stage_channels()  # 4x4, 8x8, 16x16, 32x32
    expect = cfg.z_dim * ch[0] * 16
    for i in range(len(ch) - 1):
        expect += ch[i] * ch[i + 1] * 16 * (4 * 2**i) ** 2
    expect += ch[-1] * 1 * 9 * 32 * 32
    assert ef.count_macs(g, ef.generator_inputs(g, 1))["macs"] == expect


def test_speed_numbers_positive_and_json_has_fingerprint(tmp_path):
    torch.manual_seed(0)
    g = DCGANGenerator(GeneratorConfig(base_channels=4, z_dim=16, num_classes=10)).eval()
    folder = save_model(tmp_path / "g", g, "generator")
    r = ef.efficiency(g, folder, ef.Speed(("eager",), big_batch=8, repeats=3, min_time_s=0.0))
    r = json.loads(json.dumps(r))  # JSON-able
    eager = r["speed"]["eager"]
    assert set(eager["formats"]) == {"contiguous", "channels_last"}
    for key in ("latency", "throughput"):
        assert eager[key]["memory_format"] in eager["formats"]
    lat = {f: v["latency"]["median_ms"] for f, v in eager["formats"].items()}
    assert eager["latency"]["median_ms"] == min(lat.values())
    for key in ("latency", "throughput"):
        s = eager[key]
        assert s["median_ms"] > 0 and s["p90_ms"] >= s["median_ms"] >= s["min_ms"] > 0
        assert s["images_per_s"] > 0 and s["repeats"] >= 3
    assert eager["latency"]["batch"] == 1 and eager["throughput"]["batch"] == 8
    assert r["params"] == ef.count_params(g) and r["macs"] > 0
    assert r["weights_bytes"] == (folder / "model.safetensors").stat().st_size
    fp = r["fingerprint"]
    for k in ("cpu", "torch_threads", "torch", "onnxruntime", "python", "platform", "cpu_count"):
        assert fp[k], k
    assert fp["torch_threads"] == torch.get_num_threads()
    m1, m8 = r["peak_memory"]["1"], r["peak_memory"]["8"]
    assert 0 < m1["activations_bytes"] < m8["activations_bytes"]
    assert m1["static_bytes"] >= sum(p.numel() * 4 for p in g.parameters())


def test_peak_memory_counts_activations_exactly_for_a_chain():
    net = nn.Sequential(nn.Linear(8, 1000), nn.Linear(1000, 10)).eval()
    r = ef.peak_memory(net, (torch.randn(2, 8),))
    # the (2, 1000) hidden and the (2, 10) output are alive together at the end
    assert r["activations_bytes"] == (2 * 1000 + 2 * 10) * 4
    again = ef.peak_memory(net, (torch.randn(2, 8),))
    assert again == r  # deterministic, unlike RSS


def test_weights_bytes_in_memory_and_timer():
    net = hand_net()
    assert ef.weights_bytes(net)["bytes"] > sum(p.numel() * 4 for p in net.parameters())
    times = ef.time_callable(lambda: sum(range(100)), warmup=1, repeats=5)
    assert len(times) == 5 and all(t >= 0 for t in times)
    s = ef.summarize([0.001, 0.002, 0.003, 0.004, 0.010], batch=4)
    assert s["median_ms"] == 3.0 and s["p90_ms"] == 10.0 and s["images_per_s"] == 4 / 0.003


# ------------------------------------------------------------------ interleaved comparison
class RepeatedConv(nn.Module):
    """A generator-shaped net (z -> 1x16x16 image) whose cost scales with ``repeats``: the same
    conv applied ``repeats`` times, so repeats=4 does ~4x the work of repeats=1."""

    def __init__(self, repeats: int, channels: int = 32, z_dim: int = 8):
        super().__init__()
        self.z_dim, self.num_classes, self.repeats, self.channels = z_dim, 0, repeats, channels
        torch.manual_seed(0)
        self.fc = nn.Linear(z_dim, channels * 16 * 16)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, z, y=None):
        h = self.fc(z).view(-1, self.channels, 16, 16)
        for _ in range(self.repeats):
            h = torch.relu(self.conv(h))
        return torch.tanh(self.out(h))


# enough calls per round that one descheduling on a busy 2-core machine cannot move a round's median
FAST = dict(rounds=7, latency_calls=9, throughput_calls=5, big_batch=8, options=Options(warmup=2, channels_last="off"))


# A clock that only the models below advance: timing them with it makes every round's time,
# and so every ratio, exact, whatever else runs on the machine.
CLOCK = {"t": 0.0}


class FixedCost(nn.Module):
    """A generator whose every call costs exactly ``cost`` seconds on CLOCK."""

    def __init__(self, cost: float):
        super().__init__()
        self.z_dim, self.num_classes, self.cost = 8, 0, cost
        self.out = nn.Linear(8, 16 * 16)

    def forward(self, z, y=None):
        CLOCK["t"] += self.cost
        return torch.tanh(self.out(z)).view(-1, 1, 16, 16)


@pytest.fixture
def fixed_clock(monkeypatch):
    def timer(device):
        def t(fn):
            start = CLOCK["t"]
            fn()
            return CLOCK["t"] - start

        return t

    monkeypatch.setattr(ef, "_timer", timer)


def _check_ratio_rounds(r, ref, name, runtime="eager"):
    """Each round's ratio is the reference's round time over the model's, and the summary is theirs."""
    for which in ("latency", "throughput"):
        a = r["models"][ref][runtime][which]["rounds_ms"]
        b = r["models"][name][runtime][which]["rounds_ms"]
        ratio = r["ratios"][name][runtime][which]
        assert ratio["rounds"] == pytest.approx([x / y for x, y in zip(a, b)])
        assert ratio["median"] == pytest.approx(statistics.median(ratio["rounds"]))
        assert ratio["min"] <= ratio["q1"] <= ratio["median"] <= ratio["q3"] <= ratio["max"]


def test_interleaved_ratio_of_a_model_against_itself_is_one(fixed_clock):
    net = FixedCost(1e-3)
    r = ef.interleaved_speed({"a": net, "b": net}, runtimes=("eager",), **FAST)
    _check_ratio_rounds(r, "a", "b")
    for which in ("latency", "throughput"):
        ratio = r["ratios"]["b"]["eager"][which]
        assert ratio["rounds"] == pytest.approx([1.0] * FAST["rounds"]) and ratio["median"] == pytest.approx(1.0)
    assert set(r["ratios"]) == {"b"} and r["reference"] == "a"


def test_interleaved_ratio_of_a_model_against_itself_is_consistent_with_its_rounds():
    net = RepeatedConv(2)  # real timing: no threshold on the ratio (a shared machine moves it), only its make-up
    r = ef.interleaved_speed({"a": net, "b": net}, runtimes=("eager",), **FAST)
    _check_ratio_rounds(r, "a", "b")
    assert all(len(r["models"][n]["eager"]["latency"]["rounds_ms"]) == FAST["rounds"] for n in "ab")


def test_interleaved_ratio_sees_a_four_times_heavier_model(fixed_clock):
    r = ef.interleaved_speed({"heavy": FixedCost(4e-3), "light": FixedCost(1e-3)}, runtimes=("eager",), **FAST)
    _check_ratio_rounds(r, "heavy", "light")
    for which in ("latency", "throughput"):
        assert r["ratios"]["light"]["eager"][which]["median"] == pytest.approx(4.0), which
    m = r["models"]
    assert m["heavy"]["eager"]["latency"]["median_ms"] == pytest.approx(4.0)
    assert m["light"]["eager"]["latency"]["median_ms"] == pytest.approx(1.0)


def test_interleaved_run_orders_a_heavier_model_first():
    # real timing, one interleaved run: 4x the convolutions must come out slower (an order, not a ratio)
    r = ef.interleaved_speed({"heavy": RepeatedConv(8), "light": RepeatedConv(2)}, runtimes=("eager",), **FAST)
    _check_ratio_rounds(r, "heavy", "light")
    for which in ("latency", "throughput"):
        assert r["ratios"]["light"]["eager"][which]["median"] > 1, which
    m = r["models"]
    assert m["heavy"]["eager"]["latency"]["median_ms"] > m["light"]["eager"]["latency"]["median_ms"]
    assert m["light"]["eager"]["throughput"]["images_per_s"] > m["heavy"]["eager"]["throughput"]["images_per_s"]


def test_interleaved_record_rounds_stamp_fingerprint_and_no_reuse():
    models = {"t": RepeatedConv(2), "s": RepeatedConv(1)}
    a = json.loads(json.dumps(ef.interleaved_speed(models, runtimes=("eager",), **{**FAST, "rounds": 3})))
    assert a["protocol"]["rounds"] == 3 and a["order"] == ["t", "s"]
    for n in models:
        lat = a["models"][n]["eager"]["latency"]
        assert lat["rounds"] == 3 and len(lat["rounds_ms"]) == 3 and lat["calls_per_round"] == 9
        assert lat["median_ms"] == sorted(lat["rounds_ms"])[1] and lat["batch"] == 1
        assert a["models"][n]["eager"]["throughput"]["batch"] == 8
        assert a["models"][n]["eager"]["measured_utc"] == a["created_utc"]
    assert len(a["ratios"]["s"]["eager"]["latency"]["rounds"]) == 3
    assert a["created_utc"].endswith("+00:00")
    assert a["fingerprint"]["cpu"] and a["fingerprint"]["torch_threads"] == torch.get_num_threads()
    b = ef.interleaved_speed(models, runtimes=("eager",), **{**FAST, "rounds": 4})
    assert b["protocol"]["rounds"] == 4 and len(b["models"]["t"]["eager"]["latency"]["rounds_ms"]) == 4
    assert b["models"]["t"]["eager"]["latency"]["rounds_ms"][:3] != a["models"]["t"]["eager"]["latency"]["rounds_ms"]


def test_interleaved_onnx_runtime_and_bad_arguments():
    g = DCGANGenerator(GeneratorConfig(base_channels=4, z_dim=16, num_classes=10)).eval()
    r = ef.interleaved_speed({"t": g, "s": g}, runtimes=("eager", "onnx"), **{**FAST, "rounds": 2})
    onnx = r["models"]["s"]["onnx"]
    assert onnx["latency"]["median_ms"] > 0 and onnx["parity_max_abs_diff"] < 1e-3
    assert "CPUExecutionProvider" in onnx["providers"] and set(r["ratios"]["s"]) == {"eager", "onnx"}
    for kw, msg in ((dict(runtimes=("compile",)), "interleaved runtimes"), (dict(reference="x"), "reference"),
                    (dict(rounds=0), "rounds")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            ef.interleaved_speed({"t": g}, **kw)


def test_efficiency_with_a_reference_reports_interleaved_speedups():
    r = ef.efficiency(RepeatedConv(1), speed=ef.Speed(("eager",), big_batch=8, repeats=3, rounds=3),
                      reference=RepeatedConv(12), memory=False)  # fmt: skip
    vt = r["speed_vs_teacher"]
    assert vt["protocol"]["rounds"] == 3 and vt["created_utc"] and vt["fingerprint"]["cpu"]
    assert vt["ratio"]["eager"]["latency"]["median"] > 1  # 12x the work: slower in the same interleaved run
    assert r["speed"]["eager"]["method"] == "interleaved" and r["speed"]["eager"]["latency"]["rounds"] == 3
    assert vt["teacher"]["eager"]["latency"]["median_ms"] > r["speed"]["eager"]["latency"]["median_ms"]


def test_solo_speed_is_stamped():
    r = ef.efficiency(RepeatedConv(1), speed=ef.Speed(("eager",), big_batch=4, repeats=3, min_time_s=0.0),
                      memory=False)  # fmt: skip
    assert r["speed"]["eager"]["measured_utc"] and "speed_vs_teacher" not in r and r["fingerprint"]["cpu"]
