"""The demo product page in a real browser: headless Debian chromium driven by Playwright
against the real gateway (uvicorn on a free loopback port) in front of the real try-on,
refiner and animate services (in-process gRPC on port 0).

A shopper's path: pick a garment with the keyboard, upload a real photo, see the still;
make a clip, see the progress bar advance and the video play; a photo without a person is
refused in words a shopper understands. Screenshots at desktop and phone widths go to
``out/gateway/`` for a person to look at.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data

from services.animate.server import AnimateApp
from services.common.config import load_settings
from services.refiner.server import RefinerApp
from services.tryon.server import TryOnApp

from helpers import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUT = Path(__file__).resolve().parents[1] / "out" / "gateway"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 1,
}
# Waits, in milliseconds: the first try-on warms the models; a clip of the test's length
# renders in a few seconds on two cores.
TRYON_MS = 90_000
CLIP_MS = 120_000
UI_MS = 10_000
NO_PERSON_TEXT = "We couldn't find a person in your photo"


@pytest.fixture(scope="module")
def services():
    """The real try-on, refiner and animate services on one in-process gRPC server; the
    settings the gateways share (short clips)."""
    settings = load_settings(
        env={},
        metrics_port=-1,
        grpc_address="127.0.0.1:0",
        gateway_clip_seconds=2.0,
        gateway_clip_max_side=360,
    )
    apps = (TryOnApp(settings), RefinerApp(settings), AnimateApp(settings))
    with serving(*apps, settings=settings, ready_timeout=180) as (_server, channel):
        yield settings, channel


@contextlib.contextmanager
def gateway(settings, channel):
    """The real gateway (uvicorn on a thread) on a free loopback port; yields its URL."""
    from services.gateway.server import ThreadedGateway

    gw = ThreadedGateway(settings, "127.0.0.1:0", channel).start()
    try:
        yield gw.url
    finally:
        gw.stop(10)


@pytest.fixture(scope="module")
def gateway_url(services):
    settings, channel = services
    with gateway(settings, channel) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A real photo (scikit-image's astronaut, public domain) and a landscape without a
    person, as JPEG files a shopper would pick."""
    d = tmp_path_factory.mktemp("photos")
    person = d / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(person, quality=90)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    sky = np.stack([90 + 90 * y / 480, 150 + 50 * x / 640, 235 - 100 * y / 480], -1)
    hills = 300 + 40 * np.sin(x / 70.0)
    ground = np.stack([60 + 20 * np.sin(x / 13), 120 + 0 * x, 50 + 0 * x], -1)
    land = np.where((y > hills)[..., None], ground, sky).clip(0, 255).astype(np.uint8)
    landscape = d / "landscape.jpg"
    Image.fromarray(land).save(landscape, quality=90)
    return {"person": person, "landscape": landscape}


@pytest.fixture(scope="module")
def garments(gateway_url):
    with urllib.request.urlopen(gateway_url + "/v1/garments", timeout=60) as r:
        return json.load(r)["garments"]


def new_page(browser, **context):
    """A page in a fresh context, and the list its uncaught script errors go to."""
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(UI_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def open_demo(page, url):
    page.goto(url + "/demo", wait_until="load")
    page.wait_for_selector(".swatch")
    # Every gallery thumbnail loaded from the gateway.
    page.wait_for_function(
        "[...document.querySelectorAll('.swatch img')].every(i => i.complete && i.naturalWidth > 0)"
    )


def try_on(page, photo: Path):
    page.set_input_files("#photo", str(photo))
    page.click("#tryon-btn")
    page.wait_for_function(
        "(() => { const s = document.querySelector('#still');"
        " return !s.hidden && s.complete && s.naturalWidth > 0; })()",
        timeout=TRYON_MS,
    )


def make_clip(page) -> list[int]:
    """Start a clip and wait until its video plays; returns the progress values the bar
    showed, in order."""
    page.evaluate(
        """() => {
          window.__progress = [];
          const bar = document.querySelector('#progress');
          new MutationObserver(() => window.__progress.push(Number(bar.getAttribute('aria-valuenow'))))
            .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
        }"""
    )
    page.click("#clip-btn")
    page.wait_for_selector("#clip-box video", state="attached", timeout=CLIP_MS)
    return page.evaluate("window.__progress")


def assert_video_plays(page, from_memory: bool = False):
    page.wait_for_function(
        "(() => { const v = document.querySelector('#clip-box video');"
        " return v.readyState >= 2 && !v.paused && v.videoWidth > 0; })()"
    )
    t0 = page.evaluate("document.querySelector('#clip-box video').currentTime")
    # It moves: over about a second the playback position changes (it loops, so it may
    # also have wrapped round: any change counts), and it is still playing.
    page.wait_for_timeout(1000)
    page.wait_for_function(
        f"document.querySelector('#clip-box video').currentTime !== {t0}", timeout=5000
    )
    v = page.evaluate(
        """(() => { const v = document.querySelector('#clip-box video');
          return {paused: v.paused, ready: v.readyState, muted: v.muted, loop: v.loop,
                  autoplay: v.autoplay, inline: v.playsInline, poster: v.getAttribute('poster'),
                  src: v.getAttribute('src'), played: v.played.length}; })()"""
    )
    assert not v["paused"] and v["ready"] >= 2 and v["played"] >= 1, v
    assert v["muted"] and v["loop"] and v["autoplay"] and v["inline"], v
    if from_memory:  # fetched with the token, played from blob: URLs
        assert v["src"].startswith("blob:") and v["poster"].startswith("blob:"), v
    else:
        assert v["src"].startswith("/v1/clips/") and v["src"].endswith("/video"), v
        assert v["poster"].startswith("/v1/clips/") and v["poster"].endswith("/poster"), v


def test_keyboard_pick_and_try_on(browser, gateway_url, garments, photos):
    page, errors = new_page(browser, **DESKTOP)
    open_demo(page, gateway_url)
    # Keyboard only: Tab to the second top of the gallery and press Enter.
    tops = [g for g in garments if g["category"] == "TOP"]
    assert len(tops) >= 2, garments
    target = tops[1]
    for _ in range(20):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.dataset.id || ''")
        if focused == target["id"]:
            break
    else:
        pytest.fail("Tab never reached the garment's button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused gallery item shows no focus ring"
    page.keyboard.press("Enter")
    swatch = page.locator(f".swatch[data-id='{target['id']}']")
    assert swatch.get_attribute("aria-pressed") == "true"
    assert page.locator(".swatch[aria-pressed='true']").count() == 1
    assert page.inner_text("h1") == target["name"]
    page.wait_for_function(
        "(() => { const p = document.querySelector('#packshot');"
        " return p.complete && p.naturalWidth > 0; })()"
    )
    assert page.get_attribute("#packshot", "src") == target["image_url"]

    try_on(page, photos["person"])
    still = page.locator("#still")
    assert target["name"] in still.get_attribute("alt")
    assert still.get_attribute("src").startswith("blob:")  # in memory, never a URL
    assert "Here you are" in page.inner_text("#tryon-status")
    assert not page.locator("#tryon-status .msg--error").count()
    assert page.is_enabled("#clip-btn")
    # Nothing of the photo or the still is kept by the page.
    stored = page.evaluate("localStorage.length + sessionStorage.length")
    assert stored == 0
    assert errors == []
    page.context.close()


def test_clip_progress_and_video(browser, gateway_url, garments, photos):
    page, errors = new_page(browser, **DESKTOP)
    open_demo(page, gateway_url)
    # A long-sleeved top: the astronaut's own long sleeves are covered, none is bared.
    sleeved = [g for g in garments if g["category"] == "TOP" and "long" in g["name"].lower()]
    if sleeved:
        page.click(f".swatch[data-id='{sleeved[0]['id']}']")
    try_on(page, photos["person"])
    # The motion list came from the gateway and the default one is chosen.
    assert page.locator("#motion option").count() >= 1
    assert page.input_value("#motion") != ""
    values = make_clip(page)
    # The bar advanced: it went through a value strictly between start and end, never
    # backwards, and ended full.
    assert values and values[-1] == 100, values
    assert any(0 < v < 100 for v in values), values
    assert values == sorted(values), values
    assert len(set(values[:-1])) >= 2, values
    assert page.get_attribute("#progress", "aria-valuenow") == "100"
    assert "100 %" in page.inner_text("#progress-text")
    assert_video_plays(page)
    assert "ready" in page.inner_text("#clip-status")
    OUT.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(OUT / "demo-desktop.png"))
    page.screenshot(path=str(OUT / "demo-desktop-full.png"), full_page=True)
    assert errors == []
    page.context.close()


def test_no_person_refused_in_shoppers_words(browser, gateway_url, photos):
    page, errors = new_page(browser, **DESKTOP)
    open_demo(page, gateway_url)
    page.set_input_files("#photo", str(photos["landscape"]))
    page.click("#tryon-btn")
    status = page.locator("#tryon-status")
    page.wait_for_selector("#tryon-status .msg--error", timeout=TRYON_MS)
    text = status.inner_text()
    assert NO_PERSON_TEXT in text, text
    assert "NO_PERSON_DETECTED" not in text  # words, not the code
    assert status.get_attribute("aria-live") == "polite"
    assert page.is_hidden("#still")
    assert page.is_disabled("#clip-btn")
    # The button is free again for the next photo.
    assert page.is_enabled("#tryon-btn")
    assert errors == []
    page.context.close()


def test_phone_layout(browser, gateway_url, garments, photos):
    page, errors = new_page(browser, **PHONE)
    open_demo(page, gateway_url)
    # The gallery scrolls sideways inside itself; the page never does.
    no_overflow = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(no_overflow), page.evaluate("document.documentElement.scrollWidth")
    top = next(g for g in garments if g["category"] == "TOP")
    page.locator(f".swatch[data-id='{top['id']}']").click()
    try_on(page, photos["person"])
    # Packshot and still one under the other, each about the page's width.
    pack = page.locator(".frame--packshot").bounding_box()
    still = page.locator(".frame--still").bounding_box()
    assert still["y"] >= pack["y"] + pack["height"], (pack, still)
    assert pack["width"] > 0.8 * 390 and still["width"] > 0.8 * 390, (pack, still)
    make_clip(page)
    assert_video_plays(page)
    assert page.evaluate(no_overflow), page.evaluate("document.documentElement.scrollWidth")
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "demo-phone.png"), full_page=True)
    assert errors == []
    page.context.close()


def test_token_asked_for_and_sent(browser, services, photos, tmp_path):
    """With auth on, the page asks for the API token, says so when it is wrong, and with
    the right one sends it on every call: the clip's event stream (read with fetch) and
    its video (fetched into memory, since <video src> cannot send the header)."""
    settings, channel = services
    tokens = tmp_path / "tokens"
    tokens.write_text("shop:demo-token-0123456789\n")
    settings = dataclasses.replace(settings, auth_tokens_file=str(tokens))
    with gateway(settings, channel) as url:
        page, errors = new_page(browser, **DESKTOP)
        page.goto(url + "/demo", wait_until="load")
        page.wait_for_selector("#token", state="visible")
        assert "token" in page.inner_text("#packshot-empty")
        assert page.locator(".swatch").count() == 0
        page.fill("#token", "not-the-token")
        page.keyboard.press("Tab")
        page.wait_for_selector("#tryon-status .msg--error")
        assert "wasn't accepted" in page.inner_text("#tryon-status")
        page.fill("#token", "demo-token-0123456789")
        page.keyboard.press("Tab")
        page.wait_for_selector(".swatch")
        assert page.locator("#tryon-status .msg--error").count() == 0
        try_on(page, photos["person"])
        make_clip(page)
        assert_video_plays(page, from_memory=True)
        assert page.evaluate("localStorage.length + sessionStorage.length") == 0
        assert errors == []
        page.context.close()
