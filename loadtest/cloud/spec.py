"""Everything the ephemeral load-test stack's program needs, typed and checked at construction.

``LoadTestSpec`` is the one input of ``loadtest.cloud.stack.program``: the platform stack's
outputs (``PlatformOutputs``), the load-generator options (``LoadGenOptions``), the plan's peak
and length, how the code reaches the pods (``CodeImage`` or ``CodeWheel``), the run's opaque
payload and the expiry. A spec that could not be deployed (an unknown instance type, a peak the
nodes cannot carry, a payload holding the API key) fails here, before any resource exists. The
constructor takes keyword arguments only and is the stable contract with the orchestrator;
secrets are ``SecretStr`` and never appear in ``repr`` or ``model_dump_json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.catalog import CapacityType
from domain.stack_config import TagsConfig
from domain.topology import COST_TAGS
from loadtest.cloud import sizing
from loadtest.run_options import CLOUD_USERS_PER_WORKER

_FROZEN = ConfigDict(frozen=True, extra="forbid")

RUN_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
"""DNS label of at most 40 characters: the run id names the namespace, the node group, the
Pulumi stack and a Kubernetes label value, whose limits it must fit with a prefix."""
DEADLINE_MARGIN_SECONDS = 900
"""Added to the plan's length for the Jobs' ``activeDeadlineSeconds``: pulling the image or
installing the wheel (up to 3 minutes on a fresh node), workers connecting (up to 2), users
finishing the request they are in (30 s) and the CLI collecting the last files (up to 5), with
room to spare. The nodes already exist when the Jobs are created, so their boot is not in it."""
REAP_GRACE_SECONDS = 1800
"""After the Jobs' deadline, how long the stack may still live before ``reap`` takes it: room for
the CLI to collect and destroy on its own."""
PAYLOAD_LIMIT_BYTES = 256 * 1024
WHEEL_LIMIT_BYTES = 768 * 1024
"""A ConfigMap holds at most 1 MiB; the wheel travels in one beside two small text files."""
WHEEL_NAME = re.compile(r"qwen_stress-[0-9][0-9A-Za-z.!+_]*-py3-none-any\.whl")
IMAGE_REF = re.compile(
    r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


class PlatformOutputs(BaseModel):
    """What the platform stack exports and the load-test stack builds on."""

    model_config = _FROZEN

    stack: str = Field(min_length=1, description="The platform stack, as Pulumi names it.")
    cluster_name: str = Field(min_length=1)
    region: str = Field(min_length=1)
    kubeconfig: SecretStr
    kubernetes_version: str = Field(pattern=r"^[0-9]+\.[0-9]+$")
    node_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")
    private_subnet_ids: tuple[str, ...] = Field(min_length=1)
    system_node_selector: dict[str, str] = Field(min_length=1)
    vllm_base_url: str = Field(pattern=r"^https?://.+$")
    vllm_namespace: str = Field(min_length=1)
    vllm_port: int = Field(ge=1, le=65535)
    served_model_name: str = Field(min_length=1)
    api_key: SecretStr
    prometheus_url: str = Field(pattern=r"^https?://.+$")
    tags: TagsConfig
    aws_profile: str | None = None

    @classmethod
    def from_stack_outputs(
        cls, stack: str, outputs: Mapping[str, Any], aws_profile: str | None = None
    ) -> PlatformOutputs:
        """Build from ``pulumi stack output`` values (plain values, secrets already revealed).

        Raises ``SpecError`` naming the missing output: a platform stack deployed by an older
        qwen-stress lacks the ones the load-test stack added.
        """
        missing = [name for name in PLATFORM_OUTPUTS if name not in outputs]
        if missing:
            raise SpecError(
                f"platform stack {stack} has no output {', '.join(missing)}; run `pulumi up` "
                "on it with this version of qwen-stress first"
            )
        cost_tags = dict(outputs["costTags"])
        try:
            tags = TagsConfig(
                owner=cost_tags.pop("owner", ""),
                cost_center=cost_tags.pop("cost-center", ""),
                extra={k: v for k, v in cost_tags.items() if k not in COST_TAGS},
            )
            return cls(
                stack=stack,
                cluster_name=outputs["clusterName"],
                region=outputs["region"],
                kubeconfig=outputs["kubeconfig"],
                kubernetes_version=outputs["kubernetesVersion"],
                node_role_arn=outputs["nodeRoleArn"],
                private_subnet_ids=tuple(outputs["privateSubnetIds"]),
                system_node_selector=dict(outputs["systemNodeSelector"]),
                vllm_base_url=outputs["vllmBaseUrl"],
                vllm_namespace=outputs["vllmNamespace"],
                vllm_port=int(outputs["vllmServicePort"]),
                served_model_name=outputs["servedModelName"],
                api_key=outputs["vllmApiKey"],
                prometheus_url=outputs["prometheusUrl"],
                tags=tags,
                aws_profile=aws_profile,
            )
        except ValidationError as err:
            raise SpecError(f"platform stack {stack}: {describe(err)}") from None


PLATFORM_OUTPUTS = (
    "clusterName",
    "region",
    "kubeconfig",
    "kubernetesVersion",
    "nodeRoleArn",
    "privateSubnetIds",
    "systemNodeSelector",
    "costTags",
    "vllmBaseUrl",
    "vllmNamespace",
    "vllmServicePort",
    "servedModelName",
    "vllmApiKey",
    "prometheusUrl",
)
"""The platform stack outputs ``PlatformOutputs.from_stack_outputs`` reads."""


class LoadGenOptions(BaseModel):
    """Where the Locust pods run and how many there are."""

    model_config = _FROZEN

    nodes: sizing.Nodes = Field(
        default="new",
        description="`new`: a node group of its own for this run; `existing`: the system nodes.",
    )
    instance_type: str = Field(default=sizing.DEFAULT_INSTANCE_TYPE)
    capacity_type: CapacityType = Field(default="spot")
    workers: int | None = Field(default=None, ge=1, description="Worker processes; else sized.")
    users_per_worker: int = Field(default=CLOUD_USERS_PER_WORKER, ge=1, le=1024)

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        sizing.loadgen_instance(value)
        return value

    def size(self, peak_users: int) -> sizing.Sizing:
        """Nodes and workers for a plan peaking at ``peak_users`` (``SizingError`` if too many)."""
        return sizing.size(
            peak_users,
            nodes=self.nodes,
            instance_type=self.instance_type,
            capacity_type=self.capacity_type,
            workers=self.workers,
            users_per_worker=self.users_per_worker,
        )

    @model_validator(mode="after")
    def _existing_takes_no_node_options(self) -> LoadGenOptions:
        given = {"instance_type", "capacity_type"} & self.model_fields_set
        if self.nodes == "existing" and given:
            names = ", ".join(sorted(given))
            raise ValueError(
                f"{names} only applies to new load-generator nodes; drop it or use nodes=new"
            )
        return self


class CodeImage(BaseModel):
    """The released load-test image, by tag and (when the registry told us) digest."""

    model_config = _FROZEN

    kind: Literal["image"] = "image"
    image: str

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        match = IMAGE_REF.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not an image reference like registry/name:tag")
        if not match["digest"] and (not match["tag"] or match["tag"] == "latest"):
            raise ValueError(f"{value!r} floats; pin a release tag or a sha256 digest")
        return value


class CodeWheel(BaseModel):
    """The project's wheel, delivered in a ConfigMap and installed by an init container."""

    model_config = _FROZEN

    kind: Literal["wheel"] = "wheel"
    filename: str
    content: bytes = Field(repr=False)

    @field_validator("filename")
    @classmethod
    def _name(cls, value: str) -> str:
        if not WHEEL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not this project's pure-Python wheel")
        return value

    @field_validator("content")
    @classmethod
    def _size(cls, value: bytes) -> bytes:
        if len(value) > WHEEL_LIMIT_BYTES:
            raise ValueError(
                f"the wheel has {len(value) // 1024} KiB and a ConfigMap carries at most "
                f"{WHEEL_LIMIT_BYTES // 1024} KiB of it; use the released image instead"
            )
        return value

    @property
    def sha256(self) -> str:
        """Hex digest that ``pip --require-hashes`` checks before installing."""
        return hashlib.sha256(self.content).hexdigest()


Code = Annotated[CodeImage | CodeWheel, Field(discriminator="kind")]


class SpecError(ValueError):
    """A load-test spec that cannot be deployed; one line per problem, naming the setting."""


class LoadTestSpec(BaseModel):
    """The ephemeral stack of one run: construct with keywords; everything is checked here."""

    model_config = _FROZEN

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    platform: PlatformOutputs
    loadgen: LoadGenOptions = Field(default_factory=LoadGenOptions)
    peak_users: int = Field(ge=1, description="The plan's highest concurrent users.")
    plan_seconds: float = Field(
        gt=0, le=7 * 86400, description="The plan's longest possible length (deadlines)."
    )
    code: Code
    payload: str = Field(
        default="{}", description="The run's plan, workload and options: a JSON object."
    )
    expires_at: AwareDatetime

    @field_validator("payload")
    @classmethod
    def _payload(cls, value: str) -> str:
        if len(value.encode()) > PAYLOAD_LIMIT_BYTES:
            raise ValueError(f"is over {PAYLOAD_LIMIT_BYTES // 1024} KiB")
        try:
            document = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"is not JSON: {err}") from None
        if not isinstance(document, dict):
            raise ValueError("must be a JSON object")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LoadTestSpec:
        key = self.platform.api_key.get_secret_value()
        if key and key in self.payload:
            # The payload lands in a ConfigMap, readable by anyone who may list them.
            raise ValueError("payload holds the API key; it reaches the pods as a Secret")
        self.sizing()
        return self

    def sizing(self) -> sizing.Sizing:
        """Nodes and workers for this run (``SizingError`` if the options cannot carry it)."""
        return self.loadgen.size(self.peak_users)

    @property
    def deadline_seconds(self) -> int:
        """The Jobs' ``activeDeadlineSeconds``: the load stops even if nothing else stops it."""
        return math.ceil(self.plan_seconds) + DEADLINE_MARGIN_SECONDS

    @staticmethod
    def expiry(now: datetime, plan_seconds: float) -> datetime:
        """When a stack created at ``now`` may be reaped whatever its journal says."""
        return now + timedelta(
            seconds=math.ceil(plan_seconds) + DEADLINE_MARGIN_SECONDS + REAP_GRACE_SECONDS
        )


SECRET_FIELDS = frozenset({"kubeconfig", "api_key"})


def describe(err: ValidationError) -> str:
    """One line per problem, each naming the setting (``loadgen.instance_type: ...``).

    A wrong value is quoted back, except a secret's: a kubeconfig or an API key passed where a
    string belongs must not reach a terminal or a log.
    """
    lines = []
    for e in err.errors():
        where = ".".join(str(part) for part in e["loc"]) or "spec"
        msg = e["msg"].removeprefix("Value error, ")
        secret = SECRET_FIELDS & {str(part) for part in e["loc"]}
        if e["type"] == "missing":
            msg = "is required"
        elif e["type"] == "extra_forbidden":
            msg = "is not a setting"
        elif "input" in e and e["type"] != "value_error" and not secret and e["loc"]:
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)
