"""porter-lb runtime: the controller, the node agent and the pure core they share."""

__version__ = "0.1.0"
