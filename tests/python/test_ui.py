"""The reviewer page (`/ui`) end to end, in a real headless browser: Debian's Chromium driven by
Selenium through Debian's ChromeDriver (`scripts/pyenv.sh` installs both).

A reviewer enters a key, drops a manipulated and an authentic sample, a video and a broken
file; the page must show what the API says (boxes where the faces are, coloured by score,
scores, bands, ensemble members, a hash-list match, C2PA provenance), a timeline per face
track whose dots show their frame, errors in plain words, and record decisions made with the
keyboard, which the CSV export carries into `dfserve score --labels`. Each state is saved as
a screenshot under target/ui-screenshots/ (README shows one).

The tests run in file order and share one browser and one server, as a reviewer's session
would."""
import base64
import csv
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import c2pa_assets
from conftest import ADMIN, ROOT, Server, post

BIN = ROOT / "target" / "release" / "dfserve"
SHOTS = pathlib.Path(os.environ.get("DFSERVE_UI_SCREENSHOTS", ROOT / "target" / "ui-screenshots"))
REVIEWER = "reviewer-key-for-ui-tests-0123456789"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def key_id(key):
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@pytest.fixture(scope="module")
def assets(tmp_path_factory, samples):
    """The files a reviewer drops: a manipulated and an authentic face (the latter signed with
    C2PA by a test CA the server trusts), a VP9 clip of a moving manipulated face, a truncated
    JPEG and a text file."""
    d = tmp_path_factory.mktemp("ui-assets")
    fake = d / "suspect.jpg"
    shutil.copy(samples / "df" / "df00204.jpg", fake)
    pki = c2pa_assets.make_pki()
    real = d / "signed-portrait.jpg"
    real.write_bytes(c2pa_assets.sign((samples / "real" / "real00240.jpg").read_bytes(), "image/jpeg", pki))
    clip = d / "clip.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=640x360:d=3:r=25",
                    "-loop", "1", "-i", str(samples / "df" / "df01254.jpg"), "-filter_complex",
                    "[1:v]scale=160:160[f];[0:v][f]overlay=x='40+100*t':y=80:shortest=1",
                    "-c:v", "libvpx-vp9", "-b:v", "1M", "-deadline", "realtime", "-pix_fmt", "yuv420p",
                    "-t", "3", str(clip)], check=True)
    broken = d / "broken.jpg"
    broken.write_bytes(fake.read_bytes()[:2000])
    notes = d / "notes.txt"
    notes.write_text("meeting notes, not a picture")
    anchors = d / "anchors.pem"
    anchors.write_bytes(pki[0])
    return {"fake": fake, "real": real, "clip": clip, "broken": broken, "notes": notes, "anchors": anchors}


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, assets):
    keys = tmp_path_factory.mktemp("ui-keys") / "keys.txt"
    keys.write_text(f"admin:{ADMIN}\n{REVIEWER}\n")
    # The page's ensemble view (member scores) is under test: the MesoNet ensemble is the default.
    s = Server("--api-key-file", str(keys), "--c2pa-trust-anchors", str(assets["anchors"]),
               "--default-model", "meso4_ensemble")
    # A known-content list holding the manipulated sample's PDQ, so its card shows a match.
    h = json.loads(subprocess.run([str(BIN), "hash", str(assets["fake"])], capture_output=True, text=True,
                                  check=True).stdout)
    entry = {"kind": "pdq", "hash": h["pdq"], "id": "case-1042", "label": "reported image"}
    post(s, "/v1/hashlists/known-ncii", json.dumps(entry).encode(), ADMIN)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(path), f"{path} is missing: run scripts/pyenv.sh (it installs chromium and chromium-driver)"
    downloads = tmp_path_factory.mktemp("downloads")
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    # Headless, and no background traffic: this machine has no outside network.
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,1400", "--force-device-scale-factor=1"]:
        o.add_argument(a)
    o.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                        "download.prompt_for_download": False})
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=o, service=Service(CHROMEDRIVER))
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.downloads = downloads
    yield d
    d.quit()


def shot(driver, name, element=None):
    """Saves a screenshot of the page (the whole of it) or of one element."""
    path = SHOTS / name
    if element is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
        element.screenshot(str(path))
    else:
        size = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})
        driver.save_screenshot(str(path))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 5000, f"{path} looks empty"


def wait(driver, cond, timeout=60, what="the page"):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d), f"{what} never got there")


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def card(driver, name):
    for c in driver.find_elements(By.CSS_SELECTOR, "article.item"):
        if c.find_element(By.CSS_SELECTOR, "header h2").text == name:
            return c
    raise AssertionError(f"no card for {name}")


def api_detect(server, path):
    req = urllib.request.Request(f"http://{server.http}/v1/detect?audit=true", data=pathlib.Path(path).read_bytes(),
                                 headers={"x-api-key": ADMIN})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["results"][0]


def drop(driver, *paths, dragged=False):
    """Adds files through the file picker or (`dragged`) as a drop on the drop zone, then waits
    until each is scored or has failed."""
    before = len(driver.find_elements(By.CSS_SELECTOR, "article.item"))
    if dragged:
        files = [[base64.b64encode(pathlib.Path(p).read_bytes()).decode(), pathlib.Path(p).name] for p in paths]
        js(driver, """
            const dt = new DataTransfer();
            for (const [data, name] of arguments[0]) dt.items.add(new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name));
            const zone = document.getElementById('drop');
            for (const type of ['dragover', 'drop']) zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));""",
           files)
    else:
        driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in paths))
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.item")) == before + len(paths))
    wait(driver, lambda d: all(c.get_attribute("data-state") in ("done", "error")
                               for c in d.find_elements(By.CSS_SELECTOR, "article.item")), what="scoring")


def use_key(driver, key):
    driver.find_element(By.ID, "key-input").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()


def test_the_page_asks_for_a_key_and_keeps_it_out_of_urls(ui_server, browser):
    base = f"http://{ui_server.http}"
    # The page itself needs no key, and carries a policy that forbids loading anything else.
    with urllib.request.urlopen(f"{base}/ui") as r:
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    browser.get(f"{base}/ui")
    notice = browser.find_element(By.ID, "notice")
    wait(browser, lambda d: notice.is_displayed() and "needs an API key" in notice.text)
    use_key(browser, "not-a-key-of-this-server-000000")
    wait(browser, lambda d: "did not accept your API key" in notice.text)
    shot(browser, "01-key-refused.png")
    use_key(browser, REVIEWER)
    who = browser.find_element(By.ID, "who")
    wait(browser, lambda d: who.get_attribute("data-key-id") == key_id(REVIEWER))
    assert "admin" not in who.text and not notice.is_displayed()
    # Kept for this tab's session only, never in the address.
    assert js(browser, "return sessionStorage.getItem('dfserve.apiKey')") == REVIEWER
    assert REVIEWER not in browser.current_url
    # The model list comes from the server, the default selected.
    assert browser.find_element(By.ID, "model").get_attribute("value") == "meso4_ensemble"


def box_geometry(driver, card_el):
    """Each drawn box's position in the image's pixels, read back from the layout."""
    return js(driver, """
        const img = arguments[0].querySelector('.stage img'); const r = img.getBoundingClientRect();
        const sx = img.naturalWidth / r.width, sy = img.naturalHeight / r.height;
        return [...arguments[0].querySelectorAll('.box')].map(b => { const q = b.getBoundingClientRect();
          return {box: [(q.left - r.left) * sx, (q.top - r.top) * sy, (q.right - r.left) * sx, (q.bottom - r.top) * sy],
                  colour: getComputedStyle(b).borderTopColor, score: parseFloat(b.dataset.score)}; });""", card_el)


def rgb(css):
    return [int(v) for v in re.findall(r"\d+", css)[:3]]


def test_images_show_boxes_scores_bands_members_matches_and_provenance(ui_server, browser, assets):
    drop(browser, assets["fake"], assets["real"])
    for name, sample in [("suspect.jpg", "fake"), ("signed-portrait.jpg", "real")]:
        c = card(browser, name)
        expect = api_detect(ui_server, assets[sample])
        assert c.get_attribute("data-state") == "done"
        assert c.get_attribute("data-sha256") == hashlib.sha256(assets[sample].read_bytes()).hexdigest()
        # The score, band and label the API gives, as the page shows them.
        assert c.find_element(By.CSS_SELECTOR, "[data-role=score]").text == f"{expect['score']:.2f}"
        band = c.find_element(By.CSS_SELECTOR, ".facts .band")
        assert band.get_attribute("data-verdict") == expect["verdict"]
        assert band.text == {"likely_manipulated": "Likely manipulated", "uncertain": "Uncertain",
                             "likely_authentic": "Likely authentic"}[expect["verdict"]]
        assert c.find_element(By.CSS_SELECTOR, "[data-role=label]").get_attribute("data-label") == expect["label"]
        # One box per face, where the face is (within 2 pixels of the image), coloured by score.
        boxes = box_geometry(browser, c)
        assert len(boxes) == len(expect["faces"]) >= 1
        for got, face in zip(boxes, expect["faces"]):
            assert all(abs(a - b) <= 2 for a, b in zip(got["box"], face["box"])), (got, face["box"])
            assert abs(got["score"] - face["score"]) < 1e-6
            r, g, _ = rgb(got["colour"])
            assert (r > g) if face["score"] >= 0.5 else (g > r), (got["colour"], face["score"])
        # Every ensemble member's score.
        members = {m.get_attribute("data-member"): m.text for m in c.find_elements(By.CSS_SELECTOR, "[data-member]")}
        assert members == {m["model"]: f"{m['model']}: {m['score']:.2f}" for m in expect["faces"][0]["members"]}
        shot(browser, f"0{2 if sample == 'fake' else 3}-{sample}-image.png", c)
    fake, real = card(browser, "suspect.jpg"), card(browser, "signed-portrait.jpg")
    assert fake.find_element(By.CSS_SELECTOR, "[data-role=label]").get_attribute("data-label") == "manipulated"
    assert real.find_element(By.CSS_SELECTOR, "[data-role=label]").get_attribute("data-label") == "authentic"
    # The hash-list match, and the C2PA state (trusted: signed by the CA the server trusts).
    m = fake.find_element(By.CSS_SELECTOR, ".match")
    assert (m.get_attribute("data-list"), m.get_attribute("data-id")) == ("known-ncii", "case-1042")
    assert "reported image" in m.text
    assert real.find_elements(By.CSS_SELECTOR, "[data-role=no-matches]")
    assert fake.find_element(By.CSS_SELECTOR, ".prov").get_attribute("data-c2pa") == "absent"
    prov = real.find_element(By.CSS_SELECTOR, ".prov")
    assert prov.get_attribute("data-c2pa") == "trusted" and "dfserve test signer" in prov.text


def test_video_timeline_shows_each_tracks_scores_and_the_frame_under_the_pointer(ui_server, browser, assets):
    drop(browser, assets["clip"])
    c = card(browser, "clip.webm")
    expect = api_detect(ui_server, assets["clip"])
    assert c.get_attribute("data-state") == "done" and expect["tracks"]
    plots = c.find_elements(By.CSS_SELECTOR, ".timeline svg")
    assert len(plots) == len(expect["tracks"])
    dots = plots[0].find_elements(By.CSS_SELECTOR, "circle")
    frames = expect["tracks"][0]["frames"]
    assert [int(d.get_attribute("data-frame")) for d in dots] == [f["frame"] for f in frames]
    # Higher score, higher dot.
    ys = [float(d.get_attribute("cy")) for d in dots]
    hi, lo = max(range(len(frames)), key=lambda i: frames[i]["score"]), min(range(len(frames)), key=lambda i: frames[i]["score"])
    assert ys[hi] < ys[lo]
    canvas = c.find_element(By.CSS_SELECTOR, ".stage canvas")
    info = c.find_element(By.CSS_SELECTOR, "[data-role=frameinfo]")
    for i in (len(dots) // 2, len(dots) - 1):
        ActionChains(browser).move_to_element(dots[i]).perform()
        f = frames[i]
        wait(browser, lambda d: info.get_attribute("data-frame") == str(f["frame"]), what=f"frame {f['frame']}")
        assert f"frame {f['frame']}" in info.text and f"{f['score']:.2f}" in info.text
        assert canvas.get_attribute("data-frame") == str(f["frame"])
        assert "active" in dots[i].get_attribute("class")
    # The canvas holds the decoded frame (the moving face over grey), with the box drawn where
    # the face is: the face's pixels are far from grey, and the frame is not blank.
    x1, y1, x2, y2 = frames[-1]["box"]
    stats = js(browser, """
        const ctx = arguments[0].getContext('2d'); const [x1, y1, x2, y2] = arguments[1];
        const inner = ctx.getImageData(Math.round(x1 + 6), Math.round(y1 + 6), Math.round(x2 - x1 - 12), Math.round(y2 - y1 - 12)).data;
        const corner = ctx.getImageData(600, 320, 20, 20).data;
        let dev = 0; for (let i = 0; i < inner.length; i += 4) dev += Math.abs(inner[i] - 128) + Math.abs(inner[i+1] - 128);
        return {face: dev / (inner.length / 4), corner: [corner[0], corner[1], corner[2]]};""", canvas, [x1, y1, x2, y2])
    assert stats["face"] > 20 and all(abs(v - 128) < 12 for v in stats["corner"]), stats
    shot(browser, "04-video-timeline.png", c)


def test_errors_are_told_in_a_reviewers_words(ui_server, browser, assets):
    drop(browser, assets["broken"])
    drop(browser, assets["notes"], dragged=True)
    for name in ("broken.jpg", "notes.txt"):
        c = card(browser, name)
        assert c.get_attribute("data-state") == "error"
        e = c.find_element(By.CSS_SELECTOR, ".error")
        assert e.get_attribute("data-code") == "undecodable_image"
        words = e.find_element(By.CSS_SELECTOR, ".words").text
        assert "could not be opened" in words and "decode" not in words, words
        # The technical detail is there for operators, folded away.
        assert not e.find_element(By.CSS_SELECTOR, "details code").is_displayed()
        assert not c.find_elements(By.CSS_SELECTOR, "[data-call]")
    shot(browser, "05-error.png", card(browser, "broken.jpg"))


def press(driver, key):
    ActionChains(driver).send_keys(key).perform()


def test_decisions_by_keyboard_are_stored_and_exported_for_score_labels(ui_server, browser, assets, tmp_path):
    base = f"http://{ui_server.http}"
    # A plain reviewer key: decisions, but no hash-list control.
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-role=add-to-list]")
    card(browser, "suspect.jpg").find_element(By.CSS_SELECTOR, "header h2").click()
    press(browser, "u")
    fake = card(browser, "suspect.jpg")
    wait(browser, lambda d: fake.get_attribute("data-decision") == "unsure")
    # An admin key: the same reviewer page offers "add to hash list".
    browser.find_element(By.ID, "key-forget").click()
    use_key(browser, ADMIN)
    who = browser.find_element(By.ID, "who")
    wait(browser, lambda d: who.get_attribute("data-key-id") == key_id(ADMIN) and "admin" in who.text)
    fake = card(browser, "suspect.jpg")
    fake.find_element(By.CSS_SELECTOR, "[data-role=add-to-list]").click()
    fake.find_element(By.CSS_SELECTOR, "[data-role=note]").send_keys("same face as case 1042")
    fake.find_element(By.CSS_SELECTOR, "header h2").click()
    press(browser, "m")
    wait(browser, lambda d: fake.get_attribute("data-decision") == "manipulated")
    recorded = fake.find_element(By.CSS_SELECTOR, "[data-role=recorded]").text
    assert f"by key {key_id(ADMIN)}" in recorded and "added to list “reviewed”" in recorded, recorded
    assert f"{key_id(REVIEWER)} said unsure" in recorded, recorded
    # M moved the selection to the next undecided item, the authentic one; J goes on to the video.
    press(browser, "a")
    real = card(browser, "signed-portrait.jpg")
    wait(browser, lambda d: real.get_attribute("data-decision") == "authentic")
    clip = card(browser, "clip.webm")
    wait(browser, lambda d: "selected" in clip.get_attribute("class"))
    press(browser, "u")
    wait(browser, lambda d: clip.get_attribute("data-decision") == "unsure")
    tally = browser.find_element(By.ID, "tally")
    wait(browser, lambda d: "4 decisions recorded" in tally.text)
    assert "1 authentic, 1 manipulated, 2 unsure" in tally.text and "on 3 items by 2 reviewers" in tally.text, tally.text
    shot(browser, "06-decisions.png")

    # Stored with the SHA-256, what was shown, the key id and the time.
    sha = hashlib.sha256(assets["fake"].read_bytes()).hexdigest()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/decisions/{sha}", headers={"x-api-key": ADMIN})) as r:
        on_fake = {d["reviewer"]: d for d in json.loads(r.read())["decisions"]}
    mine = on_fake[key_id(ADMIN)]
    expect = api_detect(ui_server, assets["fake"])
    assert mine["decision"] == "manipulated" and mine["note"] == "same face as case 1042"
    assert abs(mine["shown"]["score"] - expect["score"]) < 1e-6 and mine["shown"]["verdict"] == expect["verdict"]
    assert mine["shown"]["model"] == "meso4_ensemble@1" and mine["shown"]["matches"] == ["known-ncii/case-1042"]
    assert set(mine["shown"]["faces"][0]["members"]) == {"meso4_df", "meso4_f2f"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", mine["decided_at"])
    assert on_fake[key_id(REVIEWER)]["decision"] == "unsure"
    # The admin's decision added the file to list "reviewed" (hashed by the server): dropped
    # again, it now matches that list too.
    with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/hashlists/reviewed", headers={"x-api-key": ADMIN})) as r:
        kinds = sorted(json.loads(l)["kind"] for l in r.read().decode().splitlines())
    assert kinds == ["pdq", "sha256"]
    drop(browser, assets["fake"])
    again = browser.find_elements(By.CSS_SELECTOR, "article.item")[-1]
    assert {m.get_attribute("data-list") for m in again.find_elements(By.CSS_SELECTOR, ".match")} == {"known-ncii", "reviewed"}
    # Its card remembers the decisions already made on it.
    assert "Recorded: manipulated" in again.find_element(By.CSS_SELECTOR, "[data-role=recorded]").text

    # Export through the page's button: a CSV that `dfserve score --labels` takes, matching files
    # by content even under other names.
    browser.find_element(By.ID, "export").click()
    target = browser.downloads / "dfserve-decisions.csv"
    wait(browser, lambda d: target.exists() and target.stat().st_size > 0, what="the CSV download")
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["path"], r["label"], r["reviewer"]) for r in rows] == [
        ("suspect.jpg", "unsure", key_id(REVIEWER)), ("suspect.jpg", "fake", key_id(ADMIN)),
        ("signed-portrait.jpg", "real", key_id(ADMIN)), ("clip.webm", "unsure", key_id(ADMIN))]
    data = tmp_path / "dataset"
    data.mkdir()
    shutil.copy(assets["fake"], data / "a.jpg")
    shutil.copy(assets["real"], data / "b.jpg")
    out = tmp_path / "rows.jsonl"
    r = subprocess.run([str(BIN), "score", str(data), "--labels", str(target), "--server", base, "--api-key", ADMIN,
                        "--output", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    truth = {pathlib.Path(json.loads(l)["path"]).name: json.loads(l).get("truth") for l in out.read_text().splitlines()}
    assert truth == {"a.jpg": "fake", "b.jpg": "real"}
    assert "ROC-AUC" in r.stdout


def test_nothing_on_the_page_came_from_anywhere_else(ui_server, browser):
    origin = f"http://{ui_server.http}"
    urls = js(browser, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(origin + "/") or u.startswith("blob:" + origin) for u in urls), urls
    logs = browser.get_log("browser")
    # No script error and no Content-Security-Policy violation all session; the only failed
    # loads are the refused key and the broken uploads this module made on purpose.
    assert not [l for l in logs if "Content Security Policy" in l["message"] or l["source"] == "javascript"], logs
    failed = [l["message"] for l in logs if l["level"] == "SEVERE"]
    assert all(re.search(r"status of (401|422)", m) for m in failed), failed
    for f in ("index.html", "app.js", "app.css"):
        text = (ROOT / "ui" / f).read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text) and "import(" not in text, f


def test_too_large_and_overloaded_are_told_in_words_and_busy_can_be_retried(browser, assets, tmp_path):
    """A second server, with no keys, a 60 KB body limit and one FFmpeg process: the 80 KB
    portrait is too large, and of two videos sent at once the second finds the decoder busy
    (429) until the first is done; "Try again" then scores it."""
    clips = []
    for i in (1, 2):
        clip = tmp_path / f"long-{i}.webm"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=1280x720:d=12:r=25",
                        "-loop", "1", "-i", str(assets["fake"]), "-filter_complex",
                        f"[1:v]scale=200:200[f];[0:v][f]overlay=x='40+{60 + 20 * i}*t':y=200:shortest=1",
                        "-c:v", "libvpx-vp9", "-crf", "55", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
                        "-pix_fmt", "yuv420p", "-t", "12", str(clip)], check=True)
        assert clip.stat().st_size < 60_000, clip.stat().st_size
        clips.append(clip)
    s = Server("--max-body-bytes", "60000", "--max-ffmpeg-processes", "1")
    try:
        browser.get(f"http://{s.http}/ui")
        who = browser.find_element(By.ID, "who")
        wait(browser, lambda d: who.get_attribute("data-key-id") == "anonymous" and "No key needed" in who.text)
        drop(browser, assets["real"])
        big = card(browser, "signed-portrait.jpg").find_element(By.CSS_SELECTOR, ".error")
        assert big.get_attribute("data-code") == "payload_too_large"
        assert big.find_element(By.CSS_SELECTOR, ".words").text.startswith("This file is too large for this server")
        assert not big.find_elements(By.CSS_SELECTOR, "button")  # retrying cannot help
        shot(browser, "07-too-large.png", card(browser, "signed-portrait.jpg"))
        drop(browser, *clips)
        states = {n: card(browser, n).get_attribute("data-state") for n in ("long-1.webm", "long-2.webm")}
        busy = [n for n, st in states.items() if st == "error"]
        assert len(busy) == 1, states
        c = card(browser, busy[0])
        e = c.find_element(By.CSS_SELECTOR, ".error")
        assert e.get_attribute("data-code") == "busy"
        assert e.find_element(By.CSS_SELECTOR, ".words").text.startswith("The server is busy right now")
        shot(browser, "08-busy.png", c)
        e.find_element(By.CSS_SELECTOR, "button").click()
        wait(browser, lambda d: c.get_attribute("data-state") == "done", what="the retried video")
        assert c.find_element(By.CSS_SELECTOR, ".facts .band").get_attribute("data-verdict")
    finally:
        s.stop()
