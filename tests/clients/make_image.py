#!/usr/bin/env python3
"""Writes a small container image as an OCI image layout (the format `skopeo copy oci:…`
reads), for the docker-protocol test in tests/test_clients.c: one gzip layer holding
/data/weights.bin (LAYER_BYTES pseudo-random bytes, the same on every run), its config and
its manifest, tagged 1.0.

usage: make_image.py OUT_DIR    (prints the layer's digest and size)
"""
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

LAYER_BYTES = 3 * 1024 * 1024 + 17


def put_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def layer_tar():
    payload = random.Random(20261123).randbytes(LAYER_BYTES)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/weights.bin")
        info.size = len(payload)
        info.mtime = 1700000000
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    # mtime=0: the same bytes, so the same digest, on every run
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_image.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    tar_bytes, layer = layer_tar()
    layer_digest = put_blob(out, layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
    }, separators=(",", ":")).encode()
    config_digest = put_blob(out, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(layer)}],
    }, separators=(",", ":")).encode()
    manifest_digest = put_blob(out, manifest)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(layer_digest, len(layer))


if __name__ == "__main__":
    main()
