"""HDFS over its REST API (WebHDFS), for processes that cannot load Hadoop's native libhdfs.

pyarrow's ``HadoopFileSystem`` needs a JVM, the Hadoop jars and ``libhdfs.so`` in every
process that touches ``hdfs://``: a Hadoop installation provides them, a pip-installed
Spark or a bare GPU box does not (libhdfs is not published on Maven Central or PyPI).
WebHDFS is served by every NameNode (``dfs.namenode.http-address``, port 9870 by default)
and needs only HTTP, so :mod:`lakeloop.io.lakefs` offers it when a profile sets
``spark.hadoop.lakeloop.hdfs.client: webhdfs``. The client is fsspec's ``WebHDFS`` (fsspec
comes with Petastorm), wrapped as a ``pyarrow.fs`` filesystem, with two corrections that
lakeloop's atomic writes depend on:

* WebHDFS answers a failed RENAME with ``{"boolean": false}`` and HTTP 200, which fsspec
  ignores; here it raises. A rename onto an existing *file* replaces it (delete, then
  rename), as pyarrow's ``HadoopFileSystem.move`` does.
* Refused connections name the NameNode address and the setting that holds it.

Only simple authentication (a user name) is handled; a Kerberos cluster needs libhdfs
(``lakeloop.hdfs.client: libhdfs``, the default) or fsspec's ``kerberos=True`` support.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from fsspec.implementations.webhdfs import WebHDFS

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem


class CheckedWebHDFS(WebHDFS):
    """fsspec's WebHDFS client with renames that fail loudly and readable connection errors.

    Picklable like its parent (fsspec rebuilds it from its constructor arguments), so it
    travels into Petastorm's worker pools and pandas-UDF workers.
    """

    def _call(self, op, method="get", path=None, data=None, redirect=True, **kwargs):
        try:
            return super()._call(op, method=method, path=path, data=data, redirect=redirect, **kwargs)
        except requests.ConnectionError as exc:
            raise ConnectionError(
                f"WebHDFS at {self.url} refused or dropped the connection ({op} {path}): {exc.__class__.__name__}. "
                f"Check that the NameNode is up and that dfs.namenode.http-address (spark.hadoop.dfs.namenode."
                f"http-address in the profile) names its HTTP address."
            ) from None

    def mv(self, path1, path2, **kwargs):
        """Rename ``path1`` to ``path2``, replacing a file at ``path2``.

        Raises
        ------
        OSError
            HDFS refused the rename (missing source or parent folder, or ``path2`` is a folder).
        """
        try:
            target = self.info(path2)
        except FileNotFoundError:
            target = None
        if target is not None:
            if target["type"] == "directory":
                raise IsADirectoryError(f"cannot rename {path1} onto the folder {path2}")
            self.rm(path2)
        answer = self._call("RENAME", method="put", path=path1, destination=path2).json()
        if not answer.get("boolean"):
            raise OSError(f"HDFS refused to rename {path1} to {path2} (does the source and the target's folder exist?)")


def webhdfs_filesystem(host: str, port: int, user: str | None, use_https: bool = False) -> "FileSystem":
    """A ``pyarrow.fs`` filesystem for the HDFS whose NameNode serves WebHDFS at ``host:port``.

    Paths are absolute HDFS paths (``/lake/bronze/images``).
    """
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(CheckedWebHDFS(host, port=port, user=user, use_https=use_https)))
