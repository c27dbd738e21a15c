"""quality_signals: hand-computed values on a tiny text, the vectorised kernels against a plain-Python
loop on random texts, Gopher rule flags, the tool end to end (empty documents, DSIR and LM columns,
row order), and the embedding classifier."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tests.conftest import write_jsonl
from tools.contract import ToolContext
from tools.errors import BadInput
from tools.quality_signals import core

TEXT = "The cat sat on the mat.\nThe cat sat on the mat.\n\n- a bullet...\n"


def _run(ctx, **kw):
    from tools import quality_signals

    return quality_signals.run(kw, ctx)


@pytest.fixture
def ctx(tmp_path):
    return ToolContext(workspace_dir=tmp_path / "ws", show_progress=False, num_workers=1)


def test_hand_computed_values():
    s = {k: float(v[0]) for k, v in core.signals([TEXT]).items()}
    assert len(TEXT) == 63 and s["char_count"] == 63
    assert s["word_count"] == 14  # 15 words, '-' is a symbol word
    assert s["mean_word_length"] == pytest.approx(46 / 14)
    assert s["unique_word_fraction"] == pytest.approx(8 / 15)
    p = np.array([4, 2, 2, 2, 2, 1, 1, 1]) / 15
    assert s["unigram_entropy"] == pytest.approx(-(p * np.log(p)).sum())
    assert s["frac_words_no_alpha"] == pytest.approx(1 / 15)
    assert s["stop_word_fraction"] == pytest.approx(7 / 15)  # the x4, on x2, a
    assert s["gopher_stop_words"] == 1  # distinct and case-sensitive: only 'the' (twice)
    assert s["symbol_word_ratio_hash"] == 0 and s["symbol_word_ratio_ellipsis"] == pytest.approx(1 / 15)
    assert s["line_count"] == 4  # str.splitlines: two sentences, an empty line, the bullet
    assert s["frac_lines_bullet"] == pytest.approx(1 / 4) and s["frac_lines_ellipsis"] == pytest.approx(1 / 4)
    assert s["frac_lines_duplicated"] == pytest.approx(1 / 4)  # re.split(r"\n+") leaves a trailing ''
    assert s["frac_chars_dup_lines"] == pytest.approx(23 / 63)
    assert s["frac_paragraphs_duplicated"] == 0 and s["frac_chars_dup_paragraphs"] == 0
    assert s["frac_chars_top_2gram"] == pytest.approx(2 * len("The cat") / 63)  # ties: first seen
    assert s["frac_chars_top_3gram"] == pytest.approx(2 * len("The cat sat") / 63)
    assert s["frac_chars_top_4gram"] == pytest.approx(2 * len("The cat sat on") / 63)
    assert s["frac_chars_dup_5gram"] == pytest.approx(36 / 47) and s["frac_chars_dup_6gram"] == pytest.approx(36 / 47)
    assert s["frac_chars_dup_7gram"] == 0


def test_empty_and_symbol_only_texts():
    s = core.signals(["", "   \n ", "... ### !!"])
    for k in core.SIGNALS:
        assert np.isfinite(s[k]).all(), k
    assert s["word_count"].tolist() == [0, 0, 0]
    assert s["frac_words_no_alpha"].tolist() == [0, 0, 1]
    assert s["symbol_word_ratio_hash"][2] == pytest.approx(3 / 3)


def test_vectorised_equals_python_loop():
    rng = random.Random(0)
    alphabet = list("abc xyz.,!?#-•…'\n\n\t") + ["the ", "of ", "...", "über", "東京", "1800", " - item\n",
                                                   "\r\n", "\u2028", "\xa0", "and ", "with "]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(300)]
    texts += [" ".join(rng.choice(["a", "b", "c"]) for _ in range(rng.randint(0, 60))) for _ in range(100)]
    got = core.signals(texts)
    for i, t in enumerate(texts):
        ref = core.signals_python(t)
        for k in core.SIGNALS:
            assert got[k][i] == pytest.approx(ref[k], abs=1e-12), (k, t)


def test_gopher_rules():
    good = " ".join(["the quick brown fox jumps over the lazy dog with some words"] * 1) + " " + " ".join(
        f"word{i}" for i in range(60))
    cols = core.signals([good, "short text", "- a\n- b\n- c\n- d\n" * 20])
    fails = core.gopher_failures(cols)
    assert not any(v[0] for v in fails.values())
    assert fails["gopher_short_doc"][1] and fails["gopher_too_few_stop_words"][1]
    assert fails["gopher_too_many_bullets"][2] and fails["dup_line_frac"][2]


def _pool(tmp_path, shuffle=False):
    rng = random.Random(3)
    prose = ["the history of the river and the town that grew along it over many years with trade",
             "a study of birds that migrate with the seasons and the routes that they have followed"]
    rows = []
    for i in range(40):
        if i % 4 == 0:
            text = "- buy now\n- buy now\n- buy now\n" * 3
        elif i % 4 == 1:
            text = f"def f(x):\n    return x + {i}\n"
        else:
            text = f"{prose[i % 2]} number {i} " + " ".join(rng.choice(prose).split()[:10])
        rows.append({"id": f"d{i:02d}", "text": text, "domain": "ab"[i % 2]})
    rows += [{"id": "blank", "text": "   \n\t "}, {"id": "none", "text": ""}]
    if shuffle:
        random.Random(1).shuffle(rows)
    return write_jsonl(tmp_path / ("s.jsonl" if shuffle else "pool.jsonl"), rows)


def test_tool_scores_every_non_empty_document(tmp_path, ctx):
    corpus = _pool(tmp_path)
    target = write_jsonl(tmp_path / "wiki.jsonl", [{"id": f"t{i}", "text": "the river town and its long history "
                                                    f"of trade number {i}"} for i in range(20)])
    res = _run(ctx, corpus=str(corpus), dsir_targets=[str(target)], lm_reference=str(target), lm_kind="bigram",
               lm_tokens=5000)
    assert res.rows.skipped == {"quality_signals_empty_text": 2} and res.documents == 40
    tbl = ctx.workspace.get(res.artifacts["scores"]).table()
    assert tbl.num_rows == 40 and "blank" not in tbl.column("id").to_pylist()
    assert set(core.SIGNALS) | {"gopher_pass", "dsir_wiki", "lm_loss"} == set(tbl.column_names) - {"id"}
    d = tbl.to_pydict()
    row = d["id"].index("d00")
    assert d["frac_lines_duplicated"][row] == pytest.approx(core.signals_python("- buy now\n- buy now\n- buy now\n" * 3)
                                                           ["frac_lines_duplicated"])
    # prose looks more like the river target than code does, under both model columns
    prose_rows = [i for i, x in enumerate(d["id"]) if int(x[1:]) % 4 >= 2]
    code_rows = [i for i, x in enumerate(d["id"]) if int(x[1:]) % 4 == 1]
    assert np.mean([d["lm_loss"][i] for i in prose_rows]) < np.mean([d["lm_loss"][i] for i in code_rows])
    assert np.mean([d["dsir_wiki"][i] for i in prose_rows]) > np.mean([d["dsir_wiki"][i] for i in code_rows])
    assert res.gopher_fail_counts["gopher_short_doc"] == 40  # every document here is under 50 words
    assert ctx.workspace.get(res.artifacts["plot_histograms"]).kind == "plot"
    assert len(res.summary) <= 600


def test_tool_row_order_and_subset(tmp_path, ctx):
    a = _run(ctx, corpus=str(_pool(tmp_path)), signals=["word_count", "unigram_entropy"], gopher_pass=False)
    b = _run(ctx, corpus=str(_pool(tmp_path, shuffle=True)), signals=["word_count", "unigram_entropy"],
             gopher_pass=False)
    ta = ctx.workspace.get(a.artifacts["scores"]).table().sort_by("id").to_pydict()
    tb = ctx.workspace.get(b.artifacts["scores"]).table().sort_by("id").to_pydict()
    assert ta == tb and set(ta) == {"id", "word_count", "unigram_entropy"}


def test_tool_bad_input(tmp_path, ctx):
    blanks = write_jsonl(tmp_path / "blank.jsonl", [{"id": "a", "text": " "}, {"id": "b", "text": "\n"}])
    with pytest.raises(BadInput, match="empty or whitespace-only"):
        _run(ctx, corpus=str(blanks))
    with pytest.raises(BadInput, match="signals"):
        _run(ctx, corpus=str(_pool(tmp_path)), signals=["no_such_signal"])
    with pytest.raises(BadInput, match="lm_reference"):
        _run(ctx, corpus=str(_pool(tmp_path)), lm_reference=str(blanks), lm_kind="bigram")


@pytest.mark.slow
def test_embedding_classifier(tmp_path, ctx):
    pytest.importorskip("sklearn")
    corpus = _pool(tmp_path)
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(
        ["the history of the river valley and its towns", "migrating birds follow old routes each season",
         "a long account of trade along the river", "the town grew as merchants settled by the water",
         "seasonal routes of birds across the continent", "an essay on rivers, towns and their people"])])
    try:
        res = _run(ctx, corpus=str(corpus), classifier_reference=str(ref), classifier_negatives=20, gopher_pass=False,
                   signals=["word_count"])
    except Exception as e:  # noqa: BLE001 - no encoder installed here
        if type(e).__name__ == "ResourceUnavailable":
            pytest.skip(str(e))
        raise
    d = ctx.workspace.get(res.artifacts["scores"]).table().to_pydict()
    prose = [d["embed_classifier"][i] for i, x in enumerate(d["id"]) if int(x[1:]) % 4 >= 2]
    other = [d["embed_classifier"][i] for i, x in enumerate(d["id"]) if int(x[1:]) % 4 < 2]
    assert np.mean(prose) > np.mean(other)
    assert res.classifier_cv_accuracy is not None and not math.isnan(res.classifier_cv_accuracy)


@pytest.mark.slow
def test_causal_lm_loss_equals_the_models_own_loss(tmp_path, ctx):
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the river town trade history birds routes def return buy now"],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=fast.vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=2, bos_token_id=2, pad_token_id=1))
    path = tmp_path / "tiny-lm"
    fast.save_pretrained(path)
    model.save_pretrained(path)
    corpus = _pool(tmp_path)
    res = _run(ctx, corpus=str(corpus), causal_lm=str(path), signals=["word_count"], gopher_pass=False,
               causal_lm_max_tokens=32)
    d = ctx.workspace.get(res.artifacts["scores"]).table().to_pydict()
    texts = {r["id"]: r["text"] for r in map(__import__("json").loads, corpus.read_text().splitlines())}
    model.eval()
    for i, v in list(zip(d["id"], d["causal_lm_nll"], strict=True))[:8]:
        ids = fast(texts[i], return_tensors="pt", truncation=True, max_length=32)["input_ids"]
        with torch.no_grad():
            expect = model(ids, labels=ids).loss.item() if ids.shape[1] > 1 else 0.0
        assert v == pytest.approx(expect, rel=1e-4, abs=1e-5), i
