"""Azure and Google Cloud Storage for the processes without Spark: ``abfss://``, ``wasbs://`` and
``gs://`` URIs as pyarrow filesystems (pyarrow's own ``AzureFileSystem`` and ``GcsFileSystem``),
set up from the Hadoop settings Spark's connectors read (``fs.azure.*``, ``fs.gs.*``), so one set of
profile settings (``spark.hadoop.fs...``) serves both sides. :func:`lakeloop.io.lakefs.filesystem_for`
calls these; secrets never reach a message.

Azure: ``abfss://<container>@<account>.dfs.core.windows.net/<path>`` (ADLS Gen2, the default storage
of Azure Databricks) or ``wasbs://<container>@<account>.blob.core.windows.net/<path>``. Credentials,
per account host as hadoop-azure names them: ``fs.azure.account.key.<host>`` (the account key),
``fs.azure.sas.fixed.token.<host>`` (a SAS token), or OAuth client credentials
(``fs.azure.account.oauth2.client.id.<host>``, ``...client.secret.<host>``, ``...client.endpoint.<host>``,
whose URL names the tenant); none: Azure's default credential chain (managed identity, environment).
An emulator such as Azurite: ``lakeloop.azure.endpoint`` = ``http://127.0.0.1:10000/<account>``-style
base (``http(s)://host:port``), used for both the blob and the dfs endpoint.

Google: ``gs://<bucket>/<path>``. ``fs.gs.storage.root.url`` (an emulator's or a private endpoint's
base URL), ``fs.gs.auth.type`` (``UNAUTHENTICATED``: anonymous; ``APPLICATION_DEFAULT`` or unset:
Google's application default credentials, i.e. the machine's service account or
``GOOGLE_APPLICATION_CREDENTIALS``), ``fs.gs.project.id``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lakeloop.errors import ConfigError

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

AZURE_ENDPOINT_KEY = "lakeloop.azure.endpoint"
_ENDPOINT = re.compile(r"^(?P<scheme>https?)://(?P<authority>[^/]+)/*$", re.IGNORECASE)


def _endpoint(value: str, setting: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a base URL setting."""
    found = _ENDPOINT.match(value.strip())
    if not found:
        raise ConfigError(f"{setting} = {value!r} is not a base URL such as 'http://127.0.0.1:10000'; fix it")
    return found.group("scheme").lower(), found.group("authority")


def _missing_class(name: str, uri: str) -> ConfigError:
    import pyarrow

    return ConfigError(
        f"{uri!r}: this pyarrow ({pyarrow.__version__}) has no {name}, which the processes without Spark need "
        f"to reach it; use the current stack (pyarrow >= 16) or a lake on file:, hdfs: or s3a:")


def azure_filesystem(uri: str, scheme: str, authority: str, path: str,
                     conf: dict[str, str]) -> tuple["FileSystem", str]:
    """``abfss://container@account.dfs.core.windows.net/path`` (or ``wasbs://...blob...``) as
    (AzureFileSystem, ``container/path``)."""
    import pyarrow.fs as pafs

    container, at, host = authority.partition("@")
    if not at or not container or not host:
        kind = "dfs" if scheme.startswith("abfs") else "blob"
        raise ConfigError(f"{uri!r} names no container and account; write "
                          f"'{scheme}://<container>@<account>.{kind}.core.windows.net/<path>'")
    if not hasattr(pafs, "AzureFileSystem"):
        raise _missing_class("AzureFileSystem", uri)
    account = host.split(".")[0]
    kwargs: dict[str, object] = {}
    key = conf.get(f"fs.azure.account.key.{host}")
    sas = conf.get(f"fs.azure.sas.fixed.token.{host}")
    client_id = conf.get(f"fs.azure.account.oauth2.client.id.{host}")
    if key:
        kwargs["account_key"] = key
    elif sas:
        kwargs["sas_token"] = sas
    elif client_id:
        secret = conf.get(f"fs.azure.account.oauth2.client.secret.{host}")
        endpoint = conf.get(f"fs.azure.account.oauth2.client.endpoint.{host}", "")
        tenant = re.search(r"login\.microsoftonline\.com/([^/]+)/", endpoint)
        if not secret or not tenant:
            raise ConfigError(f"{uri!r}: fs.azure.account.oauth2.client.id.{host} is set but "
                              f"fs.azure.account.oauth2.client.secret.{host} or a client.endpoint naming the "
                              f"tenant (https://login.microsoftonline.com/<tenant>/oauth2/token) is not; set both")
        kwargs.update(client_id=client_id, client_secret=secret, tenant_id=tenant.group(1))
    endpoint = conf.get(AZURE_ENDPOINT_KEY)
    if endpoint:
        http, where = _endpoint(endpoint, AZURE_ENDPOINT_KEY)
        kwargs.update(blob_storage_authority=where, dfs_storage_authority=where, blob_storage_scheme=http,
                      dfs_storage_scheme=http)
    inner = path.strip("/")
    return pafs.AzureFileSystem(account, **kwargs), f"{container}/{inner}" if inner else container


def gcs_filesystem(uri: str, bucket: str, path: str, conf: dict[str, str]) -> tuple["FileSystem", str]:
    """``gs://bucket/path`` as (GcsFileSystem, ``bucket/path``)."""
    import pyarrow.fs as pafs

    if not bucket or "@" in bucket:
        raise ConfigError(f"{uri!r} names no bucket (or carries credentials); write 'gs://<bucket>/<path>' and "
                          f"set credentials with fs.gs.* settings")
    kwargs: dict[str, object] = {}
    root = conf.get("fs.gs.storage.root.url")
    if root:
        kwargs["scheme"], kwargs["endpoint_override"] = _endpoint(root, "fs.gs.storage.root.url")
    auth = (conf.get("fs.gs.auth.type") or "APPLICATION_DEFAULT").strip().upper()
    if auth == "UNAUTHENTICATED":
        kwargs["anonymous"] = True
    elif auth != "APPLICATION_DEFAULT":
        raise ConfigError(
            f"{uri!r}: fs.gs.auth.type = {auth} is not one the processes without Spark can use; they take "
            f"Google's application default credentials (the machine's service account, or "
            f"GOOGLE_APPLICATION_CREDENTIALS naming a key file on every node): set fs.gs.auth.type to "
            f"APPLICATION_DEFAULT, or UNAUTHENTICATED for an emulator")
    if conf.get("fs.gs.project.id"):
        kwargs["project_id"] = conf["fs.gs.project.id"]
    if not hasattr(pafs, "GcsFileSystem"):
        raise _missing_class("GcsFileSystem", uri)
    inner = path.strip("/")
    return pafs.GcsFileSystem(**kwargs), f"{bucket}/{inner}" if inner else bucket
