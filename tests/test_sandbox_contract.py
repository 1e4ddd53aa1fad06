"""Every GET of the contract, fuzzed by schemathesis against a live sandbox and its OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from leadrat_source.sandbox import Sandbox

OPENAPI = Path(__file__).parent.parent / "leadrat_source" / "openapi.json"
PUBLIC_GETS = sorted(path for path, item in json.loads(OPENAPI.read_text())["paths"].items()
                     if "get" in item and not path.startswith("/_sandbox"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def test_document_covers_every_public_endpoint() -> None:
    paths = json.loads(OPENAPI.read_text())["paths"]
    operations = {f"{method.upper()} {path}" for path, item in paths.items()
                  for method in item if method != "parameters" and not path.startswith("/_")}
    assert len(operations) == 13
    assert "post" in json.loads(OPENAPI.read_text())["webhooks"]["leadEvent"]


def test_served_document_is_the_file(sandbox: Sandbox) -> None:
    import requests

    served = requests.get(f"{sandbox.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == json.loads(OPENAPI.read_text())


@pytest.mark.parametrize("path", PUBLIC_GETS)
def test_get_operation_matches_schema(sandbox: Sandbox, path: str) -> None:
    operation = schemathesis.openapi.from_path(OPENAPI)[path]["GET"]
    headers = {"X-API-Key": sandbox.read_write_key}

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=sandbox.base_url, headers=headers, checks=CHECKS)

    check()
