import os

import pytest
import torch

from tests.helpers import TinyNet
from tests.helpers.workers import group_of, one_at_a_time_where_marked

# Tests never touch the user's cache.
os.environ.setdefault("MEDBENCH_CACHE", os.path.join(os.path.dirname(__file__), "..", ".bench-cache", "tests"))
# the cores shared among pytest-xdist's workers (`-n 2` in pyproject.toml): two workers at
# two threads each on a 2-core machine would oversubscribe it
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduling with our groups (tests.helpers.workers.group_of):
    a module's tests, or a group of modules, on one worker. (Markers for `--dist
    loadgroup` do not work under pytest 9.2: xdist 3.8 writes the group into
    `item._nodeid`, which pytest 9.2 no longer reads, so every test was its own group.)"""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked `alone` runs with no other test running (its fixtures too)."""
    with one_at_a_time_where_marked(item, nextitem):
        yield


@pytest.fixture
def tiny_data():
    from bench.data import SyntheticSizes
    from bench.data.generated import synthetic_bundle

    return synthetic_bundle(16, 0, "binary", 2, SyntheticSizes(train=96, val=32, test=64, calibration=32))


@pytest.fixture
def tiny_context(tiny_data):
    import methods
    from bench.modelling.training import predict_logits

    torch.manual_seed(0)
    teacher = TinyNet().eval()
    return methods.Context(
        task=tiny_data.task, train_images=tiny_data.train.images, train_labels=tiny_data.train.labels,
        calibration_images=tiny_data.calibration, teacher=teacher,
        teacher_logits=predict_logits(teacher, tiny_data.train.images),
        student_arch="mobilenet_v3_small", image_size=16, student_epochs=0.34, finetune_epochs=0.34,
    )


@pytest.fixture
def tiny_teacher(tiny_context):
    import methods

    t = tiny_context.teacher
    return methods.Artifact(name="teacher", arch="tiny", module=t, float_module=t)


@pytest.fixture
def env(tmp_path, tiny_data):
    """What a backend's export gets: 16 px images, the tiny calibration subset."""
    from bench.backends import ExportEnv

    return ExportEnv(image_size=16, calibration=tiny_data.calibration, work_dir=tmp_path / "work")


@pytest.fixture
def float_artifact():
    import methods

    torch.manual_seed(0)
    m = TinyNet().eval()
    return methods.Artifact(name="teacher", arch="tiny", module=m, float_module=m)


@pytest.fixture(scope="session")
def local_quick_run(tmp_path_factory):
    """One local `--quick` run (kd,prune,quant on the default backends), HOME an empty
    folder, its own cache; it must not import Ray. (root, CompletedProcess); the run is
    in root/run."""
    import os
    import subprocess
    import sys

    from tests.helpers.probe import fresh_cache

    root = tmp_path_factory.mktemp("e2e")
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "MPLCONFIGDIR")}
    env.update(MEDBENCH_CACHE=str(fresh_cache(root / "cache")), HOME=str(root / "home"))
    env.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from bench.cli import main; code = main(sys.argv[1:]); "
         "assert 'ray' not in sys.modules, 'a local run imported ray'; sys.exit(code)",
         "run", "--methods", "kd,prune,quant", "--quick", "--out", str(root / "run")],
        capture_output=True, text=True, env=env, timeout=900)
    return root, proc
