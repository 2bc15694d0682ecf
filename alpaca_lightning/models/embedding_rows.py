"""Word embeddings that train only the rows of the tokens a fit sees (``model.classifier.embedding_updates: seen``).

A fit's training texts use a few thousand of a vocabulary's 30,000 tokens, and only those rows ever get a gradient.
Plain AdamW still updates the whole table at every step, and with a dense gradient that is zeroed, clipped and
stepped over all 11.7 M numbers of MiniLM's table: at batch 16 of short sentences on a CPU, up to a sixth of the
step. The rows of tokens that never occur do not learn anything; AdamW only shrinks them by its weight decay
(by 1 - lr x weight_decay per step: a factor of about 1 - 1e-5 over a default round).

``FitRowsEmbedding`` replaces the encoder's word embeddings for one fit: the rows of the fit's tokens become one
small trainable parameter, the rest of the table stays as it is. Every state_dict, checkpoint and saved folder
shows the usual full ``weight``, so a checkpoint written mid-fit resumes and loads like any other, and ``restore``
puts the plain ``nn.Embedding`` back (with the trained rows written in) when the fit ends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alpaca_lightning.errors import AlpacaError

EMBEDDING_UPDATES = ("seen", "all")


class FitRowsEmbedding(torch.nn.Module):
    def __init__(self, embedding: torch.nn.Embedding, token_ids: torch.Tensor) -> None:
        super().__init__()
        weight = embedding.weight.detach()
        ids = torch.unique(token_ids.to(device=weight.device, dtype=torch.long))
        if len(ids) and (ids.min() < 0 or ids.max() >= weight.shape[0]):
            raise AlpacaError(f"Token ids {int(ids.min())}..{int(ids.max())} fall outside the encoder's vocabulary of "
                              f"{weight.shape[0]}: the tokenizer and the model do not match.")
        slots = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        slots[ids] = torch.arange(len(ids), device=weight.device)
        self.original = (embedding,)  # a tuple hides it from nn.Module: restore() puts it back
        self.register_buffer("table", weight, persistent=False)
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("slots", slots, persistent=False)
        self.rows = torch.nn.Parameter(weight[ids].clone())
        pad = embedding.padding_idx
        self.row_padding_idx = int(slots[pad]) if pad is not None and slots[pad] >= 0 else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # A token outside the fit's set (a validation text's) reads the fixed table. No check that training
        # batches hold none: it would wait for the device at every step, and such a token would only stay untrained.
        slots = self.slots[input_ids]
        trained = F.embedding(slots.clamp(min=0), self.rows, padding_idx=self.row_padding_idx)
        fixed = F.embedding(input_ids, self.table)
        return torch.where((slots >= 0).unsqueeze(-1), trained, fixed)

    def full_weight(self) -> torch.Tensor:
        weight = self.table.clone()
        weight[self.ids] = self.rows.detach().to(weight.dtype)
        return weight

    # The state_dict holds the full table under the plain embedding's key, in both directions.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.full_weight()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        weight = state_dict[key].to(self.table.device, self.table.dtype)
        with torch.no_grad():
            self.table.copy_(weight)
            self.rows.copy_(weight[self.ids])

    def restore(self) -> torch.nn.Embedding:
        """The plain embedding with the trained rows written in, on this module's device."""
        embedding = self.original[0]
        embedding.weight = torch.nn.Parameter(self.full_weight(), requires_grad=embedding.weight.requires_grad)
        return embedding


def train_seen_rows_only(model: torch.nn.Module, token_ids: torch.Tensor) -> bool:
    """Put a ``FitRowsEmbedding`` in place of ``model``'s input embeddings. Returns False (and leaves the model as
    it is) where the table does not train or is shared with another weight (a tied output layer reads every row)."""
    restore_all_rows(model)
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, torch.nn.Embedding) or not embedding.weight.requires_grad:
        return False
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return False
    model.set_input_embeddings(FitRowsEmbedding(embedding, token_ids))
    return True


def restore_all_rows(model: torch.nn.Module) -> None:
    """Undo ``train_seen_rows_only`` (nothing to do if it was not applied)."""
    embedding = model.get_input_embeddings()
    if isinstance(embedding, FitRowsEmbedding):
        model.set_input_embeddings(embedding.restore())

