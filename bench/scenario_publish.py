"""Item 6: publishing a 100 MB artifact to the S3 server with the CLI."""

from __future__ import annotations

import os
import time

from bench.common import median
from bench.harness import RUN, Bench, Row, publish, random_file


def item6_publish(b: Bench) -> None:
    src = random_file(RUN / "publish" / "payload-100MB", 100 * 1000 * 1000)
    times = []
    stamp = int(time.time())
    for i in range(b.reps):
        f = RUN / "publish" / f"bigapp-{stamp}.{i}.0-linux-amd64"
        f.unlink(missing_ok=True)
        os.link(src, f)
        times.append(
            publish(b, f"s3://{b.store.bucket}", f, patches=0, env=b.store.s3_env(), force=True)
        )  # no bsdiff4 of 100 MB files
        f.unlink()
    b.add(
        Row(
            "6",
            "publish a 100 MB artifact to the S3 server (CLI, incl. Python start-up and manifest)",
            "s",
            median(times),
            note=f"{100 / median(times):.0f} MB/s; --patches 0 (with patches, each earlier release "
            "adds a bsdiff4 run: item 3 times one)",
        )
    )
