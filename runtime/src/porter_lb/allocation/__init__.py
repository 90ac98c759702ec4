"""Address allocation: the pure allocator, and the controller that writes its decisions to
the Kubernetes API."""
