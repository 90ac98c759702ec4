"""Fault scenarios on the real bed: each module runs one scenario against real
processes (kube-apiserver and etcd, gobgpd, BIRD or FRR, `porter-lb controller` and agents)
and returns what it measured. `tests/reliability/` runs them and asserts what must hold (no IP
changes, no withdrawals, FIB equal to the desired routes); `bench/` runs them at full size and
reports the figures beside their targets.
"""
