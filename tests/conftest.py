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
