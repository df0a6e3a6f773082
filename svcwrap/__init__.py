"""svcwrap: a container init (PID 1) that supervises one service and keeps it
registered in Consul with a TTL check.

The data path reads top to bottom: cli (arguments -> config) -> supervisor
(spawn, signals, reaping, the stop sequence) -> lifecycle (readiness, Consul
registration, heartbeats, leaving discovery) -> probes / registry.
"""

__version__ = "0.1.0"
