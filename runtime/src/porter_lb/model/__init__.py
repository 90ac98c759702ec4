"""The data model, pure: Kubernetes objects read into typed values, addresses and pools,
and the rules no single object can check (validation)."""
