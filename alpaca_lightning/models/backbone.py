"""Where encoder weights and tokenizers come from.

A backbone is *materialized* once per run into something ``from_pretrained`` accepts (a local folder or a hub
name). Everything downstream (pretraining, classifiers, students, teachers) then loads from that one place, so a
tiny test model and a real pretrained model take the same path through the code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, BertConfig, BertForPreTraining, PreTrainedTokenizerBase

from alpaca_lightning.artifacts import atomic_directory, is_complete
from alpaca_lightning.assets import resolve_model_name
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.models.loading import check_model_folder, from_pretrained

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class Backbone(Protocol):
    def materialize(self, run_dir: Path, corpus: Iterable[str], seed: int) -> str: ...


class PretrainedBackbone:
    """A pretrained encoder by hub name or local folder (hub names resolve to an installed local copy if any)."""

    def __init__(self, name_or_path: str) -> None:
        self.name_or_path = name_or_path

    def materialize(self, run_dir: Path, corpus: Iterable[str], seed: int) -> str:
        resolved = resolve_model_name(self.name_or_path)
        if Path(resolved).expanduser().is_dir():
            check_model_folder(Path(resolved).expanduser())
        return resolved


class TinyBertBackbone:
    """A randomly initialised small BERT with a WordPiece vocabulary trained on the task's own text (for tests)."""

    def __init__(
        self,
        vocab_size: int = 600,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 64,
        max_position_embeddings: int = 128,
        dropout: float = 0.0,
    ) -> None:
        self.vocab_size = vocab_size
        self.config_kwargs = dict(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )

    def materialize(self, run_dir: Path, corpus: Iterable[str], seed: int) -> str:
        target = Path(run_dir) / "backbone"
        if is_complete(target):
            return str(target)
        quiet_libraries()
        tokenizer = train_wordpiece_tokenizer(corpus, self.vocab_size)
        config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **self.config_kwargs)
        torch.manual_seed(seed)
        model = BertForPreTraining(config)
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return str(target)


def train_wordpiece_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """An uncased BERT WordPiece tokenizer whose vocabulary comes from ``corpus``.

    The vocabulary is built deterministically (characters, their ``##`` forms, then the most frequent words, ties
    broken alphabetically): the ``tokenizers`` trainer breaks frequency ties differently from run to run, which
    would make two runs with the same seed differ.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    vocab = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    by_frequency = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += by_frequency[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    # transformers 5 drops token_type_ids by default for tokenizers built from an object; NSP pairs need them.
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    quiet_libraries()
    return from_pretrained(AutoTokenizer.from_pretrained, name_or_path)
