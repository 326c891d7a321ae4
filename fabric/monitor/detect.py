"""Calibrated drift detection for one window of traffic against a training-time reference.

Per feature (and on the model's predictions) a two-sample test gives a p-value: KS for numeric
columns, chi-square on category counts for categorical ones. Under no drift those p-values are
uniform, so `sigma = Phi^-1(1 - p)` is a standard normal score whatever the window size. Holm's
step-down correction across all tested columns keeps the family-wise false alarm rate of a window
at `1 - Phi(threshold)` (about 1% at 2.3 sigma). A column is *flagged* when its corrected sigma
passes the threshold **and** its effect is at least `min_effect` (large windows make tiny, harmless
shifts significant); an *alarm* needs the same column flagged in `persistence` consecutive windows.

Effect sizes are on one scale: numeric, the largest of |mean shift| in reference standard deviations,
|log of the standard deviation ratio| and the KS distance; categorical, the total variation distance
between category frequencies; PSI is reported beside them for people used to it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from fabric.monitor.profile import PREDICTION, Profile

MIN_WINDOW_ROWS = 200
MAX_SIGMA = 38.0  # Phi^-1(1 - p) for p below double precision


@dataclass(frozen=True)
class ColumnScore:
    column: str
    kind: str  # numeric | categorical | prediction
    test: str  # ks | chi2
    p_value: float
    sigma: float  # from the raw p-value
    corrected_sigma: float  # after Holm across columns
    effect: float
    psi: float
    flagged: bool


@dataclass
class WindowVerdict:
    rows: int
    scores: list[ColumnScore] = field(default_factory=list)
    verdict: str = "no_drift"  # no_drift | flagged | alarm | no_verdict
    message: str = ""
    alarmed: list[str] = field(default_factory=list)

    @property
    def max_sigma(self) -> float:
        return max((s.corrected_sigma for s in self.scores), default=0.0)

    def flagged(self) -> list[str]:
        return [s.column for s in self.scores if s.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "verdict": self.verdict, "message": self.message, "alarmed": self.alarmed,
                "max_sigma": round(self.max_sigma, 3), "scores": [asdict(s) for s in self.scores]}  # fmt: skip


def sigma_of(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
    return np.minimum(-special.ndtri(p), MAX_SIGMA)  # Phi^-1(1 - p) without losing tiny p to 1 - p


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (monotone step-down)."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _psi(expected: np.ndarray, observed: np.ndarray) -> float:
    e = np.clip(expected, 1e-4, None)
    o = np.clip(observed, 1e-4, None)
    return float(np.sum((o - e) * np.log(o / e)))


def _ks_statistic(reference: np.ndarray, window: np.ndarray) -> float:
    """The two-sample KS distance sup |F_ref - F_window|, both samples sorted, equal to scipy's.

    Between two consecutive reference values F_ref is constant and F_window only grows, so the
    supremum over the pooled sample is reached just at or just below a reference value: four
    searches of the (small) reference sample instead of scipy's searches of the whole pooled one.
    """
    n1, n2 = len(reference), len(window)
    at = np.concatenate([np.searchsorted(reference, reference, "right") / n1 - np.searchsorted(window, reference, "right") / n2,
                         np.searchsorted(reference, reference, "left") / n1 - np.searchsorted(window, reference, "left") / n2])  # fmt: skip
    return float(max(at.max(initial=0.0), np.clip(-at.min(initial=0.0), 0, 1)))


def _ks_p_values(statistics: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """scipy's `ks_2samp(method="asymp")` two-sided p-values, for every column in one call."""
    m, n = np.maximum(n1, n2).astype(np.float64), np.minimum(n1, n2).astype(np.float64)
    return np.clip(stats.kstwo.sf(statistics, np.round(m * n / (m + n))), 0, 1)


def _numeric(profile: Profile, column: str, values: np.ndarray) -> tuple[float, float, float, int] | None:
    """(KS distance, effect, PSI, finite rows); None when fewer than two values are finite.
    Sorts the window once: the KS distance and the PSI bin counts both read the sorted values."""
    ref = profile.numeric[column]
    values = values[np.isfinite(values)]
    if len(values) < 2 or len(ref.sample) == 0:
        return None
    ordered = np.sort(values)
    statistic = _ks_statistic(ref.sample, ordered)
    sd = ref.std if ref.std > 0 else 1.0
    mean_shift = abs(float(values.mean()) - ref.mean) / sd  # on the unsorted values: the same sums as before
    spread = abs(math.log(max(float(values.std()), 1e-12) / sd)) if ref.std > 0 else 0.0
    effect = max(mean_shift, spread, statistic)
    # np.histogram's bins: [e_i, e_i+1), the last one closed
    bounds = np.searchsorted(ordered, ref.edges, "left")
    bounds[-1] = np.searchsorted(ordered, ref.edges[-1], "right")
    counts = np.diff(bounds) / len(values)
    return statistic, effect, _psi(ref.bin_shares, counts), len(values)


def _value_counts(values: np.ndarray) -> list[tuple[str, int]]:
    """(str(value), count) pairs, as `np.unique(values.astype(str))` counts them. Hashing (pandas'
    factorize) instead of sorting strings; only where every distinct value is already a string,
    since hashing merges values that are equal but print differently (1 and 1.0)."""
    if values.dtype == object and len(values):
        codes, uniques = pd.factorize(values)  # missing values: code -1, counted by the exact path below
        if codes.min() >= 0 and all(type(u) is str for u in uniques):
            return list(zip(uniques.tolist(), np.bincount(codes, minlength=len(uniques)).tolist(), strict=True))
    return list(zip(*np.unique(values.astype(str), return_counts=True), strict=True))


def _categorical(profile: Profile, column: str, values: np.ndarray) -> tuple[float, float, float]:
    ref = profile.categorical[column]
    known = {c: i for i, c in enumerate(ref.categories)}
    counts = np.zeros(len(ref.categories) + 1)  # last: unseen in training
    for value, n in _value_counts(values):
        counts[known.get(value, len(ref.categories))] += n
    total = counts.sum()
    if total == 0:
        return 1.0, 0.0, 0.0
    expected_share = np.append(ref.shares * (1 - ref.unseen_share), ref.unseen_share)
    expected = expected_share * total
    # categories too rare for the chi-square approximation are pooled
    big = expected >= 5
    observed_pooled = np.append(counts[big], counts[~big].sum())
    expected_pooled = np.append(expected[big], expected[~big].sum())
    keep = expected_pooled > 0
    observed_pooled, expected_pooled = observed_pooled[keep], expected_pooled[keep]
    if len(observed_pooled) < 2:
        return 1.0, 0.0, 0.0
    p = float(stats.chisquare(observed_pooled, expected_pooled).pvalue)
    shares = counts / total
    effect = 0.5 * float(np.abs(shares - expected_share).sum())
    return p, effect, _psi(expected_share, shares)


def score_window(
    profile: Profile,
    columns: dict[str, np.ndarray],
    threshold_sigma: float,
    min_effect: float,
    min_rows: int = MIN_WINDOW_ROWS,
) -> WindowVerdict:
    """Score one window: `columns` maps feature names (and `prediction`) to raw values."""
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows < min_rows:
        return WindowVerdict(rows, verdict="no_verdict",
                             message=f"window has {rows} rows, below the minimum of {min_rows}: no verdict")  # fmt: skip
    raw: list[tuple[str, str, str, float, float, float]] = []
    ks: list[tuple[int, float, int]] = []  # (position in raw, KS distance, rows): p-values in one call below
    for column in profile.numeric:
        if column in columns:
            kind = "prediction" if column == PREDICTION else "numeric"
            scored = _numeric(profile, column, np.asarray(columns[column], dtype=np.float64))
            if scored is None:
                raw.append((column, kind, "ks", 1.0, 0.0, 0.0))
                continue
            statistic, effect, psi, n = scored
            ks.append((len(raw), statistic, n))
            raw.append((column, kind, "ks", 1.0, effect, psi))
    if ks:
        at, statistics, n2 = (np.array(x) for x in zip(*ks, strict=True))
        n1 = np.array([len(profile.numeric[raw[i][0]].sample) for i in at])
        for i, p in zip(at.tolist(), _ks_p_values(statistics, n1, n2).tolist(), strict=True):
            raw[i] = (*raw[i][:3], p, *raw[i][4:])
    for column in profile.categorical:
        if column in columns:
            p, effect, psi = _categorical(profile, column, np.asarray(columns[column], dtype=object))
            raw.append((column, "categorical", "chi2", p, effect, psi))
    p_values = np.array([r[3] for r in raw])
    corrected = sigma_of(holm(p_values)) if len(raw) else np.array([])
    plain = sigma_of(p_values) if len(raw) else np.array([])
    scores = [
        ColumnScore(column, kind, test, p, round(float(s), 4), round(float(c), 4), round(effect, 5), round(psi, 5),
                    bool(c >= threshold_sigma and effect >= min_effect))  # fmt: skip
        for (column, kind, test, p, effect, psi), s, c in zip(raw, plain, corrected, strict=True)
    ]
    verdict = WindowVerdict(rows, sorted(scores, key=lambda s: -s.corrected_sigma))
    verdict.verdict = "flagged" if verdict.flagged() else "no_drift"
    return verdict


class PersistenceTracker:
    """Counts consecutive flagged windows per column; an alarm needs `persistence` in a row."""

    def __init__(self, persistence: int, streaks: dict[str, int] | None = None) -> None:
        self.persistence = persistence
        self.streaks: dict[str, int] = dict(streaks or {})

    def update(self, verdict: WindowVerdict) -> WindowVerdict:
        if verdict.verdict == "no_verdict":
            return verdict
        flagged = set(verdict.flagged())
        self.streaks = {c: self.streaks.get(c, 0) + 1 for c in flagged}
        verdict.alarmed = sorted(c for c, n in self.streaks.items() if n >= self.persistence)
        if verdict.alarmed:
            verdict.verdict = "alarm"
            verdict.message = f"drift in {', '.join(verdict.alarmed)} for {self.persistence}+ consecutive windows"
        elif flagged:
            verdict.message = f"flagged {', '.join(sorted(flagged))}; waiting for persistence={self.persistence}"
        return verdict
