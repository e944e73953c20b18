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
