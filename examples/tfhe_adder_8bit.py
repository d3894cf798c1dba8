"""An 8-bit adder on TFHE-encrypted integers in blind mode: the server gets only the
evaluation key (bootstrapping + key-switching keys) and never anything it could decrypt with.

Parameters: preset fast_128 (n = 704, N = 1024, ≥ 128-bit by the TFHE-rs security curves,
worst-case failure 2^-73.1 per bootstrap, under its design bound 2^-64; docs/tfhe.md). The circuit is a ripple-carry adder of 37 gates
sent in one /tfhe/batch request. Expected run time: keygen ~1 s, a 15 MB key upload, 37 gate
bootstraps (measured 17.6 s wall in all against `./dev serve` on the 2-core dev host at load
average 7, an upper bound). Server: WAVIS_URL or the running `wavis serve`.

    .venv/bin/python examples/tfhe_adder_8bit.py
"""
from wavis.client import Circuit, Client, TfheKeys

keys = TfheKeys.generate("fast_128")
a, b = 200, 55
with Client() as c:
    c.api_key or c.create_temp_key()
    session = c.tfhe_blind_session(keys)
    circuit = Circuit()
    x, y = circuit.inputs(keys.encrypt_uint(a, 8)), circuit.inputs(keys.encrypt_uint(b, 8))
    total, carry = circuit.add(x, y)
    outputs = c.tfhe_run(session, circuit)
result = keys.decrypt_uint(circuit.pick(outputs, total))
print(f"{a} + {b} = {result} (mod 256), carry {keys.decrypt(circuit.pick(outputs, carry))}")
assert result == (a + b) % 256
