"""`dsforge review` driven as a person uses it: Debian's chromium (headless) through its chromedriver,
keyboard only; the server is the real CLI in a subprocess, started once for the module."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.review_data import write_candidates

SHOTS = Path("/tmp/review-shots")
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 120   # generous: a loaded CI machine is slow, and nothing here depends on speed


def _need_browser():
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {missing}: .ci/run installs chromium + chromium-driver, .[dev] installs selenium")
        pytest.skip(f"missing {missing}")


def start_server(cands: str, out: str, *args: str) -> tuple[subprocess.Popen, str]:
    """The real `dsforge review` on a free port; returns the process and the base URL it printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dsforge", "review", cands, "-o", out, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "http://127.0.0.1:" in line:
            return proc, line.split("?")[0].strip()
    proc.wait()
    raise AssertionError("server did not print its URL:\n" + "".join(lines))


def stop_server(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=WAIT)
    return rest


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    d = tmp_path_factory.mktemp("review")
    cands = write_candidates(d / "judged.jsonl", prompts=8, evil=True)
    out = str(d / "reviewed.jsonl")
    proc, url = start_server(cands, out, "--annotator", "alice")
    yield {"url": url, "out": out, "proc": proc, "dir": d}
    if proc.poll() is None:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"   # Selenium Manager must never download a driver or browser
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={server['dir'] / 'chrome-profile'}",
                 "--window-size=1366,800"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def wait(drv, cond, what):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, WAIT, poll_frequency=0.05).until(lambda d: cond(d), message=what)


def count_text(drv) -> str:
    return drv.find_element("id", "count").text


def keys(drv, text):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(drv).send_keys(text).perform()


def cards(drv):
    return drv.find_elements("css selector", "#cands .card")


def current_key(drv) -> str:
    return drv.execute_script("return S && S.item ? S.item.key : null")


def label_item(drv, scores: list[int]) -> list[int]:
    """Score every answer of the shown item with the keyboard; returns the scores in display order."""
    key = current_key(drv)
    n = len(cards(drv))
    given = (scores * n)[:n]
    for i, s in enumerate(given):
        keys(drv, str(s))
        if i < n - 1:   # the item stays until its last answer is scored
            wait(drv, lambda d, i=i: len(d.find_elements("css selector", "#cands .card.labelled")) == i + 1,
                 f"answer {i + 1} labelled")
    wait(drv, lambda d: current_key(d) != key, "next item shown")
    return given


def events(out: str) -> list[dict]:
    with open(out + ".events.jsonl") as f:
        return [json.loads(x) for x in f]


def test_label_five_with_keyboard_undo_reload_continue(server, browser):
    drv = browser
    drv.get(server["url"] + "?annotator=alice")
    wait(drv, lambda d: "0 / 8 done" in count_text(d), "progress shown")
    labelled = {}
    for n in range(5):
        key = current_key(drv)
        labelled[key] = label_item(drv, [4, 2, 5, 1][n % 4:] + [4, 2, 5, 1][:n % 4])
        wait(drv, lambda d, n=n: f"{n + 1} / 8 done" in count_text(d), f"{n + 1} done")
    last = key
    keys(drv, "u")   # undo: the last score of item 5 is retracted and item 5 shows again
    wait(drv, lambda d: current_key(d) == last and "4 / 8 done" in count_text(d), "undo shows item 5 again")
    assert len(drv.find_elements("css selector", "#cands .card.labelled")) == len(cards(drv)) - 1
    drv.refresh()
    wait(drv, lambda d: current_key(d) == last and "4 / 8 done" in count_text(d), "reload continues at item 5")
    keys(drv, "3")   # the focus is on the one unscored answer
    wait(drv, lambda d: "5 / 8 done" in count_text(d), "item 5 done again")
    labelled[last][-1] = None   # redone with 3 (its display slot is checked through the log below)
    key6 = current_key(drv)
    assert key6 not in labelled
    label_item(drv, [5])
    wait(drv, lambda d: "6 / 8 done" in count_text(d), "6 done")

    evs = [e for e in events(server["out"]) if e.get("annotator") == "alice"]
    undos = [e for e in evs if e["ev"] == "undo"]
    assert len(undos) == 1 and undos[0]["item"] == last
    assert all(e["seconds"] >= 0 for e in evs if e["ev"] == "label")
    # the materialized judged records catch up within the writer's debounce
    def records():
        if not os.path.exists(server["out"]):
            return []
        with open(server["out"]) as f:
            return [json.loads(x) for x in f]
    wait(drv, lambda d: len({r["prompt_id"] for r in records()}) == 6, "6 prompts in reviewed.jsonl")
    recs = records()
    assert all(r["judge"]["kind"] == "human" and r["judge"]["annotator"] == "alice" for r in recs)
    assert all(r["judge"]["score"] in (1.0, 2.0, 3.0, 4.0, 5.0) for r in recs)
    assert all(r["prior_judge"]["kind"] == "llm" for r in recs)
    redone = [r for r in recs if r["prompt_id"] == last]
    assert sorted(r["judge"]["score"] for r in redone) == sorted([s for s in labelled[last] if s] + [3.0])
    assert all(r["judge"]["seconds"] > 0 for r in recs)


def test_untrusted_html_is_shown_as_text(server, browser):
    drv = browser
    drv.get(server["url"] + "?annotator=mallory")   # a fresh annotator starts at item 1, the one with the payload
    wait(drv, lambda d: len(cards(d)) == 4, "item 1 with four answers")
    text = drv.find_element("id", "cands").text
    assert '<script>window.__pwned = 1; alert("x")</script>' in text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert drv.execute_script("return window.__pwned === undefined")
    assert not drv.find_elements("css selector", "#cands script, #cands img, #prompt script, #prompt img")
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        drv.switch_to.alert.text


def test_screenshots_laptop_and_narrow(server, browser):
    drv = browser
    SHOTS.mkdir(parents=True, exist_ok=True)
    drv.get(server["url"] + "?annotator=carol")
    wait(drv, lambda d: len(cards(d)) >= 3, "item shown")
    keys(drv, "4")
    wait(drv, lambda d: len(d.find_elements("css selector", "#cands .card.labelled")) == 1, "one labelled")
    for w in (1366, 420):
        drv.set_window_size(w, 800)
        time.sleep(0.3)   # layout settles; not a correctness wait
        drv.save_screenshot(str(SHOTS / f"score-{w}.png"))
        width = drv.execute_script("return document.documentElement.scrollWidth")
        assert width <= drv.execute_script("return window.innerWidth") + 1, "no horizontal scrolling"
    keys(drv, "i")
    wait(drv, lambda d: any(m.is_displayed() for m in d.find_elements("css selector", ".meta")), "info shown")
    assert "temperature" in drv.find_element("css selector", ".meta").text
    drv.save_screenshot(str(SHOTS / "score-420-info.png"))
    drv.set_window_size(1366, 800)
    keys(drv, "?")
    wait(drv, lambda d: d.find_element("id", "help").is_displayed(), "help shown")
    drv.save_screenshot(str(SHOTS / "help-1366.png"))
    keys(drv, "\ue00c")   # Escape
    wait(drv, lambda d: not d.find_element("id", "help").is_displayed(), "help closed")
