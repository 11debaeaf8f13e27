"""Study storage as a pyarrow filesystem + path: a local folder or any URI pyarrow opens (s3://, gs://,
hdfs://, file://), the same filesystem layer Ray Train and Tune use for `storage_path`.

`resolve_storage(text)` turns `--out` / `--storage` into a `StoragePath` once: a plain path is local
(made absolute, so workers in other folders see the same place), a URI goes through
`pyarrow.fs.FileSystem.from_uri` (S3 options ride in the query: `?endpoint_override=HOST:PORT&scheme=http`).
A `StoragePath` behaves like a small `pathlib.Path` (`/`, `name`, `parent`, `read_text`, `write_text`,
`exists`, `mkdir`) so the study's small files (study.yaml, mlflow.json, trials.json) are written the
same way wherever the study lives, and `ray_storage()` gives Ray the same place. Ray-free; pyarrow
is imported only when a storage is resolved.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yolox_ray.config import ConfigError


class StorageError(ConfigError):
    """A storage location that cannot be opened, read or written; the message names it."""

    kind = "storage error"


@dataclass(frozen=True)
class StoragePath:
    """One place in a filesystem: `filesystem` (pyarrow) + `path` inside it; `uri` is for people
    (the absolute path, or scheme://path without credentials or query)."""

    filesystem: Any
    path: str
    uri: str

    @property
    def local(self) -> bool:
        import pyarrow.fs

        return isinstance(self.filesystem, pyarrow.fs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        if not self.local:
            raise StorageError(f"{self.uri} is not a local folder")
        return Path(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> StoragePath:
        path = posixpath.dirname(self.path.rstrip("/"))
        uri = self.uri.rstrip("/")
        return StoragePath(self.filesystem, path, uri[: len(uri) - len(self.name)].rstrip("/") or "/")

    def __truediv__(self, name: str) -> StoragePath:
        name = str(name).strip("/")
        return StoragePath(self.filesystem, posixpath.join(self.path, name), posixpath.join(self.uri, name))

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:  # only a local storage is a path the OS can open
        return str(self.local_path)

    def _info(self):
        try:
            return self.filesystem.get_file_info(self.path)
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri}: {exc}") from None

    def exists(self) -> bool:
        import pyarrow.fs

        return self._info().type != pyarrow.fs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs

        return self._info().type == pyarrow.fs.FileType.Directory

    def mkdir(self) -> None:
        try:
            self.filesystem.create_dir(self.path, recursive=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.uri}: {exc}") from None

    def read_bytes(self) -> bytes:
        """The file's bytes; FileNotFoundError when it does not exist (as `pathlib`)."""
        if not self.exists():
            raise FileNotFoundError(self.uri)
        try:
            with self.filesystem.open_input_stream(self.path) as stream:
                return stream.read()
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri}: {exc}") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file. Local: a temporary file renamed over it (readers never see half a file);
        object stores: one PUT, already all-or-nothing."""
        try:
            self.parent.mkdir()
            if self.local:
                tmp = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
                Path(tmp).write_bytes(data)
                os.replace(tmp, self.path)
                return
            with self.filesystem.open_output_stream(self.path) as stream:
                stream.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri}: {exc}") from None

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def delete(self) -> None:
        """Remove the file (missing is fine)."""
        try:
            if self.exists():
                self.filesystem.delete_file(self.path)
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri}: {exc}") from None


def _display_uri(text: str, path: str) -> str:
    """scheme://host-or-bucket/path without user info or query (credentials and options stay out of logs)."""
    parts = urlsplit(text)
    return f"{parts.scheme}://{'/' if parts.scheme == 'file' else ''}{path.lstrip('/')}"


def resolve_storage(text: str | os.PathLike, *, what: str = "--out") -> StoragePath:
    """`text` as a StoragePath: a URI via pyarrow (a `file://` URI or a plain path is local and absolute).

    StorageError (one line, naming `what`) when pyarrow cannot open it; nothing is contacted yet.
    """
    import pyarrow.fs

    raw = os.fspath(text)
    if not raw:
        raise StorageError(f"{what}: empty storage location")
    if "://" not in raw:
        local = str(Path(raw).expanduser().resolve())
        return StoragePath(pyarrow.fs.LocalFileSystem(), local, local)
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(raw)
    except (ValueError, OSError, NotImplementedError, TypeError) as exc:  # ArrowInvalid is a ValueError
        raise StorageError(f"{what} {raw!r}: not a storage location pyarrow can open "
                           f"(a local path, or a URI such as s3://bucket/path, gs://bucket/path): {exc}") from None
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        local = str(Path(path).resolve())
        return StoragePath(fs, local, local)
    if not path.strip("/"):
        raise StorageError(f"{what} {raw!r}: give a bucket (and folder), e.g. s3://bucket/studies")
    return StoragePath(fs, path.rstrip("/"), _display_uri(raw, path.rstrip("/")))


def as_storage(location: StoragePath | str | os.PathLike, *, what: str = "storage") -> StoragePath:
    """A StoragePath as is; a path or URI resolved (`resolve_storage`)."""
    return location if isinstance(location, StoragePath) else resolve_storage(location, what=what)


def ray_storage(location: StoragePath) -> dict[str, Any]:
    """`storage_path` / `storage_filesystem` for Ray's RunConfig and Tuner.restore: the same place.
    A local folder stays a plain absolute path (Ray resolves it as before); elsewhere Ray gets our
    filesystem object and the path inside it (Ray's rule for a custom filesystem)."""
    if location.local:
        return {"storage_path": location.path, "storage_filesystem": None}
    return {"storage_path": location.path, "storage_filesystem": location.filesystem}
