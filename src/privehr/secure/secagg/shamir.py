"""Shamir t-of-m secret sharing over the prime field GF(2^521 - 1).

Protocol code, not a cipher: a degree-(t-1) polynomial with the secret as constant term and
coefficients from the injected CSPRNG; any t points give the secret by Lagrange interpolation
at 0, fewer give no information. Shares are *not* verifiable by themselves: a wrong share
interpolates to a wrong secret, so callers check every reconstruction against a commitment
(the self-mask seed) or the advertised public key (the pairwise key) and try another subset
of shares if it fails.

A share is ``x`` (2 bytes, big endian) followed by ``y`` (66 bytes): fixed length, so its size
leaks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

PRIME = (1 << 521) - 1
_Y_BYTES = 66
SHARE_BYTES = 2 + _Y_BYTES


class RandomSource(Protocol):
    """Anything with ``token_bytes(n)`` (the ``secrets`` module by default)."""

    def token_bytes(self, nbytes: int) -> bytes: ...


def _encode(x: int, y: int) -> bytes:
    return x.to_bytes(2, "big") + y.to_bytes(_Y_BYTES, "big")


def decode_share(share: bytes) -> tuple[int, int]:
    """Return ``(x, y)``; raises ValueError on a malformed share."""
    if len(share) != SHARE_BYTES:
        raise ValueError("malformed share")
    x = int.from_bytes(share[:2], "big")
    y = int.from_bytes(share[2:], "big")
    if x == 0 or y >= PRIME:
        raise ValueError("malformed share")
    return x, y


def split(secret: bytes, threshold: int, xs: Sequence[int], rng: RandomSource) -> dict[int, bytes]:
    """Share ``secret`` among the evaluation points ``xs`` (distinct, 1..65535)."""
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold={threshold} must be in [1, {len(xs)}]")
    if len(set(xs)) != len(xs) or any(not 0 < x < 1 << 16 for x in xs):
        raise ValueError("evaluation points must be distinct ints in [1, 65535]")
    value = int.from_bytes(secret, "big")
    if value >= PRIME:
        raise ValueError("secret too long for the field")
    # 16 extra random bytes make the reduction bias negligible (< 2^-128).
    coeffs = [value] + [
        int.from_bytes(rng.token_bytes(_Y_BYTES + 16), "big") % PRIME for _ in range(threshold - 1)
    ]
    shares: dict[int, bytes] = {}
    for x in xs:
        acc = 0
        for c in reversed(coeffs):
            acc = (acc * x + c) % PRIME
        shares[x] = _encode(x, acc)
    return shares


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """Coefficients l_i with f(0) = sum l_i f(x_i); they depend only on the points."""
    coeffs = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        coeffs.append(num * pow(den, -1, PRIME) % PRIME)
    return coeffs


def combine(
    shares: Iterable[bytes],
    secret_len: int,
    cache: dict[tuple[int, ...], list[int]] | None = None,
) -> bytes:
    """Interpolate at 0; raises ValueError if points repeat or the result is out of range.

    ``cache`` (owned by the caller, e.g. one per round) keeps the Lagrange coefficients of each
    point set: in a complete graph every secret is rebuilt from the same holders.
    """
    points = [decode_share(s) for s in shares]
    xs = tuple(x for x, _ in points)
    if len(set(xs)) != len(xs) or not points:
        raise ValueError("shares must have distinct, non-empty evaluation points")
    if cache is None:
        coeffs = lagrange_at_zero(xs)
    else:
        coeffs = cache.get(xs) or cache.setdefault(xs, lagrange_at_zero(xs))
    secret = sum(y * lam for (_, y), lam in zip(points, coeffs, strict=True)) % PRIME
    if secret >= 1 << (8 * secret_len):
        raise ValueError("shares do not reconstruct a valid secret")
    return secret.to_bytes(secret_len, "big")
