"""Bradley–Terry maximum-likelihood Elo from pairwise judgments, with bootstrap intervals over prompts.

Model (Chatbot Arena's ``compute_mle_elo`` convention, base 10, scale 400):

    P(i ≻ j) = 1 / (1 + 10^((R_j − R_i) / 400)),   R_i = mean + 400·log10(e)·(θ_i − mean_k θ_k)

with natural-log strengths θ. A tie counts as half a win for each side (as Chatbot Arena and the paper's
win rates count them). ``W[i, j]`` = wins of i over j (ties 0.5 each), ``N = W + Wᵀ`` = judgments per pair.

Fit: Newton–Raphson on the log-likelihood ``Σ_ij W_ij log σ(θ_i − θ_j)`` with θ_0 pinned to 0 (the model
only identifies differences), step halving when the likelihood would drop; converged when the largest
Newton step is below ``tol``. The MLE is finite only if the "beats or ties" graph is strongly connected
(no system wins, or loses, every one of its judgments). ``prior_ties`` adds that many virtual tie
judgments to every pair — a pull toward equal strength that keeps the MLE finite on small arenas;
0 = the plain MLE (then a degenerate tournament is an error naming the system).

Elo is centred on ``mean`` (1000) or shifted so that one ``anchor`` system has a fixed Elo.

Intervals: percentile bootstrap over prompts — prompts are drawn with replacement (every judgment of a
drawn prompt comes along: judgments of one prompt share its difficulty), the model is refitted, and the
2.5 / 97.5 percentiles of each system's Elo form the 95 % interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

ELO_PER_NAT = 400.0 / math.log(10.0)
"""Elo points per unit of natural-log strength (base 10, scale 400)."""


@dataclass(frozen=True)
class Outcome:
    """One judgment: system ``a`` against system ``b`` on prompt ``prompt_id``."""

    prompt_id: str
    a: str
    b: str
    score: float
    """1 = a won, 0 = b won, 0.5 = tie."""


@dataclass(kw_only=True)
class EloConfig:
    """How Elo and its intervals are computed."""

    mean: float = 1000.0
    """Mean Elo of all systems (ignored with ``anchor``)."""
    anchor: str | None = None
    """System whose Elo is fixed to ``anchor_elo`` (e.g. a baseline with a published rating)."""
    anchor_elo: float = 1000.0
    """Elo of ``anchor``."""
    prior_ties: float = 0.1
    """Virtual tie judgments added to every pair (keeps the MLE finite on small arenas; 0 = plain MLE)."""
    bootstrap: int = 1000
    """Bootstrap resamples over prompts (0 = no intervals)."""
    confidence: float = 0.95
    """Interval coverage."""
    seed: int = 0
    """Bootstrap RNG seed."""

    def __post_init__(self) -> None:
        if self.prior_ties < 0 or self.bootstrap < 0 or not 0 < self.confidence < 1:
            raise ValueError("elo: need prior_ties >= 0, bootstrap >= 0, 0 < confidence < 1")


@dataclass
class EloResult:
    """Ratings, intervals and the raw tournament tables."""

    names: list[str]
    elo: dict[str, float]
    ci: dict[str, tuple[float, float]]
    wins: np.ndarray
    """(k, k) wins of row over column, ties 0.5 each (data only, no virtual ties)."""
    games: np.ndarray
    """(k, k) judgments per pair."""
    num_prompts: int
    bootstrap_used: int
    """Resamples whose fit succeeded (a resample can be degenerate when prior_ties = 0)."""
    iterations: int = 0
    extra: dict = field(default_factory=dict)

    def win_rate(self) -> np.ndarray:
        """(k, k) share of judgments row won against column (ties half), NaN where they never met."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(self.games > 0, self.wins / np.maximum(self.games, 1e-300), np.nan)
        np.fill_diagonal(rate, np.nan)
        return rate


def win_tables(outcomes: Sequence[Outcome], names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(prompt ids, (P, k, k) per-prompt win tensor) of ``outcomes`` over systems ``names``."""
    index = {n: i for i, n in enumerate(names)}
    prompts = sorted({o.prompt_id for o in outcomes})
    row = {p: r for r, p in enumerate(prompts)}
    table = np.zeros((len(prompts), len(names), len(names)))
    for o in outcomes:
        if o.a == o.b:
            raise ValueError(f"judgment of {o.a!r} against itself on prompt {o.prompt_id!r}")
        if not 0.0 <= o.score <= 1.0:
            raise ValueError(f"judgment score {o.score} is not in [0, 1] (prompt {o.prompt_id!r})")
        i, j = index[o.a], index[o.b]
        table[row[o.prompt_id], i, j] += o.score
        table[row[o.prompt_id], j, i] += 1.0 - o.score
    return prompts, table


def _check_connected(wins: np.ndarray, names: Sequence[str]) -> None:
    """Raise ValueError unless every system can reach every other through 'beats or ties' edges."""
    k = len(names)
    reach = (wins > 0) | np.eye(k, dtype=bool)
    for m in range(k):  # Warshall's transitive closure
        reach |= reach[:, m:m + 1] & reach[m:m + 1, :]
    if not reach.all():
        i, j = np.argwhere(~reach)[0]
        raise ValueError(f"Bradley–Terry MLE is infinite: {names[i]!r} never beats or ties anything that "
                         f"leads to {names[j]!r} (a system won or lost every judgment); set prior_ties > 0")


def _log_lik(theta: np.ndarray, wins: np.ndarray) -> float:
    diff = theta[:, None] - theta[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum())


def fit_bt(wins: np.ndarray, *, prior_ties: float = 0.0, names: Sequence[str] | None = None,
           max_iter: int = 200, tol: float = 1e-10) -> tuple[np.ndarray, int]:
    """(θ with θ_0 = 0, Newton iterations) of the BT MLE for the (k, k) win matrix ``wins``."""
    k = wins.shape[0]
    w = wins + prior_ties * 0.5 * (1.0 - np.eye(k))
    names = list(names) if names is not None else [str(i) for i in range(k)]
    if prior_ties == 0.0:
        _check_connected(w, names)
    n = w + w.T
    theta = np.zeros(k)
    current = _log_lik(theta, w)
    for iteration in range(1, max_iter + 1):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # P(i ≻ j)
        grad = (w - n * p).sum(axis=1)
        curv = n * p * (1.0 - p)
        hess = curv - np.diag(curv.sum(axis=1))  # Hessian of the log-likelihood (negative semidefinite)
        step = np.zeros(k)
        step[1:] = np.linalg.solve(hess[1:, 1:], -grad[1:])
        scale = 1.0
        while scale > 1e-6:
            trial = theta + scale * step
            value = _log_lik(trial, w)
            if value >= current - 1e-12:
                break
            scale *= 0.5
        theta, current = trial, value
        if np.abs(scale * step).max() < tol:
            return theta, iteration
    raise ValueError(f"Bradley–Terry fit did not converge in {max_iter} Newton steps")


def to_elo(theta: np.ndarray, names: Sequence[str], cfg: EloConfig) -> np.ndarray:
    """Elo of each system for strengths ``theta`` (mean or anchor normalisation of ``cfg``)."""
    elo = ELO_PER_NAT * np.asarray(theta, dtype=float)
    if cfg.anchor is not None:
        if cfg.anchor not in names:
            raise ValueError(f"anchor {cfg.anchor!r} is not one of the systems {list(names)}")
        return elo - elo[list(names).index(cfg.anchor)] + cfg.anchor_elo
    return elo - elo.mean() + cfg.mean


def compute_elo(outcomes: Sequence[Outcome], names: Sequence[str], cfg: EloConfig) -> EloResult:
    """Elo of ``names`` from ``outcomes`` with percentile bootstrap intervals over prompts."""
    names = list(names)
    prompts, table = win_tables(outcomes, names)
    wins = table.sum(axis=0)
    theta, iterations = fit_bt(wins, prior_ties=cfg.prior_ties, names=names)
    elo = to_elo(theta, names, cfg)
    samples = []
    if cfg.bootstrap and prompts:
        rng = np.random.default_rng(cfg.seed)
        counts = rng.multinomial(len(prompts), np.full(len(prompts), 1.0 / len(prompts)), size=cfg.bootstrap)
        for boot in np.einsum("bp,pij->bij", counts, table):
            try:
                samples.append(to_elo(fit_bt(boot, prior_ties=cfg.prior_ties, names=names)[0], names, cfg))
            except (ValueError, np.linalg.LinAlgError):
                continue  # a degenerate resample (possible only with prior_ties = 0)
    tail = 50.0 * (1.0 - cfg.confidence)
    if samples:
        low, high = np.percentile(np.stack(samples), [tail, 100.0 - tail], axis=0)
    else:
        low = high = np.full(len(names), np.nan)
    return EloResult(names=names, elo={n: float(e) for n, e in zip(names, elo)},
                     ci={n: (float(lo), float(hi)) for n, lo, hi in zip(names, low, high)},
                     wins=wins, games=wins + wins.T, num_prompts=len(prompts), bootstrap_used=len(samples),
                     iterations=iterations)
