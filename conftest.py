"""Strict test settings: warnings from fluxlike are errors; the key stream is
reseeded for every test so tests do not depend on their order. The
`count_compiles` fixture counts XLA compilations inside a block, and
`script_compiles` runs a script's source at a module's top level."""

import contextlib
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

import fluxlike as fl  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    fl.seed(0)
    yield


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import jax.numpy as jnp
    import numpy as np

    doctest_namespace.update(jax=jax, jnp=jnp, np=np, fl=fl)


BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def _count_compiles():
    """Counts XLA compilations (JAX's own monitoring events) inside the block."""
    seen = []

    def listener(event: str, duration: float, **kw) -> None:
        if event == BACKEND_COMPILE:
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def count_compiles():
    """`with count_compiles() as seen:` ... `len(seen)` compilations."""
    return _count_compiles


@pytest.fixture
def script_compiles():
    """`script_compiles(source, **names)`: run `source` as a script's top level
    (its loop variables are globals) with `names` and a `count()` context
    defined; returns the XLA compilations seen inside its `count()` blocks."""

    def run(source: str, **names) -> list:
        seen: list = []

        @contextlib.contextmanager
        def count():
            with _count_compiles() as s:
                yield
            seen.extend(s)

        exec(compile(source, "<script>", "exec"), {**names, "count": count})
        return seen

    return run
