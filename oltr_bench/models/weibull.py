"""Weibull models of extreme values, computed as libMR computes them (numpy only, no libmr).

OpenMax (Bendale & Boult, CVPR 2016) fits, per class, a Weibull distribution to the largest
distances between the class's training activation vectors and their mean, and scores a query
distance with the Weibull CDF. Every public OpenMax implementation (OSDN, OLTR's
``run_openmax.py``) does this with libMR's ``MR.fit_high(tail, n)`` and ``MR.w_score(d)``;
this module reproduces those two calls.

libMR (Vastlab/libMR ``MetaRecognition.cpp`` + ``weibull.c``; identical in PyPI ``libmr`` 0.1.9):

1. ``fit_high(data, n)``: sign s = +1 (``fit_low``: s = -1, the data are negated). Sort s·data in
   descending order and keep the n largest: the tail. ``small_score`` = the smallest tail value.
2. Translate: x_i = tail_i + translate_amount - small_score, so x lies in [t, t + range] with
   t = translate_amount (1 in PyPI libmr 0.1.9; 10000 in the copy bundled with OSDN and in
   every libMR Python binding before March 2017).
3. Two-parameter Weibull maximum-likelihood fit of x (a port of MATLAB's ``wblfit``): with
   y = log x rescaled to u = (y - max y) / (max y - min y) in [-1, 0], solve the profile
   likelihood equation ``σ + mean(u) - Σ u_i e^{u_i/σ} / Σ e^{u_i/σ} = 0`` for σ (start
   σ₀ = √6·std(u)/π, bracket by halving/doubling, then Brent's method with tolerance 1e-6 as
   ``wdfzero`` implements it), set μ = σ·log(mean e^{u/σ}), and transform back:
   scale λ = exp(range·μ + max y), shape κ = 1/(range·σ).
4. The fit is *invalid* when the tail has at most one value or all its values are equal (range
   0), or when the root cannot be bracketed. libMR then resets the model and every
   ``w_score`` returns -9999.0 (the Python binding does not report the failure).
5. ``w_score(q) = CDF(q)``: z = s·q + translate_amount - small_score; 0 if z < 0, else
   1 - exp(-(z/λ)^κ); -9999.0 for an invalid model.

Differences from libMR, all below the 1e-6 root-finding tolerance or outside OpenMax's use:
the CDF is evaluated as ``-expm1(-(z/λ)^κ)`` (same value, no cancellation for tiny scores);
libMR's confidence intervals (unused by ``w_score``) are not computed; a tail size larger
than the data raises ``ValueError`` exactly as the PyPI binding does (the C++ core returns -1).
κ is often large (tens to hundreds for OpenMax's eucos distances), which is why everything here
is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INVALID_SCORE = -9999.0
"""What libMR's ``w_score`` returns for a model whose fit failed."""

_ROOT_TOLERANCE = 1e-6  # libMR's ``tol`` for the likelihood root
_FLOAT_MIN = 2.225073858507201e-308  # libMR's FULL_PRECISION_MIN (bracketing underflow)
_FLOAT_MAX = 1.797693134862315e308  # libMR's FULL_PRECISION_MAX (bracketing overflow)


@dataclass(frozen=True)
class WeibullModel:
    """A fitted libMR model: ``w_score(q) = 1 - exp(-((s·q + translate - small_score)/scale)^shape)``."""

    scale: float
    shape: float
    sign: int
    translate_amount: float
    small_score: float
    valid: bool

    def w_score(self, query: np.ndarray | float) -> np.ndarray:
        """libMR's ``w_score`` (= ``cdf``) of every query value; -9999.0 everywhere if invalid."""
        q = np.asarray(query, dtype=np.float64)
        if not self.valid:
            return np.full(q.shape, INVALID_SCORE)
        return weibull_cdf(q * self.sign + self.translate_amount - self.small_score, self.scale, self.shape)

    def params(self) -> tuple[float, float, int, float, float]:
        """``(scale, shape, sign, translate_amount, small_score)`` as libMR's ``get_params``."""
        return (self.scale, self.shape, self.sign, self.translate_amount, self.small_score)


def weibull_cdf(z: np.ndarray, scale: float, shape: float) -> np.ndarray:
    """1 - exp(-(z/scale)^shape) for z >= 0 and 0 for z < 0, in float64."""
    z = np.asarray(z, dtype=np.float64)
    positive = np.where(z > 0, z, 1.0)
    power = np.exp(shape * np.log(positive / scale))
    return np.where(z > 0, -np.expm1(-power), 0.0)


def fit_high(data: np.ndarray, tail_size: int, translate_amount: float = 1) -> WeibullModel:
    """libMR ``MR(translate_amount=...).fit_high(data, tail_size)``: fit the ``tail_size`` largest values."""
    return _fit_tail(data, tail_size, translate_amount, sign=1)


def fit_low(data: np.ndarray, tail_size: int, translate_amount: float = 1) -> WeibullModel:
    """libMR ``fit_low``: fit the ``tail_size`` smallest values (the data are negated first)."""
    return _fit_tail(data, tail_size, translate_amount, sign=-1)


def _fit_tail(data: np.ndarray, tail_size: int, translate_amount: float, sign: int) -> WeibullModel:
    values = np.asarray(data, dtype=np.float64).ravel()
    if tail_size > values.size:
        raise ValueError(f"The given fit_size {tail_size} is larger than the data size {values.size}")
    if tail_size < 1:
        raise ValueError(f"the tail size must be at least 1, got {tail_size}")
    tail = np.sort(sign * values)[::-1][:tail_size]
    small_score = float(tail[-1])
    fitted = _weibull_mle(tail + translate_amount - small_score)
    if fitted is None:
        # libMR's Reset(): parameters, sign and small_score are zeroed, the translation is kept.
        return WeibullModel(0.0, 0.0, 1, float(translate_amount), 0.0, False)
    scale, shape = fitted
    return WeibullModel(scale, shape, sign, float(translate_amount), small_score, True)


def _weibull_mle(x: np.ndarray) -> tuple[float, float] | None:
    """(scale, shape) maximising the Weibull likelihood of ``x > 0``, or None where libMR fails."""
    n = x.size
    if n <= 1 or np.any(x <= 0):
        return None
    log_x = np.log(x)
    top, bottom = float(log_x.max()), float(log_x.min())
    spread = top - bottom
    if spread <= 0:
        return None
    u = (log_x - top) / spread
    # Sequential sums, in libMR's order, so that the bracket and the iterates match its own.
    mean = _seq_sum(u) / n
    std = math.sqrt(_seq_sum((u - mean) ** 2) / (n - 1))
    mean_uncensored = _seq_sum(u / n)

    def likelihood_equation(sigma: float) -> float:
        w = np.exp(u / sigma)
        return sigma + mean_uncensored - _seq_sum(w * u) / _seq_sum(w)

    sigma = math.sqrt(6.0) * std / math.pi
    if likelihood_equation(sigma) > 0:
        upper, lower = sigma, 0.5 * sigma
        while likelihood_equation(lower) > 0:
            upper, lower = lower, 0.5 * lower
            if lower < _FLOAT_MIN:
                return None
    else:
        lower, upper = sigma, 2.0 * sigma
        while likelihood_equation(upper) < 0:
            lower, upper = upper, 2.0 * upper
            if upper > _FLOAT_MAX:
                return None
    sigma = _brent_root(likelihood_equation, lower, upper, _ROOT_TOLERANCE)
    if sigma is None:
        return None
    mu = sigma * math.log(_seq_sum(np.exp(u / sigma)) / n)
    return math.exp(spread * mu + top), 1.0 / (spread * sigma)


def _seq_sum(values: np.ndarray) -> float:
    total = 0.0
    for v in values.tolist():
        total += v
    return total


def _brent_root(f, a: float, b: float, tol: float) -> float | None:
    """The root of ``f`` in [a, b] by Brent's method, stepping exactly as libMR's ``wdfzero``.

    One libMR detail is kept on purpose: the test that accepts an interpolation step also runs
    after a bisection step, with the p/q of the last interpolation (0 before the first one).
    """
    fa, fb = f(a), f(b)
    if fa == 0:
        return a
    if fb == 0:
        return b
    if (fa > 0) == (fb > 0):
        return None
    c = d = e = p = q = 0.0
    fc = fb
    while fb != 0:
        if (fb > 0) == (fc > 0):
            c, fc = a, fa
            d = e = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        m = 0.5 * (c - b)
        toler = 2.0 * tol * max(abs(b), 1.0)
        if abs(m) <= toler or fb == 0.0:
            break
        if abs(e) < toler or abs(fa) <= abs(fb):
            d = e = m
        else:
            s = fb / fa
            if a == c:
                p, q = 2.0 * m * s, 1.0 - s
            else:
                q, r = fa / fc, fb / fc
                p = s * (2.0 * m * q * (q - r) - (b - a) * (r - 1.0))
                q = (q - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
        if 2.0 * p < 3.0 * m * q - abs(toler * q) and p < abs(0.5 * e * q):
            e, d = d, p / q
        else:
            d = e = m
        a, fa = b, fb
        if abs(d) > toler:
            b = b + d
        elif b > c:
            b = b - toler
        else:
            b = b + toler
        fb = f(b)
    return b
