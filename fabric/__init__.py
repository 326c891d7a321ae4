"""fabric: the ML lifecycle on infrastructure you own as code.

Data flows one way: spec -> data -> search -> train -> quantize -> registry -> backend.deploy
-> monitor -> (drift) -> search/train again. Nothing here imports the CLI.
"""

__version__ = "0.1.0"
