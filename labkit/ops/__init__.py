"""The operational layer: the runbook kit (:mod:`labkit.ops.runbook`, :mod:`labkit.ops.execute`,
:mod:`labkit.ops.audit`) and the disaster drills (:mod:`labkit.ops.drill`, :mod:`labkit.ops.probes`,
one module per drill in :mod:`labkit.ops.drills`).

It sits above :mod:`labkit.lab`: runbooks run with lab's notebook runner and open their target
with lab's guard cell.
"""
