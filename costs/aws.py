"""boto3 clients, loaded only when a command talks to AWS, and AWS failures as one line with a fix.

Clients come from a default ``boto3`` session, so the standard credential chain (environment,
``AWS_PROFILE``, SSO, instance roles) and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``)
apply as the AWS CLI applies them: no stack file or profile is needed beyond what boto3 finds.
"""

from __future__ import annotations

from typing import Any

CONTROL_REGION = "us-east-1"
"""Where the Pricing API and Cost Explorer answer (both are served from us-east-1)."""
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
EXPIRED = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"}
)
THROTTLED = frozenset({"LimitExceededException", "ThrottlingException", "Throttling"})


class AwsError(RuntimeError):
    """An AWS call failed; the message is one line saying why and what to do."""


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client with short timeouts and standard retries (boto3 is imported here only)."""
    import boto3  # noqa: PLC0415 - the CLI starts without loading boto3
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )
    return boto3.session.Session().client(service, region_name=region, config=config)


def is_aws_error(err: BaseException) -> bool:
    """Whether an exception came from botocore (so ``explain`` can word it)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    return isinstance(err, BotoCoreError | ClientError)


def explain(err: BaseException, action: str, permission: str) -> AwsError:
    """One line for a botocore failure: the cause and the fix, never a traceback.

    ``action`` says what was being done ("reading Cost Explorer"), ``permission`` the IAM
    action(s) it needs.
    """
    from botocore import exceptions as bx  # noqa: PLC0415

    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsError(
            f"{action}: no AWS credentials found; set AWS_PROFILE (or run `aws configure` / "
            "`aws sso login`), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(err, bx.ProfileNotFound | bx.TokenRetrievalError | bx.SSOError):
        return AwsError(f"{action}: {err}; check AWS_PROFILE or run `aws sso login`")
    if isinstance(err, bx.ConnectionError | bx.ReadTimeoutError):
        return AwsError(
            f"{action}: cannot reach AWS ({err}); check the network, a proxy, or "
            "AWS_ENDPOINT_URL if you set it"
        )
    if isinstance(err, bx.ClientError):
        error = err.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", "")).strip()
        if code in DENIED:
            return AwsError(
                f"{action}: AWS denied {permission} ({code}); allow {permission} for the "
                "identity you run as (an IAM policy; see README, Cost tracking)"
            )
        if code in EXPIRED:
            return AwsError(f"{action}: AWS refused the credentials ({code}); refresh them")
        if code in THROTTLED:
            return AwsError(f"{action}: AWS throttled the request ({code}); retry in a minute")
        return AwsError(f"{action}: AWS answered {code}: {' '.join(message.split())}")
    return AwsError(f"{action}: {' '.join(str(err).split()) or type(err).__name__}")
