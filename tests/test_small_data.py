"""Issue 19 #2: a file too small to hold out dev and test gets a clear error up front, for every task, instead
of a ZeroDivisionError deep in the training loop."""

from __future__ import annotations

import pytest

from taskfit.config import DataConfig
from taskfit.errors import TaskfitError
from taskfit.tasks import load_pools


@pytest.mark.parametrize("sentences", [1, 2])
def test_a_tiny_conll_file_says_train_is_empty_after_holding_out(tmp_path, sentences):
    path = tmp_path / "tiny.conll"
    path.write_text(
        "\n\n".join("张 B-PER\n三 I-PER\n好 O" for _ in range(sentences)) + "\n", encoding="utf-8"
    )
    with pytest.raises(TaskfitError) as err:
        load_pools(DataConfig(train=str(path), shots=None), "ner")
    message = str(err.value)
    assert "has 0 sentences after holding out test (20%) and dev (10%)" in message
    assert "tiny.conll" in message and "data.dev, data.test" in message


def test_a_tiny_csv_says_which_split_is_empty(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg\n", encoding="utf-8")
    with pytest.raises(
        TaskfitError, match=r"has 0 examples after holding out test \(20%\) and dev \(10%\) of its 2"
    ):
        load_pools(DataConfig(train=str(path), shots=None))


def test_enough_data_or_given_files_are_not_refused(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    pools = load_pools(DataConfig(train=str(path), shots=None, selection="dev"))
    assert pools.train and pools.dev and pools.test
    few = load_pools(DataConfig(train=str(path), shots=None))  # auto: cross-validation, nothing held out
    assert few.selection == "cv" and len(few.train) == 20 and not few.dev and not few.test
