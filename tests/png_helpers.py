"""PNG files read without an image library: enough to check that a figure was written whole."""


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk; fails the test if either is missing."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name}: not a PNG"
    assert data[12:16] == b"IHDR", f"{path.name}: no IHDR chunk where the PNG format puts it"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
