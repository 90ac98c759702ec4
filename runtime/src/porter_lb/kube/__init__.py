"""Kubernetes I/O: the API client, list/watch caches and informers, Events, Leases, the work
queue."""
