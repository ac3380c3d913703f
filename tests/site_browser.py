"""A built site, checked in headless Chromium: what tests/notebooks/test_learning_path.py asserts on.

The site is served over HTTP on loopback (search fetches its index, as it would once published), and
every page is opened in the system's Chromium, driven by Playwright through ``executable_path``
(Playwright's own browser download is never used). Any request that leaves the site's origin is
refused and recorded: a theme asset fetched from a CDN would show up here.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlparse

#: The browsers the Makefile's `browser` target looks for, in the same order.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser_path() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    assert found, f"no headless browser on PATH ({', '.join(BROWSERS)}): `make browser` installs chromium"
    return found


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes as a file is still being sent (at the end of a check) is no error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1; yields its base URL."""
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SiteCheck:
    """What the browser found on every page of the site."""

    pages: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images_without_alt: list[str] = field(default_factory=list)
    headings: dict[str, list[int]] = field(default_factory=dict)  # page -> levels of its article's headings
    landing_text: str = ""
    search_results: int = 0
    dark_scheme: str = ""
    # page -> (label, hover texts) of each inline interactive figure
    interactive: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    hover_outline: tuple[str, str] = ("", "")  # a hovered bar's stroke width: before, while hovered
    # scheme -> [how many text elements were measured, those under WCAG AA's contrast ratio]
    contrast: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)


_LINKS_JS = """() => ({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  images: [...document.querySelectorAll('img')].map(i => ({src: i.currentSrc || i.src, alt: i.alt,
    ok: i.complete && i.naturalWidth > 0})),
  headings: [...document.querySelectorAll('article :is(h1, h2, h3, h4, h5, h6)')]
    .map(h => Number(h.tagName[1])),
  figures: [...document.querySelectorAll('svg.labkit-figure')].map(f => [f.getAttribute('aria-label') || '',
    [...f.querySelectorAll('g.labkit-tip > title')].map(t => t.textContent)]),
})"""

#: WCAG 2's contrast ratio of every visible piece of text on the page (not the figures' own text, which
#: sits on the figure's white) against the background it is drawn on, the layers under it composed: the
#: measured count, and those under 4.5:1 (3:1 for large text).
_CONTRAST_JS = """() => {
  const rgba = s => {
    const m = /rgba?\\(([^)]+)\\)/.exec(s);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
  };
  const linear = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = c => 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2]);
  let measured = 0;
  const low = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') || !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const bg = background(el);
    const color = rgba(style.color);
    const text = el.textContent.trim().slice(0, 40);
    if (!color) { low.push({tag: el.tagName, text, color: style.color}); continue; }
    const [a, b] = [lum(over(color, bg)), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    measured += 1;
    if (ratio < (large ? 3 : 4.5)) {
      const background = `rgb(${bg.slice(0, 3).map(Math.round)})`;
      low.push({tag: el.tagName, text, ratio: Math.round(ratio * 100) / 100, color: style.color, background});
    }
  }
  return [measured, low];
}"""


def check_site(site: Path, screenshots: dict[str, Path]) -> SiteCheck:
    """Open every page of ``site``; ``screenshots`` maps a page (``index.html``) to a PNG to take of it."""
    from playwright.sync_api import Request, Route, sync_playwright

    result = SiteCheck()
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    with served(site) as base, sync_playwright() as pw:
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        browser = pw.chromium.launch(executable_path=browser_path(), args=args)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def guard(route: Route, request: Request) -> None:
                if request.url.startswith(base) or request.url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    result.outside_requests.append(request.url)
                    route.abort()

            context.route("**/*", guard)
            page = context.new_page()
            where = {"page": ""}
            page.on(
                "console",
                lambda m: m.type == "error" and result.console_errors.append(f"{where['page']}: {m.text}"),
            )
            page.on("pageerror", lambda e: result.console_errors.append(f"{where['page']}: {e}"))
            for name in pages:
                where["page"] = name
                response = page.goto(base + name, wait_until="load")
                assert response is not None and response.ok, f"{name}: {response and response.status}"
                result.pages.append(name)
                found = page.evaluate(_LINKS_JS)
                for link in found["links"]:
                    problem = _internal_problem(site, base, link)
                    if problem:
                        result.broken_links.append(f"{name} -> {link}: {problem}")
                for image in found["images"]:
                    if not image["ok"]:
                        result.broken_images.append(f"{name}: {image['src']}")
                    if not image["alt"].strip():
                        result.images_without_alt.append(f"{name}: {image['src']}")
                result.headings[name] = found["headings"]
                if found["figures"]:
                    result.interactive[name] = [(label, tips) for label, tips in found["figures"]]
                    if not result.hover_outline[0]:
                        result.hover_outline = _hover(page)
                if name in screenshots:
                    page.screenshot(path=str(screenshots[name]), full_page=True)
                if name == "index.html":
                    result.landing_text = page.inner_text("article")
                    result.contrast["light"] = page.evaluate(_CONTRAST_JS)
                    result.search_results = _search(page, "rollback", result.contrast)
                    page.locator("label.md-header__button[for^='__palette']:visible").first.click()
                    result.dark_scheme = page.get_attribute("body", "data-md-color-scheme") or ""
                    page.wait_for_timeout(500)  # the theme fades its colors over
                    result.contrast["dark"] = page.evaluate(_CONTRAST_JS)
        finally:
            browser.close()
    return result


def _hover(page: Any) -> tuple[str, str]:
    """The stroke width of the widest described bar of the page's last interactive figure (a lesson
    plots its traffic, then its timeline, whose bars no line crosses), then while the pointer is on it."""
    bars = page.locator("svg.labkit-figure").last.locator("g.labkit-tip path")
    widths = bars.evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    bar = bars.nth(max(range(len(widths)), key=widths.__getitem__))
    bar.evaluate("el => el.scrollIntoView({block: 'center'})")  # clear of the theme's sticky header
    width = "el => getComputedStyle(el).strokeWidth"
    before = str(bar.evaluate(width))
    bar.hover(timeout=10_000)  # Playwright waits until the bar itself is what the pointer reaches
    return before, str(bar.evaluate(width))


def _search(page: Any, term: str, contrast: dict[str, tuple[int, list[dict[str, Any]]]]) -> int:
    """How many results the theme's search lists for ``term``; the contrast of the open search panel
    before any keystroke goes to ``contrast``."""
    box = page.locator("input.md-search__input")
    box.click()
    page.wait_for_selector(".md-search-result__meta", state="visible")
    contrast["light, search open"] = page.evaluate(_CONTRAST_JS)
    box.press_sequentially(term, delay=20)  # keystrokes: the theme searches as the reader types
    page.wait_for_selector(".md-search-result__item", timeout=15_000)
    count = page.locator(".md-search-result__item").count()
    page.keyboard.press("Escape")
    return int(count)


def _internal_problem(site: Path, base: str, url: str) -> str:
    """Why an internal link does not resolve ('' when it does, or when it leaves the site)."""
    if not url.startswith(base):
        return "" if urlparse(url).scheme in ("http", "https", "mailto") else f"unexpected scheme in {url}"
    path, fragment = urldefrag(url[len(base) :])
    target = site / unquote(path or "index.html")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return "no such file"
    if fragment and target.suffix == ".html" and f'id="{fragment}"' not in target.read_text(encoding="utf-8"):
        return f"no element with id {fragment!r}"
    return ""
