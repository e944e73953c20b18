"""FID/IS/KID/PRC plumbing through torch-fidelity with a tiny evaluator, caching keyed by
data and weights, seeded generator sampling, class consistency, paired fidelity, and the
missing-Inception error."""

from __future__ import annotations

import math

import pytest
import torch
from evalkit import blobs, evaluator_dir_fixture, make_evaluator, private_cache_fixture, tiny_gen  # noqa: F401  (fixtures)
from PIL import Image

from gankd.checkpoint import save_model
from gankd.data import to_float, to_uint8
from gankd.fileio import portable_path
from gankd.metrics import fidelity as fm
from gankd.sampling import balanced_labels, generate, latents

pytestmark = pytest.mark.usefixtures("private_cache")
FAST = dict(kid_subsets=5, batch_size=128)


def test_self_is_zero_and_corruption_is_clearly_worse(evaluator_dir):
    a, b = blobs(200, seed=1), blobs(200, seed=2)
    noisy = to_uint8(
        (to_float(a) + 0.4 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    )
    shifted = torch.roll(a, shifts=(9, 9), dims=(2, 3))

    def run(x, metrics=("fid", "kid", "prc")):
        ex = fm.Features(evaluator=evaluator_dir)
        return fm.fidelity_metrics(x, reference=a, metrics=metrics, extractor=ex, **FAST)

    same = run(a, ("fid", "isc", "kid", "prc"))
    other = run(b, ("fid",))["fid"]  # same distribution, other samples: the noise floor
    assert abs(same["fid"]) < 1e-6 * max(other, 1e-12) + 1e-12
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert same["isc_mean"] >= 1.0 - 1e-6 and math.isfinite(same["isc_std"])
    for bad in (noisy, shifted):
        r = run(bad)
        assert r["fid"] > 5 * other, (r["fid"], other)
        assert r["kid_mean"] > 5 * abs(same["kid_mean"])  # unbiased KID: self is ~0 +- noise
        assert r["recall"] < 1.0
    p = same["protocol"]
    # a user's evaluator is named as such (never "fmnist-evaluator"), with its path and hash
    assert p["extractor"] == "evaluator:eval" and p["num_generated"] == p["num_reference"] == 200
    assert p["extractor_weights"] == portable_path(evaluator_dir) and "--evaluator" in p["extractor_reason"]
    assert p["extractor_sha256_16"] == fm.file_digest(evaluator_dir) and p["resize"] == "none"


def _folder(tmp_path, images: torch.Tensor, name: str = "ref"):
    d = tmp_path / name
    d.mkdir()
    for i, x in enumerate(images):
        Image.fromarray(x[0].numpy()).save(d / f"{i:03d}.png")
    return d


def test_reference_cache_is_keyed_by_data_and_weights(tmp_path, evaluator_dir):
    ref_dir = _folder(tmp_path, blobs(60, seed=5))
    x = blobs(60, seed=6)
    spec = f"folder:{ref_dir}"
    first = fm.fidelity_metrics(x, spec, ("fid",), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
    cache = fm.cache_root()
    files = sorted(p.name for p in cache.iterdir())
    assert files and all(first["protocol"]["reference_sha256_16"] in f for f in files)
    assert all(fm.file_digest(evaluator_dir) in f for f in files)
    again = fm.fidelity_metrics(x, spec, ("fid",), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-9)
    # other extractor weights under the same extractor name: a new entry, not the stale one
    other_eval = make_evaluator(tmp_path / "eval2", seed=7)
    other = fm.fidelity_metrics(x, spec, ("fid",), extractor=fm.Features(evaluator=other_eval), **FAST)
    assert len(list(cache.iterdir())) > len(files)
    assert other["fid"] != pytest.approx(first["fid"], rel=1e-6)
    # changed data in the same folder: a new entry too
    Image.fromarray(blobs(1, seed=99)[0, 0].numpy()).save(ref_dir / "000.png")
    changed = fm.fidelity_metrics(x, spec, ("fid",), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
    assert changed["protocol"]["reference_sha256_16"] != first["protocol"]["reference_sha256_16"]


def test_generator_samples_are_seeded_and_class_balanced(tmp_path, evaluator_dir):
    g = tiny_gen()
    imgs, labels = fm.generate_uint8(g, 25, first_seed=3, batch_size=7)
    assert imgs.dtype == torch.uint8 and imgs.shape == (25, 1, 32, 32)
    assert torch.equal(labels, balanced_labels(25, 10))
    expect = to_uint8(generate(g, latents(list(range(3, 28)), 16), balanced_labels(25, 10)))
    assert torch.equal(imgs, expect)  # same bytes as gankd.sampling, whatever the batch size
    folder = save_model(tmp_path / "g", g, "generator")
    ref = blobs(80, seed=8)
    ex = fm.Features(evaluator=evaluator_dir)
    r1 = fm.fidelity_metrics(folder, ref, ("fid", "isc"), num_samples=80, extractor=ex, **FAST)
    r2 = fm.fidelity_metrics(g, ref, ("fid", "isc"), num_samples=80, extractor=ex, **FAST)
    assert r1["fid"] == pytest.approx(r2["fid"], rel=1e-9) and r1["fid"] > 0
    assert "seeds 0..79" in r1["protocol"]["generated"] and "class-balanced" in r1["protocol"]["generated"]


def test_class_consistency_counts_per_class(evaluator_dir):
    g = tiny_gen()
    cc = fm.class_consistency(g, 40, evaluator=evaluator_dir)
    assert 0.0 <= cc["accuracy"] <= 1.0 and len(cc["per_class"]) == 10 and cc["num_samples"] == 40
    clf = fm.load_classifier(evaluator_dir)
    imgs, labels = fm.generate_uint8(g, 40)
    pred = clf(fm.classifier_input(imgs, clf)).argmax(1)
    assert cc["accuracy"] == pytest.approx(float((pred == labels).float().mean()))
    with pytest.raises(ValueError, match="class-conditional"):
        fm.class_consistency(tiny_gen(num_classes=0), 10, evaluator=evaluator_dir)


def test_teacher_fidelity_psnr_and_distances(evaluator_dir):
    t, s = tiny_gen(seed=0), tiny_gen(seed=1)
    same = fm.teacher_fidelity(t, t, 12, distance=fm.evaluator_distance(evaluator_dir), batch_size=5)
    assert same["psnr_db"] == pytest.approx(100.0) and same["distance_mean"] == pytest.approx(0.0, abs=1e-6)
    d = {"eval": fm.evaluator_distance(evaluator_dir), "lpips": fm.lpips_distance(allow_random=True)}
    diff = fm.teacher_fidelity(s, t, 12, distance=d, batch_size=5)
    a = generate(s, latents(list(range(12)), 16), balanced_labels(12, 10))
    b = generate(t, latents(list(range(12)), 16), balanced_labels(12, 10))
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    assert diff["psnr_db"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    assert diff["distances"]["eval"] > 0 and diff["distances"]["lpips"] > 0
    with pytest.raises(ValueError, match="do not share inputs"):
        fm.teacher_fidelity(tiny_gen(num_classes=0), t, 4)


def test_lpips_without_trunk_says_which_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-empty"))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth") as e:
        fm.lpips_distance("alex")
    assert str(tmp_path / "torch-empty") in str(e.value) and "\n" not in str(e.value)


def test_missing_inception_weights_is_one_clear_line(tmp_path, monkeypatch):
    empty = tmp_path / "torch-empty"
    monkeypatch.setenv("TORCH_HOME", str(empty))
    x = blobs(10)
    with pytest.raises(FileNotFoundError) as e:
        fm.fidelity_metrics(x, x, ("fid",), extractor="inception-v3-compat")
    msg = str(e.value)
    assert fm.INCEPTION_FILE in msg and str(empty / "hub" / "checkpoints") in msg
    assert "--inception-weights" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        missing = fm.Features("inception-v3-compat", inception_weights=tmp_path / "nope.pth")
        fm.fidelity_metrics(x, x, ("fid",), extractor=missing)
    assert not (empty / "hub").exists()  # nothing tried to download


def test_inception_path_runs_with_a_random_trunk(tmp_path, monkeypatch):
    """The real loading path (torch-fidelity's Inception, gray tiled to RGB) on a random weight file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
    torch.manual_seed(0)
    state = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    monkeypatch.setenv("GANKD_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "hub" / "checkpoints" / fm.INCEPTION_FILE
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert fm.find_inception_weights() == ckpt
    x, ref = blobs(2, seed=1), blobs(2, seed=2)  # Inception at 299px is slow on a CPU
    r = fm.fidelity_metrics(x, ref, ("kid", "isc"), extractor="inception-v3-compat", batch_size=6, kid_subsets=2)
    assert math.isfinite(r["kid_mean"]) and r["isc_mean"] >= 1.0 - 1e-6
    assert r["protocol"]["channels"] == "gray tiled to 3 channels" and "299px" in r["protocol"]["resize"]


def test_bad_inputs_fail_with_the_fix(evaluator_dir, tmp_path):
    x = blobs(10)
    with pytest.raises(ValueError, match="choose from"):
        fm.fidelity_metrics(x, x, ("fid", "ppl"), extractor=fm.Features(evaluator=evaluator_dir))
    with pytest.raises(ValueError, match="choose one of"):
        fm.fidelity_metrics(x, x, ("fid",), extractor="clip")
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        fm.fidelity_metrics(x, x, ("fid",), extractor=fm.Features(evaluator=tmp_path / "no-evaluator"))
    with pytest.raises(ValueError, match="same size"):
        fm.fidelity_metrics(x, blobs(10, size=16), ("fid",), extractor=fm.Features(evaluator=evaluator_dir))


# ------------------------------------------------------------------ loading never runs code
class _Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload(path, marker, extra=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**(extra or {}), "evil": _Payload(marker)}, path)
    return path


def test_inception_weights_payload_is_refused_without_running(tmp_path, monkeypatch, capsys):
    """--inception-weights PATH and the default $TORCH_HOME file: torch-fidelity itself would
    unpickle them with weights_only=False; gankd reads them safely and refuses in one line."""
    from gankd import cli

    marker = tmp_path / "ran"
    x = blobs(4)
    given = _payload(tmp_path / "inception.pth", marker, {"fc.weight": torch.zeros(1)})
    with pytest.raises(ValueError) as e:
        fm.fidelity_metrics(x, x, ("fid",), extractor=fm.Features(fm.INCEPTION, inception_weights=given))
    assert "\n" not in str(e.value) and "--inception-weights" in str(e.value) and str(given) in str(e.value)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    default = _payload(tmp_path / "th" / "hub" / "checkpoints" / fm.INCEPTION_FILE, marker)
    with pytest.raises(ValueError) as e:
        fm.fidelity_metrics(x, x, ("kid",), extractor=fm.INCEPTION)
    assert "\n" not in str(e.value) and str(default) in str(e.value)
    code = cli.main(["eval", "--model", str(tmp_path / "g"), "--metrics", "fid", "--extractor", fm.INCEPTION,
                     "--inception-weights", str(given), "--lpips", "off", "--no-onnx"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and str(given) in err
    assert not marker.exists()


def test_inception_weights_are_checked_key_by_key(tmp_path):
    """A tensor-only file that is not torch-fidelity's Inception is refused before any model is built;
    a right one loads from .safetensors too, into the same module torch-fidelity builds."""
    from safetensors.torch import save_file

    shapes = fm._inception_shapes()
    assert "fc.weight" in shapes and shapes["fc.weight"] == (1008, 2048)
    state = {k: torch.full(s, 0.01) for k, s in shapes.items()}
    good = tmp_path / "inception.safetensors"
    save_file(state, str(good))
    assert fm.find_inception_weights(good) == good
    fe = fm.SafeInceptionV3(fm._SAFE_INCEPTION, ["2048"], feature_extractor_weights_path=str(good))
    assert torch.equal(fe.fc.weight, state["fc.weight"])
    del fe
    bad = tmp_path / "bad.safetensors"
    save_file({**state, "fc.weight": torch.zeros(10, 2048)}, str(bad))
    with pytest.raises(ValueError, match="fc.weight") as e:
        fm.find_inception_weights(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(ValueError, match="fc.weight"):
        fm.SafeInceptionV3(fm._SAFE_INCEPTION, ["2048"], feature_extractor_weights_path=str(bad))


def test_planted_metrics_cache_files_never_run(tmp_path, evaluator_dir, caplog):
    """gankd's reference cache is safetensors; torch-fidelity's pickle cache is never consulted;
    a corrupt or planted file is ignored with a warning and rewritten."""
    ref_dir = _folder(tmp_path, blobs(40, seed=5))
    spec = f"folder:{ref_dir}"
    x = blobs(40, seed=6)
    marker = tmp_path / "ran"
    # the names torch-fidelity read (weights_only=False) when gankd passed it a cache name
    ref = fm.load_image_set(spec, 32, 1)
    old = f"gankd-{fm._slug(ref.name)}-n{len(ref)}-1x32-{ref.digest}-{fm.EVALUATOR}-{fm.file_digest(evaluator_dir)}"
    cache = fm.cache_root()
    for suffix in ("features-embed", "features-logits", "stat-fid-embed"):
        _payload(cache / f"{old}-{fm.EVALUATOR}-{suffix}.pt", marker)
    first = fm.fidelity_metrics(x, spec, ("fid", "kid"), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
    assert not marker.exists()
    ours = [p for p in cache.iterdir() if p.suffix == ".safetensors"]
    assert len(ours) == 1 and first["protocol"]["reference_cache"] == ours[0].stem
    hit = fm.fidelity_metrics(x, spec, ("fid", "kid"), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
    assert hit["fid"] == first["fid"] and hit["kid_mean"] == first["kid_mean"]
    for plant in ("payload", "garbage", "wrong-shape"):
        if plant == "payload":
            _payload(ours[0], marker, {"embed": torch.zeros(len(ref), 16)})
        elif plant == "garbage":
            ours[0].write_bytes(b"\x80\x04not a safetensors file")
        else:
            fm.save_cached_features(ours[0].stem, {"embed": torch.zeros(3, 16)}, {})
        caplog.clear()
        with caplog.at_level("WARNING", logger="gankd.metrics.fidelity"):
            again = fm.fidelity_metrics(x, spec, ("fid", "kid"), extractor=fm.Features(evaluator=evaluator_dir), **FAST)
        assert again["fid"] == pytest.approx(first["fid"], rel=1e-9), plant
        assert any("ignoring unreadable metrics cache file" in r.getMessage() for r in caplog.records), plant
        assert fm.load_cached_features(ours[0].stem, ["embed"], len(ref)) is not None  # rewritten, valid
    assert not marker.exists()


def test_extractor_is_chosen_for_the_domain(tmp_path, evaluator_dir, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-inception"))
    pick = fm.choose_extractor
    # a user's evaluator wins under auto, and must fit
    ex = pick("auto", channels=1, resolution=32, data="folder:x", evaluator=evaluator_dir)
    assert ex.kind == "classifier" and ex.name == "evaluator:eval" and ex.weights == evaluator_dir
    with pytest.raises(ValueError, match="takes 1x32x32 images .*--image-channels 3"):
        pick("auto", channels=3, resolution=32, data="folder:x", evaluator=evaluator_dir)
    # no Inception, no evaluator, not Fashion-MNIST: the seed-fixed random conv net, hashed
    for data, ch, res in (("folder:x", 3, 64), ("folder:x", 1, 32), ("fashion-mnist", 1, 64), (None, 1, 32)):
        ex = pick("auto", channels=ch, resolution=res, data=data)
        assert ex.name == fm.RANDOM_CONV and ex.weights is None and not ex.has_logits
        assert ex.sha256_16 == fm.random_conv_digest() and "random conv" in ex.reason
    # Fashion-MNIST at 1x32: the shipped evaluator, when it is there
    if (fm.package_root() / "pretrained" / "fmnist-evaluator" / "model.safetensors").is_file():
        monkeypatch.delenv("GANKD_EVALUATOR", raising=False)
        ex = pick("auto", channels=1, resolution=32, data="fashion-mnist")
        assert ex.name == "fmnist-evaluator" and ex.in_domain
        with caplog.at_level("WARNING", logger="gankd.metrics.fidelity"):
            ex = pick("fmnist-evaluator", channels=3, resolution=64, data="folder:x")  # explicit: allowed, flagged
        assert not ex.in_domain and any("out" in r.getMessage() or "not on" in r.getMessage() for r in caplog.records)


def test_random_conv_features_are_fixed_and_tell_images_apart():
    a, b = blobs(64, seed=1), blobs(64, seed=2)
    fa = fm.random_conv_features(a)
    assert fa.shape == (64, sum(fm.RANDOM_CONV_WIDTHS))
    assert torch.equal(fa, fm.random_conv_features(a))  # seed-fixed: same features every time
    assert fm.random_conv_digest() == fm.random_conv_digest()
    rgb = fm.random_conv_features(a.expand(-1, 3, -1, -1).contiguous())
    assert torch.allclose(fa, rgb)  # gray is tiled to 3 channels
    same = fm.fidelity_metrics(a, a, ("fid", "isc"), extractor=fm.RANDOM_CONV, **FAST)
    other = fm.fidelity_metrics(b, a, ("fid",), extractor=fm.RANDOM_CONV, **FAST)["fid"]
    g = torch.Generator().manual_seed(0)
    noisy = to_uint8((to_float(a) + 0.5 * torch.randn(a.shape, generator=g)).clamp(-1, 1))
    assert abs(same["fid"]) < 1e-6 and "isc" in same["skipped"] and "isc_mean" not in same
    assert fm.fidelity_metrics(noisy, a, ("fid",), extractor=fm.RANDOM_CONV, **FAST)["fid"] > 3 * other
    assert same["protocol"]["extractor"] == "random-conv" and same["protocol"]["extractor_weights"] is None


def test_ssim_identity_symmetry_and_a_hand_computed_constant_case():
    from gankd.metrics.fidelity import ssim

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 16, 16, generator=g)).clamp(-1, 1)
    assert torch.allclose(ssim(a, a), torch.ones(3), atol=1e-5)
    assert torch.allclose(ssim(a, b), ssim(b, a), atol=1e-6)
    assert (ssim(a, b) < 0.95).all() and (ssim(a, b) > -1).all()
    # constant images x and y on [0, 1]: variances 0, so SSIM = (2xy + C1) / (x^2 + y^2 + C1)
    x, y = torch.full((1, 1, 12, 12), 0.2), torch.full((1, 1, 12, 12), 0.6)
    c1 = 0.01**2
    want = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert ssim(x * 2 - 1, y * 2 - 1).item() == pytest.approx(want, rel=1e-4)
