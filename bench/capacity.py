"""Capacity arithmetic: the Universal Scalability Law and N-1 front-end sizing (SPEC 1, 2).

Pure functions, no I/O.

* :func:`fit_usl` fits X(N) = lam*N / (1 + sigma*(N-1) + kappa*N*(N-1)) to measured
  (concurrency, throughput) points by least squares with 0 <= sigma <= 1 and 0 <= kappa <= 1,
  using the standard library only.
* :func:`front_ends_for` applies SPEC's N-1 rule: a pool must hold its users with one front end
  (FE) down, has 3..12 FEs (at least 3 when users are first moved into it) and at most 80,000
  users; beyond that, several pools.
* :func:`lync_figure` is the same rule with Lync's documented 6,660 users per FE, and
  :func:`format_sizing` shows the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Lync Server 2013's documented users per Enterprise Edition front end (SPEC section 1).
LYNC_USERS_PER_FE = 6_660
#: Users per Enterprise pool (SPEC section 1).
MAX_POOL_USERS = 80_000
#: Front ends per Enterprise pool (SPEC section 1: 2..12).
MAX_FRONT_ENDS = 12
#: At least 3 FEs must run when users are first moved into a pool (SPEC section 2).
MIN_FRONT_ENDS = 3

#: SPEC section 2, "servers that must be running for a new pool's first start", literally.
FIRST_START: dict[int, int] = {2: 1, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5, 8: 6, 9: 7, 10: 8, 11: 9, 12: 10}

_LOG_FLOOR = -12.0  # smallest log10(sigma) / log10(kappa) the search visits (0 is a candidate)


# --------------------------------------------------------------------------------------------
# Universal Scalability Law


@dataclass(frozen=True, slots=True)
class UslFit:
    """A fitted USL curve: X(N) = lam*N / (1 + sigma*(N-1) + kappa*N*(N-1)).

    ``lam`` is the throughput of one unit of concurrency (the slope at N = 1), ``sigma`` the
    contention and ``kappa`` the coherency (crosstalk) coefficient, both >= 0; ``r2`` is the
    coefficient of determination of the fit on the points it was made from (1 = exact).
    """

    lam: float
    sigma: float
    kappa: float
    r2: float

    def throughput(self, n: float) -> float:
        """Modelled throughput at concurrency ``n`` (n > 0)."""
        return _usl(n, self.lam, self.sigma, self.kappa)

    def peak_n(self) -> float:
        """Concurrency of maximum throughput, sqrt((1 - sigma) / kappa); inf when kappa is 0
        (throughput then rises for ever, towards lam/sigma), at least 1."""
        if self.kappa <= 0:
            return math.inf
        return max(1.0, math.sqrt(max(0.0, 1.0 - self.sigma) / self.kappa))

    def n_at_fraction_of_linear(self, fraction: float) -> float:
        """Concurrency at which throughput is ``fraction`` (0 < f <= 1) of linear scaling
        lam*N, i.e. 1 + sigma*(N-1) + kappa*N*(N-1) = 1/f; inf if it never drops that far."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction={fraction}: expected 0 < fraction <= 1")
        c = 1.0 / fraction - 1.0
        if c == 0:
            return 1.0
        s, k = self.sigma, self.kappa
        if k > 0:
            # k*N^2 + (s - k)*N - (s + c) = 0, the positive root
            b = s - k
            return (-b + math.sqrt(b * b + 4 * k * (s + c))) / (2 * k)
        if s > 0:
            return 1.0 + c / s
        return math.inf


def _usl(n: float, lam: float, sigma: float, kappa: float) -> float:
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def _best_lambda(
    points: Sequence[tuple[float, float]], sigma: float, kappa: float
) -> tuple[float, float]:
    """For fixed (sigma, kappa), X = lam*g(N) is linear in lam: the least-squares lam is
    sum(X g) / sum(g^2). Returns (lam, sum of squared errors)."""
    sxg = sgg = sxx = 0.0
    for n, x in points:
        g = _usl(n, 1.0, sigma, kappa)
        sxg += x * g
        sgg += g * g
        sxx += x * x
    lam = sxg / sgg
    return lam, max(0.0, sxx - sxg * lam)


def _to_param(v: float) -> float:
    """log10 coordinate -> coefficient in [0, 1] (at or below the floor means 0)."""
    return 0.0 if v <= _LOG_FLOOR else 10.0 ** min(v, 0.0)


def _nelder_mead(
    f: Callable[[list[float]], float], start: list[float], step: float, iters: int = 600
) -> list[float]:
    """Minimise ``f`` from ``start`` (the standard reflect/expand/contract/shrink moves)."""
    dim = len(start)
    simplex = [list(start)]
    for i in range(dim):
        p = list(start)
        p[i] += step
        simplex.append(p)
    values = [f(p) for p in simplex]
    for _ in range(iters):
        order = sorted(range(dim + 1), key=values.__getitem__)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        spread = max(abs(a - b) for p in simplex[1:] for a, b in zip(p, simplex[0], strict=True))
        if spread < 1e-10:
            break
        centroid = [sum(p[i] for p in simplex[:-1]) / dim for i in range(dim)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = f(reflected)
        if fr < values[0]:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [
                    [b + 0.5 * (x - b) for b, x in zip(best, p, strict=True)] for p in simplex[1:]
                ]
                values = [values[0]] + [f(p) for p in simplex[1:]]
    i = min(range(dim + 1), key=values.__getitem__)
    return simplex[i]


def fit_usl(points: Sequence[tuple[float, float]]) -> UslFit:
    """Least-squares USL fit of (concurrency N, throughput X) points.

    Contract: needs at least 3 points with at least 3 distinct N, every N and X finite and > 0;
    otherwise ``ValueError`` says what is wrong. The result has 0 <= sigma <= 1,
    0 <= kappa <= 1 and lam > 0. Deterministic: a log-spaced grid over (sigma, kappa) (0
    included), then Nelder-Mead in log10 space, and 1-D refinements on the sigma = 0 and
    kappa = 0 edges; the lowest squared error wins. Scale-free in X; N may be in the
    thousands (kappa down to 1e-12 is searched).
    """
    pts = [(float(n), float(x)) for n, x in points]
    if len(pts) < 3:
        raise ValueError(f"a USL fit needs at least 3 points (got {len(pts)})")
    for n, x in pts:
        if not (math.isfinite(n) and math.isfinite(x)) or n <= 0 or x <= 0:
            raise ValueError(
                f"point (N={n:g}, X={x:g}): concurrency and throughput must be finite and > 0"
            )
    if len({n for n, _ in pts}) < 3:
        raise ValueError("a USL fit needs at least 3 distinct concurrency values")

    def sse(log_s: float, log_k: float) -> float:
        return _best_lambda(pts, _to_param(log_s), _to_param(log_k))[1]

    below = _LOG_FLOOR - 1.0  # a coordinate meaning "exactly 0"
    grid = [below] + [_LOG_FLOOR + i * (-_LOG_FLOOR) / 48 for i in range(49)]
    best = min((sse(a, b), a, b) for a in grid for b in grid)
    candidates: list[tuple[float, float]] = [(best[1], best[2]), (below, below)]

    def clamp(v: float) -> float:
        return min(0.0, max(_LOG_FLOOR, v))

    start = [clamp(best[1]), clamp(best[2])]
    p = _nelder_mead(lambda v: sse(clamp(v[0]), clamp(v[1])), start, 0.5)
    candidates.append((clamp(p[0]), clamp(p[1])))
    # the edges sigma = 0 and kappa = 0, which the log-space search only approaches
    q = _nelder_mead(lambda v: sse(below, clamp(v[0])), [clamp(best[2])], 0.5)
    candidates.append((below, clamp(q[0])))
    r = _nelder_mead(lambda v: sse(clamp(v[0]), below), [clamp(best[1])], 0.5)
    candidates.append((clamp(r[0]), below))

    # parsimony: among fits as good as the best (to rounding), prefer sigma or kappa exactly 0
    errors = [sse(*c) for c in candidates]
    good_enough = min(errors) * (1 + 1e-9) + 1e-15 * sum(x * x for _, x in pts)
    ranked = sorted(zip(errors, candidates, strict=True), key=lambda ec: ec[0])
    log_s, log_k = min(
        (c for e, c in ranked if e <= good_enough),
        key=lambda c: (c[0] > _LOG_FLOOR) + (c[1] > _LOG_FLOOR),
    )
    sigma, kappa = _to_param(log_s), _to_param(log_k)
    lam, err = _best_lambda(pts, sigma, kappa)
    mean = sum(x for _, x in pts) / len(pts)
    sst = sum((x - mean) ** 2 for _, x in pts)
    r2 = 1.0 - err / sst if sst > 0 else (1.0 if err <= 1e-12 else 0.0)
    return UslFit(lam=lam, sigma=sigma, kappa=kappa, r2=r2)


@dataclass(frozen=True, slots=True)
class UslConfidence:
    """95% confidence intervals of a USL fit, from the fit's own asymptotic covariance
    (s^2 (J^T J)^-1, J the model's Jacobian at the fitted parameters, s^2 the residual
    variance, Student's t with n - 3 degrees of freedom): each a (low, high) pair, None where
    the points leave it undetermined (fewer than 4 points, or a singular covariance): then
    ``missing`` says why there are none (empty when there are).
    ``peak_n``: the knee's interval, from the corners of the sigma and kappa intervals (the
    peak falls as either grows); None when kappa's interval reaches 0 (the knee may be at
    infinity). ``band``: per users value (x, low, high), the fitted curve plus or minus t
    times its standard error by the delta method, so it lies around the curve."""

    lam: tuple[float, float] | None
    sigma: tuple[float, float] | None
    kappa: tuple[float, float] | None
    peak_n: tuple[float, float] | None
    band: list[tuple[float, float, float]]
    missing: str = ""


def _jacobian(n: Any, lam: float, sigma: float, kappa: float) -> Any:
    """d X / d (lam, sigma, kappa) at concurrencies ``n`` (an array), one row per n."""
    import numpy as np

    d = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)
    return np.column_stack([n / d, -lam * n * (n - 1.0) / d**2, -lam * n * n * (n - 1.0) / d**2])


def usl_confidence(
    points: Sequence[tuple[float, float]], fit: UslFit, xs: Sequence[float] = ()
) -> UslConfidence:
    """Confidence intervals of ``fit`` (made from ``points``); ``xs``: where to draw the band
    (give the whole plotted range)."""
    import numpy as np
    from scipy import stats

    n = np.array([p[0] for p in points], dtype=float)
    x = np.array([p[1] for p in points], dtype=float)
    dof = len(points) - 3

    def none(why: str) -> UslConfidence:
        return UslConfidence(None, None, None, None, [], why)

    if dof < 1:
        return none(
            f"{len(points)} points fit the 3 parameters exactly: intervals need at least 4 "
            "runs at different user counts with a driver that kept up"
        )
    params = np.array([fit.lam, fit.sigma, fit.kappa])
    residual = x - np.array([fit.throughput(v) for v in n])
    s2 = float(residual @ residual) / dof
    jac = _jacobian(n, fit.lam, fit.sigma, fit.kappa)
    scale = np.linalg.norm(jac, axis=0)  # the parameters differ by 10 orders of magnitude
    if not np.all(scale > 0):
        return none("a parameter does not move the curve at these points")
    scaled = jac / scale
    normal = scaled.T @ scaled
    if not np.isfinite(normal).all() or np.linalg.cond(normal) > 1e12:
        return none("these points cannot tell lambda, sigma and kappa apart (singular covariance)")
    cov = s2 * np.linalg.inv(normal) / np.outer(scale, scale)
    t = float(stats.t.ppf(0.975, dof))
    err = np.sqrt(np.maximum(np.diag(cov), 0.0))

    def interval(i: int) -> tuple[float, float]:
        return (max(0.0, float(params[i] - t * err[i])), float(params[i] + t * err[i]))

    sigma, kappa = interval(1), interval(2)
    peak: tuple[float, float] | None = None
    if kappa[0] > 0:
        low = math.sqrt(max(0.0, 1.0 - min(1.0, sigma[1])) / kappa[1])
        peak = (max(1.0, low), max(1.0, math.sqrt(max(0.0, 1.0 - sigma[0]) / kappa[0])))
    band: list[tuple[float, float, float]] = []
    if len(xs):
        grid = np.array(xs, dtype=float)
        g = _jacobian(grid, fit.lam, fit.sigma, fit.kappa)
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, cov, g), 0.0))
        for xv, s in zip(grid, se, strict=True):
            y = fit.throughput(float(xv))
            band.append((float(xv), max(0.0, y - t * float(s)), y + t * float(s)))
    return UslConfidence(interval(0), sigma, kappa, peak, band)


# --------------------------------------------------------------------------------------------
# N-1 sizing


@dataclass(frozen=True, slots=True)
class Sizing:
    """Front ends for ``users`` at ``users_per_fe`` under SPEC's N-1 rule.

    ``front_ends`` is per pool (there are ``pools_needed`` pools of ``users_per_pool`` users,
    the last one possibly a few users fewer); ``per_fe_all_up`` and ``per_fe_one_down`` are users
    per FE in such a pool with all FEs up and with one down; ``fits`` is True when one pool
    holds everyone; ``first_start`` is how many FEs of the pool must run for its first start
    (SPEC table); ``reasons`` is the arithmetic, in words.
    """

    users: int
    users_per_fe: float
    front_ends: int
    per_fe_all_up: float
    per_fe_one_down: float
    fits: bool
    pools_needed: int
    users_per_pool: int
    first_start: int
    reasons: list[str]

    @property
    def total_front_ends(self) -> int:
        return self.front_ends * self.pools_needed


def _smallest_n(users: int, users_per_fe: float, max_fe: int) -> int | None:
    for n in range(MIN_FRONT_ENDS, max_fe + 1):
        if users / (n - 1) <= users_per_fe:
            return n
    return None


def front_ends_for(
    users: int,
    users_per_fe: float,
    *,
    max_fe: int = MAX_FRONT_ENDS,
    max_pool_users: int = MAX_POOL_USERS,
) -> Sizing:
    """The smallest pool (or pools) that holds ``users`` with one FE down.

    Contract: ``users`` >= 1, ``users_per_fe`` >= 1 (finite), 3 <= ``max_fe`` <= 12,
    ``max_pool_users`` >= 1, else ``ValueError``. One pool: the smallest N in 3..max_fe with
    users / (N-1) <= users_per_fe, when users <= max_pool_users. Otherwise P pools, P the
    smallest count such that ceil(users / P) fits one pool by both limits.
    """
    if users < 1:
        raise ValueError(f"users={users}: expected at least 1")
    if not (math.isfinite(users_per_fe) and users_per_fe >= 1):
        raise ValueError(f"users_per_fe={users_per_fe}: expected a number >= 1")
    if not MIN_FRONT_ENDS <= max_fe <= MAX_FRONT_ENDS:
        raise ValueError(f"max_fe={max_fe}: an Enterprise pool has {MIN_FRONT_ENDS}..12 FEs here")
    if max_pool_users < 1:
        raise ValueError(f"max_pool_users={max_pool_users}: expected at least 1")

    reasons: list[str] = []
    cap = f"{_num(users_per_fe)} users per FE"
    n = _smallest_n(users, users_per_fe, max_fe) if users <= max_pool_users else None
    pools = 1
    per_pool = users
    if n is None:
        if users > max_pool_users:
            reasons.append(f"{_num(users)} users exceed {_num(max_pool_users)} per pool")
        one_pool_max = users_per_fe * (max_fe - 1)
        if users > one_pool_max:
            reasons.append(
                f"on {max_fe} FEs (the most in a pool): {_num(users)} / {max_fe} = "
                f"{_num(users / max_fe)} each, {_num(users / (max_fe - 1))} after one failure "
                f"(too many for {cap}): one pool holds at most {max_fe - 1} x "
                f"{_num(users_per_fe)} = {_num(min(one_pool_max, max_pool_users))} users"
            )
        pools = max(2, math.ceil(users / max_pool_users))
        while True:
            per_pool = math.ceil(users / pools)
            if (
                per_pool <= max_pool_users
                and (found := _smallest_n(per_pool, users_per_fe, max_fe)) is not None
            ):
                n = found
                break
            pools += 1
        reasons.append(f"so {pools} pools of about {_num(per_pool)} users each")

    if n > MIN_FRONT_ENDS:
        below = n - 1
        reasons.append(
            f"on {below} FEs: {_num(per_pool)} / {below} = {_num(per_pool / below)} each, "
            f"{_num(per_pool / (below - 1))} after one failure (too many for {cap})"
        )
    reasons.append(
        f"on {n} FEs: {_num(per_pool)} / {n} = {_num(per_pool / n)} each, "
        f"{_num(per_pool / (n - 1))} after one failure (fine for {cap})"
    )
    if n == MIN_FRONT_ENDS and per_pool / (n - 2) <= users_per_fe:
        reasons.append(
            f"fewer FEs would carry the load, but a pool needs at least {MIN_FRONT_ENDS} FEs "
            "running when users are first moved into it (Lync)"
        )
    reasons.append(
        f"a pool of {n} FEs needs {FIRST_START[n]} of them running for its first start "
        "(Lync's quorum table)"
    )
    return Sizing(
        users=users,
        users_per_fe=users_per_fe,
        front_ends=n,
        per_fe_all_up=per_pool / n,
        per_fe_one_down=per_pool / (n - 1),
        fits=pools == 1,
        pools_needed=pools,
        users_per_pool=per_pool,
        first_start=FIRST_START[n],
        reasons=reasons,
    )


def lync_figure(users: int) -> Sizing:
    """:func:`front_ends_for` with Lync's documented 6,660 users per FE."""
    return front_ends_for(users, LYNC_USERS_PER_FE)


def _num(x: float) -> str:
    """A count as people read it: thousands separated, no decimals above 100."""
    if math.isinf(x):
        return "unbounded"
    return f"{x:,.0f}" if abs(x) >= 100 or x == int(x) else f"{x:,.1f}"


def format_sizing(lync: Sizing, measured: Sizing | None = None, *, measured_label: str = "") -> str:
    """A readable table of the sizing with Lync's figure and, when given, the measured
    users-per-FE figure beside it, then the arithmetic of each."""
    columns: list[tuple[str, Sizing]] = []
    if measured is not None:
        columns.append((measured_label or "measured here", measured))
    columns.append(("Lync 2013 figure", lync))
    rows: list[tuple[str, list[str]]] = [
        ("users per FE (capacity)", [_num(s.users_per_fe) for _, s in columns]),
        ("pools needed", [str(s.pools_needed) for _, s in columns]),
        ("users per pool", [_num(s.users_per_pool) for _, s in columns]),
        ("front ends per pool", [str(s.front_ends) for _, s in columns]),
        ("front ends in all", [str(s.total_front_ends) for _, s in columns]),
        ("users per FE, all up", [_num(s.per_fe_all_up) for _, s in columns]),
        ("users per FE, one FE down", [_num(s.per_fe_one_down) for _, s in columns]),
        ("running for first start", [f"{s.first_start} of {s.front_ends}" for _, s in columns]),
        ("fits one pool", ["yes" if s.fits else "no" for _, s in columns]),
    ]
    width = max(len(r[0]) for r in rows)
    colw = [max(len(label), *(len(r[1][i]) for r in rows)) for i, (label, _) in enumerate(columns)]
    head = " " * width + "".join(
        f"  {label:>{w}}" for (label, _), w in zip(columns, colw, strict=True)
    )
    lines = [
        f"N-1 sizing for {_num(lync.users)} users (a pool must hold them with one FE down)",
        "",
        head,
    ]
    for name, values in rows:
        lines.append(
            f"{name:<{width}}" + "".join(f"  {v:>{w}}" for v, w in zip(values, colw, strict=True))
        )
    for label, s in columns:
        lines += ["", f"{label} ({_num(s.users_per_fe)} users per FE):"]
        lines += [f"  - {r}" for r in s.reasons]
    return "\n".join(lines)
