"""The release layer: the app artifact and the app process.

- :mod:`labkit.release.build`: build a release artifact from ``app/``, check it, upload it to the
  artifact bucket.
- :mod:`labkit.release.appserver`: run a release locally as an instance does (unpack, gunicorn,
  wait until it answers, stop).

It imports only the foundation (errors, settings, target); :mod:`labkit.infra` uses it to refuse
an apply whose release is not in the artifact bucket.
"""
