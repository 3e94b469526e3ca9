"""Which token of a Chinese character should a causal LM tag from? A linear probe on smollm2's frozen states.

Logistic regression (C 0.1, standardised features) on the last hidden state of each character's first or last
byte token (and last + the next character's first), trained on the 100 peoples-daily-ner training sentences of
seed 0 and scored with seqeval on the fixed 100-sentence test subset (the NER benchmark's data block; sentences
cut at 300 characters). About 2 minutes on one CPU thread.

Usage:  PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python bench/ner_token_probe.py
Measured 2026-12-02 (BENCHMARKS.md, NER): entity F1 0.047 from first tokens, 0.171 from last tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from taskfit.config import DataConfig
from taskfit.data.prepare import load_ner_pools, sample_splits
from taskfit.evaluation.ner_metrics import ner_metrics
from taskfit.models.backbones import load_backbone

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def features(examples, tokenizer, model):
    """Per sentence: (first-token states, last-token states, tag ids), one row per character."""
    firsts, lasts, ys = [], [], []
    for e in examples:
        enc = tokenizer(e.text[:300], add_special_tokens=False, return_offsets_mapping=True)
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([enc["input_ids"]])).last_hidden_state[0]
        word_of = [-1] * (len(e.text) + 1)
        for w, (s, end) in enumerate(e.spans):
            for c in range(s, end):
                word_of[c] = w
        first, last = {}, {}
        for t, (s, end) in enumerate(enc["offset_mapping"]):
            for c in range(s, end):
                if word_of[c] >= 0:
                    first.setdefault(word_of[c], t)
                    last[word_of[c]] = t
        n = len(e.spans)
        firsts.append(torch.stack([hidden[first.get(w, 0)] for w in range(n)]))
        lasts.append(torch.stack([hidden[last.get(w, 0)] for w in range(n)]))
        ys.append([TAGS.index(t) for t in e.tags])
    return firsts, lasts, ys


def with_next(lasts, firsts):
    return [
        torch.cat([la, torch.cat([f[1:], torch.zeros(1, f.shape[1])])], 1) for la, f in zip(lasts, firsts)
    ]


def main() -> None:
    torch.set_num_threads(1)
    cfg = DataConfig(dataset="peoples-daily-ner", shots=100, dev_shots=30, test_limit=100)
    splits = sample_splits(load_ner_pools(cfg), cfg, 0)
    backbone = load_backbone("smollm2", "encoder", False, "cpu")
    model = backbone.model.eval()
    f_tr, l_tr, y_tr = features(splits.train, backbone.tokenizer, model)
    f_te, l_te, y_te = features(splits.test, backbone.tokenizer, model)
    gold = [[TAGS[i] for i in y] for y in y_te]
    variants = [
        ("first", f_tr, f_te),
        ("last", l_tr, l_te),
        ("last+next", with_next(l_tr, f_tr), with_next(l_te, f_te)),
    ]
    for name, x_tr, x_te in variants:
        scaler = StandardScaler().fit(torch.cat(x_tr).numpy())
        for weight in (None, "balanced"):
            clf = LogisticRegression(max_iter=300, C=0.1, class_weight=weight)
            clf.fit(scaler.transform(torch.cat(x_tr).numpy()), np.concatenate(y_tr))
            predicted = [[TAGS[i] for i in clf.predict(scaler.transform(x.numpy()))] for x in x_te]
            m = ner_metrics(gold, predicted, "bio")
            print(
                f"{name:10s} class_weight={weight}: entity F1 {m['f1']:.3f} P {m['precision']:.3f} "
                f"R {m['recall']:.3f} token acc. {m['token_accuracy']:.3f}"
            )


if __name__ == "__main__":
    main()
