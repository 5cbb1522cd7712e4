"""Loads a histodiff HTML report (file://) in headless Chromium and checks that it renders.

usage: check_report.py REPORT.html SCREENSHOT_DIR

Checks: Table 1 has rows; every figure has loaded (images decoded, SVGs of nonzero size);
the DAG and the timeline are drawn with one link per box and per bar; clicking a lineage
link of Table 1 moves the URL hash to its producer's section and brings that section into
view; clicking a DAG box does the same for its instance; no console or page errors; no
request leaves the file. Saves full-page and section screenshots into SCREENSHOT_DIR.
Exits non-zero on the first failed check (browser.check).
"""
import os
import sys
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, check  # noqa: E402


def visible_in_viewport(page, element_id):
    return page.evaluate(
        """id => {
            const el = document.getElementById(id);
            if (!el) return false;
            const r = el.getBoundingClientRect();
            return r.height > 0 && r.top < window.innerHeight && r.bottom > 0;
        }""",
        element_id,
    )


def check_figures(page):
    images = page.evaluate(
        """() => Array.from(document.querySelectorAll('#figures img')).map(i =>
            ({alt: i.alt, ok: i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0}))"""
    )
    check(len(images) > 0, f"the report stage's figures are embedded ({len(images)})")
    bad = [i["alt"] for i in images if not i["ok"]]
    check(not bad, f"every figure image decoded and laid out (not: {bad})")
    svgs = page.evaluate(
        """() => Array.from(document.querySelectorAll('main svg')).map(s => {
            const r = s.getBoundingClientRect(); return [r.width, r.height]; })"""
    )
    check(len(svgs) >= 3, f"inline SVG figures: {len(svgs)} (curves, timeline, DAG)")
    check(all(w > 50 and h > 50 for w, h in svgs), f"every inline SVG has a size: {svgs}")
    charts = page.locator("#curves figure.chart svg").count()
    check(charts > 0, f"training curves drawn ({charts} charts)")


def check_table(page):
    rows = page.locator("table.table1 tbody tr").count()
    check(rows > 0, f"Table 1 has {rows} row(s)")
    links = page.locator("table.table1 a.producer").count()
    check(links > 0, f"Table 1 has {links} lineage link(s)")


def check_maps(page):
    boxes = page.locator("#dag-figure a.area").count()
    instances = page.locator("article.instance").count()
    check(boxes > 0 and boxes == instances, f"DAG: {boxes} boxes for {instances} instances")
    bars = page.locator("#timeline-figure a.area").count()
    rows = page.locator("#timeline-table tbody tr").count()
    check(bars > 0 and bars == rows, f"timeline: {bars} bars for {rows} executions")
    box = page.locator("#dag-figure a.area").first.bounding_box()
    check(box and box["width"] > 10 and box["height"] > 10, f"a DAG box is clickable: {box}")


def follow(page, link, what):
    href = link.get_attribute("href")
    link.click()
    page.wait_for_function("h => window.location.hash === h", arg=href, timeout=5000)
    target = unquote(href[1:])
    page.wait_for_function(
        """id => { const el = document.getElementById(id); if (!el) return false;
                   const r = el.getBoundingClientRect();
                   return r.height > 0 && r.top >= -2 && r.top < window.innerHeight / 2; }""",
        arg=target,
        timeout=5000,
    )
    check(visible_in_viewport(page, target), f"{what}: {href} is in view")
    return target


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    report, shots = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    with Browser() as b:
        page = b.page
        outside = []
        page.on("request", lambda r: r.url.startswith(("http:", "https:")) and outside.append(r.url))
        page.goto("file://" + report)
        page.wait_for_load_state("load")
        page.screenshot(path=os.path.join(shots, "report-full.png"), full_page=True)
        page.screenshot(path=os.path.join(shots, "report-top.png"))
        check_table(page)
        check_figures(page)
        check_maps(page)
        # Section screenshots scroll the page: keep the sticky bar from covering them.
        page.add_style_tag(content="nav#nav { position: static !important; }")
        for part in ["table1", "curves", "timeline", "dag"]:
            page.locator(f"#{part}").screenshot(path=os.path.join(shots, f"report-{part}.png"))
        target = follow(page, page.locator("table.table1 a.producer").first, "Table 1 lineage link")
        check(target.startswith("exec-"), f"the lineage link leads to an execution section ({target})")
        producer = page.locator(f"[id='{target}'] h4").inner_text()
        check("execution #" in producer, f"the producer's section is shown: {producer!r}")
        page.screenshot(path=os.path.join(shots, "report-lineage-target.png"))
        page.goto("file://" + report + "#dag")
        follow(page, page.locator("#dag-figure a.area").last, "DAG box")
        page.wait_for_timeout(200)
        check(not outside, f"no request left the file: {outside}")
        check(not b.errors, f"no console or page errors: {b.errors}")
    print("report renders")


if __name__ == "__main__":
    main()
