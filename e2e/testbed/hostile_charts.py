"""Hostile charts, built as real `.tgz` archives: the attacks of the tenancy issue's point 5.

Each builder returns the bytes or writes a packaged chart (`helm package` layout: one top
directory named like the chart) into a repository directory; `index` writes its
`index.yaml` with helm. Used by the unit tests (`tests/test_hostile_bytes.py`), the e2e
security suite (`e2e/test_security_hostile.py`) and `benchmarks/faults.py hostile`.

- `alias_bomb`: a YAML "billion laughs" (`depth` levels of 10 aliases each, about 600 bytes);
- `deep_yaml`: nesting `depth` levels deep;
- `zero_bomb_tgz`: a subchart archive whose crds/ file decompresses to `size` bytes;
- `chart_tgz`: any chart from a {path: bytes} map.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import zlib
from pathlib import Path

import yaml

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-probe
data:
  hello: world
"""


def alias_bomb(depth: int = 9) -> bytes:
    """`depth` levels of ten aliases: 10**depth strings once expanded."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 10) + "]")
    return ("\n".join(lines) + "\n").encode()


def deep_yaml(depth: int = 900) -> bytes:
    return ("a: " + "[" * depth + "]" * depth + "\n").encode()


def chart_yaml(name: str, version: str = "0.1.0", **extra: object) -> bytes:
    body = {"apiVersion": "v2", "name": name, "version": version, **extra}
    return yaml.safe_dump(body).encode()


def chart_tgz(name: str, files: dict[str, bytes], version: str = "0.1.0") -> bytes:
    """A packaged chart: `files` (relative paths) below `<name>/`, Chart.yaml added."""
    files = {"Chart.yaml": chart_yaml(name, version), **files}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in sorted(files.items()):
            member = tarfile.TarInfo(f"{name}/{path}")
            member.size = len(content)
            member.mode = 0o644
            archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@functools.cache
def zero_bomb_tgz(name: str = "bomb", size: int = 150 * 1024 * 1024) -> bytes:
    """A subchart whose crds/big.yaml is `size` bytes of YAML comment: ~146 KB packed.

    Streamed through zlib, so building it never holds `size` bytes in memory."""
    header = tarfile.TarInfo(f"{name}/crds/big.yaml")
    header.size = size
    header.mode = 0o644
    meta = chart_yaml(name)
    meta_info = tarfile.TarInfo(f"{name}/Chart.yaml")
    meta_info.size = len(meta)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:  # headers only, bodies below
        archive.addfile(meta_info, io.BytesIO(meta))
    head = raw.getvalue()
    head = head[: _end_of_members(head)]  # without the end-of-archive blocks
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    out = [compressor.compress(head), compressor.compress(header.tobuf())]
    chunk = b"#" * (1024 * 1024)
    for _ in range(size // len(chunk)):
        out.append(compressor.compress(chunk))
    rest = size % len(chunk)
    padding = (-size) % tarfile.BLOCKSIZE
    out.append(compressor.compress(b"#" * rest + b"\0" * padding + b"\0" * 2 * tarfile.BLOCKSIZE))
    out.append(compressor.flush())
    return b"".join(out)


def _end_of_members(archive: bytes) -> int:
    """Offset of the end-of-archive marker of an uncompressed tar written by `tarfile`."""
    offset = 0
    while archive[offset : offset + tarfile.BLOCKSIZE].strip(b"\0"):
        block = archive[offset : offset + tarfile.BLOCKSIZE]
        info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        offset += tarfile.BLOCKSIZE + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return offset


def write(repo: Path, name: str, content: bytes, version: str = "0.1.0") -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / f"{name}-{version}.tgz"
    path.write_bytes(content)
    return path


def index_unlisted(repo: Path) -> list[str]:
    """Add to `repo`'s index.yaml every `<name>-<version>.tgz` the index lacks, as a hostile
    repository would list it (helm's indexer refuses archives over its own limits).
    Returns the names added."""
    index_path = repo / "index.yaml"
    index = yaml.safe_load(index_path.read_text()) or {}
    entries = index.setdefault("entries", {}) or {}
    index["entries"] = entries
    added = []
    for archive in sorted(repo.glob("*.tgz")):
        name, _, version = archive.name.removesuffix(".tgz").rpartition("-")
        if any(e.get("version") == version for e in entries.get(name) or []):
            continue
        entries.setdefault(name, []).append({
            "apiVersion": "v2",
            "name": name,
            "version": version,
            "digest": hashlib.sha256(archive.read_bytes()).hexdigest(),
            "urls": [archive.name],
            "created": "2026-01-01T00:00:00Z",
        })  # fmt: skip
        added.append(name)
    index_path.write_text(yaml.safe_dump(index))
    return added


def hostile_repository(repo: Path) -> dict[str, str]:
    """Write every hostile chart into `repo` (index with `index`); chart name -> what it is."""
    write(repo, "alias-bomb", chart_tgz("alias-bomb", {
        "crds/bomb.yaml": alias_bomb(),
        "templates/configmap.yaml": CONFIGMAP.encode(),
    }))  # fmt: skip
    write(repo, "deep-yaml", chart_tgz("deep-yaml", {
        "crds/deep.yaml": deep_yaml(),
        "templates/configmap.yaml": CONFIGMAP.encode(),
    }))  # fmt: skip
    write(repo, "zip-bomb", chart_tgz("zip-bomb", {
        "charts/bomb-0.1.0.tgz": zero_bomb_tgz(),
        "templates/configmap.yaml": CONFIGMAP.encode(),
    }))  # fmt: skip
    many = "{{- range $i, $e := until 6000 }}\n---\napiVersion: v1\nkind: ConfigMap\n"
    many += "metadata:\n  name: {{ $.Release.Name }}-{{ $i }}\n{{- end }}\n"
    write(repo, "many-objects", chart_tgz("many-objects", {
        "templates/many.yaml": many.encode(),
    }))  # fmt: skip
    write(repo, "plain", chart_tgz("plain", {"templates/configmap.yaml": CONFIGMAP.encode()}))
    return {
        "alias-bomb": "a YAML alias bomb in crds/",
        "deep-yaml": "YAML nested 900 deep in crds/",
        "zip-bomb": "a subchart archive that decompresses to 150 MB",
        "many-objects": "6000 objects in one manifest",
        "plain": "a ConfigMap (the well-behaved tenant)",
    }
