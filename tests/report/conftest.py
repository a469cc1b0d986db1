"""Fixtures of the report tests: the headless Chromium the HTML pages are opened in."""

from __future__ import annotations

import os

import pytest

from tests.report.chromium import CHROMIUM_NAMES, check_page, find_chromium


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Chromium executable, after checking that it starts here; skips otherwise.

    With ``FLATNESS_REQUIRE_CHROMIUM=1`` (set by ``.ci/run`` once it has installed
    Chromium) a browser that is missing or cannot start fails the tests instead.
    """
    executable = find_chromium()
    reason = "no Chromium found (install Debian's chromium package, or set FLATNESS_CHROMIUM)"
    give_up = pytest.fail if os.environ.get("FLATNESS_REQUIRE_CHROMIUM") == "1" else pytest.skip
    if executable is None:
        give_up(f"{reason}: none of {', '.join(CHROMIUM_NAMES)} on PATH")
    page = tmp_path_factory.mktemp("probe") / "probe.html"
    page.write_text("<!doctype html><title>probe</title><p>probe</p>")
    try:
        result = check_page(page, timeout=30)
    except (RuntimeError, OSError) as err:
        give_up(f"{reason}: {executable} cannot start here: {err}")
    assert result.title == "probe"
    return executable
