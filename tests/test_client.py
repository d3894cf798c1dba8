"""The client SDK and examples/quickstart.py against the real service (real PG and Redis)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from wavis.client import ApiError, AsyncClient, Client, KeyPair

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[1]


async def test_async_client_round_trip(api, ckks_pair_factory):
    keys = ckks_pair_factory(max_depth=1)
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base) as c:
        assert (await c.health())["status"] == "healthy"
        await c.create_temp_key()
        assert c.api_key.startswith("wvs_trial_")
        key_id = await c.upload_keys(keys)
        assert keys.key_id == key_id and (await c.get_key(key_id))["key_id"] == key_id
        x = np.linspace(-1, 1, keys.params.slot_count)
        a = await c.upload_ciphertext(key_id, keys.encrypt(x))
        b = await c.upload_ciphertext(key_id, keys.encrypt(x[::-1]))
        r = await c.multiply(key_id, a.ciphertext_id, b.ciphertext_id)
        assert np.max(np.abs(keys.decrypt(r.ciphertext).real - x * x[::-1])) < 1e-5
        back = await c.get_ciphertext(r.ciphertext_id)
        assert np.max(np.abs(keys.decrypt(back).real - x * x[::-1])) < 1e-5
        with pytest.raises(ApiError) as info:
            await c.multiply(key_id, r.ciphertext_id, r.ciphertext_id)
        assert info.value.status == 409 and info.value.code == "DEPTH_EXHAUSTED"
        assert info.value.request_id.startswith("req_")


async def test_client_errors_carry_code_and_request_id(api):
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base, api_key="wvs_test_" + "0" * 32) as c:
        with pytest.raises(ApiError) as info:
            await c.get_key("key_x")
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED"


async def test_sync_client(api, ckks_pair_factory):
    keys = ckks_pair_factory(max_depth=1)
    base = str(api.make_url("")).rstrip("/")
    dev_key = await api.account()

    def run() -> float:
        with Client(base, api_key=dev_key) as c:
            key_id = c.upload_keys(keys)
            x = np.full(8, 0.5)
            a = c.upload_ciphertext(key_id, keys.encrypt(x))
            r = c.add(key_id, a.ciphertext_id, a.ciphertext_id)
            return float(np.max(np.abs(keys.decrypt(r.ciphertext).real[:8] - 1.0)))

    assert await asyncio.to_thread(run) < 1e-5  # the test server runs on this loop meanwhile


@pytest.mark.timeout(120)
async def test_quickstart_example_passes(api):
    base = str(api.make_url("")).rstrip("/")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "quickstart.py"), "--url", base,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=110)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "add" in text and "multiply" in text and text.strip().endswith("OK")
