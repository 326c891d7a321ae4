"""Card-level feature tables for pipelines/fraud-features.yaml, computed from the card transactions.

card_activity  updated by each transaction, as a streaming job would: the card's spend and count
               over the last 24 hours and count over 7 days, including that transaction, landing
               one second after it (so a transaction never sees itself)
card_history   a nightly batch: per card active that day, the count and mean amount over the last
               30 days, landing at the midnight that closes the day

Each row is a snapshot taken when it lands; `ttl` says how long a snapshot may stand in for the
present (spend_24h from a snapshot more than a day old means nothing: it falls back to 0).
"""

from __future__ import annotations

import pandas as pd

from fabric.features import Feature, FeatureTable

LANDS_AFTER = pd.Timedelta(seconds=1)


def card_activity(transactions: pd.DataFrame) -> pd.DataFrame:
    rows = transactions[["card_id", "event_time", "amount"]].sort_values("event_time", kind="stable")
    by_card = rows.set_index("event_time").groupby("card_id")["amount"]
    out = pd.DataFrame(
        {
            "spend_24h": by_card.rolling("24h").sum(),
            "txn_count_24h": by_card.rolling("24h").count(),
            "txn_count_7d": by_card.rolling("7d").count(),
        }
    ).reset_index()
    out["event_time"] = out["event_time"] + LANDS_AFTER
    return out


def card_history(transactions: pd.DataFrame) -> pd.DataFrame:
    rows = transactions[["card_id", "event_time", "amount"]].copy()
    rows["day"] = rows["event_time"].dt.floor("D")
    daily = rows.groupby(["card_id", "day"])["amount"].agg(["sum", "count"]).reset_index().sort_values("day")
    window = daily.set_index("day").groupby("card_id")[["sum", "count"]].rolling("30D").sum().reset_index()
    return pd.DataFrame(
        {
            "card_id": window["card_id"],
            "event_time": window["day"] + pd.Timedelta(days=1),
            "txn_count_30d": window["count"],
            "avg_amount_30d": window["sum"] / window["count"],
        }
    )


TABLES = [
    FeatureTable(
        name="card_activity",
        version=1,
        transformation=card_activity,
        ttl="7d",
        features=[
            Feature("spend_24h", "float", ttl="1d", default=0.0, description="spend over the 24 h before the snapshot"),
            Feature("txn_count_24h", "int", ttl="1d", default=0.0),
            Feature("txn_count_7d", "int", default=0.0),
        ],
        description="per transaction, streaming",
    ),
    FeatureTable(
        name="card_history",
        version=1,
        transformation=card_history,
        ttl="30d",
        features=[Feature("txn_count_30d", "int", default=0.0), Feature("avg_amount_30d", "float")],
        description="nightly batch",
    ),
]
