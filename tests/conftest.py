"""Test split: ``-m e2e`` runs the end-to-end script runs (micro scale), ``-m "not e2e"`` the fast unit tests;
``make test`` runs both."""
from __future__ import annotations

import pytest

from common import runs

#: Modules whose tests run whole scripts (training, evaluation, rendering) end to end at micro scale.
E2E_MODULES = {"test_post01_lora_tables", "test_post01_rank_tables", "test_eval_recipes", "test_make_base", "test_figures"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in E2E_MODULES or getattr(item, "originalname", item.name).endswith("_micro"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One temporary runs cache per test module (``$SAM3_REPRO_RUNS``): micro runs train once and are shared."""
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("runs")
        mp.setenv(runs.RUNS_ENV, str(d))
        yield d
