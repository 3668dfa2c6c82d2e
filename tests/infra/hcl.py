"""A read-only model of terraform/*.tf for the wiring tests, built with python-hcl2.

python-hcl2 keeps HCL's quoting: a literal string comes back as ``'"text"'``, an
expression as ``'${expr}'`` and block labels quoted. :func:`normalize` turns that
into plain Python: literal (and template) strings lose their quotes, bare
expressions become :class:`Expr`, labels are unquoted and the parser's
bookkeeping keys are dropped.

Terraform cannot be evaluated here (no providers offline), so the model resolves
only the few expression shapes this configuration uses for ``for_each`` and IAM
members; anything else fails loudly, so a refactor that the tests no longer
understand is noticed instead of silently passing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BOOKKEEPING = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}


class Expr(str):
    """An HCL expression (what was ``${...}``), kept as its source text without ``${}``."""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): normalize(v) for k, v in value.items() if k not in _BOOKKEEPING}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            return value[1:-1]
        if value.startswith("${") and value.endswith("}"):
            return Expr(value[2:-1])
        return value
    return value


def squash(text: str) -> str:
    """Whitespace-insensitive form of an expression, for comparisons."""
    return re.sub(r"\s+", "", text)


@dataclass
class Grant:
    # ("function", name) | ("push",) | ("builder",) | ("pubsub_agent",) | ("shopify_delivery",) | ("allUsers",)
    principal: tuple[str, ...]
    role: str
    target: tuple[str, ...]  # ("project",) or (resource type, resource name[, instance key])
    resource: str  # address of the granting resource, for messages
    condition: dict[str, Any] | None = None


@dataclass
class Terraform:
    directory: Path
    raw: dict[str, str] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resource_files: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Terraform:
        import hcl2

        model = cls(directory)
        for path in sorted(directory.glob("*.tf")):
            text = path.read_text()
            model.raw[path.name] = text
            parsed = normalize(hcl2.loads(text))
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in model.resources, f"{rtype}.{name} declared twice"
                        model.resources[(rtype, name)] = body
                        model.resource_files[(rtype, name)] = path.name
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        model.data[(dtype, name)] = body
            for block in parsed.get("variable", []):
                model.variables.update(block)
            for block in parsed.get("output", []):
                model.outputs.update(block)
            for block in parsed.get("locals", []):
                for key, value in block.items():
                    assert key not in model.locals, f"local.{key} declared twice"
                    model.locals[key] = value
        return model

    # --- lookups -----------------------------------------------------------

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert (rtype, name) in self.resources, f"terraform/ has no resource {rtype}.{name}"
        return self.resources[(rtype, name)]

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    @staticmethod
    def block(body: dict[str, Any], name: str) -> dict[str, Any]:
        """The single nested block ``name`` of ``body``."""
        blocks = body.get(name)
        assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, found {blocks!r}"
        return blocks[0]

    @staticmethod
    def dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
        for entry in body.get("dynamic", []):
            if name in entry:
                return entry[name]
        raise AssertionError(f"no dynamic {name!r} block")

    # --- evaluation of the shapes this configuration uses ------------------

    def instances(self, for_each: Any) -> dict[Any, Any]:
        """for_each expression -> {each.key: each.value} (one None key when there is no for_each)."""
        if for_each is None:
            return {None: None}
        text = squash(str(for_each))
        if m := re.fullmatch(r"local\.(\w+)", text):
            value = self.locals[m[1]]
            return dict(value) if isinstance(value, dict) else {v: v for v in value}
        if m := re.fullmatch(r"toset\(local\.(\w+)\)", text):
            return {v: v for v in self.locals[m[1]]}
        if m := re.fullmatch(r"\{for(\w+),(\w+)inlocal\.(\w+):\1=>\2if\2\.(\w+)\}", text):
            return {k: v for k, v in self.locals[m[3]].items() if v[m[4]] is True}
        raise AssertionError(f"the infra tests cannot evaluate for_each = {for_each!r}; extend tests/infra/hcl.py")

    def principal(self, member: str, key: Any, value: Any) -> tuple[str, ...]:
        if member == "allUsers":
            return ("allUsers",)
        m = re.fullmatch(r"serviceAccount:\$\{(.+)\}", member)
        assert m, f"unexpected IAM member {member!r}"
        ref = squash(m[1])
        if ref == "local.pubsub_service_agent":
            return ("pubsub_agent",)
        if ref == "local.shopify_delivery_account":
            return ("shopify_delivery",)
        m = re.fullmatch(r"google_service_account\.(\w+)(?:\[(.+)\])?\.email", ref)
        assert m, f"unexpected IAM member {member!r}"
        if m[2] is None:
            return (m[1],)
        return (m[1], self._index(m[2], key, value))

    def target(self, expression: Any, key: Any, value: Any) -> tuple[str, ...]:
        text = squash(str(expression))
        if text == "var.project_id":
            return ("project",)
        m = re.fullmatch(r"(google_\w+)\.(\w+)(?:\[(.+?)\])?\.(\w+)", text)
        assert m, f"unexpected IAM target {expression!r}"
        if m[3] is None or m[3] == "0":  # [0]: the one instance of a resource with count = cond ? 1 : 0
            return (m[1], m[2])
        return (m[1], m[2], self._index(m[3], key, value))

    @staticmethod
    def _index(index: str, key: Any, value: Any) -> str:
        if index == "each.key":
            return key
        if m := re.fullmatch(r"each\.value\.(\w+)", index):
            return value[m[1]]
        if m := re.fullmatch(r'"([^"]+)"', index):
            return m[1]
        raise AssertionError(f"unexpected index [{index}]")

    _TARGET_ATTRIBUTE = {
        "google_project_iam_member": "project",
        "google_pubsub_topic_iam_member": "topic",
        "google_pubsub_subscription_iam_member": "subscription",
        "google_secret_manager_secret_iam_member": "secret_id",
        "google_cloud_run_service_iam_member": "service",
        "google_cloud_run_v2_service_iam_member": "name",
        "google_storage_bucket_iam_member": "bucket",
        "google_artifact_registry_repository_iam_member": "repository",
        "google_service_account_iam_member": "service_account_id",
        "google_cloudfunctions2_function_iam_member": "cloud_function",
    }

    def grants(self) -> list[Grant]:
        """Every IAM grant of the configuration, one per for_each instance."""
        found: list[Grant] = []
        for (rtype, name), body in self.resources.items():
            if "_iam_" not in rtype:
                continue
            assert rtype.endswith("_iam_member"), (
                f"{rtype}.{name}: only additive *_iam_member grants are allowed here "
                "(bindings and policies would overwrite grants made outside this configuration)"
            )
            assert rtype in self._TARGET_ATTRIBUTE, f"{rtype}.{name}: teach tests/infra/hcl.py its target attribute"
            role = body["role"]
            assert not isinstance(role, Expr), f"{rtype}.{name}: the role must be a literal so reviewers see it"
            condition = body["condition"][0] if body.get("condition") else None
            for key, value in self.instances(body.get("for_each")).items():
                found.append(
                    Grant(
                        principal=self.principal(body["member"], key, value),
                        role=role,
                        target=self.target(body[self._TARGET_ATTRIBUTE[rtype]], key, value),
                        resource=f"{rtype}.{name}" + (f"[{key!r}]" if key is not None else ""),
                        condition=condition,
                    )
                )
        return found
