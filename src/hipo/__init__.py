"""HiPO: Hierarchical Preference Optimization (segment-level DPO) experiment framework."""

__version__ = "0.1.0"
