"""CKKS key parameters at the REST boundary (a new-user trial's findings): ``max_depth`` outside
API.md's 1–24 is refused (400 INVALID_PARAMS) at both key endpoints while the bootstrap presets
(whose chains carry levels above ``max_depth``) still pass; a bootstrap preset fixes the ring, so
``poly_degree`` may be left out, and one that disagrees with the preset is refused naming both;
and a `testing` preset's security level is seen by the insecure-parameter refusal even when the
request leaves ``security_level`` out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wavis.ckks.presets import BOOTSTRAP_PRESETS
from wavis.client import KeyPair
from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

SMALL = {"poly_degree": 1024, "scale_bits": 40, "security_level": "testing"}


async def _post(api, key, path, body):
    return await api.post("/api/v1" + path, json=body, headers=bearer(key))


@pytest.fixture(scope="module")
def small_pair():
    return KeyPair.generate({**SMALL, "max_depth": 1}, seed=b"p" * 32)


@pytest.mark.parametrize("depth", [0, 25, 60, -1])
async def test_max_depth_outside_the_api_range_is_refused(api, small_pair, depth):
    """max_depth 0 and > 24 were accepted (the library allows 0..60): both key endpoints answer
    400 INVALID_PARAMS naming the field and the range, before any key is generated or parsed."""
    dev = await api.account()
    body = small_pair.upload_body()
    for path, req in (("/keys/generate", {"params": {**SMALL, "max_depth": depth}}),
                      ("/keys/upload", dict(body, params={**small_pair.params.to_dict(), "max_depth": depth}))):
        err = await error_of(await _post(api, dev, path, req), 400, "INVALID_PARAMS")
        assert err["details"]["field"] == "params.max_depth", err
        assert (err["details"]["min"], err["details"]["max"]) == (1, 24) and "1..24" in err["message"]


async def test_max_depth_at_the_range_edges_is_accepted(api, small_pair):
    dev = await api.account()
    resp = await _post(api, dev, "/keys/upload", small_pair.upload_body())  # max_depth 1
    assert resp.status == 200, await resp.text()
    # 24 at N = 2^16 (what 24 levels need at 128-bit) passes the range check: the request gets
    # as far as parsing the (here: absent) key blobs
    big = {"poly_degree": 65536, "scale_bits": 40, "max_depth": 24, "security_level": "128-bit"}
    await error_of(await _post(api, dev, "/keys/upload", {"params": big, "public_key": "AAAA"}), 400, "INVALID_KEY")


def test_bootstrap_presets_pass_the_range_check():
    """Each preset's chain is deeper than 24 levels in all (n65536: 10 user + 14 bootstrapping
    levels), but max_depth counts only the user's levels: every preset resolves, with its own
    max_depth when the request leaves it out."""
    from wavis.service import fhe
    from wavis.service.schemas import CkksParams

    for name, pre in BOOTSTRAP_PRESETS.items():
        lit = fhe.request_params(CkksParams(bootstrap_preset=name))
        assert lit["poly_degree"] == pre.poly_degree and lit["max_depth"] == pre.max_depth, name
        assert lit["security_level"] == pre.security_level


async def test_a_bootstrap_preset_makes_poly_degree_optional(api):
    """``poly_degree`` was required even with a preset (which fixes the ring): now it may be left
    out; given and different from the preset's, 400 INVALID_PARAMS names both fields."""
    dev = await api.account()
    resp = await _post(api, dev, "/keys/generate", {"params": {"bootstrap_preset": "testing-n1024"}})
    assert resp.status == 200, await resp.text()
    meta = await resp.json()
    assert meta["params"]["poly_degree"] == 1024 and meta["params"]["bootstrap_preset"] == "testing-n1024"
    assert meta["params"]["max_depth"] == BOOTSTRAP_PRESETS["testing-n1024"].max_depth and meta["insecure"] is True
    # the top-level bootstrap_preset of /keys/generate does the same
    resp = await _post(api, dev, "/keys/generate", {"params": {}, "bootstrap_preset": "testing-n1024"})
    assert resp.status == 200, await resp.text()
    # both given and disagreeing
    for path, body in (("/keys/generate", {"params": {"bootstrap_preset": "testing-n1024", "poly_degree": 2048}}),
                       ("/keys/upload", {"params": {"bootstrap_preset": "testing-n1024", "poly_degree": 2048},
                                         "public_key": "AAAA"})):
        err = await error_of(await _post(api, dev, path, body), 400, "INVALID_PARAMS")
        assert err["details"]["fields"] == ["poly_degree", "bootstrap_preset"], err
        assert err["details"]["expected"] == 1024 and err["details"]["got"] == 2048
        assert "poly_degree" in err["message"] and "testing-n1024" in err["message"]
    # neither a ring nor a preset
    err = await error_of(await _post(api, dev, "/keys/generate", {"params": {"max_depth": 2}}), 400, "INVALID_PARAMS")
    assert err["details"]["field"] == "poly_degree" and "bootstrap_preset" in err["message"]


async def test_a_testing_preset_needs_the_insecure_mode_even_without_security_level(make_client, service_settings):
    """The insecure-parameter refusal read the request's literal with the schema's defaults
    (security_level "128-bit"), while the key was built with the preset's `testing` level: a
    `testing-n1024` key was generated on a server without WAVIS_ALLOW_INSECURE_PARAMS."""
    strict = await make_client(replace(service_settings, allow_insecure_params=False))
    add_account_helper(strict)
    dev = await strict.account()
    for body in ({"params": {"poly_degree": 1024, "bootstrap_preset": "testing-n1024"}},
                 {"params": {"poly_degree": 1024}, "bootstrap_preset": "testing-n1024"}):
        err = await error_of(await _post(strict, dev, "/keys/generate", body), 400, "INSUFFICIENT_SECURITY")
        assert err["details"]["security_level"] == "testing"


@pytest.mark.parametrize("field,value", [("max_depth", True), ("max_depth", "2"), ("scale_bits", "40"),
                                         ("poly_degree", "1024"), ("scale_bits", False)])
async def test_sizes_are_json_integers(api, field, value):
    """`"max_depth": true` generated a key of depth 1 (pydantic's lax mode reads true as 1, "2" as
    2): the key sizes, like every other integer field of the API, take JSON integers only (422)."""
    dev = await api.account()
    params = {**SMALL, "max_depth": 1, field: value}
    err = await error_of(await _post(api, dev, "/keys/generate", {"params": params}), 422, "SCHEMA_MISMATCH")
    assert field in str(err["details"]["errors"]), err
    for bad in ({"rotation_steps": [True]}, {"rotation_steps": ["1"]}, {"bootstrappable": "yes"},
                {"bootstrappable": 1}, {"bootstrap_slots": "8"}):
        await error_of(await _post(api, dev, "/keys/generate", {"params": {**SMALL, "max_depth": 1}, **bad}),
                       422, "SCHEMA_MISMATCH")
