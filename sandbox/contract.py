"""What a vendor's own OpenAPI file says a request must look like, checked by a maintained validator
(openapi-core): the route and its method, every parameter (path, query, header: types, enums, bounds,
required ones), and the request body with every `$ref`, `allOf` and `oneOf` resolved. On top of what
openapi-core checks, a query parameter the route does not declare is a problem too (a misspelt or invented
one is silently ignored by a real API, which is how calls quietly do the wrong thing).

Security requirements are not checked from the files: Cloudflare's declares its DNS routes for an email and
global key only, and its Stream routes for a key and a token at once, while the real API takes an API token
on both. Each stand-in checks the credential itself.

The files are package data beside Coolify's (`sandbox/openapi/<vendor>.json`), the same files as
`shared/<vendor>/openapi.json`; openapi-core is imported only when a contract is built."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openapi_core.templating.paths.finders import APICallPathFinder
    from openapi_core.validation.request.validators import V30RequestBodyValidator, V30RequestParametersValidator


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
    server_url: str = field(init=False)
    _parameters: V30RequestParametersValidator = field(init=False, repr=False)
    _body: V30RequestBodyValidator = field(init=False, repr=False)
    _finder: APICallPathFinder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from jsonschema_path import SchemaPath
        from openapi_core.templating.paths.finders import APICallPathFinder
        from openapi_core.validation.request.validators import (
            V30RequestBodyValidator,
            V30RequestParametersValidator,
        )

        checked = copy.deepcopy(self.spec)
        schemas = checked.get("components", {}).get("schemas", {})
        for correction in self.answer_only:
            schema = schemas[correction.schema]
            schema["required"] = [name for name in schema.get("required", []) if name not in correction.fields]
        server = checked["servers"][0]["url"]
        self.server_url = server if "://" in server else "http://localhost" + server
        schema_path = SchemaPath.from_dict(checked)
        self._parameters = V30RequestParametersValidator(schema_path)
        self._body = V30RequestBodyValidator(schema_path)
        self._finder = APICallPathFinder(schema_path)

    @classmethod
    def load(cls, vendor: str, answer_only: tuple[AnswerOnlyFields, ...] = ()) -> VendorContract:
        """The vendor's contract, built once per process (building GitHub's takes half a second)."""
        return _loaded(vendor, answer_only)

    def query_parameters(self, method: str, path: str) -> set[str] | None:
        """The query parameters the file declares for `method` on `path`; None where it has no such route."""
        from openapi_core.templating.paths.exceptions import PathError

        try:
            found = self._finder.find(method.lower(), self.server_url + path)
        except PathError:
            return None
        return {name for name, location in _parameters(found) if location == "query"}

    def template(self, method: str, path: str) -> str | None:
        """The file's path template that takes `method` on `path` (below the server's URL), if any."""
        from openapi_core.templating.paths.exceptions import PathError

        try:
            found = self._finder.find(method.lower(), self.server_url + path)
        except PathError:
            return None
        return str(found.path_result.pattern)

    def problems(self, method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                 body: bytes, content_type: str | None) -> list[str]:
        """What the vendor's API would refuse about this request; `path` is below the server's URL."""
        from openapi_core.datatypes import RequestParameters
        from openapi_core.templating.paths.exceptions import PathError
        from openapi_core.validation.request.exceptions import MissingRequestBody
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        pairs = list(query)
        request = VendorRequest(
            *_split_url(self.server_url + path), method.lower(),
            RequestParameters(query=ImmutableMultiDict(pairs), header=Headers(dict(headers))),
            content_type or "", body or None,
        )
        where = f"{method} {path}"
        try:
            found = self._finder.find(request.method, request.host_url + request.path)
        except PathError as exc:
            return [f"{where}: {_describe(exc)}"]
        template = str(found.path_result.pattern)
        declared = {name for name, location in _parameters(found) if location == "query"}
        found_problems = [f"{method} {template}: query parameter {name!r} is not in the vendor's API"
                          for name in dict(pairs) if name not in declared]
        found_problems += [f"{method} {template}: {_describe(error)}"
                           for validator in (self._parameters, self._body) for error in validator.iter_errors(request)
                           if not isinstance(error, MissingRequestBody)]  # an optional body left out
        return found_problems


@functools.cache
def _loaded(vendor: str, answer_only: tuple[AnswerOnlyFields, ...]) -> VendorContract:
    return VendorContract(openapi_file(vendor), answer_only)


def _parameters(found: Any) -> list[tuple[str, str]]:
    """(name, location) of each parameter declared on the matched path and operation, `$ref`s resolved."""
    return [((parameter / "name").read_str(), (parameter / "in").read_str())
            for owner in (found.path, found.operation) if "parameters" in owner
            for parameter in owner / "parameters"]


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
