"""The embedded default data: a seeded synthetic card-transaction fraud generator.

Realistic in the ways that matter to the lifecycle: heavy class imbalance (about 1.5% fraud),
numeric and categorical features, a time column, interactions that trees find and linear models
miss, and a `drift` knob that shifts the feature distributions and the fraud pattern the way a
new attack or a new market would. Nothing is downloaded; the same seed gives the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MERCHANT_CATEGORIES = [
    "grocery", "fuel", "restaurants", "travel", "electronics", "fashion",
    "gaming", "pharmacy", "utilities", "jewelry", "gift_cards", "entertainment",
]  # fmt: skip
_MERCHANT_RISK = np.array([-0.6, -0.3, -0.4, 0.5, 0.8, 0.1, 0.7, -0.5, -0.9, 1.0, 1.3, 0.0])
_MERCHANT_FREQ = np.array([18, 12, 15, 5, 7, 9, 4, 8, 10, 2, 3, 7], dtype=float)
CHANNELS = ["pos", "web", "app"]
_CHANNEL_FREQ = np.array([0.55, 0.30, 0.15])
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN", "NG"]
_COUNTRY_FREQ = np.array([0.45, 0.1, 0.1, 0.08, 0.06, 0.06, 0.05, 0.04, 0.04, 0.02])
_COUNTRY_RISK = np.array([0.0, 0.1, 0.0, 0.1, 0.2, 0.2, 0.0, 0.6, 0.5, 1.2])

FEATURES = [
    "amount", "merchant_category", "channel", "country", "hour", "card_age_days",
    "distance_km", "txn_count_24h", "avg_amount_30d", "amount_ratio", "device_score", "customer_age",
]  # fmt: skip
TARGET = "is_fraud"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_fraud(rows: int = 100_000, seed: int = 0, drift: float = 0.0, start: str = "2026-01-01") -> pd.DataFrame:
    """`rows` transactions over 90 days. `drift` in [0, 1+] moves amounts up, shifts the channel mix
    toward web, ages cards down and adds a new fraud pattern (resellable goods bought on the web)."""
    if rows <= 0:
        raise ValueError(f"rows={rows} must be > 0")
    rng = np.random.default_rng(seed)
    n = rows

    channel_p = _CHANNEL_FREQ + drift * np.array([-0.25, 0.2, 0.05])
    channel_p = np.clip(channel_p, 0.01, None)
    channel = rng.choice(len(CHANNELS), size=n, p=channel_p / channel_p.sum())
    merchant = rng.choice(len(MERCHANT_CATEGORIES), size=n, p=_MERCHANT_FREQ / _MERCHANT_FREQ.sum())
    country = rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_FREQ)

    customer_age = np.clip(rng.normal(42, 14, n), 18, 90).round()
    avg_amount = np.exp(rng.normal(3.6, 0.6, n))
    amount = avg_amount * np.exp(rng.normal(0.0 + 0.35 * drift, 0.7, n))
    amount_ratio = amount / avg_amount
    card_age = rng.gamma(2.0, 400.0 * (1 - 0.5 * min(drift, 1.0)), n)
    distance = np.exp(rng.normal(2.0, 1.2, n)) * np.where(country == 0, 1.0, 8.0)
    txn_count = rng.poisson(2.0 + 1.5 * drift, n)
    device_score = rng.beta(5, 2, n)
    minutes = np.sort(rng.uniform(0, 90 * 24 * 60, n))
    hour = (minutes // 60 % 24).astype(int)

    night = ((hour <= 5) | (hour >= 23)).astype(float)
    logit = (
        -6.1
        + 1.1 * np.log1p(amount_ratio)
        + 0.9 * night
        + _MERCHANT_RISK[merchant]
        + np.array([0.0, 0.7, 0.3])[channel]
        + _COUNTRY_RISK[country]
        + 0.35 * np.log1p(distance / 50)
        - 1.4 * (device_score - 0.7)
        + 0.25 * np.maximum(txn_count - 3, 0)
        - 0.4 * np.log1p(card_age / 365)
        + 1.2 * night * (channel == 1) * (amount_ratio > 2)  # interaction: night web spikes
        # the new attack under drift: resellable goods (gift cards, electronics, gaming) bought on the web
        + 3.5 * min(drift, 1.5) * np.isin(merchant, (4, 6, 10)) * (channel == 1)
    )
    is_fraud = (rng.uniform(size=n) < _sigmoid(logit)).astype(int)

    # a little missingness where real feeds have it
    device = device_score.copy()
    device[rng.uniform(size=n) < 0.02] = np.nan

    frame = pd.DataFrame(
        {
            "transaction_id": np.char.add("tx-", np.arange(n).astype(str)) if n else np.array([], dtype=str),
            "event_time": pd.Timestamp(start) + pd.to_timedelta(minutes, unit="min"),
            "amount": amount.round(2),
            "merchant_category": pd.Categorical.from_codes(merchant, MERCHANT_CATEGORIES).astype(str),
            "channel": pd.Categorical.from_codes(channel, CHANNELS).astype(str),
            "country": pd.Categorical.from_codes(country, COUNTRIES).astype(str),
            "hour": hour,
            "card_age_days": card_age.round(1),
            "distance_km": distance.round(2),
            "txn_count_24h": txn_count,
            "avg_amount_30d": avg_amount.round(2),
            "amount_ratio": amount_ratio.round(4),
            "device_score": device.round(4),
            "customer_age": customer_age.astype(int),
            TARGET: is_fraud,
        }
    )
    return frame
