"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is many times faster than several fighting over a busy machine. A module asks for it
    with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def oracle_type_as(monkeypatch):
    """Transformer-XL's oracle calls `tensor.type_as(dtype=...)`, which this torch rejects; accept it in the modules
    that ask for this fixture (the oracle matrices of tests/tiny_matrix.py)."""
    original = torch.Tensor.type_as
    monkeypatch.setattr(torch.Tensor, "type_as",
                        lambda self, other=None, dtype=None: self.to(dtype) if dtype is not None
                        else original(self, other))
