"""Drives the live dashboard (`histodiff serve`) in headless Chromium while a pipeline trains.

usage: check_dashboard.py URL SCREENSHOT_DIR

URL is the dashboard's address; a run must be in progress with a training stage that
records `loss` per step. Checks: the run is listed as in progress; its page shows a
progress bar with an ETA for the training stage; the training curve's point count
(`data-points`) grows between two observations and its SVG is drawn; clicking the
stage's input artifact shows that artifact's producer, and clicking the producer shows
its execution (upstream), whose output lists the training stage as a reader (downstream);
the image-set preview's images decode; no console or page errors. Saves screenshots of
each view into SCREENSHOT_DIR. Exits non-zero on the first failed check (browser.check).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, check  # noqa: E402

TIMEOUT_MS = 60_000


def shot(page, folder, name):
    path = os.path.join(folder, name)
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


def images_decoded(page, selector):
    """Waits until every image under `selector` has loaded and has a size; their count."""
    page.wait_for_function(
        """sel => {
            const imgs = Array.from(document.querySelectorAll(sel));
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=selector,
        timeout=TIMEOUT_MS,
    )
    return page.locator(selector).count()


def points(page):
    return int(page.locator("figure.curve[data-metric='loss']").first.get_attribute("data-points"))


def check_runs(page, url, folder):
    page.goto(url + "/")
    page.locator(".active-run").first.wait_for(timeout=TIMEOUT_MS)
    status = page.locator(".active-run .badge").first.inner_text()
    check(status == "running", f"the run is listed as in progress ({status})")
    shot(page, folder, "dashboard-runs.png")
    page.locator(".active-run h2 a").first.click()
    page.wait_for_url("**/#/run/*", timeout=TIMEOUT_MS)


def check_progress_and_curve(page, folder):
    row = page.locator("tr.stage.running", has_text="autoencoder")
    eta = row.locator(".progress .eta")
    eta.wait_for(timeout=TIMEOUT_MS)
    check(eta.inner_text().startswith("ETA "), f"the training stage shows {eta.inner_text()}")
    step = int(row.locator(".progress").get_attribute("data-step"))
    total = int(row.locator(".progress").get_attribute("data-total"))
    check(0 < step < total, f"its progress bar stands at {step} / {total}")
    images_decoded(page, "figure.curve img")
    first = points(page)
    check(first > 0, f"the loss curve is drawn with {first} points")
    shot(page, folder, "dashboard-run.png")
    deadline = time.time() + 40
    later = first
    while later <= first and time.time() < deadline:
        page.wait_for_timeout(1000)
        later = points(page)
    check(later > first, f"the curve grows while training runs: {first} -> {later} points")
    images_decoded(page, "figure.curve img")
    after = int(page.locator("tr.stage.running", has_text="autoencoder").locator(".progress").get_attribute("data-step"))
    check(after > step, f"the progress bar moves: step {step} -> {after}")
    shot(page, folder, "dashboard.png")


def check_lineage(page, folder):
    page.locator("tr.stage", has_text="autoencoder").locator("a.execution-link").click()
    page.wait_for_url("**/#/execution/*", timeout=TIMEOUT_MS)
    page.locator("h1", has_text="autoencoder").wait_for(timeout=TIMEOUT_MS)
    images_decoded(page, "figure.curve img")
    shot(page, folder, "dashboard-execution.png")
    page.locator(".edges a.artifact-link").first.click()
    page.wait_for_url("**/#/artifact/*", timeout=TIMEOUT_MS)
    producer = page.locator(".producer a.producer-link").first
    producer.wait_for(timeout=TIMEOUT_MS)
    check(producer.inner_text() == "crc", f"the input's producer is shown: {producer.inner_text()}")
    shown = images_decoded(page, ".image-grid img")
    check(shown > 0, f"the image-set preview shows {shown} decoded images")
    labels = page.locator(".image-grid figcaption").all_inner_texts()
    check(all(labels), f"each preview image is labelled with its class ({labels[:3]}…)")
    shot(page, folder, "dashboard-artifact.png")
    readers = page.locator("a.consumer-link").all_inner_texts()
    check("autoencoder" in readers, f"downstream, the artifact is read by {readers}")
    producer.click()
    page.wait_for_url("**/#/execution/*", timeout=TIMEOUT_MS)
    heading = page.locator("h1").first
    heading.wait_for(timeout=TIMEOUT_MS)
    page.locator("h1", has_text="crc").wait_for(timeout=TIMEOUT_MS)
    check(heading.inner_text().startswith("crc"), f"the link leads to the producer: {heading.inner_text()}")
    upstream = page.locator(".edges a.producer-link").all_inner_texts()
    check(any(u.startswith("demo.") for u in upstream), f"whose own input comes from {upstream}")


def main():
    url, folder = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    with Browser() as b:
        page = b.page
        check_runs(page, url, folder)
        check_progress_and_curve(page, folder)
        check_lineage(page, folder)
        check(not b.errors, f"no console or page errors: {b.errors}")


if __name__ == "__main__":
    main()
