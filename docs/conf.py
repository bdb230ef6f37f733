"""Sphinx configuration: the guides (Markdown, myst-parser) and the API reference
(autodoc over Google-style docstrings, napoleon). Built by ``make docs`` with
warnings as errors; ``tests/test_docs.py`` builds it too.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lkrtc_trio  # noqa: E402

project = "lkrtc-trio"
author = "lkrtc-trio contributors"
copyright = "lkrtc-trio contributors"
release = lkrtc_trio.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

root_doc = "index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# performance-notes.md is not a page: bench/report.py includes it in performance.md.
exclude_patterns = ["_build", "performance-notes.md"]

# Markdown: ``#`` headings get anchors (the guides link to sections, e.g.
# concepts.md#cancellation), and ```{eval-rst} blocks host the autodoc directives.
myst_heading_anchors = 4
# The guides link to sources and examples outside docs/ (../examples/demo.py): they
# become downloads of those files.

# Docstrings are Google style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = True

html_theme = "alabaster"
html_title = f"lkrtc-trio {release}"
html_theme_options = {
    "description": "LiveKit real-time client for trio and anyio",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path: list[str] = []
html_show_sourcelink = False

# Warnings are errors (-W) and, with -n, every cross-reference must resolve. The
# build works offline (no intersphinx), so names of the standard library and of
# other projects are left as plain text instead of links.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(collections\.abc|contextlib|typing|enum|os|pathlib|subprocess|importlib|types|datetime)\..*",
    ),
    (r"py:.*", r"(trio|anyio|numpy|np|httpx|jwt|google\.protobuf|livekit)\..*"),
    # Sphinx splits the ``:type:`` field ``tuple[str, ...]`` (napoleon, from an
    # annotation) into pieces and looks the first one up.
    (r"py:class", r"tuple\[str"),
    # Python 3.10's autodoc leaves an inherited attribute's ``Path`` (from
    # another module's annotation) unqualified.
    (r"py:class", r"Path"),
]


# Public names live in private modules (lkrtc_trio._room.Room is lkrtc_trio.Room).
# Annotations and cross-references name the private location; point them at the
# documented public name instead.
def _public_names() -> dict[str, str]:
    """``private.path.Name`` -> ``public.path.Name`` for every re-exported object."""
    table: dict[str, str] = {}
    for package_name in ("lkrtc_trio", "lkrtc_trio.testing", "lkrtc_trio.api"):
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        for name, obj in vars(package).items():
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", None)
            if name.startswith("_") or not isinstance(module, str) or qualname != name:
                continue
            # a private module's, or another package's (a livekit-protocol message,
            # whose module is plain "room")
            if module != package_name:
                table.setdefault(f"{module}.{name}", f"{package_name}.{name}")
    return table


PUBLIC = _public_names()


def _lookup(path: str) -> Any:
    """The object a dotted path names, or None."""
    module_name, _, attr = path.rpartition(".")
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return obj
    return None


def _resolve_private(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: retry a reference to a private path with its public name.

    A type variable (``lkrtc_trio._stats.S``) has no page: it stays plain text.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if target.startswith("lkrtc_trio.") and isinstance(_lookup(target), TypeVar):
        return contnode
    for private, public in PUBLIC.items():
        if target == private or target.startswith(private + "."):
            node["reftarget"] = public + target[len(private) :]
            break
    else:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], node["reftarget"], node, contnode
    )


def _module_comment_docs() -> dict[tuple[str, int], list[str]]:
    """Doc comments (``#: ...``) of module-level values, keyed by name and ``id(value)``.

    autodoc reads such comments in the module it documents; the public names are
    documented as ``lkrtc_trio.NAME``, whose ``__init__.py`` only re-exports them.
    """
    from sphinx.pycode import ModuleAnalyzer

    docs: dict[tuple[str, int], list[str]] = {}
    for package_name in ("lkrtc_trio", "lkrtc_trio.testing", "lkrtc_trio.api"):
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            try:
                module = importlib.import_module(info.name)
                attr_docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
            except Exception:
                continue
            for (scope, name), lines in attr_docs.items():
                if scope == "" and hasattr(module, name):
                    docs.setdefault((name, id(getattr(module, name))), list(lines))
    return docs


_COMMENTS: dict[tuple[str, int], list[str]] | None = None


def _public_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """``autodoc-process-docstring``: a re-exported value gets its ``#:`` comment
    (not its type's docstring), and private paths become public names."""
    global _COMMENTS
    if what == "data":
        if _COMMENTS is None:
            _COMMENTS = _module_comment_docs()
        comment = _COMMENTS.get((name.rpartition(".")[2], id(obj)))
        if comment is not None:
            lines[:] = comment
        elif getattr(obj, "__doc__", None) == getattr(type(obj), "__doc__", None):
            lines[:] = []
    lines[:] = [
        _PRIVATE_PATH.sub(lambda m: PUBLIC.get(m.group(0), m.group(0)), line) for line in lines
    ]


_QUOTED_ANNOTATION = re.compile(r"(:\s*|->\s*)'([^'=]*)'")
_PRIVATE_PATH = re.compile(r"\blkrtc_trio(?:\.\w+)*\._\w+(?:\.\w+)*")


def _public_signature(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """``autodoc-process-signature``: public names in signatures; a class whose
    constructor takes private objects (``Participant(record, session)``: made by
    the room, never by you) is shown without a signature."""

    def public(text: str | None) -> str | None:
        if text is None:
            return None
        # an annotation autodoc could not evaluate (an import under TYPE_CHECKING)
        # comes quoted: unquote it, so that it is linked like the others
        text = _QUOTED_ANNOTATION.sub(r"\1\2", text)
        return _PRIVATE_PATH.sub(lambda m: PUBLIC.get(m.group(0), m.group(0)), text)

    signature, return_annotation = public(signature), public(return_annotation)
    wrapped = getattr(obj, "__wrapped__", None)
    if return_annotation and inspect.isasyncgenfunction(wrapped):
        # an @asynccontextmanager (open_room): what you call returns a context manager
        return_annotation = re.sub(
            r"^~?(?:collections\.abc\.)?AsyncIterator\[",
            "~contextlib.AbstractAsyncContextManager[",
            return_annotation,
        )
    if what in ("class", "exception") and _takes_private(obj):
        return "", return_annotation
    return signature, return_annotation


@functools.cache
def _private_class_names() -> frozenset[str]:
    """Names of the classes of lkrtc_trio's private modules that are not public."""
    public_objects = {id(_lookup(name)) for name in PUBLIC.values()}
    names: set[str] = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("lkrtc_trio") or "._" not in module_name:
            continue
        for name, obj in vars(module).items():
            if (
                isinstance(obj, type)
                and obj.__module__ == module_name
                and id(obj) not in public_objects
            ):
                names.add(name)
    return frozenset(names)


def _takes_private(cls: Any) -> bool:
    """Whether ``cls(...)`` takes an argument of a private type."""
    annotations = getattr(getattr(cls, "__init__", None), "__annotations__", {})
    private = _private_class_names()
    for annotation in annotations.values():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        for identifier in re.findall(r"[A-Za-z_][\w.]*", text):
            last = identifier.rpartition(".")[2]
            if last in private or _PRIVATE_PATH.fullmatch(identifier):
                return True
    return False


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    """``autodoc-process-bases``: a private base (``_Open``) shows as its own bases."""
    index = 0
    while index < len(bases):
        base = bases[index]
        private = getattr(base, "__module__", "").startswith("lkrtc_trio") and getattr(
            base, "__name__", ""
        ).startswith("_")
        if isinstance(base, type) and private:
            bases[index : index + 1] = [b for b in base.__bases__ if b not in bases]
        else:
            index += 1


def _builtins_are_builtins(app: Any, doctree: Any) -> None:
    """``doctree-read``: ``type`` in an annotation is the builtin, not a fuzzy
    match on an attribute called ``type`` (``VideoFrame.type``)."""
    from sphinx.addnodes import pending_xref

    for node in doctree.findall(pending_xref):
        target = node.get("reftarget")
        if node.get("refdomain") == "py" and target in vars(builtins) and "refspecific" in node:
            del node["refspecific"]


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", _builtins_are_builtins)
    app.connect("missing-reference", _resolve_private)
    app.connect("autodoc-process-docstring", _public_docstring)
    app.connect("autodoc-process-signature", _public_signature)
    app.connect("autodoc-process-bases", _public_bases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def sources_digest() -> str:
    """A digest of what the build reads: docs/ (without _build), the package's
    sources, and the versions of Python, Sphinx and myst-parser. ``make docs``
    leaves it in ``docs/_build/html/.sources-digest`` after a warning-free build,
    so that ``tests/test_docs.py`` need not build the same sources again."""
    import hashlib
    import importlib.metadata

    digest = hashlib.sha256()
    for name in ("sphinx", "myst-parser"):
        digest.update(f"{name} {importlib.metadata.version(name)}\n".encode())
    digest.update(sys.version.encode())
    docs = ROOT / "docs"
    files = [
        p for p in docs.rglob("*") if p.is_file() and "_build" not in p.relative_to(docs).parts
    ]
    files += [p for p in (ROOT / "lkrtc_trio").rglob("*.py*") if p.suffix in (".py", ".pyi")]
    for path in sorted(files):
        if "__pycache__" in path.parts:
            continue
        digest.update(f"{path.relative_to(ROOT)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


if __name__ == "__main__":
    # `python docs/conf.py --stamp OUTDIR`, after a warning-free build (make docs)
    if sys.argv[1:2] != ["--stamp"] or len(sys.argv) != 3:
        raise SystemExit("usage: python docs/conf.py --stamp OUTDIR")
    (Path(sys.argv[2]) / ".sources-digest").write_text(sources_digest())
