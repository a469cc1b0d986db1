"""Model and data factories that test manifests name as ``tests.pipeline.factories:...``."""

from __future__ import annotations

import time

import torch
from torch import nn

IN, CLASSES = 5, 3


def tiny_net(hidden: int = 4, seed: int = 0) -> nn.Module:
    """A 39-parameter ReLU MLP (5 -> hidden -> 3); its exact trace is defined."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


class SlowNet(nn.Module):
    """``tiny_net`` that sleeps in every forward pass: makes a sweep slow enough to kill."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.body = tiny_net()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.body(x)


def slow_net(delay: float = 0.02) -> nn.Module:
    return SlowNet(delay)


def tiny_data(n: int = 40, n_test: int = 20, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, IN, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return (x[:n], y[:n]), (x[n:], y[n:])


def empty_data() -> tuple:
    x = torch.zeros(0, IN)
    y = torch.zeros(0, dtype=torch.long)
    return (x, y), (x, y)


VOCAB, LENGTH = 11, 6


class TokenNet(nn.Module):
    """Embeds token ids, averages them over the sequence and classifies (3 classes).

    Called as ``net(ids)`` or ``net(input_ids=ids, labels=...)`` (a dict batch); the
    second returns a dict with ``logits``, as a Hugging Face model does.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 4)
        self.head = nn.Linear(4, CLASSES)

    def forward(self, ids=None, *, input_ids=None, labels=None):
        logits = self.head(self.embed(ids if ids is not None else input_ids).mean(dim=1))
        return logits if ids is not None else {"logits": logits}


def token_net() -> nn.Module:
    return TokenNet()


def _tokens(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    return ids, ids[:, 0] % CLASSES


def token_data(n: int = 24, n_test: int = 8) -> tuple:
    """(ids, labels) pairs of int64 token ids."""
    return _tokens(n, 0), _tokens(n_test, 1)


def dict_data(n: int = 24, n_test: int = 8) -> dict:
    """Dicts of tensors: ``input_ids`` and ``labels`` (Hugging Face style)."""
    splits = [_tokens(k, s) for k, s in ((n, 0), (n_test, 1))]
    train, test = ({"input_ids": x, "labels": y} for x, y in splits)
    return {"train": train, "test": test}


def batch_list_data() -> tuple:
    """Lists of dict batches of two lengths (scored as given)."""
    ids, labels = _tokens(20, 0)
    batches = [{"input_ids": ids[:12], "labels": labels[:12]}]
    batches.append({"input_ids": ids[12:, :4], "labels": labels[12:]})
    return batches, batches[:1]


class ItemDataset(torch.utils.data.Dataset):
    """A map-style data set of dict items with a text column, as `datasets` gives."""

    def __init__(self, n: int, seed: int) -> None:
        self.ids, self.labels = _tokens(n, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        ids, label = self.ids[i].tolist(), int(self.labels[i])
        return {"text": f"example {i}", "input_ids": ids, "labels": label}


def item_data() -> tuple:
    return ItemDataset(24, 0), ItemDataset(8, 1)


def bn_net(seed: int = 0) -> nn.Module:
    """A BatchNorm MLP (5 -> 8 -> BN -> ReLU -> 3), the shape of Keskar's F1 at toy size."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, CLASSES))


def stale_bn_net() -> nn.Module:
    """``bn_net`` whose running statistics describe other activations (a stale model)."""
    net = bn_net()
    with torch.no_grad():  # the inputs of BatchNorm grew; its statistics stayed (0, 1)
        net[0].weight.mul_(10.0)
        net[0].bias.copy_(20.0 * torch.sign(torch.randn(8)))
        net[3].weight.mul_(3.0)
    return net


def three_layer_net(seed: int = 0) -> nn.Module:
    """A 3-layer ReLU MLP (5 -> 4 -> 4 -> 3): blocks "0", "2" and "4"."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(IN, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, CLASSES)
    )


def tiny_bert() -> nn.Module:
    """A tiny BertForSequenceClassification built from a config (3 labels)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=CLASSES,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def bert_data() -> dict:
    """``input_ids``, ``attention_mask`` (one padded sequence) and ``labels``."""
    splits = {}
    for split, (n, seed) in {"train": (12, 0), "test": (4, 1)}.items():
        ids, labels = _tokens(n, seed)
        mask = torch.ones_like(ids)
        mask[0, -2:] = 0
        splits[split] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return splits
