import json

import pytest

from gankd.config import apply_overrides, from_dict, load_json, save_json, to_dict
from gankd.models import ClassifierConfig, DiscriminatorConfig, GeneratorConfig
from gankd.train import ClassifierTrainConfig, GANTrainConfig


def test_round_trip_through_json(tmp_path):
    cfg = apply_overrides(GANTrainConfig(), ["generator.channels=[16,8,4,2]", "steps=7"])
    save_json(to_dict(cfg), tmp_path / "c.json")
    back = from_dict(GANTrainConfig, load_json(tmp_path / "c.json"))
    assert back == cfg
    assert back.generator.channels == (16, 8, 4, 2)  # JSON lists come back as tuples
    assert isinstance(back.betas, tuple)


def test_from_dict_rejects_unknown_keys_with_the_valid_list():
    with pytest.raises(ValueError) as e:
        from_dict(GeneratorConfig, {"widht": 0.5})
    msg = str(e.value)
    assert "widht" in msg and "'width'" in msg and "'z_dim'" in msg


def test_from_dict_rejects_unknown_nested_keys():
    with pytest.raises(ValueError, match="GeneratorConfig.*'bogus'"):
        from_dict(GANTrainConfig, {"generator": {"bogus": 1}})


def test_from_dict_rejects_non_objects():
    with pytest.raises(ValueError, match="expected a JSON object"):
        from_dict(GeneratorConfig, [1, 2])


@pytest.mark.parametrize(
    "item, check",
    [
        ("steps=12", lambda c: c.steps == 12),
        ("lr_g=1e-3", lambda c: c.lr_g == 1e-3),
        ("channels_last=false", lambda c: c.channels_last is False),
        ("loss=ns", lambda c: c.loss == "ns"),  # bare string, no JSON quotes
        ('loss="ns"', lambda c: c.loss == "ns"),
        ("data=folder:/tmp/x=y", lambda c: c.data == "folder:/tmp/x=y"),  # split on the first '='
        ("generator.width=0.5", lambda c: c.generator.width == 0.5),
        ("generator.channel_mults=[4,2,1,1]", lambda c: c.generator.channel_mults == (4, 2, 1, 1)),
        ("betas=[0.0, 0.9]", lambda c: c.betas == (0.0, 0.9)),
        ("generator.channels=null", lambda c: c.generator.channels is None),
    ],
)
def test_apply_overrides(item, check):
    base = GANTrainConfig()
    cfg = apply_overrides(base, [item])
    assert check(cfg)
    assert base == GANTrainConfig()  # the input is not mutated


def test_overrides_apply_in_order():
    cfg = apply_overrides(GANTrainConfig(), ["steps=3", "steps=5"])
    assert cfg.steps == 5
    assert apply_overrides(GANTrainConfig(), None) == GANTrainConfig()


@pytest.mark.parametrize(
    "item, pattern",
    [
        ("steps", "key=value"),
        ("stepz=3", r"unknown key 'stepz'.*'steps'"),
        ("generator.depth=3", r"unknown key 'depth'.*'width'"),
        ("steps.x=3", "'steps' is not a config section"),
        ("nope.width=3", "'nope' is not a config section"),
    ],
)
def test_bad_override_keys(item, pattern):
    with pytest.raises(ValueError, match=pattern):
        apply_overrides(GANTrainConfig(), [item])


@pytest.mark.parametrize(
    "item, pattern",
    [
        ("steps=abc", "steps"),
        ("generator.width=abc", "width"),
        ("steps=true", "steps"),
        ("steps=2.5", "steps"),
        ("generator=5", "generator"),
        ("betas=[0.5]", "betas"),
        ("channels_last=3", "channels_last"),
    ],
)
def test_bad_override_values_are_value_errors_naming_the_field(item, pattern):
    # a TypeError deep in __post_init__ would surface as a traceback in the CLI
    with pytest.raises(ValueError, match=pattern):
        apply_overrides(GANTrainConfig(), [item])


def test_int_is_accepted_for_float_fields():
    cfg = apply_overrides(GANTrainConfig(), ["lr_d=1", "generator.width=1"])
    assert cfg.lr_d == 1.0 and isinstance(cfg.lr_d, float)
    assert json.loads(json.dumps(to_dict(cfg)))["generator"]["width"] == 1.0


@pytest.mark.parametrize(
    "cls, kwargs, flag",
    [
        (GeneratorConfig, {"width": 0}, "--width"),
        (GeneratorConfig, {"width": -1.0}, "--width"),
        (GeneratorConfig, {"resolution": 48}, "--resolution"),
        (GeneratorConfig, {"resolution": 4}, "--resolution"),
        (GeneratorConfig, {"image_channels": 2}, "--image-channels"),
        (GeneratorConfig, {"z_dim": 0}, "--z-dim"),
        (GeneratorConfig, {"num_classes": -1}, "--num-classes"),
        (GeneratorConfig, {"base_channels": 0}, "base_channels"),
        (GeneratorConfig, {"channel_mults": (4, 2, 1)}, "channel_mults"),
        (GeneratorConfig, {"channels": (8, 4, 2, 0)}, "channels"),
        (DiscriminatorConfig, {"width": 0}, "--d-width"),
        (DiscriminatorConfig, {"resolution": 12}, "--resolution"),
        (DiscriminatorConfig, {"image_channels": 4}, "image_channels"),
        (DiscriminatorConfig, {"num_classes": -2}, "num_classes"),
        (DiscriminatorConfig, {"base_channels": 0}, "base_channels"),
        (ClassifierConfig, {"num_classes": 1}, "--num-classes"),
        (ClassifierConfig, {"dropout": 1.0}, "--dropout"),
        (ClassifierConfig, {"width": 0}, "width"),
        (ClassifierConfig, {"base_channels": 0}, "base_channels"),
        (ClassifierConfig, {"feature_dim": 0}, "feature_dim"),
        (ClassifierConfig, {"image_channels": 2}, "image_channels"),
        (GANTrainConfig, {"loss": "wgan"}, "--loss"),
        (GANTrainConfig, {"steps": 0}, "--steps"),
        (GANTrainConfig, {"lr_g": 0}, "--lr-g"),
        (GANTrainConfig, {"ema_decay": 1.0}, "--ema-decay"),
        (GANTrainConfig, {"diffaug": "rotate"}, "--diffaug"),
        (ClassifierTrainConfig, {"split": "test"}, "--split test"),
        (ClassifierTrainConfig, {"epochs": 0}, "--epochs"),
    ],
)
def test_validation_names_the_flag(cls, kwargs, flag):
    with pytest.raises(ValueError) as e:
        cls(**kwargs)
    assert flag in str(e.value)


def test_gan_config_requires_matching_generator_and_discriminator():
    # a D built for another resolution/channels/classes would run silently on the wrong images
    with pytest.raises(ValueError, match="discriminator.resolution"):
        apply_overrides(GANTrainConfig(), ["generator.resolution=64"])
    with pytest.raises(ValueError, match="discriminator.num_classes"):
        apply_overrides(GANTrainConfig(), ["generator.num_classes=0"])
    with pytest.raises(ValueError, match="discriminator.image_channels"):
        apply_overrides(GANTrainConfig(), ["discriminator.image_channels=3"])
    ok = apply_overrides(GANTrainConfig(), ["generator.num_classes=0", "discriminator.num_classes=0"])
    assert ok.discriminator.num_classes == 0


def test_load_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_json(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(bad)
