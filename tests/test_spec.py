"""Model specs: shipped files, round trip, overrides, errors."""

from __future__ import annotations

import pytest

import scleromx_bayes as sxb
from scleromx_bayes import ModelSpec, SpecError
from scleromx_bayes.spec import models_dir


def test_shipped_specs_load_and_state_rationales():
    names = sxb.list_specs()
    assert {"base", "no_pooling", "complete_pooling"} <= set(names)
    for name in names:
        spec = sxb.load_spec(name)
        assert spec.name == name
        for prior_name in spec.required_priors():
            assert "%" in spec.prior(prior_name).rationale, (name, prior_name)
        text = (models_dir() / f"{name}.toml").read_text()
        assert text.count("# ") >= len(spec.required_priors())  # commented priors


def test_structures():
    assert sxb.load_spec("base").regimen_pooling == "partial"
    assert sxb.load_spec("no_pooling").regimen_pooling == "none"
    assert sxb.load_spec("complete_pooling").regimen_pooling == "complete"


@pytest.mark.parametrize("name", ["base", "no_pooling", "complete_pooling", "interaction"])
def test_toml_round_trip(name):
    spec = sxb.load_spec(name)
    again = ModelSpec.from_toml(spec.to_toml())
    assert again == spec
    assert again.to_toml() == spec.to_toml()


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(sxb.load_spec("base").with_overrides(name="mine").to_toml())
    assert sxb.load_spec(path).name == "mine"
    assert sxb.load_spec(str(path)).name == "mine"


def test_overrides_do_not_touch_the_original():
    base = sxb.load_spec("base")
    wide = base.with_overrides({"priors.site_sd.sigma": 2.0, "site_effect": False})
    assert wide.prior("site_sd").params == {"sigma": 2.0}
    assert wide.site_effect is False
    assert base.prior("site_sd").params == {"sigma": 0.5} and base.site_effect is True
    swapped = base.with_overrides(
        {"priors.regimen_sd": {"dist": "HalfStudentT", "nu": 3, "sigma": 1}}
    )
    assert swapped.prior("regimen_sd").dist == "HalfStudentT"
    assert swapped.structure_key() != base.structure_key()
    assert (
        wide.with_overrides({"priors.site_sd.sigma": 0.5}).structure_key() != base.structure_key()
    )
    # prior values alone never change the structure
    assert (
        base.with_overrides({"priors.intercept.mu": -1.0}).structure_key() == base.structure_key()
    )


def test_spec_is_immutable_and_hashable():
    spec = sxb.load_spec("base")
    with pytest.raises(AttributeError):
        spec.name = "x"
    assert hash(spec) == hash(sxb.load_spec("base"))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"structure": {"regimen_pooling": "some"}}, "regimen_pooling must be one of"),
        ({"structure": {"pooling": "none"}}, r"unknown key\(s\) in \[structure\]: \['pooling'\]"),
        ({"structure": {"site_effect": "yes"}}, "site_effect must be true or false"),
        (
            {"priors": {"site_sd": {"dist": "Uniform", "lower": 0, "upper": 1}}},
            "distribution 'Uniform' is not allowed",
        ),
        (
            {"priors": {"site_sd": {"dist": "Normal", "mu": 0, "sigma": 1}}},
            "is a standard deviation and needs a positive",
        ),
        ({"priors": {"intercept": {"dist": "HalfNormal", "sigma": 1}}}, "needs Normal or StudentT"),
        (
            {"priors": {"intercept": {"dist": "Normal", "mu": 0, "sd": 1}}},
            r"Normal has no parameter\(s\) \['sd'\]",
        ),
        (
            {"priors": {"intercept": {"dist": "Normal", "mu": 0}}},
            r"Normal needs parameter\(s\) \['sigma'\]",
        ),
        ({"priors": {"intercept": {"dist": "Normal", "mu": 0, "sigma": -1}}}, "sigma must be > 0"),
        (
            {"priors": {"intercept": {"dist": "Normal", "mu": "__import__('os')", "sigma": 1}}},
            "must be a number",
        ),
        ({"priors": {"slope": {"dist": "Normal", "mu": 0, "sigma": 1}}}, "unknown prior 'slope'"),
    ],
)
def test_invalid_specs(change, message):
    data = sxb.load_spec("base").to_dict()
    for key, value in change.items():
        if isinstance(value, dict) and key in data:
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_dict(data)


def test_missing_prior_for_structure():
    data = sxb.load_spec("base").to_dict()
    del data["priors"]["regimen_sd"]
    with pytest.raises(SpecError, match=r"needs prior\(s\) \['regimen_sd'\]"):
        ModelSpec.from_dict(data)


def test_bad_toml_and_unknown_names(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        sxb.load_spec(bad)
    with pytest.raises(SpecError, match="no shipped spec named 'bse'"):
        sxb.load_spec("bse")
    with pytest.raises(SpecError, match="spec file not found"):
        sxb.load_spec(tmp_path / "none.toml")
