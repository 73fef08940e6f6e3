"""Petastorm 0.12.1 on pyarrow 14 over object stores, without s3fs: used by the Petastorm reader
(:mod:`lakeloop.training.readers`) alone, on the *spark40* stack. It imports the legacy
``pyarrow.filesystem``, which pyarrow 16 removed, so nothing else imports this module.

Petastorm opens a dataset URL in two steps: it turns the URL into a path with fsspec
(``fsspec.core.strip_protocol``, which needs an fsspec class registered for the scheme:
s3fs for ``s3a://``), then reads it with pyarrow's *legacy* ``ParquetDataset``, which
only takes the legacy ``pyarrow.filesystem.FileSystem`` API (``isdir``/``isfile``/``walk``/
``open``; docs/stacks.md). Neither pyarrow's own ``pyarrow.fs``
filesystems nor fsspec's s3fs are of that kind, so :func:`petastorm_filesystem` hands
Petastorm a small legacy adapter over the ``pyarrow.fs`` filesystem :mod:`lakeloop.io.lakefs`
builds from the profile's ``fs.s3a.*`` settings (endpoint, region, path style, credentials
or the default AWS chain), the same one the model registry and checkpoints use. No new
dependency: pyarrow's S3 client is already there.

``hdfs://`` URLs get the same adapter over the filesystem lakefs builds for them (libhdfs,
or WebHDFS when the profile says ``lakeloop.hdfs.client: webhdfs``): Petastorm's own HDFS
resolver would load libhdfs in every reader process, which a pip-installed Spark lacks.
Petastorm takes the path of an ``hdfs:`` URL as is (``/a/b``), which is lakefs's path too.

``file:`` URLs are left to Petastorm (``None``): it opens them itself, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping

import pyarrow.filesystem as legacyfs

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

# Schemes whose lakefs path ("bucket/key") is what fsspec's default strip_protocol gives.
OBJECT_STORE_SCHEMES = ("s3a",)
# Schemes with real folders whose lakefs path is the URL's path.
FILE_STORE_SCHEMES = ("hdfs",)


class LegacyArrowFileSystem(legacyfs.FileSystem):
    """The legacy ``pyarrow.filesystem`` API that petastorm 0.12 / pyarrow 14's legacy
    ``ParquetDataset`` call, answered by a ``pyarrow.fs`` filesystem. Picklable when the
    wrapped filesystem is (``S3FileSystem`` is), so process pools work too."""

    def __init__(self, fs: "FileSystem", is_file_store: bool = False):
        self.fs = fs
        self.is_file_store = is_file_store

    def _info(self, path: str):
        return self.fs.get_file_info(str(path).rstrip("/"))

    def isdir(self, path) -> bool:
        from pyarrow.fs import FileType

        return self._info(path).type == FileType.Directory

    def isfile(self, path) -> bool:
        from pyarrow.fs import FileType

        return self._info(path).type == FileType.File

    def exists(self, path) -> bool:
        from pyarrow.fs import FileType

        return self._info(path).type != FileType.NotFound

    def _isfilestore(self) -> bool:
        return self.is_file_store  # False for object stores: no real folders

    def ls(self, path) -> list[str]:
        from pyarrow.fs import FileSelector

        return sorted(i.path for i in self.fs.get_file_info(FileSelector(str(path).rstrip("/"))))

    def walk(self, path) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like ``os.walk`` (top-down; names, not paths), one listing per folder."""
        from pyarrow.fs import FileSelector, FileType

        top = str(path).rstrip("/")
        dirs, files = [], []
        for info in self.fs.get_file_info(FileSelector(top)):
            (dirs if info.type == FileType.Directory else files).append(info.base_name)
        dirs.sort()
        files.sort()
        yield top, dirs, files
        for name in dirs:
            yield from self.walk(f"{top}/{name}")

    def open(self, path, mode: str = "rb"):
        if mode == "rb":
            return self.fs.open_input_file(str(path))  # seekable: Parquet reads the footer first
        if mode == "wb":
            return self.fs.open_output_stream(str(path))
        raise ValueError(f"mode {mode!r} is not supported; use 'rb' or 'wb'")

    def delete(self, path, recursive: bool = False) -> None:
        from pyarrow.fs import FileType

        if self._info(path).type == FileType.Directory:
            if not recursive:
                raise OSError(f"{path} is a folder; pass recursive=True")
            self.fs.delete_dir(str(path))
        else:
            self.fs.delete_file(str(path))

    def mkdir(self, path, create_parents: bool = True) -> None:
        self.fs.create_dir(str(path), recursive=create_parents)


def register_path_rules(scheme: str) -> None:
    """Let ``fsspec.core.strip_protocol`` turn ``scheme://bucket/key`` into ``bucket/key``.

    When an fsspec implementation for the scheme is installed (s3fs), it is used as is;
    otherwise a path-only class is registered, which refuses to be used as a filesystem.
    """
    import fsspec
    from fsspec.spec import AbstractFileSystem

    try:
        fsspec.get_filesystem_class(scheme)
        return
    except (ImportError, ValueError):
        pass

    class _PathRulesOnly(AbstractFileSystem):
        protocol = (scheme,)

        def __init__(self, *args, **kwargs):
            raise ImportError(
                f"lakeloop registers {scheme}:// with fsspec only to split its paths for Petastorm; "
                f"to use it as an fsspec filesystem install s3fs"
            )

    fsspec.register_implementation(scheme, _PathRulesOnly, clobber=True)


def petastorm_filesystem(url: str, hadoop_conf: Mapping[str, str] | None = None) -> LegacyArrowFileSystem | None:
    """The ``filesystem=`` to pass to Petastorm's readers for ``url``, or None to let it choose.

    Parameters
    ----------
    url : a dataset URL (``s3a://bucket/key``, ``hdfs://namenode:8020/path``, ``file:///path``, ...).
    hadoop_conf : Hadoop settings (``fs.s3a.*``, with or without ``spark.hadoop.``), as
        :func:`lakeloop.io.lakefs.filesystem_for` reads them.

    Raises
    ------
    ConfigError
        bad S3 or HDFS settings (from :func:`lakeloop.io.lakefs.filesystem_for`).
    """
    from lakeloop.io import lakefs

    scheme = url.partition(":")[0].lower()
    if scheme in FILE_STORE_SCHEMES:
        fs, _ = lakefs.filesystem_for(url, hadoop_conf)
        return LegacyArrowFileSystem(fs, is_file_store=True)
    if scheme not in OBJECT_STORE_SCHEMES:
        return None
    register_path_rules(scheme)
    fs, _ = lakefs.filesystem_for(url, hadoop_conf)
    return LegacyArrowFileSystem(fs)
