"""Self-contained numpy trainers for the attack tests (no dependency on privehr.learning).

- ``logreg_train_fn``: plain logistic regression by full-batch gradient descent with L2.
- ``dp_logreg_fit``: DP-SGD for logistic regression (Poisson sampling, per-example clipping,
  Gaussian noise), with ε from dp_accounting's PLD accountant.
"""

from __future__ import annotations

import dp_accounting
import numpy as np
from dp_accounting.pld import pld_privacy_accountant


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def make_task(n: int, d: int, *, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features, labels from a random linear model with logistic noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = rng.normal(size=d) * signal / np.sqrt(d)
    y = (rng.random(n) < sigmoid(X @ beta)).astype(np.int64)
    return X, y


def fit_logreg(X, y, *, l2: float, steps: int = 400, lr: float = 0.5, w0=None):
    n, d = X.shape
    lr = min(lr, 1.0 / (1.0 + l2))  # keep gradient descent stable under strong L2
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=float)
    b = 0.0
    for _ in range(steps):
        g = sigmoid(X @ w + b) - y
        w -= lr * (X.T @ g / n + l2 * w)
        b -= lr * g.mean()
    return w, b


def predictor(w, b):
    return lambda X: sigmoid(np.asarray(X) @ w + b)


def logreg_train_fn(*, l2: float, steps: int = 400, lr: float = 0.5):
    def train(X, y, seed):  # deterministic trainer: seed unused
        return predictor(*fit_logreg(X, y, l2=l2, steps=steps, lr=lr))

    return train


def dp_event(noise_multiplier: float, sample_rate: float, steps: int):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        steps,
    )


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(dp_event(noise_multiplier, sample_rate, steps))
    return float(acc.get_epsilon(delta))


def calibrate_noise(target_eps: float, sample_rate: float, steps: int, delta: float) -> float:
    return float(
        dp_accounting.calibrate_dp_mechanism(
            pld_privacy_accountant.PLDAccountant,
            lambda s: dp_event(s, sample_rate, steps),
            target_eps,
            delta,
            bracket_interval=dp_accounting.ExplicitBracketInterval(0.3, 50.0),
        )
    )


def dp_logreg_fit(X, y, *, noise_multiplier, clip, sample_rate, steps, lr, rng):
    """DP-SGD: each step samples each record with prob ``sample_rate`` (Poisson), clips each
    per-example gradient of [w, b] to L2 norm ``clip``, sums, adds N(0, (σ·clip)²), and divides
    by the expected batch size."""
    n, d = X.shape
    theta = np.zeros(d + 1)
    expected_batch = sample_rate * n
    for _ in range(steps):
        idx = np.flatnonzero(rng.random(n) < sample_rate)
        total = np.zeros(d + 1)
        if idx.size:
            Xb = X[idx]
            g = (sigmoid(Xb @ theta[:d] + theta[d]) - y[idx])[:, None]
            per_ex = np.concatenate([g * Xb, g], axis=1)
            norms = np.linalg.norm(per_ex, axis=1, keepdims=True)
            per_ex *= np.minimum(1.0, clip / np.maximum(norms, 1e-12))
            total = per_ex.sum(axis=0)
        total += rng.normal(scale=noise_multiplier * clip, size=d + 1)
        theta -= lr * total / expected_batch
    return theta[:d], theta[d]


def balanced_split(X, y, n_each: int, *, seed: int):
    """Members and non-members of ``n_each`` records each with identical class counts, so that
    class balance alone carries no membership signal."""
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))
    n_pos = n_each // 2
    m_idx = np.concatenate([pos[:n_pos], neg[: n_each - n_pos]])
    o_idx = np.concatenate([pos[n_pos : 2 * n_pos], neg[n_each - n_pos : 2 * (n_each - n_pos)]])
    return X[m_idx], y[m_idx], X[o_idx], y[o_idx]
