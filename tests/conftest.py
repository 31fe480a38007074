"""What the whole suite shares: one local Ray per test process, and a run in parallel
(``pytest -n N --dist loadgroup``, as ``make test`` does) that is as safe as a serial one.

Several local Rays on one machine, one per xdist worker and one per ``qkd-sweep sweep``
subprocess, do not collide: each picks free ports and its own session folder under the
temp dir. What they share is the home folder :func:`sweep.ray_env._quiet_home` gives the Ray
processes, where Ray keeps the token of its token authentication (``~/.ray/auth_token``),
written by the first Ray that finds none; two Rays starting at once in a fresh home would
each write their own, and the workers of one would then present the other's. The token is
written here once, before any test runs.

Tests that ask for ``local_ray`` share the Ray of their process: started by the first sweep
or ``connect`` that needs one, kept for the next such test the same worker runs, shut down
after the last of a run of them. Each file's such tests form one xdist group, so that they
start one Ray between them, and the files spread over the workers: run one after another on
one worker, as a single group for the whole suite, they were its critical path (about 17
minutes of a run's 18, while the other workers idled). A test that starts a Ray of its own
without that fixture is safe in any worker too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile

import pytest

#: The temporary root this conftest made for an xdist run (removed if the run passes).
_OWN_BASETEMP = pytest.StashKey[str]()


def _write_ray_token() -> None:
    """Ray's token in the Ray processes' home, written whole (a temporary file linked into
    place) and only if there is none yet, so that concurrent sessions agree on it."""
    from sweep.ray_env import _quiet_home  # noqa: PLC0415

    folder = os.path.join(_quiet_home(), ".ray")
    os.makedirs(folder, exist_ok=True)
    token = os.path.join(folder, "auth_token")
    if os.path.exists(token):
        return
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".auth_token.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # what ray's generate_new_authentication_token writes
        with contextlib.suppress(FileExistsError):  # another process got there first: its token stands
            os.link(tmp, token)
    finally:
        os.unlink(tmp)


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None) and not config.option.basetemp:
        # xdist puts each worker's temporary folders under <basetemp>/popen-gwN, ten characters
        # more than a serial run's: a test comparing a message that shortens long values
        # (reprlib's 80 characters, sweep.spec_errors.show) then sees its own tmp_path shortened. A
        # short root of the run's own, removed when the run passes, keeps the serial lengths.
        config.option.basetemp = tempfile.mkdtemp(prefix="qkd-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp
    # Ray starts its workers at nice 15 (RAY_worker_niceness), below the test process that
    # waits for them; on a machine shared with other work that makes a sweep in a test crawl
    # while its driver idles. The tests' Rays (and the sweeps they start as subprocesses)
    # run their workers at the driver's priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _write_ray_token()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(autouse=True)
def _cluster_alone(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Under xdist, a ``cluster`` test (a two-node Ray and a sweep on it, in bounded time)
    runs while no ``slow`` test (a sweep in a subprocess, Aer training) does: an exclusive
    lock for the one, shared ones for the others, on a file all the workers see."""
    marks = {m.name for m in request.node.iter_markers()} & {"cluster", "slow"}
    if not marks or not hasattr(request.config, "workerinput"):
        yield
        return
    import fcntl  # noqa: PLC0415

    lock = tmp_path_factory.getbasetemp().parent / "heavy.lock"  # <basetemp>/popen-gwN/..
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if "cluster" in marks else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """Every test that uses a module fixture of its own module, or the process's shared Ray,
    into its module's xdist group (``--dist loadgroup``): a file's sweeps on a local Ray then
    run one after another on one worker and start one Ray between them, while the files
    spread over the workers."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        if "local_ray" in getattr(item, "fixturenames", ()) or _uses_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    if hasattr(config, "workerinput"):  # an xdist worker: the long units first, spread out
        items[:] = _long_first(items)
    result = yield
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        _group_ids(items)
    return result


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a module-scoped fixture of its own module (a teacher trained once
    for the module, figures drawn once): its module's tests then run on one worker, which
    builds that fixture once, as a serial run does, instead of once per worker."""
    module = item.nodeid.split("::")[0]
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for d in defs:
            if d.scope == "module" and d.baseid == module:
                return True
    return False


def _long_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The order in which xdist hands out the tests: the sweeps on a shared Ray, the slow and
    cluster tests and the groups spread over the first half of the rest (each file's order
    kept), so that the long units start early, without ending the run on one busy worker, and
    not all at once: each of them starts a Ray or trains, and a handful starting together on
    two cores would each take minutes to get going."""

    def rank(item: pytest.Item) -> int:
        return 0 if any(item.get_closest_marker(m) for m in ("slow", "cluster", "xdist_group")) else 1

    ranked: list[list[pytest.Item]] = [[], []]
    for item in items:
        ranked[rank(item)].append(item)
    long, rest = ranked
    units: list[list[pytest.Item]] = []  # a group is one unit: its tests stay together
    for item in long:
        group = [m.args[:1] for m in item.iter_markers("xdist_group")]
        if units and group and group == [m.args[:1] for m in units[-1][0].iter_markers("xdist_group")]:
            units[-1].append(item)
        else:
            units.append([item])
    step = max(1, len(rest) // (2 * len(units))) if units else 0
    out: list[pytest.Item] = []
    for i, unit in enumerate(units):
        out += unit + rest[i * step : (i + 1) * step]
    return out + rest[len(units) * step :]


def _group_ids(items: list[pytest.Item]) -> None:
    """The ``@group`` suffix on the test ids by which the xdist controller keeps a group on one
    worker. xdist (3.8) writes it to ``item._nodeid``, which pytest 9.2 no longer reads (an
    item's id is ``item._id``): without this every group would be spread over the workers."""
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})  # fmt: skip
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId  # noqa: PLC0415

            item._id = NodeId.parse(item.nodeid + suffix)


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The shared Ray is shut down after the last of a run of tests that use it, so that a
    test after them finds no Ray in its process, as it would in a run of its file alone."""
    if "local_ray" in item.fixturenames and (nextitem is None or "local_ray" not in nextitem.fixturenames):
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


@pytest.fixture
def local_ray():
    """This process's local Ray, shared by consecutive tests that ask for it (one xdist group):
    a test's sweep starts it if none is running (or restarts it, as
    :func:`sweep.ray_env.connect` does, for a sweep that needs another set-up hook), and it
    stays up for the next such test; it is shut down after the last of them."""
    return None
