"""The kubectl commands the docs and the kustomization comments give, read into parts.

Commands come from Markdown code (fenced blocks and inline spans, through markdown-it) and
from the indented command lines of YAML comments. Only what a check needs is parsed: the
namespace, the verb, the objects named, and the few arguments that name more (a container,
a port, a label selector, a path).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

from tests.delivery.test_docs_links import _walk

# kubectl's names and short names for the kinds the docs mention.
KINDS = {
    **dict.fromkeys(("deployment", "deployments", "deploy"), "Deployment"),
    **dict.fromkeys(("job", "jobs"), "Job"),
    **dict.fromkeys(("service", "services", "svc"), "Service"),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), "StatefulSet"),
    **dict.fromkeys(("hpa", "horizontalpodautoscaler"), "HorizontalPodAutoscaler"),
    **dict.fromkeys(("secret", "secrets"), "Secret"),
    **dict.fromkeys(("configmap", "configmaps", "cm"), "ConfigMap"),
    **dict.fromkeys(("ingress", "ingresses", "ing"), "Ingress"),
    **dict.fromkeys(("endpoints", "ep"), "Endpoints"),
    **dict.fromkeys(("pod", "pods", "po"), "Pod"),
    # CloudNativePG's kinds (components/cnpg).
    **dict.fromkeys(("cluster", "clusters", "clusters.postgresql.cnpg.io"), "Cluster"),
    **dict.fromkeys(("scheduledbackup", "scheduledbackups"), "ScheduledBackup"),
}
# Options followed by a separate value (`-n NS`); `--opt=value` is one token anyway.
VALUED = {
    "-n", "--namespace", "-l", "--selector", "-o", "--output", "-k", "--kustomize", "-f",
    "--filename", "--name", "-c", "--container", "--type", "--port", "--target-port",
    "--since", "--cert", "--key", "--timeout", "--for",
}  # fmt: skip
# Verbs whose first positional argument is a kind (or kinds) and the rest names.
KIND_THEN_NAMES = {"get", "describe", "delete", "expose", "top"}
# Verbs that name paths or new objects, checked on their own.
PATH_VERBS = {"apply", "kustomize", "create"}
SHELL_OPERATORS = {"|", "||", "&&", ";"}


@dataclass(frozen=True)
class Reference:
    kind: str
    name: str


@dataclass
class Kubectl:
    """One kubectl command line, as written in `where` (block: which code block it is in)."""

    where: str
    text: str
    block: int = 0
    namespace: str | None = None
    verb: str = ""
    options: dict[str, str] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)
    after_dashes: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[Reference]:
        """The objects named: TYPE/NAME, or TYPE NAME... after get, delete and the like."""
        if self.verb in PATH_VERBS:
            return []
        args = self.positional[1:] if self.verb in {"rollout", "set"} else self.positional
        if self.verb in KIND_THEN_NAMES and args and "/" not in args[0]:
            found = [Reference(kind, name) for kind in args[0].split(",") for name in args[1:]]
        else:
            found = [Reference(*arg.split("/", 1)) for arg in args if "/" in arg and "=" not in arg]
        return [ref for ref in found if "<" not in ref.name]


def parse(where: str, text: str, block: int = 0) -> Kubectl:
    tokens = shlex.split(text, comments=True)
    cut = next((i for i, token in enumerate(tokens) if token in SHELL_OPERATORS), len(tokens))
    tokens = tokens[1:cut]
    command = Kubectl(where, text, block)
    if "--" in tokens:
        command.after_dashes = tokens[tokens.index("--") + 1 :]
        tokens = tokens[: tokens.index("--")]
    words = iter(tokens)
    for token in words:
        if token.startswith("-"):
            name, equals, value = token.partition("=")
            if not equals and name in VALUED:
                value = next(words, "")
            command.options[name] = value
        elif not command.verb:
            command.verb = token
        else:
            command.positional.append(token)
    command.namespace = command.options.get("-n") or command.options.get("--namespace")
    return command


def _joined(lines: list[str]) -> Iterator[str]:
    """Logical lines: a trailing backslash continues the line."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""


def _kubectl_lines(code: str) -> Iterator[str]:
    for line in _joined(code.splitlines()):
        if re.match(r"\s*kubectl\s", line):
            yield line.strip()


def markdown_commands(path: Path, root: Path) -> list[Kubectl]:
    where = str(path.relative_to(root))
    found = []
    tokens = _walk(MarkdownIt("commonmark").enable("table").parse(path.read_text()))
    for block, token in enumerate(tokens):
        if token.type in {"fence", "code_block", "code_inline"}:
            found += [parse(where, line, block) for line in _kubectl_lines(token.content)]
    return found


def yaml_comment_commands(path: Path, root: Path) -> list[Kubectl]:
    """Commands on comment lines indented as code (`#   kubectl ...`)."""
    code = [m.group(1) for m in re.finditer(r"^#( {3}.*)$", path.read_text(), re.MULTILINE)]
    return [parse(str(path.relative_to(root)), line) for line in _kubectl_lines("\n".join(code))]
