"""A tiny randomly initialised causal LM with a word-level tokenizer, saved like any HF model.

Tests, benchmarks and the conformance case use it so nothing is downloaded: the folder it writes
loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` exactly as a hub model would.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def save_tiny_causal_lm(path: str | Path, words: Iterable[str], *, arch: str = "llama", layers: int = 2,
                        hidden: int = 64, heads: int = 4, seed: int = 0, max_positions: int = 256,
                        intermediate: int | None = None) -> Path:
    """Write a ``arch`` ("llama", "gpt2" or "gpt_neox") model of the given shape and its tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    path = Path(path)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="[BOS]", eos_token="[EOS]")
    V = max(len(vocab), 8)
    inter = intermediate or 4 * hidden
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=V, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                          pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=V, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_positions,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
        model = GPT2LMHeadModel(cfg)
    elif arch == "gpt_neox":
        cfg = GPTNeoXConfig(vocab_size=V, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                            num_attention_heads=heads, max_position_embeddings=max_positions, bos_token_id=2,
                            eos_token_id=3, pad_token_id=0)
        model = GPTNeoXForCausalLM(cfg)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path
