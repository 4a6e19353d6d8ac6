"""The ``cli-help`` directive: a command's ``-h`` text, exactly as a terminal of ``WIDTH`` columns prints it.

``MODULE:FUNCTION`` names a function returning the ``argparse.ArgumentParser``; the page gets its help, then one
section per subcommand (title ``PROG SUB``, anchor ``#prog-sub``) holding that subcommand's help. Help strings are
shown as written (plain text for a terminal), never parsed as markup.
"""

from __future__ import annotations

import argparse
import importlib
import os
from contextlib import contextmanager
from typing import Iterator

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id

WIDTH = 88


@contextmanager
def terminal_width(columns: int) -> Iterator[None]:
    """argparse wraps help at ``$COLUMNS - 2``: a fixed width makes the pages independent of the build's terminal."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns + 2)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name, in the order they were added (empty without subcommands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class CliHelp(SphinxDirective):
    required_arguments = 1

    def help_block(self, parser: argparse.ArgumentParser) -> nodes.literal_block:
        with terminal_width(WIDTH):
            text = parser.format_help()
        return nodes.literal_block(text, text, language="none")

    def run(self) -> list[nodes.Node]:
        module_name, _, function = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(module_name), function)()
        out: list[nodes.Node] = [self.help_block(parser)]
        for name, sub in subcommands(parser).items():
            title = f"{parser.prog} {name}"
            anchor = make_id(self.env, self.state.document, term=title)
            section = nodes.section(ids=[anchor], names=[anchor])
            self.state.document.note_explicit_target(section)  # a label: MyST links resolve ``cli.md#prog-sub``
            section += nodes.title(title, "", nodes.literal(title, title))
            section += self.help_block(sub)
            out.append(section)
        return out


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
