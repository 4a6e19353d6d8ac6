"""Sphinx configuration of the docs site (``make docs``; ``.ci/run`` builds it with ``-W --keep-going``).

Pages are MyST Markdown. Links between pages and to their headings (``superb.md#conditions``) are checked by MyST;
a link to a file of the repository (``../pretrain/rd_wavlm.yaml``) becomes a download of that file, and a missing
one is a warning, as is any link MyST cannot resolve (folders, README.md). The API pages import the package of
this checkout; only ``s3prl`` is mocked, so the build needs neither s3prl nor a GPU.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from sphinx.util import inspect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import robustdistiller_upstream  # noqa: E402

# the installed package's start-up hook may have imported another checkout's before this file ran
if Path(robustdistiller_upstream.__file__).resolve().parent != ROOT / "robustdistiller_upstream":
    raise RuntimeError(f"the docs of {ROOT} would document {robustdistiller_upstream.__file__}: build them "
                       f"with PYTHONPATH={ROOT} (what `make docs` does)")

project = "robustdistiller"
author = "the robustdistiller authors"
copyright = author
release = version = robustdistiller_upstream.__version__

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
extensions = ["myst_parser", "sphinx.ext.autodoc", "cli_help"]
exclude_patterns = ["_build"]
highlight_language = "none"  # a fence without a language is shown as written (logs, trees, tables)

myst_heading_anchors = 4

nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(torch|nn|numpy|np|s3prl|pathlib|argparse|collections|os)\..*")]
nitpick_ignore = [("py:class", "robustdistiller_upstream.config.T")]  # the TypeVar of load_config / from_dict

autodoc_mock_imports = ["s3prl"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # not torch's nn.Module docstrings
autodoc_default_options = {"members": True}

html_theme = "furo"
toc_object_entries_show_parents = "hide"  # the page's contents: `teacher` under PretrainConfig, not PretrainConfig.teacher
html_title = f"robustdistiller {release}"


def class_signature(app, what, name, obj, options, signature, return_annotation):
    """A dataclass or a protocol gets none: a dataclass's fields are listed under it with their types and defaults (the ``__init__``
    signature would only repeat them, with ``<factory>`` for every nested section). A class with its own
    ``__init__`` gets that one's, where autodoc would take ``(*args, **kwargs)`` from s3prl's ``UpstreamBase``
    (its metaclass's ``__call__``, or the mock's ``__new__`` without s3prl)."""
    if what != "class":
        return None
    if dataclasses.is_dataclass(obj) or getattr(obj, "_is_protocol", False):
        return "", None
    if "__init__" in vars(obj):
        init = inspect.signature(obj.__init__, bound_method=True, type_aliases=app.config.autodoc_type_aliases)
        return inspect.stringify_signature(init, show_return_annotation=False, unqualified_typehints=True), None
    return None


def setup(app):
    app.connect("autodoc-process-signature", class_signature)
