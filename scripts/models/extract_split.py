"""Extract the held-out split of scikit-learn's digits dataset (UCI optdigits, 1797 8×8
images, pixel values 0..16, shipped inside scikit-learn: nothing is downloaded) that every
digits model is measured on, and ship it as ``wavis/models/data/digits_test.npz``
(X: uint8 (540, 64), y: uint8 (540,)).

The split: ``train_test_split(test_size=0.3, random_state=0, stratify=y)``; the training
script (``train.py``) recomputes it with :func:`split` and trains on the other 70 % only.

Run: .venv/bin/python scripts/models/extract_split.py   (needs the ``train`` extra)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "wavis" / "models" / "data" / "digits_test.npz"
TEST_SIZE, SEED = 0.3, 0


def split():
    """(X_train, X_test, y_train, y_test) of the digits dataset, raw pixels 0..16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    return train_test_split(d.data, d.target, test_size=TEST_SIZE, random_state=SEED, stratify=d.target)


def main() -> None:
    _, x_test, _, y_test = split()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, X=x_test.astype(np.uint8), y=y_test.astype(np.uint8))
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()[:16]
    print(f"wrote {OUT} ({x_test.shape[0]} samples, sha256 {digest})")


if __name__ == "__main__":
    main()
