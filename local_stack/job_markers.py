"""Stand-in for what a weight Job's last command does on EKS: upload its S3 completion marker.

kwok runs no containers, so no Job here ever compiles or downloads anything, and nothing writes
the marker the pipeline waits for. This writes it, exactly where the Job would have (the Job's
``llm-on-eks.io/completion-marker`` annotation), once the Job has succeeded, and marks the
object as simulated. It is the one stand-in for a Job's work, used by the tests (``while_running``)
and by the local demo stack (``python -m local_stack.job_markers``, stopped by its PID).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from llm_on_eks.naming import COMPLETION_MARKER_ANNOTATION, MANAGED_BY_KEY, PROJECT
from local_stack.repeating import repeating

BODY = json.dumps({"simulated": True, "by": "local_stack.job_markers (kwok runs no containers)"}).encode()


def write_markers(batch, s3, namespace: str | None = None) -> list[str]:
    """One pass: the marker of every succeeded managed Job whose marker is missing; what was written."""
    selector = f"{MANAGED_BY_KEY}={PROJECT}"
    jobs = (batch.list_namespaced_job(namespace, label_selector=selector) if namespace
            else batch.list_job_for_all_namespaces(label_selector=selector)).items
    written = []
    for job in jobs:
        marker = (job.metadata.annotations or {}).get(COMPLETION_MARKER_ANNOTATION)
        if not marker or not job.status.succeeded:
            continue
        bucket, _, key = marker.removeprefix("s3://").partition("/")
        if not _exists(s3, bucket, key):
            s3.put_object(Bucket=bucket, Key=key, Body=BODY)
            written.append(marker)
    return written


def _exists(s3, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def while_running(api_client: Any, s3, namespace: str, deadline_s: float):
    """Write the namespace's markers from a thread while the block runs, at most ``deadline_s``;
    yields the list of markers written so far."""
    from kubernetes import client

    batch = client.BatchV1Api(api_client)
    return repeating(lambda: write_markers(batch, s3, namespace), deadline_s)


def main() -> None:
    import boto3
    from kubernetes import client, config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--aws-url", required=True, help="the local AWS (local_stack/aws.py)")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--lifetime-hours", type=float, default=12.0, help="exit after this long, whatever happens")
    args = parser.parse_args()
    batch = client.BatchV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    s3 = boto3.session.Session().client("s3", endpoint_url=args.aws_url, region_name="us-east-1",
                                        aws_access_key_id="testing", aws_secret_access_key="testing")
    deadline = time.monotonic() + args.lifetime_hours * 3600
    print(f"writing completion markers of succeeded Jobs (stand-in; kwok runs no containers), every {args.interval} s",
          flush=True)
    while time.monotonic() < deadline:
        try:
            for marker in write_markers(batch, s3):
                print(f"wrote {marker} (simulated)", flush=True)
        except Exception as error:  # a control plane restarting: try again next pass
            print(f"pass failed: {error}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
