"""What a weight-preparation Job's last command does on EKS: upload its S3 completion marker.

kwok runs no containers, so nothing in the Job writes it: a thread does, once the namespace's
Job has succeeded, exactly where the Job would have, while the ``with`` block runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def marker_written_when_job_succeeds(sandbox_cluster, s3, namespace: str, bucket: str, key: str,
                                     deadline_s: float) -> Iterator[None]:
    from kubernetes import client

    stop = threading.Event()

    def upload():
        batch = client.BatchV1Api(sandbox_cluster.api_client())
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline and not stop.is_set():
            jobs = batch.list_namespaced_job(namespace).items
            if jobs and jobs[0].status.succeeded:
                s3.put_object(Bucket=bucket, Key=key, Body=b'{"simulated": true}')
                return
            time.sleep(0.5)

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
