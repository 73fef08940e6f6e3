"""Loopback services for development and the integration tests: an S3 server, a Spark
standalone cluster, Hadoop (HDFS + YARN) and a Kafka broker, started from jars, on 127.0.0.1.

    ./dev/services.sh start|stop|status [s3|cluster|hadoop|kafka|all]      (python -m lakeloop_dev.services ...)

* **s3**: S3Proxy with objects in memory (:mod:`lakeloop_dev.s3`).
* **cluster**: a Spark standalone master and two workers (:mod:`lakeloop_dev.cluster`).
* **hadoop**: HDFS and YARN from Hadoop's minicluster (:mod:`lakeloop_dev.hadoop`).
* **kafka**: Apache Kafka in KRaft mode, one node (:mod:`lakeloop_dev.kafka`).

State (pid files, logs, the workers' folders) lives in ``$LAKELOOP_SERVICES_DIR``
(default ``~/.cache/lakeloop/services``). Each is a :class:`lakeloop_dev.processes.Service`:
``start`` reuses one that is already up, ``stop`` ends only what its pid files name.
"""

from __future__ import annotations

import argparse
import sys

from lakeloop.errors import SetupError
from lakeloop_dev.processes import Service

SERVICES = ("s3", "cluster", "hadoop", "kafka")


def service(name: str) -> Service:
    """The service behind a command-line name, as the test profiles describe it."""
    if name == "s3":
        from lakeloop_dev.s3 import default_s3_server

        return default_s3_server()
    if name == "cluster":
        from lakeloop_dev.cluster import default_cluster

        return default_cluster()
    if name == "hadoop":
        from lakeloop_dev.hadoop import default_minihadoop

        return default_minihadoop()
    if name == "kafka":
        from lakeloop_dev.kafka import default_kafka

        return default_kafka()
    raise ValueError(f"unknown service {name!r}; the services are: {', '.join(SERVICES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev/services.sh", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("service", nargs="?", default="all", choices=[*SERVICES, "all"])
    args = parser.parse_args(argv)
    names = list(SERVICES) if args.service == "all" else [args.service]
    try:
        for name in names:
            svc = service(name)
            if args.action == "start":
                svc.start()
                print(f"{name}: {svc.up_line()}{'' if svc.owned else ' (already running)'}")
            elif args.action == "stop":
                print(f"{name}: stopped" if svc.stop() else f"{name}: not running (no live pid file)")
            else:
                print(f"{name}: {svc.status_line()}")
    except SetupError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
