"""The chat in headless Chromium (Debian's ``chromium`` driven by Playwright).

1. The real AgentService with the offline planner on the demo data: send a request, see the tool
   box appear, open the Review tab, approve the proposal, find the exported file; screenshots go
   to tests/artifacts/.
2. The scripted FakeService whose documents carry HTML/markdown: nothing from the data runs or
   renders as markup in the page; the service's error shows as a banner.

Chromium is installed with apt-get when /usr/bin/chromium is missing (CI runs as root); the tests
skip, saying why, only if that install fails.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 300_000  # a failure limit for a loaded 2-core machine, not a performance threshold


def _install_chromium() -> str | None:
    """None when chromium is there (installing it if needed), else why it is not."""
    if Path(CHROMIUM).exists():
        return None
    if shutil.which("apt-get") is None:
        return "no /usr/bin/chromium and no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True,
                       timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        return f"installing chromium with apt-get failed: {e} {detail.decode(errors='replace')[-300:]}"
    return None if Path(CHROMIUM).exists() else "apt-get ran but /usr/bin/chromium is still missing"


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")
    why = _install_chromium()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve():  # noqa: ANN201
    from ui.app import launch

    demos = []

    def start(service):  # noqa: ANN001, ANN202
        port = _free_port()
        demos.append(launch(port=port, service=service, prevent_thread_lock=True, quiet=True))
        return f"http://127.0.0.1:{port}/"

    yield start
    for d in demos:
        d.close()


def _send(page, text: str) -> None:  # noqa: ANN001
    box = page.locator("#msg textarea")
    box.fill(text)
    box.press("Enter")


def _edit_cell(page, row: int, col: int, value: str) -> str:  # noqa: ANN001
    """Type into a cell of the review panel's weights table; returns the old text."""
    cell = page.locator(f'#weights [data-testid="cell-{row}-{col}"]')
    old = cell.inner_text().strip()
    cell.dblclick()
    box = cell.locator("input, textarea").first
    box.fill(value)
    box.press("Enter")
    return old


def test_request_tool_box_review_approve_export(browser, serve, demo_dir, tmp_path):  # noqa: ANN001
    from agent.service import AgentService

    uploads = tmp_path / ".curate" / "uploads"
    uploads.mkdir(parents=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: e2e\ndata_roots: [{demo_dir}, {uploads}]\n")
    service = AgentService(planner="offline", workspace=tmp_path / ".curate", policy=str(policy))
    url = serve(service)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_page(viewport={"width": 1500, "height": 1150})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#corpus input").click()
    page.get_by_role("option", name=re.compile(r"pool\.jsonl$")).click()
    _send(page, "Take a stratified sample of 200 documents from the pool as a baseline.")

    tool_box = page.locator("#chat").get_by_text("🛠️ sample").first
    tool_box.wait_for()
    page.locator("#chat").get_by_text("awaits review").first.wait_for()
    tool_box.click()  # open the box: arguments, result and artifacts
    page.locator("#chat").get_by_text("Sampled 200 of").first.wait_for()
    page.locator("#artifact-table").wait_for()  # the side panel opened the new selection
    page.screenshot(path=str(ARTIFACTS / "ui_e2e_chat.png"), full_page=True)

    page.get_by_role("tab", name="Review").click()
    page.locator("#proposal-info").get_by_text("prop-").first.wait_for()
    old = _edit_cell(page, 0, 1, "0.9")  # an edit the policy refuses: the weights no longer sum to 1
    page.locator("#edit-btn").click()
    page.locator("#review-result").get_by_text("not accepted").wait_for()
    assert "sum to" in page.locator("#review-result").inner_text()
    assert service.proposals("pending")[0]["status"] == "pending"
    _edit_cell(page, 0, 1, old)
    page.locator("#note textarea").fill("approved by the browser test")
    page.locator("#approve-btn").click()
    result = page.locator("#review-result")
    result.get_by_text("Exported to").wait_for()
    page.screenshot(path=str(ARTIFACTS / "ui_e2e_review.png"), full_page=True)

    m = re.search(r"Exported to: (\S+)", result.inner_text())
    assert m, result.inner_text()
    exported = Path(m.group(1))
    assert exported.exists()
    assert sum(1 for _ in exported.open()) == 200
    rec = service.proposals("exported")
    assert len(rec) == 1 and rec[0]["note"] == "approved by the browser test"

    # a small upload lands in the workspace and can be picked and used as the pool
    small = tmp_path / "mine.jsonl"
    small.write_text("".join(list((demo_dir / "pool.jsonl").open())[:50]))
    page.get_by_role("tab", name="Chat").click()
    page.get_by_text("Upload a small file").click()
    page.locator("#upload input[type=file]").set_input_files(str(small))
    page.get_by_text("Stored mine.jsonl").wait_for()
    assert (uploads / "mine.jsonl").read_text() == small.read_text()
    _send(page, "profile this corpus")
    page.locator("#chat").get_by_text("🛠️ profile").first.wait_for()
    page.locator("#chat").get_by_text("50 documents in", exact=False).first.wait_for(state="attached")
    page.close()


def test_data_text_never_renders_as_markup_and_errors_show_a_banner(browser, serve, tmp_path, demo_dir):  # noqa: ANN001
    from tests.ui.fakes import FakeService

    url = serve(FakeService(workspace=tmp_path / "ws", data_roots=[str(demo_dir)]))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)  # no model behind the fake
    page.goto(url)
    _send(page, "select 30 docs <b>now</b>")
    chat = page.locator("#chat")
    chat.get_by_text("Done.").first.wait_for()
    page.locator("#artifact-table").wait_for()  # the new selection opened in the side panel
    page.locator("#artifact-table").get_by_text("onerror").first.wait_for(state="attached")  # as text
    chat.locator(".thought-group .title").first.click()  # open the tool box: its two phases are nested
    chat.get_by_text("⏳ ranking").first.wait_for()
    assert page.evaluate("window.__pwned") is None
    assert chat.locator("img[src='x']").count() == 0
    assert chat.locator("a[href='http://example.invalid']").count() == 0
    assert chat.locator("b", has_text="now").count() == 0
    assert chat.get_by_text('<img src=x onerror="window.__pwned=1">', exact=False).count() >= 1, \
        "the markup shows as literal text"
    assert page.locator("#artifact-table img[src='x']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "ui_e2e_escaping.png"), full_page=True)
    page.locator("#artifact-dd input").click()
    page.get_by_role("option", name=re.compile(r"plot")).click()
    page.locator("#artifact-image").wait_for()  # a plot artifact shows as its image

    _send(page, "llm down")
    banner = page.locator("#banner")
    banner.get_by_text("unreachable").wait_for()
    assert chat.get_by_text("select 30 docs").count() >= 1, "the thread is kept under the banner"
    page.close()


def test_settings_engine_choice_rebuilds_the_service(browser, serve, tmp_path):  # noqa: ANN001
    """The Settings tab's Engine radio, through Gradio's wiring: Apply builds a service whose tools use ray."""
    from tests.ui.fakes import FakeService

    url = serve(FakeService(workspace=tmp_path / "ws"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#engine").get_by_text("ray", exact=True).click()
    page.get_by_role("radio", name="offline").check()
    page.locator("#apply-settings").click()
    page.get_by_text("Settings applied", exact=False).wait_for()
    page.locator("#settings-view").get_by_text(re.compile(r"engine: ray")).wait_for()  # from the new service's ctx
    page.reload()  # a new page load shows the service's engine as the radio's value
    page.get_by_role("tab", name="Settings").click()
    page.locator("#engine input[value='ray']").wait_for(state="attached")
    assert page.locator("#engine input[value='ray']").is_checked()
    page.close()
