"""baton's common ground: routing data, metrics, baselines, worker pools, tasks and serving.

Nothing here touches the network at import; heavy libraries (torch, transformers) are imported
lazily inside the functions that need them.
"""

__version__ = "0.1.0"
