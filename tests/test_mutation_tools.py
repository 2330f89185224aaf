"""The mutation-testing tools (mutation/): what they do to the code they copy, and the equivalent list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "mutation"))

import prepare  # noqa: E402  (mutation/prepare.py)
import score  # noqa: E402  (mutation/score.py)

SOURCE = '''
from functools import lru_cache

calls = []


@lru_cache(maxsize=None)
def square(x):
    calls.append(x)
    return x * x


def twice(f):
    return lambda *a: 2 * f(*a)


class Box:
    def __init__(self, side):
        self.side = side

    @property
    def area(self):
        return self.side * self.side

    @staticmethod
    def unit():
        return Box(1)

    @twice
    @lru_cache(maxsize=4)
    def perimeter(self):
        return 4 * self.side
'''


def run(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<lifted>", "exec"), namespace)
    return namespace


def test_lifted_decorators_define_the_same_functions():
    lifted, count = prepare.lift_decorators(SOURCE)
    assert count == 3  # square, area, perimeter; a lone @staticmethod is left for mutmut
    assert "@lru_cache" not in lifted and "@property" not in lifted and "@staticmethod" in lifted
    assert "square = lru_cache(maxsize=None)(square)" in lifted
    assert "perimeter = twice(lru_cache(maxsize=4)(perimeter))" in lifted  # outermost applied last
    original, changed = run(SOURCE), run(lifted)
    for namespace in (original, changed):
        assert [namespace["square"](3), namespace["square"](3)] == [9, 9] and namespace["calls"] == [3]  # cached
        box = namespace["Box"](5)
        assert (box.area, box.perimeter(), namespace["Box"].unit().area) == (25, 40, 1)


def test_every_core_module_compiles_after_lifting_and_names_its_tests():
    for module, tests in prepare.MODULES.items():
        lifted, _ = prepare.lift_decorators((ROOT / module).read_text())
        compile(lifted, module, "exec")
        assert all((ROOT / test).exists() for test in tests), module


def test_an_unknown_module_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "mutation" / "prepare.py"), str(tmp_path), "study/run.py"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "mutation: unknown module 'study/run.py'; choose from " + " ".join(prepare.MODULES)]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_mutmut_section_replaces_an_earlier_one(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "schedules.py").write_text((ROOT / "trainer" / "schedules.py").read_text())
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.mutmut]\nonly_mutate = ["old"]\n\n[tool.other]\na = 1\n')
    for _ in range(2):
        assert prepare.main([str(tmp_path), "trainer/schedules.py"]) == 0
    text = (tmp_path / "pyproject.toml").read_text()
    assert text.count("[tool.mutmut]") == 1 and '"old"' not in text and "[tool.other]\na = 1" in text
    assert 'only_mutate = ["trainer/schedules.py"]' in text
    assert 'pytest_add_cli_args_test_selection = ["tests/test_schedules.py"]' in text


def test_equivalent_list_entries_are_well_formed():
    path = ROOT / "mutation" / "equivalent.txt"
    names = [line.split(" | ")[0] for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    entries = score.load_equivalents(path)
    assert len(entries) == len(names), "a mutant is listed twice"
    modules = {module.removesuffix(".py").replace("/", ".") for module in prepare.MODULES}
    for name, (mutated, reason) in entries.items():
        assert name.rsplit(".", 1)[0] in modules and "__mutmut_" in name, name
        assert mutated and len(reason) > 10, name


@pytest.mark.parametrize("diff, added", [
    ("--- a\n+++ b\n-    x = 1\n+    x = 2\n", ["x = 2"]),
    ("--- a\n+++ b\n     y\n-    return a + b\n+    return a - b\n", ["return a - b"]),
])
def test_the_mutated_line_is_the_added_line_of_the_diff(diff, added):
    assert score.added_lines(diff) == added
