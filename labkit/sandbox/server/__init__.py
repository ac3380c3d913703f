"""The sandbox's service side, run by ``python -m labkit.sandbox.server.service``.

- :mod:`.service`: the process (moto's API, the reconcile loop, the saver);
- :mod:`.mends`: fixes to moto's models; :mod:`.persistence`: saving and loading moto's state;
- :mod:`.cloudwatch`: alarm evaluation; :mod:`.instances`: instances as app processes;
- :mod:`.lb`: the load balancer data plane, and :mod:`.lb.view`, moto's ELBv2 models read into
  :mod:`.topology`'s plain data; :mod:`.instance_view`: moto's EC2 instances read the same way.

It imports the client side (:mod:`labkit.sandbox.client`), never the reverse.
"""
