"""The validating admission webhook and the certificate it serves."""
