"""The tenant guard: the word `test`, or ye_/qa_ at the start; never a substring of another word."""

from __future__ import annotations

import pytest

from runner.db import guard
from runner.errors import GuardError

PASS = ["ye_pipeline_test_tenant", "qa_checkout", "acme_test", "test-shop", "e2e.test1", "Acme_TEST", "tests_acme",
        "shop:test", "test"]
REFUSE = ["latest_corp", "protestant_x", "contest", "testing_x", "attestation", "acme_corp", "ye", "qa-x",
          "ye_x_test\n", "acme\ntest"]


@pytest.mark.parametrize("tenant", PASS)
def test_test_tenants_pass(tenant: str):
    guard.check_tenant(tenant)


@pytest.mark.parametrize("tenant", REFUSE)
def test_other_tenants_are_refused(tenant: str):
    with pytest.raises(GuardError, match="does not look like test data"):
        guard.check_tenant(tenant)


def test_force_warns_and_a_bad_pattern_is_bad_input(capsys: pytest.CaptureFixture[str]):
    guard.check_tenant("acme_corp", force=True)
    assert "WARNING: --force: about to write to tenant 'acme_corp'" in capsys.readouterr().err
    with pytest.raises(GuardError, match="bad --tenant-pattern"):
        guard.check_tenant("acme_corp", pattern="(")
