"""The embedded card-transaction data with card ids, for feature tables (`builtin:fraud-cards`).

The rows of `generate_fraud`, each given a `card_id`: everyday spending spreads over many cards with
a few busy ones, and fraud comes in bursts on stolen cards (consecutive frauds share a card in runs
of about three), so a card's recent activity carries signal that one row alone does not. The
per-row card facts of the plain generator (`txn_count_24h`, `avg_amount_30d`, `amount_ratio`,
`card_age_days`) are dropped: with card ids they are computed from the card's history instead
(pipelines/fraud_features.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fabric.data.synthetic import generate_fraud

CARD_FACTS = ["txn_count_24h", "avg_amount_30d", "amount_ratio", "card_age_days"]
BURST = 3.0  # mean frauds per stolen card


def generate_card_fraud(
    rows: int = 100_000, seed: int = 0, drift: float = 0.0, cards: int | None = None, start: str = "2026-01-01"
) -> pd.DataFrame:
    frame = generate_fraud(rows=rows, seed=seed, drift=drift, start=start).drop(columns=CARD_FACTS)
    rng = np.random.default_rng([seed, 7])  # its own stream: the base rows stay those of generate_fraud
    cards = cards or max(rows // 25, 10)
    busy = rng.pareto(1.5, cards) + 1.0
    card = rng.choice(cards, size=rows, p=busy / busy.sum())
    fraud = np.flatnonzero(frame["is_fraud"].to_numpy() == 1)  # rows are in time order
    if len(fraud):
        run = np.cumsum(rng.uniform(size=len(fraud)) < 1.0 / BURST)
        stolen = rng.choice(cards, size=run[-1] + 1)
        card[fraud] = stolen[run]
    width = len(str(cards - 1))
    frame.insert(1, "card_id", np.char.add("card-", np.char.zfill(card.astype(str), width)))
    return frame
