"""Layer-2 mode: the pure election and ARP/NDP codec, the announcer and heartbeat adapters."""
