"""Check the report's layout in headless Chromium: no horizontal scroll, nothing wider than the window.

    python -m hf_spurious.demo.report.layout_check demo_output/report.html --widths 1400 800

A copy of the page gets a script that, after load, measures the page's scroll width, every element that
sticks out past the window's right edge or scrolls sideways inside itself, and every figure shown at less
than half its size; ``chromium --headless --dump-dom`` prints the result. Exit code 1 when a width fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_PROBE = r"""
<script>
window.addEventListener('load', () => {
  const W = document.documentElement.clientWidth;
  const out = {viewport: W, scroll_width: document.documentElement.scrollWidth, overflowing: [], shrunk: []};
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    const name = el.tagName.toLowerCase() + (el.getAttribute('alt') ? '[' + el.getAttribute('alt').slice(0, 40) + ']' : '');
    if (r.right > W + 1) out.overflowing.push(name + ' ends at ' + Math.round(r.right) + ' px');
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      out.overflowing.push(name + ' scrolls sideways (' + el.scrollWidth + ' > ' + el.clientWidth + ')');
  }
  for (const img of document.images) {
    const shown = img.getBoundingClientRect().width;
    if (!img.classList.contains('thumb') && img.naturalWidth && shown < 0.5 * Math.min(img.naturalWidth, W))
      out.shrunk.push((img.alt || 'image').slice(0, 40) + ': ' + Math.round(shown) + ' of ' + img.naturalWidth + ' px');
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    """The Chromium executable on PATH (Debian: ``apt-get install chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def check_layout(
    html_file: str | Path, width: int, *, browser: str | None = None, height: int = 1000
) -> dict[str, Any]:
    """Lay the page out at ``width`` px in headless Chromium; the measurements plus ``ok``."""
    browser = browser or chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium on PATH: install it (Debian: apt-get install chromium)")
    page = Path(html_file).read_text(encoding="utf-8")
    if "</body>" not in page:
        raise ValueError(f"{html_file} has no </body>: not a report page")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={width},{height}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]  # fmt: skip
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"Chromium printed no measurement for {html_file} at {width} px")
    result = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    result["ok"] = (
        result["scroll_width"] <= result["viewport"] and not result["overflowing"] and not result["shrunk"]
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", help="the report.html to check")
    parser.add_argument("--widths", type=int, nargs="+", default=[1400, 800], help="window widths in px")
    args = parser.parse_args(argv)
    failed = False
    for width in args.widths:
        result = check_layout(args.html, width)
        failed |= not result["ok"]
        print(f"{width} px: {'ok' if result['ok'] else 'FAILS'} {json.dumps(result)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
