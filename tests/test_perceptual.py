"""LPIPS trunks and heads load without unpickling code: a payload pickle given as
--lpips-weights or planted in torch.hub's cache is refused in one line and never runs;
real (here: random) torchvision weights load from .pth and .safetensors."""

from __future__ import annotations

import torch
import torchvision
from safetensors.torch import save_file

from gankd import cli
from gankd.metrics import fidelity as fm
from gankd.perceptual import LPIPSPerceptual, build_perceptual, load_tensor_file, lpips_model


class _Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_file(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.zeros(1), "evil": _Payload(marker)}, path)
    return path


def test_the_payload_really_runs_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    torch.load(payload_file(tmp_path / "p.pth", marker), weights_only=False)
    assert marker.exists()  # so its absence below means "never unpickled"


def test_load_tensor_file_refuses_code_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    p = payload_file(tmp_path / "x.pth", marker)
    try:
        load_tensor_file(p, f"--lpips-weights {p}")
        raise AssertionError("a payload pickle was accepted")
    except ValueError as e:
        msg = str(e)
    assert "\n" not in msg and "--lpips-weights" in msg and "weights_only=False" not in msg
    assert not marker.exists()
    bad = tmp_path / "nested.pth"
    torch.save({"a": {"b": torch.zeros(1)}}, bad)
    try:
        load_tensor_file(bad, "x")
        raise AssertionError("a nested dict was accepted")
    except ValueError as e:
        assert "flat state dict" in str(e)


def test_lpips_weights_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    p = payload_file(tmp_path / "alexnet.pth", marker)
    try:
        fm.lpips_distance("alex", trunk_weights=p)
        raise AssertionError("accepted")
    except ValueError as e:
        assert "\n" not in str(e) and str(p) in str(e)
    assert not marker.exists()


def test_lpips_weights_payload_through_the_cli_is_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    p = payload_file(tmp_path / "alexnet.pth", marker)
    code = cli.main(["eval", "--model", str(tmp_path / "g"), "--metrics", "none", "--lpips", "on",
                     "--lpips-weights", str(p), "--no-onnx"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and "--lpips-weights" in err
    assert not marker.exists()


def test_lpips_trunk_planted_in_torch_hub_cache_is_refused(tmp_path, monkeypatch):
    """torchvision would load $TORCH_HOME/hub/checkpoints/alexnet-... with weights_only=False."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "ran"
    hub = tmp_path / "hub" / "checkpoints"
    payload_file(hub / "alexnet-owt-7be5be79.pth", marker)
    payload_file(hub / "vgg16-397923af.pth", marker)
    for make in (lambda: fm.lpips_distance("alex"), lambda: LPIPSPerceptual("alex"),
                 lambda: build_perceptual("lpips-vgg")):  # fmt: skip
        try:
            make()
            raise AssertionError("accepted")
        except ValueError as e:
            assert "\n" not in str(e) and str(hub) in str(e)
    assert not marker.exists()


def test_real_trunk_loads_from_pth_and_safetensors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    tv = torchvision.models.alexnet()
    state = tv.state_dict()
    pth, st = tmp_path / "alex.pth", tmp_path / "alex.safetensors"
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    for f in (pth, st):
        m = lpips_model("alex", f)
        assert torch.equal(m.net.slice1[0].weight, tv.features[0].weight)
        assert torch.equal(getattr(m.net.slice5, "10").bias, tv.features[10].bias)
    # at the torch.hub default path, through both wrappers
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert torch.equal(getattr(LPIPSPerceptual("alex").lpips.net.slice2, "3").weight, tv.features[3].weight)
    d = fm.lpips_distance("alex")
    assert d.name == "lpips-alex"
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(d(x, x), torch.zeros(2), atol=1e-6)
    # a trunk of the wrong network: one line naming the file
    vgg = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11().state_dict(), vgg)
    try:
        lpips_model("alex", vgg)
        raise AssertionError("accepted")
    except ValueError as e:
        assert "\n" not in str(e) and str(vgg) in str(e)


def test_heads_match_the_package_and_nothing_is_downloaded(tmp_path, monkeypatch):
    """The calibrated heads gankd loads are lpips' own; no download is attempted for a random trunk."""
    import warnings

    import lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    ours = lpips_model("alex", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained=' deprecation inside lpips
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    for k, v in ref.state_dict().items():
        if k.startswith("lin"):
            assert torch.equal(ours.state_dict()[k], v), k
    assert not (tmp_path / "empty").exists()
