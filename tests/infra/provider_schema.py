"""An offline stand-in for ``terraform validate``'s schema check, against the committed provider schema.

``terraform validate`` needs the providers, which cannot be downloaded where the
tests run, so a misspelled argument, a block at the wrong depth or a forgotten
required argument would only surface at ``terraform plan``. This module checks
every ``resource`` and ``data`` block of a configuration against the schema in
provider_schema.json.gz (written by scripts/provider_schema.py from the
provider's own generated bindings): the type exists, every argument and nested
block exists for it, none is read-only, and no required one is missing. It reads
HCL with python-hcl2 and does not evaluate expressions: values are not checked.

:func:`check_texts` is pure (file name -> HCL text in, findings out);
:func:`check_directory` reads the files.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("provider_schema.json.gz")

# Meta-arguments Terraform itself takes on every resource / data block (not in any provider schema).
_META_ATTRIBUTES = {"count", "for_each", "depends_on", "provider"}
_META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}}
_LIFECYCLE = {
    "resource": {
        "attributes": {
            "create_before_destroy": "optional",
            "prevent_destroy": "optional",
            "ignore_changes": "optional",
            "replace_triggered_by": "optional",
        },
        "blocks": {},
    },
    "data": {"attributes": {}, "blocks": {}},
}
_CONDITION = {"attributes": {"condition": "required", "error_message": "required"}}
for _kind in _LIFECYCLE:
    _LIFECYCLE[_kind]["blocks"] = {"precondition": _CONDITION, "postcondition": _CONDITION}
_DYNAMIC_ATTRIBUTES = {"for_each", "iterator", "labels"}

# Types of Terraform's built-in provider, which no provider package describes.
_BUILTIN = {
    "resource": {
        "terraform_data": {
            "attributes": {"input": "optional", "triggers_replace": "optional", "id": "computed", "output": "computed"}
        }
    },
    "data": {
        "terraform_remote_state": {
            "attributes": {
                "backend": "required",
                "config": "optional",
                "defaults": "optional",
                "workspace": "optional",
                "outputs": "computed",
            }
        }
    },
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    address: str  # e.g. google_pubsub_subscription.sender_push
    path: str  # argument or block path inside the resource, e.g. push_config.oidc_token.audience
    message: str

    def __str__(self) -> str:
        where = f"{self.address}.{self.path}" if self.path else self.address
        return f"terraform/{self.file}:{self.line}: {where}: {self.message}"


@cache
def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    return json.loads(gzip.decompress(path.read_bytes()))


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _keys(body: dict[str, Any]) -> list[str]:
    return [k for k in body if not (k.startswith("__") and k.endswith("__"))]


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Locator:
    """Line numbers for messages; python-hcl2 keeps none, so they are found again in the text."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def block(self, kind: str, type_name: str, name: str) -> int:
        labels = rf'"{re.escape(type_name)}"' + (rf'\s+"{re.escape(name)}"' if name else r"\s*\{")
        pattern = re.compile(rf"^\s*{kind}\s+{labels}")
        return next((i + 1 for i, line in enumerate(self.lines) if pattern.match(line)), 1)

    def inside(self, start: int, name: str, occurrence: int = 0) -> int:
        """Line of the ``occurrence``-th argument or block ``name`` directly inside the block opened on ``start``."""
        pattern = re.compile(rf'^\s*(?:{re.escape(name)}\s*[={{]|{re.escape(name)}\s*$|dynamic\s+"{re.escape(name)}")')
        seen = 0
        depth = 0
        for i in range(start - 1, len(self.lines)):
            line = self.lines[i]
            if depth == 1 and pattern.match(line):
                if seen == occurrence:
                    return i + 1
                seen += 1
            # Interpolations ("${...}") open and close on one line, so counting braces follows the nesting.
            code = re.split(r"\s(?:#|//)", " " + line, maxsplit=1)[0]
            depth += code.count("{") - code.count("}")
            if depth <= 0 and i >= start:
                break
        return start


@dataclass
class _Context:
    file: str
    address: str
    locator: _Locator
    findings: list[Finding]

    def report(self, line: int, path: list[str], message: str) -> None:
        self.findings.append(Finding(self.file, line, self.address, ".".join(path), message))


def _check_body(
    body: dict[str, Any],
    node: dict[str, Any],
    ctx: _Context,
    path: list[str],
    line: int,
    *,
    extra: set[str] = frozenset(),
) -> None:
    """Check one block body against its schema node; ``extra`` names meta-arguments allowed here."""
    attributes: dict[str, str] = node.get("attributes", {})
    blocks: dict[str, Any] = node.get("blocks", {})
    known = sorted(set(attributes) | set(blocks))
    given: set[str] = set()
    for key in _keys(body):
        value = body[key]
        if key == "dynamic":
            for entry in value:
                for label, dynamic in entry.items():
                    name = _unquote(label)
                    given.add(name)
                    _check_dynamic(name, dynamic, blocks, known, ctx, path, line)
            continue
        given.add(key)
        if key in extra:
            continue
        where = ctx.locator.inside(line, key)
        if key in attributes:
            if attributes[key] == "computed":
                ctx.report(where, [*path, key], f"{key!r} is read-only (computed by the provider): it cannot be set")
            elif _is_block(value):
                ctx.report(where, [*path, key], f"{key!r} is an argument, not a block: write `{key} = ...`")
        elif key in blocks:
            if not _is_block(value):
                ctx.report(where, [*path, key], f"{key!r} is a block, not an argument: write `{key} {{ ... }}`")
                continue
            for index, instance in enumerate(value):
                at = ctx.locator.inside(line, key, index)
                _check_body(instance, blocks[key], ctx, [*path, key], at)
        else:
            kind = "block" if _is_block(value) else "argument"
            ctx.report(where, [*path, key], f"unsupported {kind} {key!r}{_suggest(key, known)}")
    for name, presence in attributes.items():
        if presence == "required" and name not in given:
            ctx.report(line, path, f"missing required argument {name!r}")
    for name, block in blocks.items():
        if block.get("required") and name not in given:
            ctx.report(line, path, f"missing required block {name!r}")


def _check_dynamic(
    name: str,
    dynamic: dict[str, Any],
    blocks: dict[str, Any],
    known: list[str],
    ctx: _Context,
    path: list[str],
    line: int,
) -> None:
    where = ctx.locator.inside(line, name)
    if name not in blocks:
        ctx.report(where, [*path, name], f"dynamic block of unsupported block type {name!r}{_suggest(name, known)}")
        return
    for key in _keys(dynamic):
        if key not in _DYNAMIC_ATTRIBUTES and key != "content":
            ctx.report(
                where,
                [*path, name],
                f"unsupported argument {key!r} in dynamic {name!r} (for_each, iterator, labels, content)",
            )
    if "for_each" not in dynamic:
        ctx.report(where, [*path, name], f"dynamic {name!r} has no for_each")
    contents = dynamic.get("content")
    if not _is_block(contents) or len(contents) != 1:
        ctx.report(where, [*path, name], f"dynamic {name!r} needs exactly one content block")
        return
    _check_body(contents[0], blocks[name], ctx, [*path, name], ctx.locator.inside(where, "content"))


def _provider_of(type_name: str, body: dict[str, Any]) -> str:
    """Terraform's rule: the provider is the type's prefix before the first underscore, unless `provider` says."""
    provider = body.get("provider")
    if isinstance(provider, str):
        return _unquote(provider).removeprefix("${").removesuffix("}").split(".")[0]
    return type_name.split("_", 1)[0]


def _check_block(
    kind: str, type_name: str, name: str, body: dict[str, Any], file: str, locator: _Locator, schema: dict[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []
    ctx = _Context(file, f"{'data.' if kind == 'data' else ''}{type_name}.{name}", locator, findings)
    line = locator.block(kind, type_name, name)
    provider = _provider_of(type_name, body)
    if type_name in _BUILTIN[kind]:
        node = _BUILTIN[kind][type_name]
    elif provider not in schema["providers"]:
        bundled = ", ".join(sorted(schema["providers"]))
        ctx.report(
            line,
            [],
            f"no schema bundled for provider {provider!r} (bundled: {bundled}); add it to scripts/provider_schema.py",
        )
        return findings
    else:
        types = schema["providers"][provider][kind]
        if type_name not in types:
            what = "data source" if kind == "data" else "resource type"
            ctx.report(line, [], f"unknown {what} {type_name!r}{_suggest(type_name, list(types))}")
            return findings
        node = types[type_name]
    meta_blocks = _META_BLOCKS[kind]
    _check_body(body, node, ctx, [], line, extra=_META_ATTRIBUTES | meta_blocks)
    for meta in sorted(meta_blocks & set(body)):
        if meta == "lifecycle" and _is_block(body[meta]):
            for instance in body[meta]:
                _check_body(instance, _LIFECYCLE[kind], ctx, ["lifecycle"], locator.inside(line, "lifecycle"))
    return findings


def _check_provider(
    name: str, body: dict[str, Any], file: str, locator: _Locator, schema: dict[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []
    ctx = _Context(file, f"provider.{name}", locator, findings)
    line = locator.block("provider", name, "")
    if name not in schema["providers"]:
        return findings  # reported on the resources that use it
    _check_body(body, schema["providers"][name]["provider"], ctx, [], line, extra={"alias", "version"})
    return findings


def _declared(parsed: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, type, name, body) of every resource and data block, those inside `check` blocks included."""
    found = []
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_label, named in entry.items():
                for name_label, body in named.items():
                    found.append((kind, _unquote(type_label), _unquote(name_label), body))
    for entry in parsed.get("check", []):
        for scoped in entry.values():
            found.extend(d for d in _declared({"data": scoped.get("data", [])}))
    return found


def declared(text: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, type, name, body) of every resource and data block of one file."""
    import hcl2

    return _declared(hcl2.loads(text))


def check_texts(texts: dict[str, str], schema: dict[str, Any] | None = None) -> list[Finding]:
    """Findings for {file name: HCL text}; an empty list means every block conforms to the schema."""
    import hcl2

    major = int(str(getattr(hcl2, "__version__", "0")).split(".")[0])
    if major < 8:
        # checkov's fork (bc-python-hcl2) shadows python-hcl2 when both share a venv; it marks no blocks.
        raise RuntimeError(f"python-hcl2 8 is needed (requirements-dev.txt), found {hcl2.__file__} {major}")

    schema = schema or load_schema()
    findings: list[Finding] = []
    for file, text in sorted(texts.items()):
        locator = _Locator(text)
        parsed = hcl2.loads(text)
        for entry in parsed.get("provider", []):
            for label, body in entry.items():
                findings.extend(_check_provider(_unquote(label), body, file, locator, schema))
        for kind, type_name, name, body in _declared(parsed):
            findings.extend(_check_block(kind, type_name, name, body, file, locator, schema))
    return findings


def check_directory(directory: Path, schema: dict[str, Any] | None = None) -> list[Finding]:
    # Local modules (modules/<name>/*.tf) included, named by their path under the directory.
    files = [p for p in sorted(directory.rglob("*.tf")) if ".terraform" not in p.parts]
    return check_texts({p.relative_to(directory).as_posix(): p.read_text() for p in files}, schema)


# --- provider version pins ---------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def satisfies(version: str, constraints: str) -> bool:
    """Terraform version constraint syntax (``~> 7.0``, ``>= 1.5, < 2``, ``= 2.4.1``) for plain versions."""
    have = _version(version)
    for constraint in constraints.split(","):
        m = re.fullmatch(r"\s*(~>|>=|<=|!=|=|>|<)?\s*v?([\d.]+)\s*", constraint)
        assert m, f"cannot read the version constraint {constraint!r}"
        op, want = m[1] or "=", _version(m[2])
        padded = have + (0,) * max(0, len(want) - len(have))
        if op == "~>":
            # ~> 7.0 allows 7.x; ~> 2.4.1 allows 2.4.x at or above 2.4.1: all but the last part fixed.
            ok = padded >= want and padded[: max(1, len(want) - 1)] == want[: max(1, len(want) - 1)]
        else:
            ok = {
                "=": padded[: len(want)] == want,
                "!=": padded[: len(want)] != want,
                ">": padded > want,
                ">=": padded >= want,
                "<": padded < want,
                "<=": padded <= want,
            }[op]
        if not ok:
            return False
    return True


def pinned_providers(versions_tf: str) -> dict[str, dict[str, str]]:
    """{local name: {"source": ..., "version": ...}} from a terraform { required_providers { ... } } block."""
    import hcl2

    pins: dict[str, dict[str, str]] = {}
    for terraform in hcl2.loads(versions_tf).get("terraform", []):
        for required in terraform.get("required_providers", []):
            for name in _keys(required):
                pins[name] = {k: _unquote(v) for k, v in required[name].items() if isinstance(v, str)}
    return pins
