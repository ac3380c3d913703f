"""The infrastructure layer: Terraform and what it builds, read back.

- :mod:`labkit.infra.terraform`: the Terraform CLI runner (init, plan, apply, output, state) for a
  root on a :class:`~labkit.target.Target`.
- :mod:`labkit.infra.stack`: the environments (global, staging, production) on a target, with
  their backend and variables filled in.
- :mod:`labkit.infra.inventory`: what is left on a target after a teardown.
- :mod:`labkit.infra.cost`: what a plan or state costs per month.

It imports the foundation (errors, settings, target) and :mod:`labkit.release.build` (a stack apply
checks that the releases it names are in the artifact bucket).
"""
