"""relation and extractive-qa on the packaged minilm over the hand-written fixtures: training must beat the
untrained model (a random head) on the same test sentences and questions."""

from pathlib import Path

import pytest

from taskfit.config import QA_STRATEGY_CONFIGS, RELATION_STRATEGY_CONFIGS
from taskfit.evaluation.squad import squad_metrics
from taskfit.strategies import Context, build_strategy
from taskfit.tasks.extractive_qa import read_qa
from taskfit.tasks.relation import read_relations, relation_metrics

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent / "fixtures"


def test_minilm_relation_training_beats_untrained():
    train = read_relations(FIXTURES / "relation" / "train.jsonl")
    test = read_relations(FIXTURES / "relation" / "test.jsonl")
    labels = sorted({e.label for e in train})
    config = RELATION_STRATEGY_CONFIGS["head-finetune"].model_validate(
        {"name": "head-finetune", "backbone": "minilm", "epochs": 6, "max_length": 64}
    )
    s = build_strategy(config, Context(labels=labels, no_relation_label="no_relation"))

    def score() -> float:
        gold = [e.label for e in test]
        return relation_metrics(gold, s.predict(test).labels, labels, "no_relation")["micro_f1"]

    untrained = score()
    s.fit(train, [])
    trained = score()
    print(f"relation micro-F1 untrained {untrained:.3f} -> trained {trained:.3f}")
    assert trained >= untrained + 0.3


def test_minilm_extractive_qa_training_beats_untrained():
    train = read_qa(FIXTURES / "qa" / "train.json")
    test = read_qa(FIXTURES / "qa" / "test.jsonl")
    config = QA_STRATEGY_CONFIGS["head-finetune"].model_validate(
        {
            "name": "head-finetune",
            "backbone": "minilm",
            "epochs": 6,
            "max_length": 64,
            "doc_stride": 16,
            "lr": 2e-4,
        }
    )
    s = build_strategy(config, Context(labels=[]))

    def score() -> float:
        answers = [a.text for a in s.predict(test)]
        return squad_metrics(answers, [[t for t, _ in e.answers] for e in test])["f1"]

    untrained = score()
    s.fit(train, [])
    trained = score()
    print(f"extractive-qa F1 untrained {untrained:.1f} -> trained {trained:.1f}")
    assert trained >= untrained + 20
