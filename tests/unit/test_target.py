"""labkit.target: loopback-only sandbox, untouched aws chain, spend opt-in, a plain value."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.config import Config

import labkit.sandbox
from labkit.errors import SpendNotAllowedError, TargetError
from labkit.target import SANDBOX_REGION, Target, aws, get_target, is_loopback_url, sandbox


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000", "http://127.9.9.9", "https://localhost:8443/x", "http://[::1]:9000"],
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:5000",
        "https://s3.amazonaws.com",
        "http://192.168.1.5",
        "ftp://127.0.0.1",
        "127.0.0.1:5000",
        "http://127.0.0.1.example.com",
        "",
    ],
)
def test_non_loopback_urls_are_refused(url: str) -> None:
    assert not is_loopback_url(url)
    with pytest.raises(TargetError, match="not a loopback URL"):
        sandbox(url)


def test_sandbox_env_points_every_service_at_the_endpoint() -> None:
    target = sandbox("http://127.0.0.1:4566")
    base = {
        "PATH": "/bin",
        "AWS_PROFILE": "prod-admin",
        "AWS_SESSION_TOKEN": "real-token",
        "AWS_ENDPOINT_URL_S3": "https://s3.eu-west-1.amazonaws.com",
        "AWS_ACCESS_KEY_ID": "AKIAREAL",
    }
    env = target.env(base)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["AWS_REGION"] == SANDBOX_REGION
    assert env["PATH"] == "/bin"
    # Anything that could sign as a real identity or route one service elsewhere is gone.
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        assert var not in env


def test_sandbox_client_uses_the_loopback_endpoint() -> None:
    client = sandbox("http://127.0.0.1:4566").client("s3")
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client.meta.config.s3["addressing_style"] == "path"


def test_aws_target_overrides_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    target = aws()
    assert target.region == "eu-west-1"
    base = {"AWS_PROFILE": "me", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert target.env(base) == {**base, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert target.client("sts").meta.endpoint_url.startswith("https://sts.")


def test_aws_target_refuses_an_endpoint() -> None:
    with pytest.raises(TargetError, match="takes no endpoint_url"):
        Target(name="aws", region="eu-west-1", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(TargetError, match="takes no endpoint_url"):
        get_target("aws", region="eu-west-1", endpoint_url="http://127.0.0.1:1")


def test_spending_on_aws_needs_the_opt_in() -> None:
    with pytest.raises(SpendNotAllowedError, match="allow_spend=True"):
        aws("eu-west-1").require_spend("create the staging stack")
    aws("eu-west-1", allow_spend=True).require_spend("create the staging stack")
    sandbox("http://127.0.0.1:1").require_spend("create the staging stack")  # free, always allowed


def test_unknown_target_and_sandbox_region_are_refused() -> None:
    with pytest.raises(TargetError, match="Use one of: sandbox, aws"):
        get_target("gcp")
    with pytest.raises(TargetError, match="one region"):
        get_target("sandbox", region="eu-west-1", endpoint_url="http://127.0.0.1:1")


def test_a_sandbox_target_is_a_plain_value_that_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LABKIT_SANDBOX_HOME", str(tmp_path))
    with pytest.raises(TargetError, match="needs the sandbox's endpoint URL") as info:
        get_target("sandbox")
    assert "labkit.sandbox.target()" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing was started: no service file, no log, no lock
    with pytest.raises(TargetError, match="built without the sandbox's map"):
        sandbox("http://127.0.0.1:1").alb_url("web-1.us-east-1.elb.amazonaws.com")


def test_alb_urls_map_dns_names_and_take_no_part_in_equality() -> None:
    mapped = sandbox("http://127.0.0.1:1", alb_urls=lambda dns: f"http://127.0.0.1:9/{dns}")
    assert mapped.alb_url("web-1") == "http://127.0.0.1:9/web-1"
    assert mapped == sandbox("http://127.0.0.1:1") and hash(mapped) == hash(sandbox("http://127.0.0.1:1"))
    assert (
        aws("eu-west-1").alb_url("web-1.eu-west-1.elb.amazonaws.com")
        == "http://web-1.eu-west-1.elb.amazonaws.com"
    )


def test_the_sandbox_target_refuses_another_region_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LABKIT_SANDBOX_HOME", str(tmp_path))
    with pytest.raises(TargetError, match="one region"):
        labkit.sandbox.target(region="eu-west-1")
    assert list(tmp_path.iterdir()) == []


def test_sandbox_clients_and_subprocesses_bypass_a_configured_proxy(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that is not there: a client that used it would fail to connect.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    target = sandbox(moto_endpoint)
    assert target.client("sts")._client_config.proxies == {}
    assert "Account" in target.client("sts").get_caller_identity()
    assert "Buckets" in target.client("s3", config=Config(connect_timeout=5)).list_buckets()
    assert target.env()["NO_PROXY"].split(",") == ["127.0.0.1", "localhost", "::1"]
    assert target.env({"no_proxy": "corp.example"})["no_proxy"].startswith("corp.example,127.0.0.1")


def test_a_runbooks_kernel_gets_its_sandbox_identity_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run_runbook hands a role's credentials to the kernel in LABKIT_SANDBOX_IDENTITY; the sandbox
    target there calls as that role, and without it as the sandbox's admin."""
    from labkit.target import SANDBOX_IDENTITY_ENV, Credentials, credentials_from_env, credentials_to_env

    monkeypatch.delenv(SANDBOX_IDENTITY_ENV, raising=False)
    assert credentials_from_env() is None
    role = Credentials("ASIAEXAMPLEEXAMPLE12", "secret", "token")
    monkeypatch.setenv(SANDBOX_IDENTITY_ENV, credentials_to_env(role))
    assert credentials_from_env() == role
    assert sandbox("http://127.0.0.1:4566").as_identity(
        credentials_from_env()
    ).session().get_credentials().token == ("token")
    monkeypatch.setenv(SANDBOX_IDENTITY_ENV, "not json")
    with pytest.raises(TargetError, match="LABKIT_SANDBOX_IDENTITY holds no credentials"):
        credentials_from_env()
