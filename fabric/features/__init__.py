"""Feature tables: definitions declared once, a point-in-time training join, an online store for
serving, and a train/serve skew check. See docs/features.md.

Import what a features module needs from here: `from fabric.features import Feature, FeatureTable`.
"""

from fabric.features.definitions import Feature, FeatureSet, FeatureTable

__all__ = ["Feature", "FeatureSet", "FeatureTable"]
