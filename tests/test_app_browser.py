"""stereo-app as a user meets it: the console script serving the page, driven by a headless Chromium.

Needs Gradio (the ``app`` extra), Selenium and Debian's ``chromium`` + ``chromium-driver`` (.ci/run installs
them; scripts/setup.sh never runs apt). Without them the test is skipped with the reason, except where
``STEREO_REQUIRE_BROWSER=1`` (CI): there a missing browser fails. No browser or driver is downloaded.
A screenshot of the page is saved as ``app_page.png`` in ``STEREO_TEST_ARTIFACTS`` (default: the test's
temporary folder) and its path printed.
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stereo.calib import read_ply
from stereo.data.pfm import read_pfm
from tests.conftest import REPO

EXAMPLES = REPO / "stereo" / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _missing() -> str | None:
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install -e .[dev,app])"
    if not (CHROMIUM and DRIVER):
        return "no Chromium and ChromeDriver (Debian: apt-get install chromium chromium-driver)"
    return None


def _require_browser() -> None:
    if why := _missing():
        if os.environ.get("STEREO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here (STEREO_REQUIRE_BROWSER=1): {why}")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "app.py"), f"port={port}", "device=cpu"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        if proc.poll() is not None:
            pytest.fail(f"stereo-app exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"stereo-app did not serve {url} within 2 minutes: {log.read_text()[-2000:]}")
    yield url, port, log
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, and nothing that reaches out: this machine's network is closed (background networking,
    # component updates and sync each try), and no GPU: WebGL through SwiftShader.
    for arg in ("--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,2200", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(predicate, seconds: float, what: str):
    end = time.time() + seconds
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _submit(driver, url: str, left: Path | None, right: Path | None, previous: str = "") -> str:
    """Open the page, upload the files, press the button and return the new status line."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#left input[type=file]"), 60, "the page")
    for elem, path in (("left", left), ("right", right)):
        if path is not None:
            driver.find_element(By.CSS_SELECTOR, f"#{elem} input[type=file]").send_keys(str(path))
            _wait(lambda e=elem, p=path: p.stem in driver.find_element(By.CSS_SELECTOR, f"#{e}").text, 30,
                  f"the {elem} upload")  # fmt: skip
    driver.find_element(By.CSS_SELECTOR, "#run").click()
    status = driver.find_element(By.CSS_SELECTOR, "#status")
    return _wait(lambda: status.text.strip() != previous and status.text.strip(), 180, "the answer")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _canvas_pixels(driver) -> np.ndarray:
    from selenium.webdriver.common.by import By

    canvas = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#cloud canvas"), 60, "the 3-D view")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    time.sleep(3)  # the viewer loads the GLB and draws
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(int)


@pytest.mark.slow
def test_the_page_answers_as_stereo_infer_and_draws_the_cloud(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _, log = server
    left, right = EXAMPLES / "flying1_left.png", EXAMPLES / "flying1_right.png"
    status = _submit(browser, url, left, right)
    assert status.startswith("480x272 in") and "error" not in status, (status, log.read_text()[-2000:])
    shots = Path(os.environ.get("STEREO_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    # stereo-infer, the console script, on the same pair
    out = tmp_path / "infer"
    subprocess.run([sys.executable, str(REPO / "scripts" / "infer.py"), f"left={left}", f"right={right}",
                    f"output_dir={out}", "device=cpu", "confidence=true"], check=True, capture_output=True)  # fmt: skip
    links = {a.get_attribute("href").rsplit("/", 1)[1]: a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#files a")}  # fmt: skip
    (tmp_path / "page.pfm").write_bytes(_fetch(links["flying1.pfm"]))
    mine, theirs = read_pfm(tmp_path / "page.pfm"), read_pfm(out / "flying1_left.pfm")
    assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)  # bit for bit
    assert (tmp_path / "page.pfm").read_bytes() == (out / "flying1_left.pfm").read_bytes()
    (tmp_path / "page.ply").write_bytes(_fetch(links["flying1.ply"]))
    points, colours = read_ply(tmp_path / "page.ply")
    assert len(points) == len(colours) > 0 and np.isfinite(points).all()

    color = browser.find_element(By.CSS_SELECTOR, "#color img").get_attribute("src")
    shown = _fetch(color)
    assert shown[:8] == b"\x89PNG\r\n\x1a\n"  # lossless, not Gradio's default WebP
    written = np.asarray(Image.open(out / "flying1_left_color.png"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(shown))), written)

    pixels = _canvas_pixels(browser)
    drawn = (np.abs(pixels - pixels[0, 0]).sum(-1) > 30).mean()  # pixels unlike the background
    browser.save_screenshot(str(shots / "app_page.png"))
    print(f"screenshot: {shots / 'app_page.png'}")
    assert drawn > 0.005, f"the 3-D view looks blank ({drawn:.4f} of its pixels drawn)"


@pytest.mark.slow
def test_bad_uploads_show_one_line_and_the_server_keeps_serving(server, browser, tmp_path):
    url, port, _ = server
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    status = _submit(browser, url, text, EXAMPLES / "flying1_right.png")
    assert status.startswith("error: notes.txt: cannot decode") and "\n" not in status and "Traceback" not in status
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(small)
    status = _submit(browser, url, EXAMPLES / "flying1_left.png", small)
    assert status.startswith("error: left and right images differ in size") and "\n" not in status
    assert _submit(browser, url, EXAMPLES / "flying2_left.png", EXAMPLES / "flying2_right.png").startswith("480x272")
    # a second server on the same port stops at once with one line
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "app.py"), f"port={port}", "device=cpu"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1 and f"error: port={port} is in use" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_two_requests_at_once_queue_and_both_answer(server):
    from gradio_client import Client, handle_file

    url, _, _ = server
    client = Client(url, verbose=False)

    def request(n: int):
        files = (handle_file(str(EXAMPLES / f"flying{n}_{side}.png")) for side in ("left", "right"))
        return client.submit(*files, None, 1.0, 0.5, True, False, None, None, None, api_name="/go")

    jobs = [request(1), request(2)]  # sent together: the page's queue runs them one after the other
    answers = [job.result(timeout=300) for job in jobs]
    assert all(a[-1].startswith("480x272 in") for a in answers), [a[-1] for a in answers]
    assert answers[0][-1] != answers[1][-1]  # two pairs, two answers
