"""The EKS token's STS request, answered in front of the moto server as AWS STS answers it.

An EKS token is a presigned ``GET /?Action=GetCallerIdentity`` (signed query, signed header
``x-k8s-aws-id``: the Amazon provider's ``eks_get_token``, aws-iam-authenticator's
``pkg/token``). The cluster's authenticator sends that request to STS and maps the identity STS
answers with. moto 5.2.5 checks no signature, and reads a presigned request's identity from the
``Authorization`` header it does not have (every such request is "user/moto"), so a forged token
would pass. Here, as STS does:

- the access key must be one moto issued (an IAM user's key, or an assumed role's session with
  its session token), else ``InvalidClientTokenId``;
- an assumed role's session must not have ended, else ``ExpiredToken``;
- the SigV4 query signature must match the one computed with that key's secret over the request
  as received (botocore's own ``SigV4QueryAuth``), else ``SignatureDoesNotMatch``;
- the answer is the key owner's ARN from moto's STS backend.

A stand-in: real STS does this, moto does not. Every other request passes through untouched.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.utils import percent_encode_sequence

from local_stack.aws_gaps import ACCOUNT

PARTITION = "aws"


class StsRefusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _credentials(access_key_id: str, session_token: str | None) -> Any:
    """The botocore credentials moto issued under ``access_key_id``."""
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.sts.models import sts_backends

    headers = {"X-Amz-Security-Token": session_token} if session_token else {}
    try:
        key = create_access_key(ACCOUNT, PARTITION, access_key_id, headers)
    except CreateAccessKeyFailure:
        raise StsRefusal("InvalidClientTokenId", "The security token included in the request is invalid.") from None
    for role in sts_backends[ACCOUNT][PARTITION].assumed_roles:
        if role.access_key_id == access_key_id and role.expiration <= datetime.now(UTC).replace(tzinfo=None):
            raise StsRefusal("ExpiredToken", "The security token included in the request is expired")
    return key.create_credentials()


def verify(method: str, url: str, query: dict[str, str], headers: dict[str, str]) -> tuple[str, str, str]:
    """(UserId, Arn, Account) of a presigned request's signer, or StsRefusal."""
    from moto.sts.models import sts_backends

    try:
        access_key_id, date, region, service, _ = query["X-Amz-Credential"].split("/")
        signed = query["X-Amz-SignedHeaders"].split(";")
        timestamp, signature = query["X-Amz-Date"], query["X-Amz-Signature"]
    except (KeyError, ValueError):
        raise StsRefusal("IncompleteSignature", "The request signature does not conform to AWS standards.") from None
    credentials = _credentials(access_key_id, query.get("X-Amz-Security-Token"))
    # Encoded as botocore encoded it when signing.
    unsigned = percent_encode_sequence([(k, v) for k, v in query.items() if k != "X-Amz-Signature"])
    request = AWSRequest(method=method, url=f"{url}?{unsigned}",
                         headers={name: headers.get(name, "") for name in signed})
    request.context["timestamp"] = timestamp
    auth = SigV4QueryAuth(credentials, service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise StsRefusal("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                         "signature you provided.")
    return sts_backends[ACCOUNT][PARTITION].get_caller_identity(access_key_id, region)


def _answer(as_json: bool, status: int, result: dict[str, str] | None, error: StsRefusal | None) -> bytes:
    request_id = str(uuid.uuid4())
    if as_json:
        body = ({"GetCallerIdentityResponse": {"GetCallerIdentityResult": result,
                                               "ResponseMetadata": {"RequestId": request_id}}}
                if result else {"Error": {"Code": error.code, "Message": error.message}, "RequestId": request_id})
        return json.dumps(body).encode()
    if result:
        fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in result.items())
        return (f'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<GetCallerIdentityResult>{fields}</GetCallerIdentityResult>"
                f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                f"</GetCallerIdentityResponse>").encode()
    return (f"<ErrorResponse><Error><Type>Sender</Type><Code>{error.code}</Code>"
            f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId>"
            f"</ErrorResponse>").encode()


class PresignedCallerIdentity:
    """WSGI middleware: a presigned GetCallerIdentity is checked and answered here."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if query.get("Action") != "GetCallerIdentity" or "X-Amz-Signature" not in query:
            return self.app(environ, start_response)
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        url = f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '/')}"
        try:
            user_id, arn, account = verify(environ["REQUEST_METHOD"], url, query, headers)
            status, result, error = 200, {"Arn": arn, "UserId": user_id, "Account": account}, None
        except StsRefusal as refusal:
            status, result, error = 403, None, refusal
        as_json = "application/json" in environ.get("HTTP_ACCEPT", "")
        data = _answer(as_json, status, result, error)
        start_response(f"{status} {'OK' if status == 200 else 'Forbidden'}",
                       [("Content-Type", "application/json" if as_json else "text/xml"),
                        ("Content-Length", str(len(data)))])
        return [data]
