"""Fixtures shared by several test files."""

import pytest

from mmgen.nn import set_attention_backend


@pytest.fixture
def clean_attention_backend(monkeypatch):
    """The test starts and ends with no global attention backend and no MMGEN_ATTENTION."""
    monkeypatch.delenv("MMGEN_ATTENTION", raising=False)
    set_attention_backend(None)
    yield
    set_attention_backend(None)
