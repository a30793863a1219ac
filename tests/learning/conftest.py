import numpy as np
import pytest
import torch


def _logistic_data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic logistic-regression data with a random true weight vector."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X = rng.normal(size=(n, d)).astype(np.float32)
    logits = X @ w * 0.8 - 0.5
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return torch.from_numpy(X), torch.from_numpy(y)


@pytest.fixture
def logistic_data():
    return _logistic_data


@pytest.fixture
def data_small():
    return _logistic_data(400, 6, seed=3)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run ~30x faster on one thread on this shared machine (see torch_threads)."""
    from privehr.learning.train import torch_threads

    with torch_threads(1):
        yield
