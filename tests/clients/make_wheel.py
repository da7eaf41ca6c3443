"""tests/clients/make_wheel.py — writes a small, valid wheel (hubmeter-demo 1.0) for the
pip test of tests/test_clients.c: a package module, 256 KB of data, and the dist-info files
(METADATA, WHEEL, RECORD with each file's hash), as a packaging tool would.
    python3 make_wheel.py OUT.whl
"""
import base64
import hashlib
import sys
import zipfile

NAME, VERSION = "hubmeter_demo", "1.0"
INFO = f"{NAME}-{VERSION}.dist-info"


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def main(out: str) -> None:
    # Incompressible and the same on every run: 256 KB of chained SHA-256 digests.
    data = b"".join(hashlib.sha256(b"hubmeter %d" % i).digest() for i in range(8192))
    files = {
        f"{NAME}/__init__.py": b'VERSION = "1.0"\n',
        f"{NAME}/data.txt": data,
        f"{INFO}/METADATA": b"Metadata-Version: 2.1\nName: hubmeter-demo\nVersion: 1.0\n"
        b"Summary: A wheel served through the hubmeter gateway in its tests\n",
        f"{INFO}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hubmeter-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{record_hash(body)},{len(body)}\n" for path, body in files.items())
    files[f"{INFO}/RECORD"] = (record + f"{INFO}/RECORD,,\n").encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for path, body in files.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, body)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 make_wheel.py OUT.whl")
    main(sys.argv[1])
