"""Strict test settings: warnings from fluxlike are errors; the key stream is
reseeded for every test so tests do not depend on their order."""

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
