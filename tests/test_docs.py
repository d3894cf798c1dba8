"""Every code block in README.md and docs/*.md (issue 18): the Python blocks of each page run, in
order, as one script in a fresh interpreter, against the real service (WAVIS_URL, WAVIS_API_KEY
of a test account; the server's insecure mode is on) with 128-bit parameters replaced by
`testing` ones through the table below, each replacement asserted to apply. Shell, text and
listing blocks are not run: each fence language that is skipped has its reason here.
docs/api-reference.md must be exactly what the live route table generates."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```", re.S | re.M)

RUN = {"python", "py"}
SKIPPED = {  # fence language → why its blocks are not run
    "bash": "shell commands (a server, builds, benchmarks): exercised by tests/test_cli.py, tests/test_examples.py "
            "and the README's two commands, not re-run here",
    "sh": "shell commands, as bash",
    "console": "shell sessions, as bash",
    "": "listings (module maps, signatures, file layouts), not programs",
    "text": "listings, not programs",
    "json": "example documents, not programs",
    "sql": "schema listings",
    "cuda": "GPU source listings (no device in CI)",
}
# 128-bit (or GPU, or minutes-long) settings → what the test runs instead; every entry must match
TESTING = {
    "getting-started.md": [('"poly_degree": 8192, "scale_bits": 40, "max_depth": 2, "security_level": "128-bit"',
                            '"poly_degree": 2048, "scale_bits": 30, "max_depth": 2, "security_level": "testing"')],
    "tutorial-ckks.md": [('CkksParameters(poly_degree=16384, scale_bits=40, max_depth=4)',
                          'CkksParameters(poly_degree=2048, scale_bits=30, max_depth=4, security_level="testing")'),
                         ('CkksParameters.bootstrappable("n65536")', 'CkksParameters.bootstrappable("testing-n1024")')],
    "ckks.md": [("CkksParameters(poly_degree=16384, scale_bits=40, max_depth=7)",
                 'CkksParameters(poly_degree=2048, scale_bits=30, max_depth=7, security_level="testing")')],
    "bootstrapping.md": [('CkksParameters.bootstrappable("n65536")', 'CkksParameters.bootstrappable("testing-n1024")'),
                         ("for _ in range(20):", "for _ in range(2):")],
}


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(page.read_text())]


def test_every_fence_is_run_or_skipped_with_a_reason():
    for page in PAGES:
        for lang, _ in blocks(page):
            assert lang in RUN or lang in SKIPPED, f"{page.name}: a ```{lang} block is neither run nor skipped"


def script_of(page: Path) -> str:
    code = "\n\n".join(body for lang, body in blocks(page) if lang in RUN)
    for old, new in TESTING.get(page.name, []):
        assert old in code, f"{page.name}: the testing replacement for {old!r} no longer applies"
        code = code.replace(old, new)
    return code


RUNNABLE = [p for p in PAGES if any(lang in RUN for lang, _ in blocks(p))]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
async def test_python_blocks_run(api, page, tmp_path):
    script = tmp_path / (page.stem.replace("-", "_") + ".py")
    script.write_text(script_of(page))
    key = await api.account(plan="pro")
    env = {**os.environ, "WAVIS_URL": str(api.make_url("")).rstrip("/"), "WAVIS_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), env=env, cwd=str(tmp_path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=170)
    assert proc.returncode == 0, f"{page.name}:\n{out.decode()[-4000:]}"


def test_api_reference_is_generated_from_the_route_table():
    from wavis.service.apidoc import offline_document, to_markdown

    want = to_markdown(offline_document())
    have = (ROOT / "docs" / "api-reference.md").read_text()
    assert have == want, "docs/api-reference.md is stale: .venv/bin/python -m wavis.service.apidoc > docs/api-reference.md"


def test_fast_128_failure_figure_agrees_with_the_noise_model():
    """README and examples/tfhe_adder_8bit.py state fast_128's worst-case failure per bootstrap
    as the noise model computes it (wavis.tfhe.noise.p_fail_log2: 2^-73.1), the same figure in
    both (one said ≤ 2^-64, the design bound, as the failure itself)."""
    from wavis import tfhe
    from wavis.tfhe import noise

    figure = f"2^{noise.p_fail_log2(tfhe.get_preset('fast_128')):.1f}"
    for name in ("README.md", "examples/tfhe_adder_8bit.py"):
        text = " ".join((ROOT / name).read_text().split())
        stated = re.findall(r"fast_128[^.;)]*?failure[^2]*(2\^-[0-9.]+[0-9])", text)
        assert stated and set(stated) == {figure}, (name, stated, figure)


def test_getting_started_says_what_server_side_ckks_decryption_answers():
    """The trial read "CKKS decryptions keep only a few bits" and then met a 409: the page now says
    that at the default 40-bit scale server-side decryption answers 409 INSUFFICIENT_PRECISION and
    what to do (its Python block, run by test_python_blocks_run, checks the 409 against the server)."""
    text = " ".join((ROOT / "docs" / "getting-started.md").read_text().split())
    section = text[text.index("## 3. Server-managed mode"):text.index("## 4.")]
    for needed in ("409 `INSUFFICIENT_PRECISION`", "default `scale_bits` 40", "scale_bits_for_8_bits",
                   "decrypt on your side", "keys.decrypt(result.ciphertext)", "docs/security.md",
                   'exc.code == "INSUFFICIENT_PRECISION"'):
        assert needed in section, needed


def test_pages_state_the_n65536_user_levels_the_preset_has():
    """The CKKS tutorial said `n65536` leaves 9 user levels after each bootstrap, the README 10:
    the preset has 10 since 8036167. Every present-tense statement must say what the preset says."""
    from wavis.ckks.presets import BOOTSTRAP_PRESETS

    levels = BOOTSTRAP_PRESETS["n65536"].max_depth
    checks = {"README.md": r"presets `n65536` \(128-bit, (\d+) levels",
              "docs/tutorial-ckks.md": r"`n65536` is 128-bit with (\d+) user levels",
              "docs/models.md": r"more than the (\d+) user levels of the 128-bit bootstrap preset `n65536`"}
    for name, pattern in checks.items():
        stated = re.findall(pattern, " ".join((ROOT / name).read_text().split()))
        assert stated and {int(s) for s in stated} == {levels}, (name, stated, levels)


def test_getting_started_cli_section_says_what_its_input_files_hold():
    """The trial made x.json and m.json up: section 5 used them without saying what they hold."""
    text = " ".join((ROOT / "docs" / "getting-started.md").read_text().split())
    section = text[text.index("## 5. The same from the command line"):]
    for needed in ("`x.json` is a JSON list", "`m.json` a JSON list of rows", "json.dump("):
        assert needed in section, needed


def test_service_md_says_when_a_job_stops_being_cancellable():
    """The trial submitted 40 async bootstraps (31 accepted, 9 refused 429) and could cancel none (each one already RUNNING, 409):
    a worker claims a job as soon as it reads it, while it may still wait in its batcher. The
    DELETE /jobs row must say so (RUNNING from the claim, started_at = the claim)."""
    text = " ".join((ROOT / "docs" / "service.md").read_text().split())
    row = text[text.index("| `DELETE /jobs/{id}` (WRITE+) |"):]
    row = row[:row.index(" |\n") if " |\n" in row else row.index("Another account's job")]
    for needed in ("RUNNING from the moment a worker **claims** it", "`started_at` is the claim",
                   "no longer cancellable", "`queue_time_ms` counts that wait"):
        assert needed in row, needed
