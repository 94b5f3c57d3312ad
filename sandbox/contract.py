"""What a vendor's own OpenAPI file says a request must look like, checked by a maintained validator
(openapi-core): the route and its method, every parameter (path, query, header: types, enums, bounds,
required ones), and the request body with every `$ref`, `allOf` and `oneOf` resolved; OpenAPI 3.0 files
(GitHub's, Cloudflare's, n8n's) and 3.1 ones (Coolify's) alike. On top of what openapi-core checks, a query
parameter or a body field the route does not declare is a problem too (a misspelt or invented one is silently
ignored by a real API, which is how calls quietly do the wrong thing), and so is a body sent to a route that
takes none.

Security requirements are not checked from the files: Cloudflare's declares its DNS routes for an email and
global key only, and its Stream routes for a key and a token at once, while the real API takes an API token
on both. Each stand-in checks the credential itself.

The files are package data (`sandbox/openapi/<vendor>.json`), the same files as `shared/<vendor>/openapi.json`;
openapi-core is imported only when a contract is built, and a stand-in builds its contract at its first request
(sandbox/stand_in.py), never on the console's start-up path."""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema_path import SchemaPath
    from openapi_core.templating.paths.finders import APICallPathFinder
    from openapi_core.validation.request.validators import (
        V30RequestBodyValidator,
        V30RequestParametersValidator,
        V31RequestBodyValidator,
        V31RequestParametersValidator,
    )

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REMEMBERED = 4096  # requests whose findings are kept: a sandbox's agents send the same few again and again

# (method, path, query pairs, declared headers' values, body, content type): what decides the findings
RequestKey = tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], bytes, str | None]


def openapi_file(vendor: str) -> dict[str, Any]:
    """The vendor's OpenAPI file as the project carries it."""
    loaded: dict[str, Any] = json.loads((resources.files("sandbox") / "openapi" / f"{vendor}.json").read_text())
    return loaded


@dataclass(frozen=True, slots=True)
class AnswerOnlyFields:
    """Fields a schema of the vendor's file lists as `required` that only an answer can carry (an id the vendor
    assigns, read-only timestamps), where the schema serves both the request and the answer. openapi-core cannot
    exempt them (the `readOnly` marks sit inside a `oneOf`, out of reach of the `required` beside it, and the id
    has none), so the contract takes them out of that one list, for requests only."""

    schema: str  # a name under components/schemas
    fields: tuple[str, ...]


def _loosen(node: Any, formats: frozenset[str]) -> None:
    """Drops `format` where it names one of `formats`, all through the file."""
    if isinstance(node, dict):
        if node.get("format") in formats:
            del node["format"]
        for value in node.values():
            _loosen(value, formats)
    elif isinstance(node, list):
        for value in node:
            _loosen(value, formats)


@dataclass(slots=True)
class VendorRequest:
    """One request as openapi-core reads it (its `Request` protocol), placed at the vendor's own server."""

    host_url: str
    path: str
    method: str
    parameters: Any  # openapi_core.datatypes.RequestParameters
    content_type: str
    body: bytes | None


@dataclass
class VendorContract:
    """A vendor's OpenAPI file and the validators built from it. `problems` says, in words, what the vendor's
    API would not accept about one request; an empty list means nothing."""

    spec: dict[str, Any]  # the file, unchanged
    answer_only: tuple[AnswerOnlyFields, ...] = ()
    # String formats the file names that the vendor's own values do not follow: Coolify's resource uuids are cuid2
    # strings (`vgsco4o`), yet two of its parameters say `format: uuid` (an RFC 4122 UUID, which none of them is).
    loose_formats: tuple[str, ...] = ()
    server_url: str = field(init=False)
    _parameters: V30RequestParametersValidator | V31RequestParametersValidator = field(init=False, repr=False)
    _body: V30RequestBodyValidator | V31RequestBodyValidator = field(init=False, repr=False)
    _finder: APICallPathFinder = field(init=False, repr=False)
    _headers: frozenset[str] = field(init=False, repr=False)  # header parameters the file declares, lower case
    _remembered: OrderedDict[RequestKey, tuple[str, ...]] = field(init=False, repr=False)
    # openapi-core's resolvers keep caches: one request at a time, whichever thread serves the stand-in
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        from jsonschema_path import SchemaPath
        from openapi_core.templating.paths.finders import APICallPathFinder
        from openapi_core.validation.request import validators

        checked = copy.deepcopy(self.spec)
        schemas = checked.get("components", {}).get("schemas", {})
        for correction in self.answer_only:
            schema = schemas[correction.schema]
            schema["required"] = [name for name in schema.get("required", []) if name not in correction.fields]
        _loosen(checked, frozenset(self.loose_formats))
        server = checked["servers"][0]["url"]
        self.server_url = server if "://" in server else "http://localhost" + server
        schema_path = SchemaPath.from_dict(checked)
        if str(checked.get("openapi", "")).startswith("3.1"):
            self._parameters = validators.V31RequestParametersValidator(schema_path)
            self._body = validators.V31RequestBodyValidator(schema_path)
        else:
            self._parameters = validators.V30RequestParametersValidator(schema_path)
            self._body = validators.V30RequestBodyValidator(schema_path)
        self._finder = APICallPathFinder(schema_path)
        self._headers = frozenset(
            name.lower() for _, item in (schema_path / "paths").items()
            for owner in (item, *(item / method for method in METHODS if method in item))
            for name, location in _declared(owner) if location == "header")
        self._remembered = OrderedDict()

    @classmethod
    def load(cls, vendor: str, answer_only: tuple[AnswerOnlyFields, ...] = (),
             loose_formats: tuple[str, ...] = ()) -> VendorContract:
        """The vendor's contract, built once per process (building GitHub's takes half a second)."""
        return _loaded(vendor, answer_only, loose_formats)

    def query_parameters(self, method: str, path: str) -> set[str] | None:
        """The query parameters the file declares for `method` on `path`; None where it has no such route."""
        from openapi_core.templating.paths.exceptions import PathError

        try:
            with self._lock:
                found = self._finder.find(method.lower(), self.server_url + path)
                return {name for name, location in _parameters(found) if location == "query"}
        except PathError:
            return None

    def template(self, method: str, path: str) -> str | None:
        """The file's path template that takes `method` on `path` (below the server's URL), if any."""
        from openapi_core.templating.paths.exceptions import PathError

        try:
            with self._lock:
                found = self._finder.find(method.lower(), self.server_url + path)
        except PathError:
            return None
        return str(found.path_result.pattern)

    def template_for(self, path: str) -> str | None:
        """The file's path template for `path` whatever the method (the most literal one where several match:
        `/databases/redis` before `/databases/{uuid}`)."""
        found = {template for method in METHODS if (template := self.template(method, path)) is not None}
        return min(found, key=lambda template: (template.count("{"), template), default=None)

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        """The file's operation for `method` on `template`, as the file writes it (`$ref`s unresolved)."""
        found: dict[str, Any] | None = self.spec["paths"].get(template, {}).get(method.lower())
        return found

    def problems(self, method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                 body: bytes, content_type: str | None) -> list[str]:
        """What the vendor's API would refuse about this request; `path` is below the server's URL."""
        pairs = tuple(query)
        declared = tuple(sorted((name.lower(), value) for name, value in headers.items()
                                if name.lower() in self._headers))
        key: RequestKey = (method, path, pairs, declared, body or b"", content_type)
        with self._lock:
            found = self._remembered.get(key)
            if found is None:
                found = tuple(self._check(method, path, pairs, headers, body, content_type))
                self._remembered[key] = found
                if len(self._remembered) > REMEMBERED:
                    self._remembered.popitem(last=False)
        return list(found)

    def _check(self, method: str, path: str, pairs: tuple[tuple[str, str], ...], headers: Mapping[str, str],
               body: bytes, content_type: str | None) -> list[str]:
        from openapi_core.datatypes import RequestParameters
        from openapi_core.templating.paths.exceptions import PathError
        from openapi_core.validation.request.exceptions import MissingRequestBody
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        request = VendorRequest(
            *_split_url(self.server_url + path), method.lower(),
            RequestParameters(query=ImmutableMultiDict(list(pairs)), header=Headers(dict(headers))),
            content_type or "", body or None,
        )
        try:
            found = self._finder.find(request.method, request.host_url + request.path)
        except PathError as exc:
            return [f"{method} {path}: {_describe(exc)}"]
        template = str(found.path_result.pattern)
        declared = {name for name, location in _parameters(found) if location == "query"}
        found_problems = [f"{method} {template}: query parameter {name!r} is not in the vendor's API"
                          for name in dict(pairs) if name not in declared]
        found_problems += [f"{method} {template}: {_describe(error)}"
                           for validator in (self._parameters, self._body) for error in validator.iter_errors(request)
                           if not isinstance(error, MissingRequestBody)]  # an optional body left out
        found_problems += [f"{method} {template}: {problem}" for problem in _body_problems(found.operation, body)]
        return found_problems


@functools.cache
def _loaded(vendor: str, answer_only: tuple[AnswerOnlyFields, ...], loose_formats: tuple[str, ...],
            ) -> VendorContract:
    return VendorContract(openapi_file(vendor), answer_only, loose_formats)


def _declared(owner: SchemaPath) -> list[tuple[str, str]]:
    """(name, location) of each parameter a path or an operation declares, `$ref`s resolved."""
    if "parameters" not in owner:
        return []
    return [((parameter / "name").read_str(), (parameter / "in").read_str()) for parameter in owner / "parameters"]


def _parameters(found: Any) -> list[tuple[str, str]]:
    """(name, location) of each parameter declared on the matched path and operation, `$ref`s resolved."""
    return [*_declared(found.path), *_declared(found.operation)]


def _body_problems(operation: SchemaPath, body: bytes) -> list[str]:
    """A body where the route takes none, and JSON fields its schema does not declare (openapi-core lets both
    through: a schema's undeclared properties are allowed unless it says otherwise)."""
    try:
        sent = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []  # not JSON: openapi-core has judged it against the media type
    if "requestBody" not in operation:
        return [] if sent in (None, {}) else ["takes no body"]
    content = operation / "requestBody" / "content"
    if not isinstance(sent, dict) or "application/json" not in content:
        return []
    known = _body_fields(content / "application/json" / "schema")
    if known is None:
        return []
    return [f"body field {name!r} is not in the vendor's API" for name in sent if name not in known]


def _body_fields(schema: SchemaPath) -> set[str] | None:
    """The fields an object schema declares, through `allOf`, `oneOf` and `anyOf`; None when it takes any field
    (no properties listed, or `additionalProperties` allowed)."""
    if "additionalProperties" in schema and (schema / "additionalProperties").read_value() is not False:
        return None
    names = set(map(str, (schema / "properties").keys())) if "properties" in schema else set()
    composed = [keyword for keyword in ("allOf", "oneOf", "anyOf") if keyword in schema]
    for keyword in composed:
        for member in schema / keyword:
            member_names = _body_fields(member)
            if member_names is None:
                return None
            names |= member_names
    return names if names or composed else None


def _split_url(url: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}", slash + path


def _describe(error: BaseException) -> str:
    """openapi-core's error in words, with the schema errors underneath it (which field, which rule)."""
    text = str(error)
    cause = error.__cause__
    details = [getattr(schema_error, "message", str(schema_error))
               for schema_error in getattr(cause, "schema_errors", None) or ()]
    if details:
        text = f"{text.split(':')[0]}: " + "; ".join(details)
    return text
