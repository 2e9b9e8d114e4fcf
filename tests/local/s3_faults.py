"""Fault injection for the mirror's tests: with UNDERSTUDY_S3_SLOWDOWN_EVERY=N in
the launcher's environment, every Nth S3 copy request (`PUT` with
`x-amz-copy-source`: CopyObject, UploadPartCopy) is answered as S3 answers when it
throttles, `503 SlowDown`, without reaching moto. The mirror must retry with
backoff and still converge (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
Injected answers are counted in the launcher's log."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any, Callable, Iterable

log = logging.getLogger("understudy.s3_faults")

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def wrap(app: Callable) -> Callable:
    """`app`, with SlowDown injected when UNDERSTUDY_S3_SLOWDOWN_EVERY is set."""
    every = int(os.environ.get("UNDERSTUDY_S3_SLOWDOWN_EVERY", "0") or 0)
    if every <= 0:
        return app
    counter = itertools.count(1)
    lock = threading.Lock()
    injected = itertools.count(1)

    def faulty(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            with lock:
                n = next(counter)
            if n % every == 0:
                log.info("injected SlowDown #%d on %s", next(injected), environ.get("PATH_INFO"))
                start_response("503 Slow Down", [("Content-Type", "application/xml"),
                                                 ("Content-Length", str(len(SLOWDOWN)))])
                return [SLOWDOWN]
        return app(environ, start_response)

    return faulty
