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
    def __init__(self, params: dict[str, np.ndarray], lr: float = 3e-3, b1=0.9, b2=0.999, eps=1e-8, wd=1e-4):
        self.p, self.lr, self.b1, self.b2, self.eps, self.wd = params, lr, b1, b2, eps, wd
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            if k.startswith("w"):
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


MODELS = {
    "digits-logreg": dict(name="Logistic regression, handwritten digits 8x8", fn=train_logreg,
                          params={"poly_degree": 8192, "scale_bits": 40, "max_depth": 1,
                                  "security_level": "128-bit"}),
    "digits-mlp": dict(name="Two-layer MLP with a quadratic activation, handwritten digits 8x8", fn=train_mlp,
                       params={"poly_degree": 16384, "scale_bits": 40, "max_depth": 4,
                               "security_level": "128-bit"}),
}


def forward(graph, weights, x):
    from wavis.models.runtime import Graph

    return Graph.from_spec(graph, weights, 64, 64).forward_plain(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    x_train, x_test, y_train, y_test = split()
    with np.load(TEST_NPZ, allow_pickle=False) as npz:  # the shipped split is this split
        assert np.array_equal(npz["X"], x_test) and np.array_equal(npz["y"], y_test), "rerun extract_split.py"
    xtr, xte = x_train / 16.0, x_test / 16.0
    for mid, cfg in MODELS.items():
        if args.only and mid not in args.only:
            continue
        weights, graph, hyper = cfg["fn"](xtr, y_train)
        acc_tr = float(np.mean(forward(graph, weights, xtr).argmax(1) == y_train))
        acc_te = float(np.mean(forward(graph, weights, xte).argmax(1) == y_test))
        npz_path = DATA / f"{mid}.npz"
        np.savez_compressed(npz_path, **{k: np.asarray(v, dtype=np.float64) for k, v in weights.items()})
        digest = hashlib.sha256(b"".join(np.asarray(weights[k], dtype=np.float64).tobytes()
                                         for k in sorted(weights)) + json.dumps(graph).encode()).hexdigest()[:16]
        json_path = DATA / f"{mid}.json"
        old = json.loads(json_path.read_text()) if json_path.exists() else {}
        spec = {
            "id": mid, "name": cfg["name"], "task": "image classification (10 classes)",
            "input_shape": [8, 8], "output_shape": [10], "block": 64,
            "input_encoding": INPUT_ENCODING, "output_decoding": output_decoding(10),
            "params_required": cfg["params"], "bootstrappable": False,
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
