"""Delivery from GitHub Actions: GitHub's REST API (deployments and their statuses, the drift issue,
the pull-request run that planned a merged commit), the Slack-compatible deploy notification, and the
Markdown a workflow writes to its job summary.

Everything goes through :mod:`labkit.delivery.http` (the standard library's ``urllib``): a
workflow's ``run:`` steps call ``labkit github ...`` and ``labkit notify ...``
(labkit/cli/delivery.py), and the tests point them at a recording server on loopback.
"""
