"""The lab layer: what the learning path's notebooks use beyond the library itself.

- :mod:`labkit.lab.lesson`: each notebook's guard cell and the lesson-order check.
- :mod:`labkit.lab.run`, :mod:`labkit.lab.check`, :mod:`labkit.lab.report`: run the notebooks
  headless, check they are committed clean (``python -m labkit.lab.check notebooks``), report a run.
- :mod:`labkit.lab.plots`: the figures (traffic, latency, deploy timelines, DORA, cost).
- :mod:`labkit.lab.doctor`: is this machine ready for the lab (``labkit doctor``).
"""
