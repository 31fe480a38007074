"""workers.refs: source hashes that are the same in every process, and one-line errors."""

import subprocess
import sys

import pytest

from workers import refs

NO_SOURCE = """
from workers.refs import source_hash
ns = {}
exec(compile("def f(x):\\n    return [lambda y: y + i for i in range(x)]\\n", "<cell>", "exec"), ns)
print(source_hash(ns["f"]))
"""


def test_a_function_without_source_hashes_the_same_in_every_process():
    """Hashed from its code (nested code objects included), not from reprs holding addresses."""
    got = {subprocess.run([sys.executable, "-c", NO_SOURCE], capture_output=True, text=True, check=True).stdout
           for _ in range(2)}  # fmt: skip
    assert len(got) == 1 and len(got.pop().strip()) == 12
    ns: dict = {}
    exec(compile("def f(x):\n    return [lambda y: y - i for i in range(x)]\n", "<cell>", "exec"), ns)  # noqa: S102
    edited = subprocess.run([sys.executable, "-c", NO_SOURCE], capture_output=True, text=True).stdout.strip()
    assert refs.source_hash(ns["f"]) != edited, "an edited body gives another hash"


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("no_colon", "is not a reference of the form PKG.MODULE:CALLABLE"),
        ("no_such_module_qkd_refs:fn", "cannot be imported: ModuleNotFoundError: No module named"),
        ("json:no_such_attr", "cannot be imported: 'json' has no attribute 'no_such_attr'"),
        ("json.decoder:JSONArray.nope", "has no attribute 'nope'"),
        ("sys:maxsize", "is int, not a callable"),
    ],
)
def test_bad_references_are_one_line(ref, words):
    with pytest.raises(refs.RefError) as err:
        refs.resolve(ref)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_registered_objects_resolve_first_and_lambdas_need_a_name():
    def mine(n):
        return n

    ref = refs.register(mine, name="mine_for_test")
    try:
        assert ref == "__main__:mine_for_test" and refs.resolve(ref) is mine
        assert refs.reference_of(mine) == ref
        assert refs.reference_of(refs.resolve) == "workers.refs:resolve"
        with pytest.raises(refs.RefError, match="lambda has none"):
            refs.register(lambda n: n)
    finally:
        refs.REGISTERED.pop(ref, None)
