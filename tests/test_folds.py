"""Fold construction for cross-validated selection."""

import pytest

from taskfit.data.folds import stratified_folds


def test_folds_are_stratified_seeded_disjoint_and_cover_the_pool():
    labels = ["a"] * 12 + ["b"] * 7 + ["c"] * 5
    folds = stratified_folds(labels, 5, seed=0)
    flat = [i for f in folds for i in f]
    assert sorted(flat) == list(range(len(labels)))  # disjoint and covering
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for f in folds:  # every label in every fold (each has at least 5 examples)
        assert {labels[i] for i in f} == {"a", "b", "c"}
        assert abs(sum(labels[i] == "a" for i in f) - 12 / 5) < 1.5  # stratified
    assert stratified_folds(labels, 5, seed=0) == folds
    assert stratified_folds(labels, 5, seed=1) != folds


def test_a_rare_label_is_in_as_many_folds_as_it_can_be():
    labels = ["a"] * 10 + ["b"] * 2
    folds = stratified_folds(labels, 4, seed=3)
    assert sum(any(labels[i] == "b" for i in f) for f in folds) == 2
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_folds(labels, 1, seed=0)
