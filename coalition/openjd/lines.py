"""Where a field sits in a YAML or JSON document: the line an error message names.

openjd-model reports a problem by its path in the document (`steps[0] -> script -> actions ->
onRun -> timeout`), as `openjd check` prints it; a person fixing a 300-line template wants the
line too. PyYAML's node tree (`yaml.compose`, which reads JSON as well) keeps each node's
position, so the path is walked there. A path that leaves the document (a missing field)
gives the line of the deepest part that exists: where the field should be added.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

_PART = re.compile(r"([^\[\]]*)((?:\[\d+\])*)")


def parse_path(location: str) -> list[str | int]:
    """`steps[0] -> script -> args[1]` -> ["steps", 0, "script", "args", 1]."""
    out: list[str | int] = []
    for part in location.split(" -> "):
        m = _PART.fullmatch(part.strip())
        if m is None:
            out.append(part.strip())
            continue
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def compose(text: str) -> yaml.Node | None:
    """The document's node tree, or None if it does not parse."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def locate(root: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at `path` (of a mapping entry: its key's line), or of its
    deepest existing ancestor; None without a tree."""
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for key in path:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line
