"""The command wiring: one module per `porter-lb` command, each its own composition root."""
