"""A small reader of GraphQL documents: enough for the queries a reconciliation client sends, not an engine.

:func:`parse` reads one executable document (operations, fragments, fields with aliases and
arguments, inline fragments, fragment spreads, variables with defaults, ``@include``/``@skip``)
into plain frozen dataclasses; :func:`value_of` resolves an argument against the request's
variables. What it leaves out: type-system definitions, subscriptions' semantics, and any
validation beyond syntax (the schema in :mod:`sandbox.shop.shopify_schema` checks fields).
Errors are :class:`GraphQLSyntaxError` with the line and column, as a server reports them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_DOCUMENT_CHARS = 100_000
MAX_DEPTH = 30  # selection nesting; a deeper document is refused before recursion gets near Python's limit


class GraphQLSyntaxError(ValueError):
    """The document is not GraphQL; ``line`` and ``column`` point at the offending token (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Variable:
    name: str


class EnumValue(str):
    """A bare name in value position (``sortKey: UPDATED_AT``), kept apart from a quoted string."""


@dataclass(frozen=True)
class Directive:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Field:
    name: str
    alias: str | None
    arguments: Mapping[str, Any]
    selections: tuple[Selection, ...]
    directives: tuple[Directive, ...] = ()
    line: int = 1
    column: int = 1

    @property
    def key(self) -> str:
        """Where the field's value goes in the answer."""
        return self.alias or self.name


@dataclass(frozen=True)
class InlineFragment:
    type_condition: str | None
    selections: tuple[Selection, ...]
    directives: tuple[Directive, ...] = ()


@dataclass(frozen=True)
class FragmentSpread:
    name: str
    directives: tuple[Directive, ...] = ()
    line: int = 1
    column: int = 1


Selection = Field | InlineFragment | FragmentSpread


@dataclass(frozen=True)
class Fragment:
    name: str
    type_condition: str
    selections: tuple[Selection, ...]


@dataclass(frozen=True)
class Operation:
    kind: str  # query, mutation or subscription
    name: str | None
    variable_defaults: Mapping[str, Any]
    selections: tuple[Selection, ...]


@dataclass(frozen=True)
class Document:
    operations: tuple[Operation, ...]
    fragments: Mapping[str, Fragment] = field(default_factory=dict)

    def operation(self, name: str | None = None) -> Operation:
        """The operation to run: the named one, or the only one."""
        if name:
            for operation in self.operations:
                if operation.name == name:
                    return operation
            raise GraphQLSyntaxError(f"No operation named {name!r}")
        if len(self.operations) != 1:
            raise GraphQLSyntaxError("An operation name is required when the document holds several operations")
        return self.operations[0]


_TOKEN = re.compile(
    r"""
    (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n\r]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{|}])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line, line_start = 0, 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise GraphQLSyntaxError(f"Unexpected character {text[position]!r}", line, position - line_start + 1)
        kind = match.lastgroup or ""
        chunk = match.group()
        if kind != "ignored":
            tokens.append(_Token(kind, chunk, line, position - line_start + 1))
        newlines = chunk.count("\n")
        if newlines:
            line += newlines
            line_start = position + chunk.rindex("\n") + 1
        position = match.end()
    tokens.append(_Token("eof", "", line, position - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def fail(self, expected: str) -> GraphQLSyntaxError:
        found = self.token.text or "end of document"
        return GraphQLSyntaxError(f"Expected {expected}, actual: {found!r}", self.token.line, self.token.column)

    def peek(self, text: str) -> bool:
        return self.token.kind in ("punct", "spread", "name") and self.token.text == text

    def take(self, text: str) -> _Token:
        if not self.peek(text):
            raise self.fail(repr(text))
        token = self.token
        self.index += 1
        return token

    def name(self) -> _Token:
        if self.token.kind != "name":
            raise self.fail("a name")
        token = self.token
        self.index += 1
        return token

    def document(self) -> Document:
        operations: list[Operation] = []
        fragments: dict[str, Fragment] = {}
        while self.token.kind != "eof":
            if self.peek("{"):
                operations.append(Operation("query", None, {}, self.selection_set(0)))
            elif self.peek("fragment"):
                fragment = self.fragment()
                fragments[fragment.name] = fragment
            elif self.token.kind == "name" and self.token.text in ("query", "mutation", "subscription"):
                operations.append(self.operation())
            else:
                raise self.fail("an operation or a fragment")
        if not operations:
            raise GraphQLSyntaxError("The document holds no operation")
        return Document(tuple(operations), fragments)

    def operation(self) -> Operation:
        kind = self.name().text
        name = self.name().text if self.token.kind == "name" else None
        defaults: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                self.take("$")
                variable = self.name().text
                self.take(":")
                self.type_reference()
                if self.peek("="):
                    self.take("=")
                    defaults[variable] = self.value(const=True)
                self.directives()
            self.take(")")
        self.directives()
        return Operation(kind, name, defaults, self.selection_set(0))

    def type_reference(self) -> None:
        if self.peek("["):
            self.take("[")
            self.type_reference()
            self.take("]")
        else:
            self.name()
        if self.peek("!"):
            self.take("!")

    def fragment(self) -> Fragment:
        self.take("fragment")
        name = self.name().text
        self.take("on")
        type_condition = self.name().text
        self.directives()
        return Fragment(name, type_condition, self.selection_set(0))

    def selection_set(self, depth: int) -> tuple[Selection, ...]:
        if depth > MAX_DEPTH:
            raise GraphQLSyntaxError(f"Selections nest deeper than {MAX_DEPTH}", self.token.line, self.token.column)
        self.take("{")
        selections: list[Selection] = []
        while not self.peek("}"):
            selections.append(self.selection(depth))
        self.take("}")
        if not selections:
            raise GraphQLSyntaxError("A selection set may not be empty", self.token.line, self.token.column)
        return tuple(selections)

    def selection(self, depth: int) -> Selection:
        if self.peek("..."):
            spread = self.take("...")
            if self.peek("on") or self.peek("{") or self.peek("@"):
                type_condition = None
                if self.peek("on"):
                    self.take("on")
                    type_condition = self.name().text
                directives = self.directives()
                return InlineFragment(type_condition, self.selection_set(depth + 1), directives)
            return FragmentSpread(self.name().text, self.directives(), spread.line, spread.column)
        first = self.name()
        alias, name = None, first.text
        if self.peek(":"):
            self.take(":")
            alias, name = first.text, self.name().text
        arguments = self.arguments()
        directives = self.directives()
        selections = self.selection_set(depth + 1) if self.peek("{") else ()
        return Field(name, alias, arguments, selections, directives, first.line, first.column)

    def arguments(self, const: bool = False) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                name = self.name().text
                self.take(":")
                arguments[name] = self.value(const)
            self.take(")")
        return arguments

    def directives(self) -> tuple[Directive, ...]:
        directives: list[Directive] = []
        while self.peek("@"):
            self.take("@")
            directives.append(Directive(self.name().text, self.arguments()))
        return tuple(directives)

    def value(self, const: bool = False) -> Any:
        token = self.token
        if self.peek("$"):
            if const:
                raise self.fail("a constant value")
            self.take("$")
            return Variable(self.name().text)
        if self.peek("["):
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value(const))
            self.take("]")
            return items
        if self.peek("{"):
            self.take("{")
            fields: dict[str, Any] = {}
            while not self.peek("}"):
                key = self.name().text
                self.take(":")
                fields[key] = self.value(const)
            self.take("}")
            return fields
        self.index += 1
        if token.kind == "string":
            return json.loads(token.text)
        if token.kind == "block":
            return _block_string(token.text[3:-3])
        if token.kind == "number":
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "name":
            return {"true": True, "false": False, "null": None}.get(token.text, EnumValue(token.text))
        self.index -= 1
        raise self.fail("a value")


def _block_string(raw: str) -> str:
    lines = raw.replace('\\"""', '"""').splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    common = min(indents) if indents else 0
    lines = lines[:1] + [line[common:] for line in lines[1:]]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse(text: str) -> Document:
    """The document ``text`` as dataclasses, or :class:`GraphQLSyntaxError`."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise GraphQLSyntaxError(f"The document is longer than {MAX_DOCUMENT_CHARS} characters")
    return _Parser(text).document()


def value_of(value: Any, variables: Mapping[str, Any]) -> Any:
    """An argument's value with its variables replaced (a variable not given is null)."""
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, list):
        return [value_of(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: value_of(item, variables) for key, item in value.items()}
    return value


def included(directives: tuple[Directive, ...], variables: Mapping[str, Any]) -> bool:
    """Whether ``@include(if:)`` and ``@skip(if:)`` keep a selection."""
    for directive in directives:
        condition = value_of(directive.arguments.get("if"), variables)
        if directive.name == "include" and condition is not True:
            return False
        if directive.name == "skip" and condition is True:
            return False
    return True
