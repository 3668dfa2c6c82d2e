"""Regenerate tests/infra/provider_schema.json.gz, the offline provider schema of the Terraform check.

``terraform validate`` needs the providers, which cannot be downloaded where the
tests run. The prebuilt CDK bindings of each provider, published on PyPI as
``cdktn-provider-<name>``, carry a jsii assembly (``_jsii/*.jsii.tgz`` ->
``package/.jsii``) generated from that provider's schema: every resource and data
source, its settable arguments (optional or not), its nested blocks and, through
the getters of the generated classes, its read-only (computed) attributes. This
script keeps only that and writes it as compact gzipped JSON, so ``make test``
reads a committed file and downloads nothing.

Each release of the bindings is generated from one provider version, named in its
README (``... bindings for hashicorp/google provider version 7.46.1``) and in
every link of the assembly. ``PACKAGES`` picks the release built from the
provider major version that terraform/versions.tf pins; when that pin moves, find
the matching release (``pip index versions cdktn-provider-google``, then the
README of a candidate), change ``PACKAGES`` and rerun:

    .venv/bin/python scripts/provider_schema.py            # pip-downloads the wheels
    .venv/bin/python scripts/provider_schema.py --wheels DIR  # or uses wheels already in DIR

The output, per provider, its ``provider`` block and each ``resource`` / ``data`` type, is a node::

    {"attributes": {"name": "required" | "optional" | "computed"},
     "blocks": {"block_name": {"required": true, ...node}}}

with empty members left out ("computed" means read-only: it cannot be set).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "infra" / "provider_schema.json.gz"

# provider local name -> (PyPI package, release). 20.3.1 was generated from
# hashicorp/google 7.46.1 (versions.tf: ~> 7.0); 14.0.1 from hashicorp/archive 2.8.1 (~> 2.4).
PACKAGES: dict[str, tuple[str, str]] = {
    "google": ("cdktn-provider-google", "20.3.1"),
    "archive": ("cdktn-provider-archive", "14.0.1"),
}

_RESOURCE_BASES = {
    "cdktn.TerraformResource": "resource",
    "cdktn.TerraformDataSource": "data",
    "cdktn.TerraformProvider": "provider",
}
# "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/7.46.1/docs/resources/x google_x}."
_REPRESENTS = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/([\w-]+/[\w-]+)/([\w.]+)/docs(?:/[\w-]+/\w+)? (\w+)\}"
)
# Every argument's docs link to its anchor:
# "{@link https://...#ack_deadline_seconds PubsubSubscription#ack_deadline_seconds}".
_ANCHOR = re.compile(r"#(\w+) \w+#\1\}")
# Getters every generated class has that are not attributes of the schema.
_NOT_ATTRIBUTES = {"internalValue", "tfResourceType", "fqn", "creationStack"}


def snake(name: str) -> str:
    """jsii's camelCase back to Terraform's snake_case (only for getters, which carry no anchor)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _element_fqn(type_ref: dict[str, Any]) -> str | None:
    """The generated interface a property's type refers to (through unions and lists), if any."""
    if "fqn" in type_ref:
        return None if type_ref["fqn"].startswith("cdktn.") else type_ref["fqn"]
    if "union" in type_ref:
        for option in type_ref["union"]["types"]:
            if found := _element_fqn(option):
                return found
    if "collection" in type_ref:
        return _element_fqn(type_ref["collection"]["elementtype"])
    return None


def _argument_name(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    found = _ANCHOR.search(docs.get("summary", "") + "\n" + docs.get("remarks", ""))
    return found[1] if found else snake(prop["name"])


def _computed(types: dict[str, Any], class_fqn: str, settable: set[str]) -> list[str]:
    """Read-only attributes: getters of the generated class with no setter (no ``...Input`` twin)."""
    cls = types.get(class_fqn)
    if cls is None:
        return []
    props = {p["name"] for p in cls.get("properties", []) if not p.get("static")}
    return sorted(
        snake(name)
        for name in props
        if name not in settable
        and name not in _NOT_ATTRIBUTES
        and not name.endswith("Input")
        and f"{name}Input" not in props
    )


def _node(types: dict[str, Any], interface_fqn: str, class_fqn: str, seen: frozenset[str]) -> dict[str, Any]:
    interface = types[interface_fqn]
    attributes: dict[str, str] = {}
    blocks: dict[str, Any] = {}
    for prop in interface.get("properties", []):
        name = _argument_name(prop)
        nested = _element_fqn(prop["type"])
        is_block = nested is not None and prop.get("docs", {}).get("summary", "").endswith(" block.")
        if is_block and nested not in seen:
            block = _node(types, nested, f"{nested}OutputReference", seen | {nested})
            if not prop.get("optional"):
                block = {"required": True, **block}
            blocks[name] = block
        else:
            attributes[name] = "optional" if prop.get("optional") else "required"
    settable = {p["name"] for p in interface.get("properties", [])}
    for name in _computed(types, class_fqn, settable):
        attributes.setdefault(name, "computed")
    node: dict[str, Any] = {}
    if attributes:
        node["attributes"] = dict(sorted(attributes.items()))
    if blocks:
        node["blocks"] = dict(sorted(blocks.items()))
    return node


def extract(assembly: dict[str, Any]) -> dict[str, Any]:
    """A jsii assembly of cdktn provider bindings -> {"source", "version", "provider", "resource", "data"}."""
    types = assembly["types"]
    out: dict[str, Any] = {"provider": {}, "resource": {}, "data": {}}
    for fqn, cls in types.items():
        kind = _RESOURCE_BASES.get(cls.get("base", ""))
        if kind is None or cls.get("kind") != "class":
            continue
        represents = _REPRESENTS.search(cls.get("docs", {}).get("summary", ""))
        assert represents, f"{fqn}: no 'Represents a {{@link ...}}' in its docs; the assembly's format changed"
        out["source"], out["version"], type_name = represents[1], represents[2], represents[3]
        config = next(p for p in cls["initializer"]["parameters"] if p["name"] == "config")
        node = _node(types, config["type"]["fqn"], fqn, frozenset())
        if kind == "provider":
            # The provider block's own settings: `alias` is Terraform's, and a provider has no
            # computed attributes (the generated class's extra getters are CDK plumbing).
            settings = {k: v for k, v in node.get("attributes", {}).items() if k != "alias" and v != "computed"}
            out["provider"] = {**node, "attributes": settings}
        else:
            out[kind][type_name] = node
    out["resource"] = dict(sorted(out["resource"].items()))
    out["data"] = dict(sorted(out["data"].items()))
    return out


def read_assembly(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(archive.read(member))) as tgz:
            extracted = tgz.extractfile("package/.jsii")
            assert extracted is not None
            return json.load(extracted)


def _wheel(package: str, release: str, directory: Path) -> Path:
    pattern = f"{package.replace('-', '_')}-{release}-*.whl"
    found = sorted(directory.glob(pattern))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                str(directory),
                f"{package}=={release}",
            ],
            check=True,
        )
        found = sorted(directory.glob(pattern))
    assert found, f"no {pattern} in {directory}"
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder holding (or receiving) the cdktn-provider-* wheels")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.wheels or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        providers = {}
        for local_name, (package, release) in PACKAGES.items():
            schema = extract(read_assembly(_wheel(package, release, directory)))
            providers[local_name] = {"package": f"{package}=={release}", **schema}
            print(
                f"{local_name}: {schema['source']} {schema['version']} from {package}=={release}: "
                f"{len(schema['resource'])} resources, {len(schema['data'])} data sources"
            )
    text = json.dumps({"providers": providers}, separators=(",", ":"), sort_keys=False)
    # mtime=0 so regenerating from the same wheels gives the same bytes.
    args.output.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {len(text)} bytes of JSON)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
