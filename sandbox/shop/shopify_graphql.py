"""Answering a GraphQL Admin API request: read, validate and cost it, then run it over the shop's data.

:func:`prepare` parses the body, picks the operation, checks every field and argument against
:data:`~sandbox.shop.shopify_schema.TYPES` (for the URL's API version) and computes the
*requested* cost the way Shopify documents it: scalars and enums 0, objects 1, a connection 2
plus ``first`` (or ``last``) times the cost of one of its nodes. :func:`execute` resolves the
operation and counts the *actual* cost over what was returned. Both raise or collect
:class:`GraphQLError`, answered in Shopify's ``{"errors": [...]}`` shape; nothing here is HTTP.

Limitations (the sandbox is not a GraphQL engine): queries only; connections page forward
(``first``/``after``); no introspection; variable types are not checked against their use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.shop import gql
from sandbox.shop.shopify_schema import FREE_TYPES, SCALAR, TYPES, UNIONS, FieldDef, connection
from sandbox.shop.shopify_search import SORT_KEYS, SearchError, encode_cursor, paginate, parse_search

MAX_PAGE = 250  # Shopify's largest first/last


class GraphQLError(Exception):
    """One entry of the answer's ``errors``."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        at: tuple[int, int] | None = None,
        path: Sequence[str] = (),
        **extensions: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.at = at
        self.path = list(path)
        self.extensions = extensions

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.at:
            body["locations"] = [{"line": self.at[0], "column": self.at[1]}]
        if self.path:
            body["path"] = self.path
        if self.code or self.extensions:
            body["extensions"] = {**({"code": self.code} if self.code else {}), **self.extensions}
        return body


class GraphQLErrors(Exception):
    """A request refused before anything ran: its errors, answered with HTTP 200 and no data."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


@dataclass
class Prepared:
    operation: gql.Operation
    fragments: Mapping[str, gql.Fragment]
    variables: dict[str, Any]
    api_version: str
    requested_cost: int


@dataclass
class DataSource:
    """What a query can see: the orders visible to the token, the app's subscriptions, the shop."""

    orders: Callable[[], list[dict[str, Any]]]
    subscriptions: Callable[[], list[dict[str, Any]]]
    order_node: Callable[[dict[str, Any]], dict[str, Any]]
    subscription_node: Callable[[dict[str, Any]], dict[str, Any]]
    shop: dict[str, Any]


@dataclass
class Result:
    data: dict[str, Any]
    actual_cost: int
    errors: list[GraphQLError] = field(default_factory=list)
    search: list[dict[str, Any]] = field(default_factory=list)


def _version_before(version: str, since: str) -> bool:
    return version != "unstable" and version < since


def prepare(body: Any, api_version: str) -> Prepared:
    """The request body as a validated, costed operation, or :class:`GraphQLErrors`."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise GraphQLErrors([GraphQLError("No query string was present")])
    try:
        document = gql.parse(body["query"])
        operation = document.operation(body.get("operationName") or None)
    except gql.GraphQLSyntaxError as exc:
        raise GraphQLErrors([GraphQLError(exc.message, "parseError", (exc.line, exc.column))]) from exc
    if operation.kind != "query":
        raise GraphQLErrors([GraphQLError(f"The sandbox serves queries only, not a {operation.kind}", "notSupported")])
    given = body.get("variables") or {}
    if not isinstance(given, dict):
        raise GraphQLErrors([GraphQLError("variables must be a JSON object")])
    prepared = Prepared(operation, document.fragments, {**operation.variable_defaults, **given}, api_version, 0)
    errors: list[GraphQLError] = []
    prepared.requested_cost = _check("QueryRoot", operation.selections, prepared, ["query"], errors)
    if errors:
        raise GraphQLErrors(errors)
    return prepared


def _collect(
    type_name: str, selections: Sequence[gql.Selection], prepared: Prepared, errors: list[GraphQLError] | None = None
) -> dict[str, list[gql.Field]]:
    """The fields selected on a ``type_name`` value, by response key (GraphQL's CollectFields)."""
    grouped: dict[str, list[gql.Field]] = {}

    def walk(items: Sequence[gql.Selection], seen: frozenset[str]) -> None:
        for item in items:
            if not gql.included(item.directives, prepared.variables):
                continue
            if isinstance(item, gql.Field):
                grouped.setdefault(item.key, []).append(item)
                continue
            if isinstance(item, gql.InlineFragment):
                condition, inner = item.type_condition, item.selections
            else:
                fragment = prepared.fragments.get(item.name)
                if fragment is None or item.name in seen:
                    if errors is not None:
                        problem = "is not defined" if fragment is None else "spreads itself"
                        errors.append(GraphQLError(f"Fragment {item.name} {problem}", "useAndDefineFragment",
                                                   (item.line, item.column)))  # fmt: skip
                    continue
                condition, inner, seen = fragment.type_condition, fragment.selections, seen | {item.name}
            if condition is not None and condition not in TYPES and condition not in UNIONS:
                if errors is not None:
                    errors.append(GraphQLError(f"No such type {condition}, so it can't be a fragment condition",
                                               "undefinedType"))  # fmt: skip
                continue
            if condition is None or condition == type_name or type_name in UNIONS.get(condition, ()):
                walk(inner, seen)

    walk(selections, frozenset())
    return grouped


def _merged(fields: list[gql.Field]) -> tuple[gql.Selection, ...]:
    return tuple(selection for f in fields for selection in f.selections)


def _check(
    type_name: str, selections: Sequence[gql.Selection], prepared: Prepared, path: list[str], errors: list[GraphQLError]
) -> int:
    """Validate the selections on ``type_name`` and return their requested cost."""
    if type_name in UNIONS:
        direct = [s for s in selections if isinstance(s, gql.Field) and s.name != "__typename"]
        if direct:
            errors.append(GraphQLError(f"Selections can't be made directly on unions (see selections on {type_name})",
                                       "selectionMismatch", (direct[0].line, direct[0].column), path))  # fmt: skip
            return 0
        return max(_check(t, selections, prepared, path, errors) for t in UNIONS[type_name])
    cost = 0
    for key, fields in _collect(type_name, selections, prepared, errors).items():
        first = fields[0]
        where = (first.line, first.column)
        here = [*path, key]
        children = _merged(fields)
        if first.name == "__typename":
            continue
        definition = TYPES[type_name].get(first.name)
        if definition is None or (definition.since and _version_before(prepared.api_version, definition.since)):
            errors.append(GraphQLError(f"Field '{first.name}' doesn't exist on type '{type_name}'", "undefinedField",
                                       where, here, typeName=type_name, fieldName=first.name))  # fmt: skip
            continue
        for argument in first.arguments:
            if argument not in definition.args:
                errors.append(GraphQLError(f"Field '{first.name}' doesn't accept argument '{argument}'",
                                           "argumentNotAccepted", where, here, name=first.name,
                                           typeName="Field", argumentName=argument))  # fmt: skip
        if definition.type == SCALAR:
            if children:
                errors.append(GraphQLError(f"Selections can't be made on scalars (field '{first.name}')",
                                           "selectionMismatch", where, here))  # fmt: skip
            continue
        if not children:
            errors.append(GraphQLError(f"Field must have selections (field '{first.name}' returns "
                                       f"{definition.type} but has no selections)", "selectionMismatch",
                                       where, here))  # fmt: skip
            continue
        child_cost = _check(definition.type, children, prepared, here, errors)
        if definition.connection:
            size = _page_size(first, definition, prepared, here, errors)
            cost += 2 + size * child_cost
        else:
            cost += (0 if definition.type in FREE_TYPES else 1) + child_cost
    return cost


def _page_size(
    node: gql.Field, definition: FieldDef, prepared: Prepared, path: list[str], errors: list[GraphQLError]
) -> int:
    args = {k: gql.value_of(v, prepared.variables) for k, v in node.arguments.items()}
    where = (node.line, node.column)
    if args.get("last") is not None or args.get("before") is not None:
        errors.append(GraphQLError("The sandbox pages forward only: use first and after", "notSupported", where, path))
        return 0
    size = args.get("first")
    if size is None:
        errors.append(GraphQLError("you must provide one of first or last", "BAD_REQUEST", where, path))
        return 0
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_PAGE:
        errors.append(GraphQLError(f"first must be an integer between 0 and {MAX_PAGE}, got {size!r}",
                                   "argumentLiteralsIncompatible", where, path))  # fmt: skip
        return 0
    sort_key = args.get("sortKey")
    if node.name == "orders" and sort_key is not None and sort_key not in SORT_KEYS:
        errors.append(GraphQLError(f"Argument 'sortKey' on Field 'orders' has an invalid value ({sort_key}). "
                                   "Expected type 'OrderSortKeys'.", "argumentLiteralsIncompatible",
                                   where, path))  # fmt: skip
    return size


@dataclass
class _Run:
    prepared: Prepared
    source: DataSource
    actual: int = 0
    errors: list[GraphQLError] = field(default_factory=list)
    search: list[dict[str, Any]] = field(default_factory=list)


def execute(prepared: Prepared, source: DataSource) -> Result:
    """Run a prepared query; a root field that fails is null with its error, the others still answer."""
    run = _Run(prepared, source)
    data = _object("QueryRoot", None, prepared.operation.selections, run, [])
    return Result(data, run.actual, run.errors, run.search)


def _root(name: str, args: Mapping[str, Any], run: _Run, path: list[str]) -> Any:
    if name == "shop":
        return run.source.shop
    if name == "webhookSubscriptions":
        subscriptions = sorted(run.source.subscriptions(), key=lambda s: int(s["id"]))
        page = paginate(subscriptions, parse_search(None), "id", int(args["first"]), args.get("after"))
        nodes = [run.source.subscription_node(s) for s in page.orders]
        return connection(nodes, [encode_cursor(s, "id") for s in page.orders], page.has_next, page.has_previous)
    # orders
    key = SORT_KEYS[str(args.get("sortKey") or "ID")]
    search = parse_search(args.get("query"))
    if search.warnings:
        run.search.append({"path": path, "query": args.get("query"), "warnings": list(search.warnings)})
    page = paginate(run.source.orders(), search, key, int(args["first"]), args.get("after"), bool(args.get("reverse")))
    nodes = [run.source.order_node(o) for o in page.orders]
    return connection(nodes, [encode_cursor(o, key) for o in page.orders], page.has_next, page.has_previous)


def _object(
    type_name: str, value: Any, selections: Sequence[gql.Selection], run: _Run, path: list[str]
) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for key, fields in _collect(type_name, selections, run.prepared).items():
        first = fields[0]
        if first.name == "__typename":
            answer[key] = type_name
            continue
        definition = TYPES[type_name][first.name]
        args = {k: gql.value_of(v, run.prepared.variables) for k, v in first.arguments.items()}
        here = [*path, key]
        try:
            if type_name == "QueryRoot":
                raw = _root(first.name, args, run, here)
            elif definition.resolve is not None:
                raw = definition.resolve(value, args, run)
            else:
                raw = value.get(first.name) if isinstance(value, Mapping) else None
        except SearchError as exc:
            run.errors.append(GraphQLError(str(exc), "BAD_REQUEST", (first.line, first.column), here))
            answer[key] = None
            continue
        if definition.connection and raw is not None:
            run.actual += 2
        answer[key] = _complete(definition, raw, _merged(fields), run, here)
    return answer


def _complete(definition: FieldDef, raw: Any, selections: Sequence[gql.Selection], run: _Run, path: list[str]) -> Any:
    if raw is None or definition.type == SCALAR:
        return raw
    if definition.list:
        single = FieldDef(definition.type)
        return [_complete(single, item, selections, run, [*path, str(i)]) for i, item in enumerate(raw)]
    concrete = str(raw.get("__typename")) if definition.type in UNIONS else definition.type
    if concrete not in FREE_TYPES:
        run.actual += 1
    return _object(concrete, raw, selections, run, path)
