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

The locals that terraform/ derives from ``local.functions`` (the one entry per
function, functions.tf) are evaluated by :meth:`Terraform.view`, which knows
each one's text (:data:`DERIVED`) and refuses a changed one, with the default
variables or with every optional function switched on (``everything``).

Calls of local modules (``source = "./modules/..."``) are expanded: every resource
of the module joins :attr:`Terraform.resources` once per call, named
``module.<call>.<name>``, with the module's ``var.*`` replaced by the call's
arguments and its references to its own resources written as root addresses
(``module.<call>.<type>.<name>``), so a test reads what each call deploys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BOOKKEEPING = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


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


# Locals derived from local.functions, exactly as terraform/ writes them (whitespace aside); view() evaluates them.
DERIVED = {
    "deployed_folders": "{for name, fn in local.functions : name => fn"
    " if !fn.optional || contains(var.enabled_sources, name) || lookup(local.switched_on, name, false)}",
    "cloud_functions": "merge([for folder, fn in local.functions : {for name, entry in fn.entry_points :"
    " name => merge(entry, {folder = folder,"
    ' enabled = contains(keys(local.deployed_folders), folder) && lookup(entry, "enabled", true),'
    ' public_http = lookup(entry, "public_http", fn.public_http)})}] ...)',
    "deployed_functions": "{for name, fn in local.cloud_functions : name => fn if fn.enabled}",
    "secrets": "merge([for name, fn in local.deployed_folders : {for id, secret in fn.secrets :"
    " id => merge(secret, {function = name})}] ...)",
    "function_env": "{for name, fn in local.cloud_functions : name => merge(concat("
    "[for layer in local.functions[fn.folder].env_from : local.shared_env[layer]],"
    " [local.functions[fn.folder].env],"
    " [{for key in local.functions[fn.folder].settings : key => try(var.source_settings[fn.folder][key], null)}],"
    " [{THREADS = tostring(local.function_runtime[name].max_instance_request_concurrency)}]) ...)}",
    "function_services": 'join("|", [for name in keys(local.cloud_functions) : replace(name, "_", "-")])',
    "rejecting_services": 'join("|", [for name, fn in local.cloud_functions : replace(name, "_", "-")'
    " if local.functions[fn.folder].watch_rejections])",
}


@dataclass
class Grant:
    # ("function", name) | ("push",) | ("builder",) | ("scheduler",) | ("pubsub_agent",) | ("shopify_delivery",)
    # | ("allUsers",)
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
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)  # call name -> the module block
    children: dict[str, Terraform] = field(default_factory=dict)  # call name -> the called module, as written

    @classmethod
    def load(cls, directory: Path) -> Terraform:
        import hcl2

        model = cls(directory)
        calls: dict[str, dict[str, Any]] = {}
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
            for block in parsed.get("module", []):
                calls.update(block)
        for call, body in calls.items():
            source = str(body["source"])
            assert source.startswith("./"), f"module.{call}: only local modules are expanded, not {source}"
            child = cls.load(directory / source)
            model.modules[call] = body
            model.children[call] = child
            for (rtype, name), resource in child.resources.items():
                model.resources[(rtype, f"module.{call}.{name}")] = model.in_call(call, resource)
                model.resource_files[(rtype, f"module.{call}.{name}")] = (
                    f"{source.removeprefix('./')}/{child.resource_files[(rtype, name)]}"
                )
        return model

    # --- module calls --------------------------------------------------------

    _META_ARGUMENTS = {"source", "count", "for_each", "depends_on", "providers", "version"}

    def arguments(self, call: str) -> dict[str, Any]:
        """What module.<call> passes for each of the module's variables (their defaults where it passes none)."""
        given = {k: v for k, v in self.modules[call].items() if k not in self._META_ARGUMENTS}
        variables = self.children[call].variables
        assert set(given) <= set(variables), f"module.{call} passes undeclared {sorted(set(given) - set(variables))}"
        missing = {name for name, body in variables.items() if name not in given and "default" not in body}
        assert not missing, f"module.{call} does not pass {sorted(missing)}"
        return {name: given.get(name, body.get("default")) for name, body in variables.items()}

    def in_call(self, call: str, value: Any) -> Any:
        """``value`` (from the module's files) as module.<call> deploys it, in the root module's terms."""
        child, arguments = self.children[call], self.arguments(call)

        def expression(text: str) -> str:
            def variable(m: re.Match[str]) -> str:
                argument = arguments[m[1]]
                return f"({argument})" if isinstance(argument, Expr) else json.dumps(argument)

            def own(m: re.Match[str]) -> str:
                return f"module.{call}.{m[1]}.{m[2]}" if (m[1], m[2]) in child.resources else m[0]

            text = re.sub(r"(?<![\w.])(google_\w+)\.(\w+)", own, text)
            text = re.sub(r"(?<![\w.])var\.(\w+)", variable, text)
            # A lone reference needs no parentheses: module.x.y.z, not (module.x.y).z.
            return re.sub(r"\(([\w.\[\]\"]+)\)", r"\1", text)

        def template(m: re.Match[str]) -> str:
            if (whole := re.fullmatch(r"var\.(\w+)", m[1])) and not isinstance(arguments[whole[1]], Expr):
                return str(arguments[whole[1]])
            return "${" + expression(m[1]) + "}"

        if isinstance(value, dict):
            return {k: self.in_call(call, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.in_call(call, v) for v in value]
        if isinstance(value, Expr):
            if whole := re.fullmatch(r"var\.(\w+)", squash(value)):
                return arguments[whole[1]]
            return Expr(expression(value))
        if isinstance(value, str):
            return re.sub(r"\$\{([^{}]+)\}", template, value)
        return value

    def module_output(self, call: str, output: str) -> Any:
        """The value of module.<call>.<output>, in the root module's terms."""
        outputs = self.children[call].outputs
        assert output in outputs, f"module.{call} has no output {output!r}"
        return self.in_call(call, outputs[output]["value"])

    def evaluate(self, expression: Any) -> Any:
        """A local that is data: literals, references to other locals and their attributes, jsondecode(file())."""
        if not isinstance(expression, Expr):
            return expression
        text = squash(expression)
        if m := re.fullmatch(r'jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)', text):
            return json.loads((self.directory / m[1]).read_text())
        if m := re.fullmatch(r"local\.(\w+)((?:\.\w+)*)", text):
            value = self.view(m[1]) if m[1] in DERIVED else self.evaluate(self.locals[m[1]])
            for attribute in filter(None, m[2].split(".")):
                value = value[attribute]
            return value
        raise AssertionError(f"the infra tests cannot evaluate {expression!r}; extend tests/infra/hcl.py")

    # --- the locals derived from local.functions -----------------------------

    def view(self, name: str, everything: bool = False) -> Any:
        """Derived local ``name`` (:data:`DERIVED`) with the default variables, or with every optional
        function on (``everything``: each optional source in var.enabled_sources, each entry point's
        ``enabled`` expression true)."""
        assert squash(self.locals[name]) == squash(DERIVED[name]), (
            f"local.{name} changed: teach tests/infra/hcl.py (DERIVED and view) what it now computes:\n"
            f"{self.locals[name]}"
        )
        assert self.variables["enabled_sources"]["default"] == [], "view() assumes no optional source by default"
        functions: dict[str, Any] = self.locals["functions"]

        def on(flag: Any) -> bool:
            return flag is True or (everything and isinstance(flag, Expr))

        def switched_on(folder: str) -> bool:
            """local.switched_on[folder] with the default variables: a var.<name>.<attribute> switch."""
            if folder not in self.locals.get("switched_on", {}):
                return False
            switch = squash(self.locals["switched_on"][folder])
            m = re.fullmatch(r"var\.(\w+)\.(\w+)", switch)
            assert m, f"local.switched_on.{folder} = {switch}: teach tests/infra/hcl.py to evaluate it"
            value = self.variables[m[1]]["default"][m[2]]
            assert isinstance(value, bool), f"var.{m[1]}.{m[2]} defaults to {value!r}"
            return value

        folders = {n: fn for n, fn in functions.items() if fn["optional"] is False or everything or switched_on(n)}
        if name == "deployed_folders":
            return folders
        cloud = {
            entry_name: {
                **entry,
                "folder": folder,
                "enabled": folder in folders and on(entry.get("enabled", True)),
                "public_http": entry.get("public_http", fn["public_http"]),
            }
            for folder, fn in functions.items()
            for entry_name, entry in fn["entry_points"].items()
        }
        if name == "cloud_functions":
            return cloud
        if name == "deployed_functions":
            return {n: f for n, f in cloud.items() if f["enabled"]}
        if name == "secrets":
            return {i: {**secret, "function": n} for n, fn in folders.items() for i, secret in fn["secrets"].items()}
        if name == "function_env":
            env: dict[str, dict[str, Any]] = {}
            for n, f in cloud.items():
                fn = functions[f["folder"]]
                merged: dict[str, Any] = {}
                for layer in fn["env_from"]:
                    merged.update(self.locals["shared_env"][layer])
                merged.update(fn["env"])
                merged.update(
                    {k: Expr(f'try(var.source_settings["{f["folder"]}"]["{k}"], null)') for k in fn["settings"]}
                )
                merged["THREADS"] = Expr(f"tostring(local.function_runtime.{n}.max_instance_request_concurrency)")
                env[n] = merged
            return env
        if name == "function_services":
            return "|".join(n.replace("_", "-") for n in sorted(cloud))
        if name == "rejecting_services":
            return "|".join(
                n.replace("_", "-")
                for n, f in sorted(cloud.items())
                if functions[f["folder"]]["watch_rejections"] is True
            )
        raise AssertionError(f"view() does not compute local.{name}")

    def render(self, text: str) -> str:
        """A template as Terraform renders it with the default variables (only ${var.*} and ${local.*} in it)."""

        def reference(m: re.Match[str]) -> str:
            if v := re.fullmatch(r"var\.(\w+)", m[1]):
                return str(self.variables[v[1]]["default"])
            if v := re.fullmatch(r"local\.(\w+)", m[1]):
                value = self.view(v[1]) if v[1] in DERIVED else self.locals[v[1]]
                assert isinstance(value, str) and not isinstance(value, Expr), f"cannot render local.{v[1]}: {value!r}"
                return self.render(value)
            raise AssertionError(f"render() cannot evaluate ${{{m[1]}}}")

        return re.sub(r"\$\{([^{}]+)\}", reference, text)

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

    def instances(self, for_each: Any, everything: bool = False) -> dict[Any, Any]:
        """for_each expression -> {each.key: each.value} (one None key when there is no for_each).

        With the default variables, or with every optional function on (``everything``, see :meth:`view`).
        """
        if for_each is None:
            return {None: None}
        text = squash(str(for_each))
        if (m := re.fullmatch(r"local\.(\w+)", text)) and m[1] in DERIVED:
            return dict(self.view(m[1], everything))
        if m := re.fullmatch(r"local\.(\w+)", text):
            if isinstance(self.locals[m[1]], Expr) and self.locals[m[1]].startswith("{for"):
                return self.instances(self.locals[m[1]])  # a filtered view of another local
            value = self.evaluate(self.locals[m[1]])
            return dict(value) if isinstance(value, dict) else {v: v for v in value}
        if m := re.fullmatch(r"toset\(local\.(\w+)\)", text):
            return {v: v for v in self.evaluate(self.locals[m[1]])}
        if m := re.fullmatch(r"\{for(\w+),(\w+)inlocal\.(\w+):\1=>\2if\2\.(\w+)\}", text):
            base = self.view(m[3], everything) if m[3] in DERIVED else self.locals[m[3]]
            return {k: v for k, v in base.items() if v[m[4]] is True}
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
        if m[2] is None or m[2] == "0":  # [0]: the one instance of an account with count = cond ? 1 : 0
            return (m[1],)
        return (m[1], self._index(m[2], key, value))

    def target(self, expression: Any, key: Any, value: Any) -> tuple[str, ...]:
        text = squash(str(expression))
        if text == "var.project_id":
            return ("project",)
        # A module's output ([0]: the one instance of a call with count = cond ? 1 : 0).
        if m := re.fullmatch(r"module\.(\w+)(?:\[0\])?\.(\w+)", text):
            return self.target(self.module_output(m[1], m[2]), key, value)
        # A resource of a module call (as in_call writes it): named module.<call>.<name>.
        if m := re.fullmatch(r"module\.(\w+)\.(google_\w+)\.(\w+)\.(\w+)", text):
            return (m[2], f"module.{m[1]}.{m[3]}")
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
        """Every IAM grant of the configuration, one per for_each instance, with every optional part on.

        (A resource with ``count = cond ? 1 : 0`` counts as one instance, and every optional function as deployed.)
        """
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
            for key, value in self.instances(body.get("for_each"), everything=True).items():
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
