"""Prepare a scratch copy of the repository for a mutmut run over one module.

    python mutation/prepare.py SCRATCH_DIR MODULE
    python mutation/prepare.py --list | --check MODULE...   (the modules it knows; exit 2 on another)

Run by mutation/run.sh; it never touches the checkout it is run from, only SCRATCH_DIR (a copy).

1. Lifts decorators into assignments, in MODULE only: mutmut 3 silently skips every decorated
   function other than a lone @staticmethod/@classmethod (see mutmut's file_mutation.py), which
   here would leave out the @lru_cache kernels and operators of trainer/blur.py, the @property
   rules of trainer/config.py, the @torch.no_grad() setters of trainer/models.py and train.evaluate.
   So, e.g.

       @lru_cache(maxsize=None)                 def kernel_1d(kind, level):
       def kernel_1d(kind, level):       ->         ...
           ...                                  kernel_1d = lru_cache(maxsize=None)(kernel_1d)

   which Python defines identically (a decorator is that call, made after the def). The
   decorators keep their order; module- and class-level functions only.
2. Writes the [tool.mutmut] section of SCRATCH_DIR/pyproject.toml for MODULE and its tests
   (MODULES below), replacing any such section there.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

# module -> its fast unit tests (no Ray, no subprocess-only checks)
MODULES: dict[str, list[str]] = {
    "trainer/blur.py": ["tests/test_blur.py"],
    "trainer/schedules.py": ["tests/test_schedules.py"],
    "trainer/models.py": ["tests/test_models.py", "tests/test_smoothing.py"],
    "trainer/train.py": ["tests/test_train.py", "tests/test_train_cli.py"],
    "trainer/config.py": ["tests/test_config.py"],
    "analysis/stats.py": ["tests/test_stats.py"],
}

KEEP = ("staticmethod", "classmethod")  # mutmut mutates these when they are the only decorator


def lift_decorators(source: str) -> tuple[str, int]:
    """`source` with every decorator of a module- or class-level function turned into an
    assignment after the function (mutmut's own exceptions left alone); and how many functions."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    targets: list[ast.FunctionDef] = []
    for node in tree.body:
        scope = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in scope:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.decorator_list:
                names = [ast.unparse(d) for d in item.decorator_list]
                if len(names) == 1 and names[0] in KEEP:
                    continue
                targets.append(item)
    for item in sorted(targets, key=lambda f: f.lineno, reverse=True):
        indent = re.match(r"\s*", lines[item.lineno - 1]).group(0)
        call = item.name
        for decorator in reversed(item.decorator_list):
            call = f"{ast.get_source_segment(source, decorator)}({call})"
        lines.insert(item.end_lineno, f"{indent}{item.name} = {call}\n")
        first = min(d.lineno for d in item.decorator_list) - 1  # the '@' line of the outermost
        del lines[first : item.lineno - 1]
    return "".join(lines), len(targets)


def mutmut_section(module: str, tests: list[str]) -> str:
    quoted = lambda values: "[" + ", ".join(f'"{v}"' for v in values) + "]"  # noqa: E731
    return (
        "\n[tool.mutmut]\n"
        '# written by mutation/prepare.py for one module; see README "Mutation testing"\n'
        'source_paths = ["trainer", "study", "analysis", "search_spaces"]\n'
        f"only_mutate = {quoted([module])}\n"
        f"pytest_add_cli_args_test_selection = {quoted(tests)}\n"
        # mutation/plugin.py: clears trainer.blur's lru caches before every test; lets the test that
        # counts torch.compile's compilations fail while mutmut maps tests to functions.
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutation.plugin"]\n'
        'also_copy = ["mutation"]\n'
        'process_isolation = "forkserver"  # torch is not fork-safe after use\n'
        "use_git_change_detection = false\n"
    )


def unknown(modules: list[str]) -> int:
    for module in modules:
        if module not in MODULES:
            print(f"mutation: unknown module {module!r}; choose from {' '.join(MODULES)}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        print(" ".join(MODULES))
        return 0
    if argv[:1] == ["--check"]:
        return unknown(argv[1:])
    scratch, module = Path(argv[0]), argv[1]
    if unknown([module]):
        return 2
    path = scratch / module
    lifted, count = lift_decorators(path.read_text())
    compile(lifted, str(path), "exec")
    path.write_text(lifted)
    pyproject = scratch / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "", pyproject.read_text(), flags=re.S)
    pyproject.write_text(text.rstrip("\n") + "\n" + mutmut_section(module, MODULES[module]))
    print(f"{module}: {count} decorated functions lifted; tests {' '.join(MODULES[module])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
