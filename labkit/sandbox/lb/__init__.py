"""The sandbox's load balancer data plane: ALB routing, health checks, draining and metrics on loopback.

See :class:`LoadBalancerPlane`; its input and output are the plain data in ``labkit.sandbox.topology``.
"""

from __future__ import annotations

from .plane import LoadBalancerPlane

__all__ = ["LoadBalancerPlane"]
