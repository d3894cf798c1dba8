"""Train the digits models of the catalogue and write them into the package
(``wavis/models/data/<id>.json`` + ``<id>.npz``; never pickle).

Every model is trained on the 70 % training part of scikit-learn's digits (see
``extract_split.py``; the held-out 30 % is shipped as ``digits_test.npz`` and checked here to
be the same split) with inputs normalized to [0, 1] (pixels / 16), and is trained as exactly
the function the encrypted model computes (polynomial activations in training too), so the
plaintext and encrypted models differ only by CKKS's approximation error.

* ``digits-logreg``: multinomial logistic regression (scikit-learn ``LogisticRegression``,
  lbfgs, C = 1); served output = the logits W·x + b (argmax-friendly: no sigmoid/softmax under
  encryption). Depth 1.
* ``digits-mlp``: 64 → 32 → 10 with the activation p(z) = c0 + c1·z + c2·z², the least-squares
  quadratic fit of ReLU on [−4, 4] (fixed before training); trained in NumPy with Adam
  (Kingma–Ba 2015) on the softmax cross-entropy, seed 0. Depth 4 (linear 1 + p 2 + linear 1).

Run (needs the ``train`` extra): .venv/bin/python scripts/models/train.py [--only ID]
The ``measured`` section of an existing model file (written by benchmarks/models_accuracy.py)
is kept only if the weights did not change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extract_split import OUT as TEST_NPZ, split  # noqa: E402

DATA = TEST_NPZ.parent
SCRIPT = "scripts/models/train.py"
DATASET = ("scikit-learn digits (UCI optdigits 8x8, 1797 images, pixels 0..16); held-out split: 30 % "
           "stratified, random_state 0 (wavis/models/data/digits_test.npz, scripts/models/extract_split.py)")
INPUT_ENCODING = {
    "normalization": {"subtract": 0.0, "divide_by": 16.0},
    "order": "the 8x8 image row-major (64 values, pixels 0..16 before normalization)",
    "layout": "sample s of a batch in slots [s*block, s*block + 64); other slots 0",
    "packing": "real values, one ciphertext holds up to max_batch samples",
    "scale": "the key's default scale 2^scale_bits",
    "level": "the key's top level (at least levels_consumed)",
}


def output_decoding(n: int) -> dict:
    return {"meaning": f"logits of classes 0..{n - 1}; the predicted class is their argmax",
            "layout": f"sample s: real parts of slots [s*block, s*block + {n}); other slots are not outputs"}


def relu_quadratic() -> list[float]:
    z = np.linspace(-4, 4, 801)
    c = np.polynomial.polynomial.polyfit(z, np.maximum(z, 0), 2)
    return [round(float(v), 4) for v in c]


def softmax_xent_grad(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
    p[np.arange(len(y)), y] -= 1
    return float(loss), p / len(y)


class Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float = 3e-3, b1=0.9, b2=0.999, eps=1e-8, wd=1e-4,
                 decayed=lambda name: name.startswith("w")):
        self.p, self.lr, self.b1, self.b2, self.eps, self.wd = params, lr, b1, b2, eps, wd
        self.decayed = decayed  # which parameters get the L2 weight decay (the matrices)
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            if self.decayed(k):
                g = g + self.wd * self.p[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            self.p[k] -= self.lr * mh / (np.sqrt(vh) + self.eps)


def train_logreg(x, y):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(x, y)
    weights = {"w0": clf.coef_.astype(np.float64), "b0": clf.intercept_.astype(np.float64)}
    graph = [{"op": "linear", "in": "x", "out": "logits", "weight": "w0", "bias": "b0"}]
    return weights, graph, {"C": 1.0, "solver": "lbfgs", "library": "scikit-learn LogisticRegression"}


def train_mlp(x, y, hidden=32, epochs=400, batch=64, seed=0):
    act = relu_quadratic()
    rng = np.random.default_rng(seed)
    p = {"w0": rng.normal(0, np.sqrt(2 / x.shape[1]), (hidden, x.shape[1])), "b0": np.zeros(hidden),
         "w1": rng.normal(0, np.sqrt(2 / hidden), (10, hidden)), "b1": np.zeros(10)}
    opt = Adam(p)
    poly = np.polynomial.polynomial
    dact = poly.polyder(act)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            xb, yb = x[idx], y[idx]
            z = xb @ p["w0"].T + p["b0"]
            a = poly.polyval(z, act)
            logits = a @ p["w1"].T + p["b1"]
            _, g = softmax_xent_grad(logits, yb)
            ga = g @ p["w1"]
            gz = ga * poly.polyval(z, dact)
            opt.step({"w1": g.T @ a, "b1": g.sum(0), "w0": gz.T @ xb, "b0": gz.sum(0)})
    graph = [{"op": "linear", "in": "x", "out": "z", "weight": "w0", "bias": "b0"},
             {"op": "poly", "in": "z", "out": "a", "coeffs": act},
             {"op": "linear", "in": "a", "out": "logits", "weight": "w1", "bias": "b1"}]
    return p, graph, {"hidden": hidden, "epochs": epochs, "batch": batch, "optimizer": "Adam lr 3e-3 wd 1e-4",
                      "seed": seed, "activation": f"p(z) = {act[0]} + {act[1]}*z + {act[2]}*z^2 "
                                                  "(least-squares quadratic of ReLU on [-4, 4])"}


# -- the one-block transformer encoder ---------------------------------------------------------------
T, D, DH = 8, 8, 16  # tokens (image rows), model width, feed-forward width
# attention: exp(s)/Σ exp ≈ (1 + s/2)²/T — the non-negative quadratic Taylor substitute of exp with
# the normalizer fixed to T (the value of Σ_j exp(s_j) at s = 0): no division under encryption
P_ATT = [1 / 8, 1 / 8, 1 / 32]


def inv_sqrt_quadratic() -> list[float]:
    """The polynomial layer norm's 1/sqrt(v): least-squares quadratic on [0.1, 2] (fixed before
    training; the model is trained through it)."""
    v = np.linspace(0.1, 2.0, 400)
    c = np.polynomial.polynomial.polyfit(v, 1 / np.sqrt(v), 2)
    return [round(float(x), 4) for x in c]


def _poly(c, z):
    out = 0.0
    for k, ck in enumerate(c):
        out = out + ck * z ** k
    return out


def transformer_forward(p, x, np_=np):
    """The reference forward in token form: x (batch, 64) in [0, 1] → logits (batch, 10).

    h0 = X·E + P (X: 8 tokens × 8 pixels); Q, K, V = h0·W_{q,k,v}; attention over the cyclic
    offsets r of token i: S[i, r] = Q_i·K_{(i+r) mod 8}/√D, A = p_att(S), O_i = Σ_r A[i, r]·V_{i+r};
    h1 = h0 + O·W_o; polynomial layer norm: c = h1 − mean(h1), n = c·p_inv(mean(c²)), g = n∘γ + β;
    feed-forward h2 = g + p_act(g·W1 + b1)·W2 + b2; logits = mean over tokens of h2, then ·W_c + b_c.
    """
    X = x.reshape(-1, T, T)
    h0 = X @ p["E"] + p["P"]
    q, k, v = h0 @ p["Wq"], h0 @ p["Wk"], h0 @ p["Wv"]
    idx = (np_.arange(T)[:, None] + np_.arange(T)[None, :]) % T  # [i, r] → (i + r) mod T
    kr, vr = k[:, idx, :], v[:, idx, :]  # (batch, i, r, D)
    s = np_.sum(q[:, :, None, :] * kr, axis=3) / np.sqrt(D)
    a = _poly(P_ATT, s)
    o = np_.sum(a[:, :, :, None] * vr, axis=2)
    h1 = h0 + o @ p["Wo"]
    c = h1 - np_.mean(h1, axis=2, keepdims=True)
    n = c * _poly(p["_inv"], np_.mean(c * c, axis=2, keepdims=True))
    g = n * p["gamma"] + p["beta"]
    h2 = g + _poly(p["_act"], g @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    return np_.mean(h2, axis=1) @ p["Wc"] + p["bc"]


def transformer_graph(p) -> tuple[dict, list]:
    """The same function as a slot graph (block 512): layouts x[8i+g], (r, i, f) → 64r + 8i + f,
    (i, f) → 8i + f, feed-forward (i, k) → 16i + k. Returns (weights, graph)."""
    B, DD = T * T * D, T * D
    C = np.eye(D) - 1.0 / D  # centring over the features
    E, P = p["E"], p["P"]
    rep = lambda r, i, f: T * D * r + D * i + f  # noqa: E731

    def from_x(W, shift: int, center=False):
        """x → (r, i, f) ↦ (h0·W)[(i + shift·r) mod T, f] (or (i, f) without r)."""
        M = E @ W
        bias_tok = P @ W
        if center:
            M, bias_tok = M @ C, bias_tok @ C
        rows = DD if shift < 0 else B
        m, b = np.zeros((rows, T * T)), np.zeros(rows)
        for r in range(1 if shift < 0 else T):
            for i in range(T):
                j = i if shift < 0 else (i + shift * r) % T
                for f in range(D):
                    row = D * i + f if shift < 0 else rep(r, i, f)
                    m[row, T * j:T * j + T] = M[:, f]
                    b[row] = bias_tok[j, f]
        return m, b

    w = {}
    w["wq"], w["bq"] = from_x(p["Wq"], 0)
    w["wk"], w["bk"] = from_x(p["Wk"], 1)
    w["wv"], w["bv"] = from_x(p["Wv"], 1)
    w["wh"], w["bh"] = from_x(np.eye(D), -1, center=True)
    ws = np.zeros((B, B))
    for r in range(T):
        for i in range(T):
            for f in range(D):
                ws[rep(r, i, f), rep(r, i, 0):rep(r, i, 0) + D] = 1 / np.sqrt(D)
    w["ws"] = ws
    wo = np.zeros((DD, B))
    WoC = p["Wo"] @ C
    for r in range(T):
        for i in range(T):
            for f in range(D):
                wo[D * i:D * i + D, rep(r, i, f)] = WoC[f, :]
    w["wo"] = wo
    wm = np.zeros((DD, DD))
    for i in range(T):
        wm[D * i:D * i + D, D * i:D * i + D] = 1 / D
    w["wm"] = wm
    w1 = np.zeros((T * DH, DD))
    G1 = p["gamma"][:, None] * p["W1"]
    b1 = p["beta"] @ p["W1"] + p["b1"]
    for i in range(T):
        w1[DH * i:DH * i + DH, D * i:D * i + D] = G1.T
    w["w1"], w["b1"] = w1, np.tile(b1, T)
    W2c = p["W2"] @ p["Wc"] / T
    w2 = np.zeros((10, T * DH))
    for i in range(T):
        w2[:, DH * i:DH * i + DH] = W2c.T
    w["w2"] = w2
    w["b2"] = p["beta"] @ p["Wc"] + p["b2"] @ p["Wc"] + p["bc"]
    Gc = p["gamma"][:, None] * p["Wc"] / T
    wr = np.zeros((10, DD))
    for i in range(T):
        wr[:, D * i:D * i + D] = Gc.T
    w["wr"] = wr
    graph = [
        {"op": "linear", "in": "x", "out": "q", "weight": "wq", "bias": "bq"},
        {"op": "linear", "in": "x", "out": "k", "weight": "wk", "bias": "bk"},
        {"op": "linear", "in": "x", "out": "v", "weight": "wv", "bias": "bv"},
        {"op": "linear", "in": "x", "out": "h0c", "weight": "wh", "bias": "bh"},
        {"op": "mul", "in": ["q", "k"], "out": "qk"},
        {"op": "linear", "in": "qk", "out": "s", "weight": "ws"},
        {"op": "poly", "in": "s", "out": "att", "coeffs": P_ATT},
        {"op": "mul", "in": ["att", "v"], "out": "av"},
        {"op": "linear", "in": "av", "out": "oc", "weight": "wo"},
        {"op": "add", "in": ["oc", "h0c"], "out": "c"},
        {"op": "mul", "in": ["c", "c"], "out": "c2"},
        {"op": "linear", "in": "c2", "out": "var", "weight": "wm"},
        {"op": "poly", "in": "var", "out": "inv", "coeffs": p["_inv"]},
        {"op": "mul", "in": ["c", "inv"], "out": "n"},
        {"op": "linear", "in": "n", "out": "u", "weight": "w1", "bias": "b1"},
        {"op": "poly", "in": "u", "out": "a", "coeffs": p["_act"]},
        {"op": "linear", "in": "a", "out": "l_ffn", "weight": "w2", "bias": "b2"},
        {"op": "linear", "in": "n", "out": "l_res", "weight": "wr"},
        {"op": "add", "in": ["l_ffn", "l_res"], "out": "logits"},
    ]
    return w, graph


def train_transformer(x, y, epochs=150, batch=64, seed=0, lr=3e-3, wd=3e-3):
    import autograd.numpy as anp
    from autograd import grad

    rng = np.random.default_rng(seed)
    s = lambda *shape, fan: rng.normal(0, 1 / np.sqrt(fan), shape)  # noqa: E731
    p = {"E": s(T, D, fan=T), "P": s(T, D, fan=T) * 0.1, "Wq": s(D, D, fan=D), "Wk": s(D, D, fan=D),
         "Wv": s(D, D, fan=D), "Wo": s(D, D, fan=D), "gamma": np.ones(D), "beta": np.zeros(D),
         "W1": s(D, DH, fan=D), "b1": np.zeros(DH), "W2": s(DH, D, fan=DH) * 0.5, "b2": np.zeros(D),
         "Wc": s(D, 10, fan=D), "bc": np.zeros(10)}
    fixed = {"_inv": inv_sqrt_quadratic(), "_act": relu_quadratic()}

    def loss(params, xb, yb):
        logits = transformer_forward({**params, **fixed}, xb, anp)
        z = logits - anp.max(logits, axis=1, keepdims=True)
        lse = anp.log(anp.sum(anp.exp(z), axis=1))
        return anp.mean(lse - z[np.arange(len(yb)), yb])

    g = grad(loss)
    opt = Adam(p, lr=lr, wd=wd, decayed=lambda k: k[0] in "EPW")
    for ep in range(epochs):
        order = rng.permutation(len(y))
        for st in range(0, len(y), batch):
            idx = order[st:st + batch]
            opt.step(g(p, x[idx], y[idx]))
    full = {**p, **fixed}
    w, graph = transformer_graph(full)
    ref = transformer_forward(full, x)
    from wavis.models.runtime import Graph
    got = Graph.from_spec(graph, w, 64, T * T * D).forward_plain(x)
    assert np.max(np.abs(ref - got)) < 1e-9, "the slot graph must equal the token-form model"
    w.update({f"tok_{k}": np.asarray(v, dtype=np.float64) for k, v in full.items()})
    return w, graph, {"tokens": T, "width": D, "ffn_width": DH, "epochs": epochs, "batch": batch, "seed": seed,
                      "optimizer": f"Adam lr {lr} wd {wd} (gradients by autograd)",
                      "attention": f"p_att(s) = {P_ATT} (power basis) = (1 + s/2)^2 / 8 in place of softmax",
                      "layer_norm": f"c * p_inv(mean(c^2)), p_inv = {fixed['_inv']} (least-squares 1/sqrt on [0.1, 2])",
                      "activation": f"p(z) = {fixed['_act']} (least-squares quadratic of ReLU on [-4, 4])",
                      "token_form_weights": "the NPZ's tok_* arrays (the slot matrices are built from them)"}


# -- a deeper MLP that bootstraps between layers --------------------------------------------------------
DEEP_LAYERS, DEEP_WIDTH = 5, 32
# the activation as one product: z·(A1 + A2·z) = A1·z + A2·z² (the MLP's quadratic without its
# constant, which the next layer's bias absorbs): two linear maps of the same input and one
# ciphertext product, 2 levels per hidden layer — it fits between bootstraps even with 2 levels
A1, A2 = 0.5, 0.117


def deep_forward(p, x, np_=np, taps=None):
    h = x
    for k in range(DEEP_LAYERS):
        z = h @ p[f"w{k}"].T + p[f"b{k}"]
        h = z * (A1 + A2 * z)
        if taps is not None:
            taps.append(h)
    return h @ p[f"w{DEEP_LAYERS}"].T + p[f"b{DEEP_LAYERS}"]


def train_deep_mlp(x, y, epochs=200, batch=64, seed=0, lr=2e-3, wd=1e-4, act_penalty=1e-2):
    import autograd.numpy as anp
    from autograd import grad

    rng = np.random.default_rng(seed)
    dims = [x.shape[1]] + [DEEP_WIDTH] * DEEP_LAYERS + [10]
    p = {}
    for k in range(DEEP_LAYERS + 1):
        p[f"w{k}"] = rng.normal(0, 1 / np.sqrt(dims[k]), (dims[k + 1], dims[k]))
        p[f"b{k}"] = np.zeros(dims[k + 1])

    def loss(params, xb, yb):
        taps: list = []
        logits = deep_forward(params, xb, anp, taps)
        z = logits - anp.max(logits, axis=1, keepdims=True)
        xent = anp.mean(anp.log(anp.sum(anp.exp(z), axis=1)) - z[np.arange(len(yb)), yb])
        # keeps the hidden values small: the bootstraps' error grows with their declared bound
        return xent + act_penalty * sum(anp.mean(t * t) for t in taps)

    g = grad(loss)
    opt = Adam(p, lr=lr, wd=wd)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for st in range(0, len(y), batch):
            idx = order[st:st + batch]
            opt.step(g(p, x[idx], y[idx]))
    taps: list = []
    deep_forward(p, x, taps=taps)
    # the bootstraps' declared bound: 2× the largest |value| the training set reaches there, rounded up
    # to a power of two (the bootstrap's error scales with it; a value beyond it would be wrong)
    peak = max(float(np.max(np.abs(t))) for t in taps)
    rng_bound = float(2 ** np.ceil(np.log2(2 * peak)))
    print(f"digits-deep-mlp: largest hidden |value| on the training set {peak:.3g} -> input_range {rng_bound:g}")
    # under encryption each hidden layer carries h/R (R = rng_bound): the 1/R is folded into the
    # product's second factor and R into the next layer's weights, so every bootstrap sees values in
    # [-1/2, 1/2] with the declared range 1 (it can then run from level 0)
    w, graph = {}, []
    h = "x"
    for k in range(DEEP_LAYERS):
        up = 1.0 if k == 0 else rng_bound
        w[f"w{k}"], w[f"b{k}"] = p[f"w{k}"] * up, p[f"b{k}"]
        w[f"w{k}s"], w[f"b{k}s"] = A2 * p[f"w{k}"] * up / rng_bound, (A2 * p[f"b{k}"] + A1) / rng_bound
        graph += [{"op": "linear", "in": h, "out": f"z{k}", "weight": f"w{k}", "bias": f"b{k}"},
                  {"op": "linear", "in": h, "out": f"s{k}", "weight": f"w{k}s", "bias": f"b{k}s"},
                  {"op": "mul", "in": [f"z{k}", f"s{k}"], "out": f"h{k}"},
                  {"op": "bootstrap", "in": f"h{k}", "out": f"hb{k}", "input_range": 1.0,
                   "min_level": 2 if k < DEEP_LAYERS - 1 else 1}]
        h = f"hb{k}"
    w[f"w{DEEP_LAYERS}"], w[f"b{DEEP_LAYERS}"] = p[f"w{DEEP_LAYERS}"] * rng_bound, p[f"b{DEEP_LAYERS}"]
    from wavis.models.runtime import Graph
    got = Graph.from_spec(graph + [{"op": "linear", "in": h, "out": "logits", "weight": f"w{DEEP_LAYERS}",
                                    "bias": f"b{DEEP_LAYERS}"}], w, 64, 64).forward_plain(x)
    assert np.max(np.abs(got - deep_forward(p, x))) < 1e-9, "the slot graph must equal the layer form"
    graph.append({"op": "linear", "in": h, "out": "logits", "weight": f"w{DEEP_LAYERS}", "bias": f"b{DEEP_LAYERS}"})
    return w, graph, {"layers": f"64 -> {' -> '.join([str(DEEP_WIDTH)] * DEEP_LAYERS)} -> 10", "epochs": epochs,
                      "batch": batch, "seed": seed, "optimizer": f"Adam lr {lr} wd {wd} (gradients by autograd)",
                      "activation_penalty": f"{act_penalty} * sum of mean(h^2) over the hidden layers",
                      "activation": f"z*({A1} + {A2}*z) as two linear maps and one product (2 levels per layer)",
                      "hidden_scale": f"hidden values carried as h/{rng_bound:g} (2x the training set's peak, "
                                      "a power of two); bootstraps declare input_range 1"}


MODELS = {
    "digits-logreg": dict(name="Logistic regression, handwritten digits 8x8", fn=train_logreg,
                          params={"poly_degree": 8192, "scale_bits": 40, "max_depth": 1,
                                  "security_level": "128-bit"}),
    "digits-mlp": dict(name="Two-layer MLP with a quadratic activation, handwritten digits 8x8", fn=train_mlp,
                       params={"poly_degree": 16384, "scale_bits": 40, "max_depth": 4,
                               "security_level": "128-bit"}),
    "digits-transformer": dict(
        name="One-block transformer encoder (8 tokens x 8 features, polynomial attention and layer norm), "
             "handwritten digits 8x8", fn=train_transformer, block=T * T * D,
        params={"poly_degree": 65536, "scale_bits": 40, "max_depth": 16, "security_level": "128-bit"}),
    "digits-deep-mlp": dict(
        name="Deep MLP (5 hidden layers, quadratic activations) that bootstraps between layers, handwritten digits 8x8",
        fn=train_deep_mlp, testing_bootstrap_preset="testing-n1024",
        params={"poly_degree": 65536, "scale_bits": 40, "max_depth": 9, "security_level": "128-bit",
                "first_mod_bits": 60, "special_mod_bits": 61, "dnum": 3, "magnitude_bits": 19,
                "bootstrap_preset": "n65536"}),
}


def forward(graph, weights, x, block=64):
    from wavis.models.runtime import Graph

    return Graph.from_spec(graph, weights, 64, block).forward_plain(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append")
    ap.add_argument("--out", help="write the model files here instead of wavis/models/data")
    args = ap.parse_args()
    x_train, x_test, y_train, y_test = split()
    with np.load(TEST_NPZ, allow_pickle=False) as npz:  # the shipped split is this split
        assert np.array_equal(npz["X"], x_test) and np.array_equal(npz["y"], y_test), "rerun extract_split.py"
    xtr, xte = x_train / 16.0, x_test / 16.0
    for mid, cfg in MODELS.items():
        if args.only and mid not in args.only:
            continue
        weights, graph, hyper = cfg["fn"](xtr, y_train)
        block = cfg.get("block", 64)
        acc_tr = float(np.mean(forward(graph, weights, xtr, block).argmax(1) == y_train))
        acc_te = float(np.mean(forward(graph, weights, xte, block).argmax(1) == y_test))
        data = Path(args.out) if args.out else DATA
        npz_path = data / f"{mid}.npz"
        np.savez_compressed(npz_path, **{k: np.asarray(v, dtype=np.float64) for k, v in weights.items()})
        digest = hashlib.sha256(b"".join(np.asarray(weights[k], dtype=np.float64).tobytes()
                                         for k in sorted(weights)) + json.dumps(graph).encode()).hexdigest()[:16]
        json_path = data / f"{mid}.json"
        old = json.loads(json_path.read_text()) if json_path.exists() else {}
        spec = {
            "id": mid, "name": cfg["name"], "task": "image classification (10 classes)",
            "input_shape": [8, 8], "output_shape": [10], "block": block,
            "input_encoding": INPUT_ENCODING, "output_decoding": output_decoding(10),
            "params_required": cfg["params"],
            **({"testing_bootstrap_preset": cfg["testing_bootstrap_preset"]} if "testing_bootstrap_preset" in cfg
               else {}),
            "dataset": DATASET, "trained_by": f"{SCRIPT} ({hyper.get('library', 'NumPy')})",
            "training": {**hyper, "train_samples": int(len(y_train)), "train_accuracy": round(acc_tr, 4),
                         "test_accuracy_float64": round(acc_te, 4)},
            "weights": npz_path.name, "weights_digest": digest, "graph": graph,
        }
        if old.get("weights_digest") == digest and "measured" in old:
            spec["measured"] = old["measured"]
        json_path.write_text(json.dumps(spec, indent=1) + "\n")
        print(f"{mid}: train {acc_tr:.4f} test {acc_te:.4f} -> {json_path}")


if __name__ == "__main__":
    main()
