"""Publish the asv dashboard so that it works without a network.

``asv publish`` writes pages that load jQuery, flot, bootstrap and four more
scripts from public CDNs; offline they show only asv's "external
dependencies failed to load" page. This runs ``asv publish`` and then points
the pages at the copies vendored in ``tools/asv_offline/`` (listed, with
their sources, licences and SRI hashes, in ``tools/asv_offline/manifest.json``):

    python tools/publish_dashboard.py          # then: asv preview

It copies the vendored files to ``<html_dir>/vendor/``, rewrites each CDN
``<script>``/``<link>`` in ``index.html`` to the local copy with that copy's
``integrity`` hash, and fails, naming the URL, if any page still loads
something from another host (say, a newer asv that asks for other versions).
Results must exist first, e.g. for the installed scratchnet::

    asv run --python=same --quick --set-commit-hash $(git rev-parse HEAD)
"""

import argparse
import base64
import hashlib
import html.parser
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENDOR_DIR = Path(__file__).resolve().parent / "asv_offline"
MANIFEST = VENDOR_DIR / "manifest.json"
VENDOR_SUBDIR = "vendor"  # where the copies go inside the html_dir

# Elements and attributes through which a page makes the browser fetch
# something (as opposed to <a href>, which only links).
_FETCHING_ATTRS = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "source": ("src", "srcset"),
    "audio": ("src",),
    "video": ("src", "poster"),
    "embed": ("src",),
    "object": ("data",),
}
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = r'\b{}\s*=\s*"([^"]*)"'


class DashboardError(Exception):
    """Something the user must fix; the message says what."""


def sri_hash(path, algorithm):
    """The subresource-integrity value of a file, e.g. ``sha512-...``."""
    digest = hashlib.new(algorithm, Path(path).read_bytes()).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode('ascii')}"


def load_manifest(path=MANIFEST):
    """The vendored files, each checked against its recorded SRI hash."""
    entries = json.loads(Path(path).read_text(encoding="utf-8"))["files"]
    for entry in entries:
        local = Path(path).parent / entry["path"]
        if not local.is_file():
            raise DashboardError(f"{local} is missing (listed in {path} for {entry['url']})")
        algorithm = entry["integrity"].split("-", 1)[0]
        actual = sri_hash(local, algorithm)
        if actual != entry["integrity"]:
            raise DashboardError(
                f"{local} does not match its integrity in {path}: recorded {entry['integrity']}, file has {actual}"
            )
    return entries


def write_atomic(path, data):
    """Write bytes so that a reader sees either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def html_dir_of(config):
    """The html_dir that ``asv publish --config config`` writes to (absolute)."""
    try:
        from asv.config import Config
    except ImportError:
        raise DashboardError("asv is not installed: pip install asv (or scratchnet[bench])") from None
    try:
        html_dir = Config.load(str(config)).html_dir
    except Exception as e:  # asv's own UserError, or a JSON error
        raise DashboardError(f"cannot read the asv configuration {config}: {e}") from None
    # asv runs in the configuration's folder, so a relative html_dir is relative to it.
    return (Path(config).resolve().parent / html_dir).resolve()


def copy_vendored(entries, html_dir):
    """Copy every vendored file and its licence to html_dir/vendor/."""
    for relative in sorted({e["path"] for e in entries} | {e["licence"] for e in entries}):
        target = html_dir / VENDOR_SUBDIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, (VENDOR_DIR / relative).read_bytes())


def point_at_local_copies(page, entries):
    """Rewrite each CDN <script src>/<link href> in page to its local copy.

    Returns the new page text and the CDN URLs that were replaced.
    """
    by_url = {e["url"]: e for e in entries}
    replaced = []

    def rewrite(match):
        tag = match.group(0)
        attr = "src" if match.group(1).lower() == "script" else "href"
        url = re.search(_ATTR.format(attr), tag)
        if url is None or url.group(1) not in by_url:
            return tag
        entry = by_url[url.group(1)]
        local = f"{VENDOR_SUBDIR}/{entry['path']}"
        tag = tag.replace(url.group(0), f'{attr}="{local}"')
        integrity = f'integrity="{entry["integrity"]}"'
        if re.search(_ATTR.format("integrity"), tag):
            tag = re.sub(_ATTR.format("integrity"), integrity, tag)
        else:
            tag = tag.replace(f'{attr}="{local}"', f'{attr}="{local}" {integrity}')
        replaced.append(entry["url"])
        return tag

    return _TAG.sub(rewrite, page), replaced


class _FetchCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        names = _FETCHING_ATTRS.get(tag, ())
        for name, value in attrs:
            if name in names and value:
                self.urls.extend(v.strip().split()[0] for v in value.split(",") if v.strip())


def external_fetches(page):
    """URLs on another host that the page makes the browser fetch."""
    collector = _FetchCollector()
    collector.feed(page)
    return [u for u in collector.urls if re.match(r"^([a-z][a-z0-9+.-]*:)?//", u, re.IGNORECASE)]


def make_offline(html_dir, entries):
    """Point a published dashboard at the vendored copies; return the replaced URLs."""
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.is_file():
        raise DashboardError(f"{index} does not exist: run `asv publish` first (or drop --no-publish)")
    copy_vendored(entries, html_dir)

    page = index.read_text(encoding="utf-8")
    page, replaced = point_at_local_copies(page, entries)
    write_atomic(index, page.encode("utf-8"))

    leftover = []
    for path in sorted(html_dir.glob("*.html")):
        leftover += [f"{path.name}: {u}" for u in external_fetches(path.read_text(encoding="utf-8"))]
    if leftover:
        raise DashboardError(
            "the dashboard still loads from the network:\n  "
            + "\n  ".join(leftover)
            + f"\nno local copy in {MANIFEST.relative_to(REPO_ROOT)} matches these URLs "
            "(did asv change the versions its pages ask for?)"
        )
    return replaced


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=str(REPO_ROOT / "asv.conf.json"), help="asv configuration (default: the repository's)"
    )
    parser.add_argument("--html-dir", help="where to publish (default: html_dir of the asv configuration)")
    parser.add_argument(
        "--no-publish",
        action="store_true",
        help="do not run `asv publish`; only rewrite an already published dashboard",
    )
    args = parser.parse_args(argv)

    try:
        html_dir = Path(args.html_dir).resolve() if args.html_dir else html_dir_of(args.config)
        entries = load_manifest()
        if not args.no_publish:
            command = [sys.executable, "-m", "asv", "publish", "--config", str(Path(args.config).resolve())]
            command += ["--html-dir", str(html_dir)]
            if subprocess.run(command).returncode != 0:
                raise DashboardError(f"`{' '.join(command)}` failed (see its output above)")
        replaced = make_offline(html_dir, entries)
    except DashboardError as e:
        print(f"publish_dashboard: error: {e}", file=sys.stderr)
        return 1

    page = (html_dir / "index.html").read_text(encoding="utf-8")
    local = [e for e in entries if f'"{VENDOR_SUBDIR}/{e["path"]}"' in page]
    unused = [e["url"] for e in entries if e not in local]
    kept = sum(1 for e in local if e["same_as_cdn"])
    print(
        f"publish_dashboard: {len(replaced)} CDN references rewritten; {len(local)} files load from "
        f"{html_dir / VENDOR_SUBDIR} ({kept} with asv's own integrity hash, {len(local) - kept} with "
        f"the local copy's); serve with `asv preview` or any static server"
    )
    if unused:
        print("publish_dashboard: note: index.html does not use " + ", ".join(unused))
    return 0


if __name__ == "__main__":
    sys.exit(main())
