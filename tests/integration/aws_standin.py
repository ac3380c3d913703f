"""moto's server standing in for AWS on the aws path (tests/integration/test_aws_path.py), run as its
own process so that what it patches in moto stays out of the test's.

``python -m tests.integration.aws_standin FOLDER``: writes a certificate for 127.0.0.1 and its key to
FOLDER (clients trust it through ``AWS_CA_BUNDLE``), serves moto over HTTPS on one free loopback port
and over plain HTTP on another, writes ``ports.json`` (``{"https": N, "http": M}``) to FOLDER once
both listen, and serves until it is terminated (its AWS state goes with it). Both listeners reach the
same state; the HTTP one is there only to show the TLS-only bucket policy refusing it.

It is moto with labkit's mends (:mod:`labkit.sandbox.server.mends`, "where stock moto is not AWS":
without them a second plan of staging shows changes to launch templates, ASGs and security group
rules that AWS would not) and nothing else of the sandbox: no data plane, no app processes, no saved
state, so registered targets stay ``initial``, as an ALB reports them before its first health check.
The aws path needs three corrections the sandbox does not:

- HTTPS: the TLS-only bucket policy (``require_tls``) refuses plain HTTP, as it should;
- a bucket policy's ``aws:SecureTransport`` condition evaluated against the request's scheme: moto
  ignores the condition and applies the Deny statement to every request, TLS or not;
- the Budgets calls the AWS provider reads a budget with and moto 5.2 lacks:
  ``DescribeSubscribersForNotification``, and ``ListTagsForResource`` (tags as ``CreateBudget`` gave them).

Requests are served one at a time, as in the sandbox (moto's models are not thread-safe), and a
client's retry of a request whose answer it lost is given that answer again
(:mod:`labkit.sandbox.server.replay`).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

#: Whether the request being served came over TLS (each request has a thread of its own).
_request = threading.local()


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aws stand-in on 127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _evaluate_secure_transport() -> None:
    """Bucket policies as S3 evaluates them for the statements labkit writes: a statement whose
    condition is ``Bool aws:SecureTransport`` applies only to requests whose transport matches."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy)
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        secure = "true" if getattr(_request, "secure", False) else "false"
        applying = [
            {k: v for k, v in statement.items() if k != "Condition"}
            for statement in statements
            if secure in _secure_transport_values(statement.get("Condition") or {})
        ]
        if not applying:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": applying})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission


def _secure_transport_values(condition: dict[str, Any]) -> set[str]:
    """The transports a statement applies to; any condition but ``aws:SecureTransport`` is refused
    (a 500 the test sees) rather than judged wrongly."""
    if not condition:
        return {"true", "false"}
    if set(condition) != {"Bool"} or set(condition["Bool"]) != {"aws:SecureTransport"}:
        raise NotImplementedError(f"The aws stand-in evaluates only aws:SecureTransport, not {condition}")
    values = condition["Bool"]["aws:SecureTransport"]
    return {str(v).lower() for v in ([values] if isinstance(values, str | bool) else values)}


def _complete_budgets() -> None:
    """The two Budgets reads moto lacks, answered from what it stored."""
    from moto.budgets.exceptions import NotFoundException
    from moto.budgets.responses import BudgetsResponse

    tags: dict[str, list[dict[str, str]]] = {}
    create_budget = BudgetsResponse.create_budget

    def create_budget_keeping_tags(self: Any) -> str:
        answer = create_budget(self)
        account, name = self._get_param("AccountId"), self._get_param("Budget")["BudgetName"]
        tags[f"arn:aws:budgets::{account}:budget/{name}"] = list(self._get_param("ResourceTags") or [])
        return answer

    def describe_subscribers_for_notification(self: Any) -> str:
        budget = self.backend.budgets[self._get_param("AccountId")].get(self._get_param("BudgetName"))
        wanted = self._get_param("Notification")
        keys = ("ComparisonOperator", "NotificationType", "Threshold", "ThresholdType")
        for notification in budget.notifications if budget else ():
            if all(notification.details.get(k) == wanted.get(k) for k in keys):
                return json.dumps({"Subscribers": notification.subscribers})
        raise NotFoundException("Unable to get subscribers: the notification does not exist.")

    def list_tags_for_resource(self: Any) -> str:
        return json.dumps({"ResourceTags": tags.get(self._get_param("ResourceARN"), [])})

    BudgetsResponse.create_budget = create_budget_keeping_tags
    BudgetsResponse.describe_subscribers_for_notification = describe_subscribers_for_notification
    BudgetsResponse.list_tags_for_resource = list_tags_for_resource


def _app() -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from labkit.sandbox.server.replay import OneAtATime

    def replayed(environ: dict[str, Any]) -> None:
        print(f"{time.strftime('%H:%M:%S')} replayed a lost answer", file=sys.stderr, flush=True)

    # As the sandbox serves them: one request at a time, a lost answer to a write given again.
    moto_app = OneAtATime(DomainDispatcherApplication(create_backend_app), on_replay=replayed)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        _request.secure = environ.get("wsgi.url_scheme") == "https"
        return moto_app(environ, start_response)

    return app


def main(folder: Path) -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    from labkit.sandbox.server.mends import apply_mends

    apply_mends(None)  # no data plane: targets stay `initial`
    _evaluate_secure_transport()
    _complete_budgets()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    cert, key = write_certificate(folder)
    app = _app()
    servers: dict[str, BaseWSGIServer] = {
        scheme: make_server(
            "127.0.0.1",
            0,
            app,
            threaded=True,
            request_handler=MotoRequestHandler,
            ssl_context=(str(cert), str(key)) if scheme == "https" else None,
        )
        for scheme in ("https", "http")
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = folder / "ports.json.tmp"  # renamed into place: the test never reads half a file
    ports.write_text(json.dumps({s: server.server_port for s, server in servers.items()}))
    ports.rename(folder / "ports.json")
    threading.Event().wait()  # until SIGTERM ends the process; the AWS state goes with it


if __name__ == "__main__":
    main(Path(sys.argv[1]))
