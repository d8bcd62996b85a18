import importlib.util
import re
from pathlib import Path

import pytest
import torch

# A skipped test hides a check that did not run, so a skip fails the session, except where a
# Debian package the tests read is missing (`make setup` installs them) or a `cuda`-marked test
# finds no GPU (run those with `pytest -m cuda` on a GPU machine).
ALLOWED_SKIP = re.compile(r"(dataset-fashion-mnist|espeak-ng|fortunes)\b.*not installed")
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not ALLOWED_SKIP.search(reason) and "cuda" not in report.keywords:
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _unexpected_skips:
        terminalreporter.write_sep("=", "unexpected skips (the run fails; only missing Debian packages may skip)")
        for line in _unexpected_skips:
            terminalreporter.write_line(line)

FASHION_MNIST_TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def load_benchmark():
    """Import a script of benchmarks/ as a module: load_benchmark("gpu") runs benchmarks/gpu.py's top level."""
    def load(name: str):
        script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture
def fmnist_train():
    import os

    if not os.path.exists(FASHION_MNIST_TRAIN):
        pytest.skip("dataset-fashion-mnist is not installed (make setup installs it)")
    return FASHION_MNIST_TRAIN


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory):
    """A 40-utterance espeak-ng corpus (train/valid/test tsv + .ltr/.wrd), built once per session."""
    import shutil

    from data2vec.data.speech_corpus import synthesize_corpus

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    out = tmp_path_factory.mktemp("speech")
    synthesize_corpus(out, 40, seed=0, num_workers=2)
    return out


def _rank_main(fn, rank, world, port, args):
    import os
    import sys
    import traceback

    import torch

    # A forked child that opens a parallel region on the parent's OpenMP thread pool can hang
    # (libgomp is not fork-safe); one intra-op thread per rank never opens one, as torchrun's
    # ranks on a shared CPU would be set up anyway.
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        fn(*args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


@pytest.fixture
def run_ranks():
    """run_ranks(fn, world, *args): fn(*args) on `world` forked processes that form a gloo group,
    as torchrun would (forking skips re-importing torch, which keeps these tests fast)."""
    import multiprocessing
    import socket

    def launch(fn, world, *args, timeout=300, expect_ok=True):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_rank_main, args=(fn, r, world, port, args)) for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.is_alive():
                p.kill()
        assert not expect_ok or codes == [0] * world, f"rank exit codes {codes}"
        return codes

    return launch
