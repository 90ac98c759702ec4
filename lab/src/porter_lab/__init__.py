"""porter-lb's lab and test bed: real components in network namespaces, started and removed here.

Not part of the product. The pytest fixtures in tests/ and the `porter-lab` command both use it.
"""
