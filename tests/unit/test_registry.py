"""Registries: decorator registration, aliases, descriptions, third-party entry points."""

import sys
import types
from importlib.metadata import EntryPoint

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS, Registry


def test_builtin_methods_register_themselves():
    assert "plain" in METHODS.names()
    assert METHODS.get("plain").registry_name == "plain"
    assert dict(METHODS.describe())["plain"].startswith("Stage-1 plain model")


def test_aliases_and_unknown_names():
    reg = Registry("thing", "oltr_bench.test_things")

    @reg.register("alpha", aliases=("a",))
    class Alpha:
        """First line.

        More text."""

    assert reg.get("a") is Alpha and reg.canonical("a") == "alpha"
    assert reg.describe() == [("alpha", "First line.")]
    with pytest.raises(OltrError, match="unknown thing 'b'; expected one of: alpha"):
        reg.get("b")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(type("Other", (), {}))


def test_entry_point_plugins_are_loaded(monkeypatch):
    module = types.ModuleType("fake_plugin")
    reg = Registry("thing", "oltr_bench.test_things")

    def load_module():
        @reg.register("plugged")
        class Plugged:
            """A third-party thing."""

        return module

    ep = EntryPoint("plugged", "fake_plugin", "oltr_bench.test_things")
    monkeypatch.setattr(EntryPoint, "load", lambda self: load_module())
    monkeypatch.setattr("oltr_bench.registry.entry_points", lambda group: [ep] if group == "oltr_bench.test_things" else [])
    assert reg.names() == ["plugged"]


def test_broken_plugin_is_reported(monkeypatch):
    reg = Registry("thing", "oltr_bench.test_things")
    ep = EntryPoint("broken", "no_such_module_xyz", "oltr_bench.test_things")
    monkeypatch.setattr("oltr_bench.registry.entry_points", lambda group: [ep])
    with pytest.raises(OltrError, match="plug-in 'broken'.*failed to import"):
        reg.names()
