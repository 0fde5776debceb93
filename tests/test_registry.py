import pytest

from mibench.interface import ConfigError
from mibench.registry import Registry


def test_register_and_lookup():
    r = Registry[int]("thing")
    r.register("alpha", 1)
    assert r["alpha"] == 1 and "alpha" in r and list(r) == ["alpha"] and len(r) == 1


def test_duplicate_name_raises():
    r = Registry[int]("thing")
    r.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("alpha", 2)


def test_unknown_name_suggests_closest():
    r = Registry[int]("bound")
    for i, name in enumerate(["infonce", "nwj", "smile"]):
        r.register(name, i)
    with pytest.raises(ConfigError, match=r"unknown bound 'infonse'; did you mean 'infonce'"):
        r["infonse"]
    with pytest.raises(ConfigError, match="Known: infonce, nwj, smile"):
        r["zzz"]
