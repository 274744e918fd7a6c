"""Screenshots of the prompt-flow walk in the studio, taken with the real default model
(SmolLM2-135M-Instruct, pulled offline into a fresh home) for the flows README:
docs/images/flows-*.png.

    .venv/bin/python scripts/flow_screenshots.py [--out docs/images] [--keep-home]

It starts `tunery serve` on a free loopback port in a temporary TUNERY_HOME, drives headless
Chromium (/usr/bin/chromium) through the walk the browser test checks with the tiny model, and
stops the server. Several minutes on a 2-core CPU: two batch runs of 8 lines, each graded. The
model is loaded (building its int8 copy the first time) before the walk, so the times on the
screenshots are those of a call; point ``TUNERY_COMPILED_DIR`` at a folder holding a built copy to
skip the build."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1366, "height": 860}
PROMPT = """# system:
You classify web pages. Categories: Movie, App, Academic, Channel, Profile, PDF, None.
Evidence: Url, Text content, Both. Answer with one line of JSON and nothing else.
# user:
URL: https://www.youtube.com/@NASA
Text content: NASA - YouTube. 12M subscribers.
# assistant:
{"category": "Channel", "evidence": "Both"}
# user:
URL: {{url}}
Text content: {{text_content}}
"""
SHORT_PROMPT = """# system:
Which one of Movie, App, Academic, Channel, Profile, PDF, None is this web page? Answer in one word.
# user:
URL: {{url}}
Text content: {{text_content}}
"""


def serve(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEY"}
    env["TUNERY_HOME"] = str(home)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "serve", "--port", str(port),
                                 "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"tunery serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"tunery serve did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def batch(page, name: str, variant: str) -> None:
    page.select_option("#batch-variant", variant)
    page.select_option("#batch-data", "flow:web-classification/data.jsonl")
    page.wait_for_selector("#data-preview table")
    page.select_option("#map-text_content", "${data.text_content}")
    box = "[data-eval='gallery:classification-accuracy-eval']"
    if not page.is_checked(box):
        page.click(box)
    page.select_option("#eval-gallery\\:classification-accuracy-eval-groundtruth", "${data.answer}")
    page.select_option("#eval-gallery\\:classification-accuracy-eval-prediction", "${run.outputs.category}")
    page.fill("#batch-name", name)
    page.click("#batch-submit")
    page.wait_for_selector(f"#batch-progress[data-run={name}]:not([data-state=running])", timeout=1_800_000)
    if page.get_attribute("#batch-progress", "data-state") != "Completed":
        raise SystemExit(f"run {name} did not complete: {page.inner_text('#batch-progress')}")


def walk(url: str, out: Path) -> None:
    def shot(page, name: str) -> None:
        # toasts are gone after 4 s; one left over would cover the form in the picture
        page.wait_for_function("!document.querySelector('#toasts') || !document.querySelector('#toasts').children.length")
        page.screenshot(path=str(out / f"flows-{name}.png"), full_page=True)
        print(f"wrote {out / f'flows-{name}.png'}", flush=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(600_000)
        page.goto(f"{url}/flows")
        page.wait_for_selector("#gallery[data-state=ready]")
        shot(page, "gallery")
        page.click("[data-gallery=web-classification] [data-clone]")
        page.wait_for_selector("body[data-ready=true]")

        page.click("#graph [data-node=convert_to_dict]")
        page.fill("[data-input=input_str]", "${classify_with_llm.outputs}")
        page.click("#save-flow")
        page.wait_for_selector("#problems:not([hidden])")
        shot(page, "validation")
        page.fill("[data-input=input_str]", "${classify_with_llm.output}")

        page.click("#graph [data-node=classify_with_llm]")
        page.fill("#source-edit", PROMPT)
        page.click("#save-flow")
        page.wait_for_selector("body[data-dirty=false]")
        page.click("#clone-variant")
        page.wait_for_selector("#editor[data-variant=variant_2]")
        page.fill("#source-edit", SHORT_PROMPT)
        page.click("#save-flow")
        page.wait_for_selector("body[data-dirty=false]")
        shot(page, "editor")

        page.click(".flow-tabs [data-tab=test]")
        page.select_option("#test-node", "classify_with_llm")
        page.uncheck("[data-test-variant=variant_1]")
        page.fill("[data-test-input=url]", "https://www.imdb.com/title/tt0111161/")
        page.fill("[data-test-input=text_content]", "The Shawshank Redemption (1994) - IMDb. Rating 9.3/10.")
        page.click("#run-test")
        page.wait_for_selector("#test-results[data-state=done], #test-results[data-state=error]")
        if page.get_attribute("#test-results", "data-state") == "error":
            raise SystemExit(f"the variant run failed: {page.inner_text('#test-results')}")
        shot(page, "variants")

        page.click(".flow-tabs [data-tab=batch]")
        batch(page, "web_variant_2", "${classify_with_llm.variant_2}")
        shot(page, "batch")
        batch(page, "web_variant_0", "${classify_with_llm.variant_0}")

        page.click("#view-run-list")
        page.wait_for_selector("#runs[data-state=ready]")
        page.check("[data-run=web_variant_2]")
        page.check("[data-run=web_variant_0]")
        page.click("#compare-runs")
        page.frame_locator("#comparison").locator("h1").wait_for()
        page.wait_for_timeout(500)
        shot(page, "compare")

        page.goto(f"{url}/runs/web_variant_2")
        page.wait_for_selector("#run-lines[data-state=ready]")
        shot(page, "run")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--keep-home", action="store_true", help="leave the temporary home for a look")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="tunery-flow-shots-"))
    env = {**os.environ, "TUNERY_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "tunery.cli.main", "models", "pull", "smollm2-135m-instruct"],
                   env=env, check=True)
    from tunery.server.run import free_port

    port = free_port()
    proc = serve(home, port, home / "serve.log")
    started = time.monotonic()
    try:
        # load the model (and build its int8 copy) before the walk, so the node times the
        # screenshots show are those of a call, not of the first load
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=1800,
                   json={"model": "smollm2-135m-instruct", "max_tokens": 1,
                         "messages": [{"role": "user", "content": "Hello"}]}).raise_for_status()
        print(f"model loaded in {time.monotonic() - started:.0f} s", flush=True)
        walk(f"http://127.0.0.1:{port}", args.out)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
