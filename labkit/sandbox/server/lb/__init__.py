"""The sandbox's load balancer data plane: ALB routing, health checks, draining and metrics on loopback.

:class:`LoadBalancerPlane` is the whole public surface; its input and output are the plain data in
``labkit.sandbox.server.topology``. The plane runs in a process of its own (:mod:`.worker` says why).

Modules: ``plane`` (the remote control), ``worker`` and ``channel`` (the process and how the two
talk), ``engine`` (reconciling listeners, groups, checks, drains, metrics), ``proxy`` (the request
path), ``routing``, ``health``, ``groups``, ``metrics``, ``http1``.
"""

from __future__ import annotations

from labkit.sandbox.server.lb.plane import LoadBalancerPlane

__all__ = ["LoadBalancerPlane"]
