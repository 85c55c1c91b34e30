"""The asv dashboard published by tools/publish_dashboard.py works offline.

The first tests check the vendored files against tools/asv_offline/manifest.json
and asv's own page template. The browser tests publish a dashboard of a tiny
benchmark suite (two commits of a throwaway git repository), serve it from
127.0.0.1, and load it in headless Chromium with every other host unreachable,
recording each request the page attempts through the DevTools protocol.
"""

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISH = REPO_ROOT / "tools" / "publish_dashboard.py"
TIMEOUT = 30  # seconds: the bound of every wait on asv, the server or the browser
GRAPH = "bench_tiny.track_answer"


def _load_publish_module():
    spec = importlib.util.spec_from_file_location("publish_dashboard", PUBLISH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


publish = _load_publish_module()


# -- the vendored files -------------------------------------------------------


def asv_template():
    import asv

    return (Path(asv.__file__).parent / "www" / "index.html").read_text(encoding="utf-8")


def test_vendored_files_match_the_manifest_and_have_licences():
    entries = publish.load_manifest()  # raises if a file is missing or differs from its hash
    assert len(entries) == 10
    for entry in entries:
        assert (publish.VENDOR_DIR / entry["licence"]).is_file(), entry["licence"]


def test_manifest_covers_every_cdn_file_of_the_installed_asv():
    template = asv_template()
    by_url = {e["url"]: e for e in publish.load_manifest()}
    loaded = publish.external_fetches(template)
    assert loaded, "asv's template loads nothing from a CDN any more: is the manifest still needed?"
    assert sorted(set(loaded) - set(by_url)) == [], "asv loads these from CDNs; vendor them in tools/asv_offline"
    for url in loaded:
        # Where the local copy is byte for byte the CDN's, the page keeps asv's own hash.
        tag = next(t.group(0) for t in publish._TAG.finditer(template) if url in t.group(0))
        asv_integrity = re.search(publish._ATTR.format("integrity"), tag).group(1)
        assert (asv_integrity == by_url[url]["integrity"]) == by_url[url]["same_as_cdn"], url


def test_rewrite_names_a_cdn_file_it_has_no_copy_of(tmp_path):
    entries = publish.load_manifest()
    unknown = "https://cdn.example.org/jquery-9.9.9.min.js"
    page = asv_template().replace("</head>", f'<script src="{unknown}"></script></head>')
    (tmp_path / "index.html").write_text(page, encoding="utf-8")
    with pytest.raises(publish.DashboardError, match=re.escape(unknown)):
        publish.make_offline(tmp_path, entries)


def test_rewrite_points_every_cdn_file_at_its_copy(tmp_path):
    entries = publish.load_manifest()
    (tmp_path / "index.html").write_text(asv_template(), encoding="utf-8")
    replaced = publish.make_offline(tmp_path, entries)
    assert sorted(replaced) == sorted(e["url"] for e in entries)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert publish.external_fetches(page) == []
    for entry in entries:
        assert f'"vendor/{entry["path"]}" integrity="{entry["integrity"]}"' in page
        copied = tmp_path / "vendor" / entry["path"]
        assert copied.read_bytes() == (publish.VENDOR_DIR / entry["path"]).read_bytes()
    # Publishing again over a rewritten page changes nothing.
    assert publish.make_offline(tmp_path, entries) == []
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == page


# -- a published dashboard in a real browser ----------------------------------


def _browser_paths():
    """chromium and chromedriver, or skip (in CI, fail: .ci/run installs them)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install '.[test]')")
    if missing:
        reason = f"the dashboard browser test needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs them in .ci/run, so this must not be skipped there")
        pytest.skip(reason)
    return chromium, chromedriver


def _run(command, cwd, env):
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=4 * TIMEOUT)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


BENCHMARKS = '''\
    def track_answer():
        """A constant, so the graph is a line through every commit."""
        return 42

    def time_sum():
        sum(range(100))
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A dashboard published by the documented command: two commits of a tiny
    suite, measured with asv against this interpreter; returns the folder
    that holds it (as offline/) and a copy with jQuery back on its CDN (broken/)."""
    _browser_paths()
    root = tmp_path_factory.mktemp("dashboard")
    repo, home = root / "repo", root / "home"
    (repo / "benchmarks").mkdir(parents=True)
    home.mkdir()
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_tiny.py").write_text(textwrap.dedent(BENCHMARKS))
    (repo / "asv.conf.json").write_text(
        json.dumps(
            {
                "version": 1,
                "project": "tiny",
                "repo": ".",
                "branches": ["main"],
                "dvcs": "git",
                "environment_type": "virtualenv",  # required, unused: --python=same runs here
                "benchmark_dir": "benchmarks",
                "results_dir": "results",
                "html_dir": "html",
            }
        )
    )
    # HOME: asv's machine file (~/.asv-machine.json) stays out of the user's home.
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    git = ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    _run(git + ["init", "-q"], repo, env)
    asv = [sys.executable, "-m", "asv"]
    _run(asv + ["machine", "--yes", "--machine", "ci"], repo, env)
    for n in range(2):
        (repo / "version.txt").write_text(f"{n}\n")
        _run(git + ["add", "-A"], repo, env)
        _run(git + ["commit", "-q", "-m", f"commit {n}"], repo, env)
        commit = _run(git + ["rev-parse", "HEAD"], repo, env).strip()
        _run(asv + ["run", "--python=same", "--quick", "--machine", "ci", "--set-commit-hash", commit], repo, env)

    offline = root / "site" / "offline"
    out = _run(
        [sys.executable, str(PUBLISH), "--config", str(repo / "asv.conf.json"), "--html-dir", str(offline)], root, env
    )
    assert "10 files load from" in out, out

    broken = root / "site" / "broken"
    shutil.copytree(offline, broken)
    jquery = next(e for e in publish.load_manifest() if e["url"].startswith("https://code.jquery.com/"))
    page = (
        (broken / "index.html").read_text(encoding="utf-8").replace(f'"vendor/{jquery["path"]}"', f'"{jquery["url"]}"')
    )
    assert jquery["url"] in page
    (broken / "index.html").write_text(page, encoding="utf-8")
    return root / "site"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    """A real HTTP server on 127.0.0.1 (a free port) serving the site; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(TIMEOUT)


# Recorded from the start of every document: uncaught errors, failed script and
# stylesheet loads (error events do not bubble, so listen in the capture phase)
# and rejected promises.
RECORD_ERRORS = """
window.__pageErrors = [];
window.addEventListener('error', function (e) {
    var t = e.target;
    window.__pageErrors.push(t && t !== window ? 'failed to load ' + (t.src || t.href) : String(e.message));
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__pageErrors.push(String(e.reason)); });
"""

# The main graph as flot drew it: its series, and how many pixels of its
# canvas are the colour of the first series (the line and the points; the
# canvas is transparent, so antialiased pixels keep the colour, with less alpha).
GRAPH_STATE = """
var plot = window.jQuery && jQuery('#main-graph').data('plot');
if (!plot) { return null; }
var series = plot.getData();
var canvas = jQuery('#main-graph canvas.flot-base')[0];
var pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
var c = jQuery.color.parse(series[0].color), coloured = 0;
for (var i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] > 0 && Math.abs(pixels[i] - c.r) + Math.abs(pixels[i + 1] - c.g)
            + Math.abs(pixels[i + 2] - c.b) < 60) { coloured++; }
}
return {points: series.map(function (s) { return s.data.length; }), coloured: coloured,
        width: canvas.width, height: canvas.height};
"""


class RefusingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards nothing.

    It records the first line of each request sent to it (``CONNECT host:443``
    or ``GET http://host/...``) and closes the connection without an answer.
    """

    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.lines = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.lines.append(conn.recv(4096).split(b"\r\n")[0].decode("latin-1"))
                except OSError:
                    pass

    def hosts(self):
        """The host names of the requests it refused."""
        return {urlsplit("//" + line.split()[1].split("//")[-1]).hostname for line in self.lines if " " in line}

    def close(self):
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._sock.close()


@pytest.fixture
def proxy():
    proxy = RefusingProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def browser(tmp_path, proxy):
    """Headless Chromium that can reach 127.0.0.1 and nothing else.

    Every request that is not to the loopback goes to ``proxy``, which
    refuses it, and host names other than 127.0.0.1 resolve to nothing.
    The pages' network events (DevTools Network domain) and console
    messages are logged for the test to read.
    """
    chromium, chromedriver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.set_script_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_ERRORS})
        yield driver
    finally:
        driver.quit()


def network_log(driver):
    """The URL of every request the pages attempted, and of those that failed.

    (Chromium's own traffic, such as the new-tab page of a fresh profile,
    is not the pages' and is not in this log; the proxy refuses it.)
    """
    requested, failed, ids = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            requested.append(params["request"]["url"])
            ids[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params["requestId"] in ids:
            failed.append((ids[params["requestId"]], params["errorText"]))
    return requested, failed


def off_host(urls, base):
    """The network requests among urls that are not to the server at base.

    Only these schemes reach a network; chrome://, data:, blob: and the like
    stay inside the browser (the new-tab page of a fresh profile loads a few).
    """
    host = urlsplit(base).netloc
    network = ("http", "https", "ws", "wss", "ftp")
    return [u for u in urls if urlsplit(u).scheme in network and urlsplit(u).netloc != host]


def wait_for(driver, condition, what, error_page_ok=False):
    """Wait (at most TIMEOUT) until condition(driver) is true; fail at once on asv's error page."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(driver):
        if not error_page_ok and urlsplit(driver.current_url).path.endswith("/error.html"):
            raise AssertionError(
                f"asv's error page (a script failed to load) instead of {what}: {driver.get_log('browser')}"
            )
        return condition(driver)

    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.2).until(check)
    except TimeoutException:
        pytest.fail(
            f"{what} did not happen within {TIMEOUT} s; at {driver.current_url}; "
            f"page errors {driver.execute_script('return window.__pageErrors')}; "
            f"console {driver.get_log('browser')}"
        )


def cdn_hosts():
    return {urlsplit(e["url"]).hostname for e in publish.load_manifest()}


@pytest.mark.slow
def test_dashboard_renders_offline(browser, server, proxy):
    base = f"{server}/offline/"
    browser.get(base + "index.html")
    wait_for(
        browser, lambda d: "track_answer" in d.find_element("id", "summarygrid-display").text, "the benchmark grid"
    )

    browser.get(f"{base}index.html#{GRAPH}")
    # Drawn: pixels of the series' colour along a quarter of the canvas width
    # at least (the line from one commit to the next; the two points alone
    # colour about 60 pixels, the line about as many as the canvas is wide).
    state = wait_for(
        browser,
        lambda d: (s := d.execute_script(GRAPH_STATE)) and s["coloured"] > s["width"] / 4 and s,
        f"the graph of {GRAPH}",
    )
    requested, failed = network_log(browser)
    errors = browser.execute_script("return window.__pageErrors")
    console = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]

    assert off_host(requested, server) == [], "the dashboard tried to reach the network"
    assert proxy.hosts() & cdn_hosts() == set(), proxy.lines
    assert failed == [], "requests of the dashboard failed"
    assert errors == [], "script errors or failed loads in the page"
    assert console == [], "errors on the browser console"
    assert urlsplit(browser.current_url).path.endswith("/index.html")  # not asv's error.html
    # The graph: one series with a point per commit, drawn in its colour.
    assert state["points"] == [2], state
    # The log is not empty by accident: every vendored file came from the local server.
    for entry in publish.load_manifest():
        assert f"{base}vendor/{entry['path']}" in requested, entry["path"]


@pytest.mark.slow
def test_a_cdn_reference_is_caught(browser, server, proxy):
    """The same page with jQuery back on its CDN: the request is recorded,
    dies at the refusing proxy, and asv shows its error page."""
    jquery = "https://code.jquery.com/jquery-3.3.1.min.js"
    browser.get(f"{server}/broken/index.html#{GRAPH}")
    wait_for(
        browser, lambda d: urlsplit(d.current_url).path.endswith("/error.html"), "asv's error page", error_page_ok=True
    )
    requested, failed = network_log(browser)
    assert off_host(requested, server) == [jquery]
    assert [url for url, _ in failed] == [jquery]
    assert "code.jquery.com" in proxy.hosts()
