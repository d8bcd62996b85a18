import pytest
import torch

FASHION_MNIST_TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def fmnist_train():
    import os

    if not os.path.exists(FASHION_MNIST_TRAIN):
        pytest.skip("dataset-fashion-mnist is not installed (make setup installs it)")
    return FASHION_MNIST_TRAIN
