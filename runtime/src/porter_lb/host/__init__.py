"""The node's side: the rules and local routes that make a node accept EIP traffic, and
network namespaces."""
