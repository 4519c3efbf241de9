"""The one registry pattern: register by decorator, look up by name, clear errors."""

import pytest

from cnnjax.registry import Registry


def test_register_forms_and_lookup():
    reg: Registry = Registry("widget")

    @reg.register
    def alpha():
        return "a"

    @reg.register("beta")
    def _b():
        return "b"

    reg.register("gamma")(len)
    assert reg.names() == ["alpha", "beta", "gamma"]
    assert reg.get("alpha") is alpha and reg.get("beta") is _b and reg.get("gamma") is len
    assert "beta" in reg and "delta" not in reg and len(reg) == 3 and list(reg) == reg.names()


def test_unknown_name_names_kind_value_and_choices():
    reg: Registry = Registry("data set")
    reg.register("mnist")(object())
    with pytest.raises(ValueError, match=r"unknown data set 'mnsit'; expected one of: mnist"):
        reg.get("mnsit")
    with pytest.raises(ValueError, match="unknown data set 3"):
        reg.get(3)


def test_duplicate_name_needs_overwrite():
    reg: Registry = Registry("model")
    reg.register("m")(1)
    with pytest.raises(ValueError, match="model 'm' is already registered"):
        reg.register("m")(2)
    reg.register("m", overwrite=True)(2)
    assert reg.get("m") == 2


def test_nameless_entry_is_rejected():
    reg: Registry = Registry("model")
    with pytest.raises(ValueError, match="a model name"):
        reg.register(None)(object())


def test_the_same_definition_executed_again_replaces_its_entry(tmp_path):
    """A module or config file executed twice (a reload, or `config.imports` after the config
    file itself ran) re-registers its entries without an error; the newest wins."""
    reg: Registry = Registry("loss")
    source = tmp_path / "plugin.py"
    source.write_text("def make(reg):\n    @reg.register('mine')\n    def mine():\n"
                      "        return 1\n    return mine\n")
    namespaces = [{}, {}]
    for ns in namespaces:
        exec(compile(source.read_text(), str(source), "exec"), ns)
    first = namespaces[0]["make"](reg)
    second = namespaces[1]["make"](reg)
    assert first is not second and reg.get("mine") is second

    def mine():  # the same name from another file: still refused
        return 2

    with pytest.raises(ValueError, match="already registered"):
        reg.register("mine")(mine)
