"""Tests of the headless-Chromium page checker used to test the HTML reports."""

from __future__ import annotations

import base64
import io
import struct
import tempfile
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from tests.report.chromium import PageCheck, check_page, find_chromium

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_uri(width_px: int, height_px: int) -> str:
    """A matplotlib figure of exactly ``width_px`` x ``height_px`` pixels as a data URI."""
    dpi = 50
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    fig.add_subplot().plot([0, 1, 2], [0, 1, 4])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_page(directory: Path, body: str, title: str = "test page") -> Path:
    page = directory / "page.html"
    page.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return page


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_self_contained_page_with_two_images(chromium: str, tmp_path: Path) -> None:
    body = (
        f'<h1>Report</h1><img alt="a" src="{png_data_uri(100, 50)}">'
        f'<div style="height: 1500px">spacer</div><img alt="b" src="{png_data_uri(150, 100)}">'
    )
    page = write_page(tmp_path, body, title="two images")
    shot = tmp_path / "shots" / "page.png"

    result = check_page(page, screenshot=shot, width=800, height=600)

    assert result.ok, "\n".join(result.problems())
    assert result.problems() == []
    assert result.title == "two images"
    assert [(img["naturalWidth"], img["naturalHeight"]) for img in result.images] == [
        (100, 50),
        (150, 100),
    ]
    assert all(img["complete"] for img in result.images)
    for img in result.images:  # data URIs are cut to their first 40 characters
        assert img["src"].startswith("data:image/png;base64,")
        assert len(img["src"]) == 40
    assert result.screenshot == shot
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000
    width, height = png_size(data)
    assert width == 800
    assert height >= 1500 + 50 + 100  # the whole document, not just the 600 px viewport


def test_broken_image(chromium: str, tmp_path: Path) -> None:
    page = write_page(tmp_path, '<p>text</p><img alt="gone" src="missing.png">')

    result = check_page(page)

    assert not result.ok
    assert len(result.broken_images) == 1
    broken = result.broken_images[0]
    assert broken["src"].endswith("/missing.png")
    assert broken["naturalWidth"] == 0
    assert any("missing.png" in line and "broken image" in line for line in result.problems())
    assert result.exceptions == []
    assert result.external_requests == []
    assert result.screenshot is None


def test_script_error(chromium: str, tmp_path: Path) -> None:
    body = '<p>text</p><script>console.error("told you"); throw new Error("kaboom");</script>'
    page = write_page(tmp_path, body)

    result = check_page(page)

    assert not result.ok
    assert len(result.exceptions) == 1
    assert "kaboom" in result.exceptions[0]
    assert any("told you" in text for text in result.console_errors)
    assert any("kaboom" in line for line in result.problems())


def test_external_request_is_recorded_and_blocked(chromium: str, tmp_path: Path) -> None:
    page = write_page(tmp_path, '<img alt="remote" src="https://example.com/x.png">')

    result = check_page(page, timeout=30)

    assert result.external_requests == ["https://example.com/x.png"]
    assert not result.ok
    assert any("external request: https://example.com/x.png" in p for p in result.problems())


def test_timeout_raises_and_cleans_up(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = write_page(tmp_path, "<script>while (true) {}</script>")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    with pytest.raises(RuntimeError, match="timed out waiting for"):
        check_page(page, timeout=3)

    assert list(scratch.iterdir()) == []  # the temporary profile is gone


def test_missing_page_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="html"):
        check_page(tmp_path / "nope.html")


def test_bad_override_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = write_page(tmp_path, "<p>x</p>")
    monkeypatch.setenv("FLATNESS_CHROMIUM", str(tmp_path / "no-such-chrome"))
    assert find_chromium() == str(tmp_path / "no-such-chrome")
    with pytest.raises(RuntimeError, match="FLATNESS_CHROMIUM"):
        check_page(page)


def test_page_check_summary_without_a_browser() -> None:
    clean = PageCheck(images=[{"src": "data:", "complete": True, "naturalWidth": 3}])
    assert clean.ok
    assert clean.problems() == []
    broken = {"src": "x.png", "complete": True, "naturalWidth": 0, "naturalHeight": 0}
    bad = PageCheck(
        images=[broken],
        broken_images=[broken],
        console_errors=["oops"],
        exceptions=["Error: e"],
        external_requests=["https://example.com/"],
    )
    assert not bad.ok
    assert bad.problems() == [
        "broken image: x.png (complete=True, naturalWidth=0)",
        "console error: oops",
        "uncaught exception: Error: e",
        "external request: https://example.com/",
    ]
