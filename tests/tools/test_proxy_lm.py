"""Proxy LM: loss falls with training, a seed fixes the result, stages continue, in-domain data helps
its own domain more, and the bigram oracle equals its closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.proxy_lm import BOS, VOCAB, ProxyConfig, ProxyLM, encode, train_eval

MATH = [f"If {a} apples cost {b} dollars, then {a * 2} apples cost {b * 2} dollars. The answer is {b * 2}."
        for a in range(2, 30) for b in (3, 7, 11)]
CODE = [f"def f{i}(xs):\n    return [x * {i} for x in xs if x > {i % 5}]\n" for i in range(80)]
SMALL = ProxyConfig(d_model=32, n_layers=1, n_heads=2, context=32, batch_size=16, lr=1e-2)


def test_loss_drops_with_training():
    lm = ProxyLM(SMALL, seed=0)
    before = lm.evaluate(MATH[-10:]).loss
    assert before == pytest.approx(np.log(VOCAB), rel=0.05)  # untrained: near uniform over 257 ids
    lm.train(MATH[:-10], tokens=20_000)
    mid = lm.evaluate(MATH[-10:]).loss
    lm.train(MATH[:-10], tokens=20_000)
    after = lm.evaluate(MATH[-10:]).loss
    assert after < mid < before - 1.0


def test_deterministic_for_a_seed():
    a = train_eval(MATH, CODE[:5], tokens=8_000, seed=3, config=SMALL)
    b = train_eval(MATH, CODE[:5], tokens=8_000, seed=3, config=SMALL)
    c = train_eval(MATH, CODE[:5], tokens=8_000, seed=4, config=SMALL)
    assert a.loss == b.loss
    assert a.loss != c.loss


def test_stages_continue_from_saved_state():
    full = ProxyLM(SMALL, seed=1)
    full.train(MATH, tokens=6_000)
    full.train(CODE, tokens=6_000)
    first = ProxyLM(SMALL, seed=1)
    first.train(MATH, tokens=6_000)
    resumed = ProxyLM.from_bytes(first.to_bytes())
    resumed.train(CODE, tokens=6_000)
    assert resumed.evaluate(CODE[:5]).loss == full.evaluate(CODE[:5]).loss
    assert resumed.tokens_trained == full.tokens_trained == 2 * math.ceil(6_000 / (32 * 16)) * 32 * 16
    st = train_eval(CODE, CODE[:5], tokens=6_000, init=first.state_dict())
    assert st.loss == pytest.approx(full.evaluate(CODE[:5]).loss)


@pytest.mark.parametrize("kind", ["transformer", "bigram"])
def test_in_domain_training_helps_in_domain_most(kind):
    cfg = SMALL if kind == "transformer" else ProxyConfig(kind="bigram")
    val = MATH[-8:] + CODE[-8:]
    groups = ["math"] * 8 + ["code"] * 8
    on_math = ProxyLM(cfg, seed=0)
    on_math.train(MATH[:-8], tokens=20_000)
    on_code = ProxyLM(cfg, seed=0)
    on_code.train(CODE[:-8], tokens=20_000)
    m, c = on_math.evaluate(val, groups), on_code.evaluate(val, groups)
    assert m.group_loss["math"] < c.group_loss["math"]
    assert c.group_loss["code"] < m.group_loss["code"]
    assert set(m.group_tokens) == {"math", "code"} and m.tokens == sum(m.group_tokens.values())


def test_bigram_oracle_matches_closed_form():
    cfg = ProxyConfig(kind="bigram", context=8, batch_size=4, alpha=0.5)
    lm = ProxyLM(cfg, seed=0)
    lm.train(["abab"], tokens=32)  # one step: 4 windows of 9 tokens from the 5-token stream, tiled
    counts = lm.counts
    assert counts.sum() == 4 * 8
    val = "ab"
    ids = encode([val])[0]
    probs = (counts + 0.5) / (counts.sum(1, keepdims=True) + 0.5 * VOCAB)
    expect = -np.mean([np.log(probs[ids[i], ids[i + 1]]) for i in range(ids.size - 1)])
    assert ids[0] == BOS
    assert lm.evaluate([val]).loss == pytest.approx(expect)


def test_bad_input():
    lm = ProxyLM(SMALL, seed=0)
    with pytest.raises(ValueError, match="empty"):
        lm.train([], tokens=100)
    with pytest.raises(ValueError, match="no bytes"):
        lm.evaluate([""])
    with pytest.raises(ValueError, match="labels"):
        lm.evaluate(["abc"], groups=["a", "b"])
