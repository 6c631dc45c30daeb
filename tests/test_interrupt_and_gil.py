"""Ctrl-C stops a long solve; the GIL is released while Rust works."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import hessx
from hessx.problems import laplacian_3d

LONG_SOLVE = {
    "rust": """
        A = laplacian_3d(50)
        hessx.eigsh(A, k=20, which="SM", tol=1e-15, maxiter=10**7, rng=0)
    """,
    "callable": """
        A = laplacian_3d(50)
        op = hessx.CallableOperator(A.shape[0], lambda x: A @ x)
        hessx.eigsh(op, k=20, which="SM", tol=1e-15, maxiter=10**7, rng=0)
    """,
    # Probes on worker threads: the stop must reach them through the driver.
    "slq workers": """
        A = laplacian_3d(60)
        hessx.spectral_density(A, n_probes=10**6, n_steps=200, rng=0)
    """,
}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", sorted(LONG_SOLVE))
def test_sigint_stops_a_long_solve(kind):
    code = (
        textwrap.dedent(
            """
        import signal, sys, hessx
        from hessx.problems import laplacian_3d
        # A shell that starts CI in the background hands its children SIGINT
        # ignored, and Python then never raises KeyboardInterrupt: restore it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("started", flush=True)
        try:
        """
        )
        + textwrap.indent(textwrap.dedent(LONG_SOLVE[kind]), "    ")
        + textwrap.dedent(
            """
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        print("finished", flush=True)
        """
        )
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1.5)
        assert proc.poll() is None, "the solve finished before it could be interrupted"
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read()
    assert rc == 42, out
    assert "interrupted" in out
    assert elapsed < 5.0


def test_python_thread_progresses_during_a_solve():
    A = laplacian_3d(40)
    op = hessx.CsrOperator(A)
    done = threading.Event()
    ticks = 0

    def solve():
        try:
            hessx.eigsh(op, k=8, which="SA", tol=1e-12, rng=0)
        finally:
            done.set()

    worker = threading.Thread(target=solve)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole solve the loop could not tick at all.
    assert elapsed > 0.05, "solve too quick to observe"
    assert ticks > 10


def test_products_are_consistent_across_threads():
    A = laplacian_3d(20)
    op = hessx.CsrOperator(A)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    ref = A @ x
    results = []

    def work():
        for _ in range(20):
            results.append(np.allclose(op @ x, ref))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results) and len(results) == 80
