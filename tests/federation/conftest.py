import pytest
from fedkit import synthetic_sites


@pytest.fixture
def sites3():
    return synthetic_sites()
