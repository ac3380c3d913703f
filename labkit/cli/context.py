"""What every command that touches AWS shares: the target it works on."""

from __future__ import annotations

from labkit import sandbox
from labkit.target import Target, get_target


def open_target(
    name: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    allow_spend: bool = False,
    endpoint_url: str | None = None,
) -> Target:
    """The target called ``name``. On the sandbox with no ``endpoint_url``, the sandbox is started
    first when it is not running (:func:`labkit.sandbox.target`, through ``ensure_up``)."""
    if name == "sandbox" and endpoint_url is None:
        return sandbox.target(region=region)
    alb_urls = sandbox.alb_url if name == "sandbox" else None
    return get_target(
        name,
        region=region,
        profile=profile,
        allow_spend=allow_spend,
        endpoint_url=endpoint_url,
        alb_urls=alb_urls,
    )
