"""Do two wheels install the same files? Compares the RECORDs of both.

    python tools/compare_wheels.py A.whl B.whl

Every file but the .dist-info's RECORD and WHEEL (whose tags auditwheel
changes) must be in both, with the same SHA-256. Exits 1, naming the files
that differ, if not.
"""

import sys
import zipfile

IGNORED = ("RECORD", "WHEEL")


def record(path):
    """path in the wheel -> its hash, from the wheel's RECORD."""
    with zipfile.ZipFile(path) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
        lines = wheel.read(name).decode().splitlines()
    files = {}
    for line in lines:
        file, digest, _size = line.rsplit(",", 2)
        if not (".dist-info/" in file and file.rsplit("/", 1)[1] in IGNORED):
            files[file] = digest
    return files


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    a, b = record(argv[0]), record(argv[1])
    differ = sorted(set(a) ^ set(b)) + sorted(f for f in set(a) & set(b) if a[f] != b[f])
    for file in differ:
        print(
            f"compare_wheels: {file}: {'differs' if file in a and file in b else 'in one wheel only'}", file=sys.stderr
        )
    if differ:
        print(f"compare_wheels: {len(differ)} files differ between {argv[0]} and {argv[1]}", file=sys.stderr)
        return 1
    print(f"compare_wheels: the same {len(a)} files, byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
