"""Extra-negative providers: candidate columns beyond the batch's own views.

A provider adds columns to the similarity matrix. After the views' candidates (positives, then
hard negatives) come each provider's (k, H) embeddings, L2-normalised and gathered over
processes like the views: k more negatives in every anchor's row, which the loss sees as extra
columns. ESimCSE's momentum queue (Wu et al., COLING 2022: earlier batches' sentences encoded by
a momentum copy of the encoder) and a teacher's embeddings are such providers.

The registry holds factories (usually the provider class), called once per run with no
arguments. `--negatives NAME` (repeatable) picks them; a user's own is
``package.module:Class`` or an entry point in the group ``embeval.negatives``. Built in:
DCLR's noise (`dclr-noise`). Their state is not saved in `last/`, so `--resume` starts them afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embeval.registry import Registry, UnknownUnit

if TYPE_CHECKING:  # torch stays unimported until training: the CLI lists providers without it
    import torch

    from embeval.core.views import Views


@dataclass
class Batch:
    """What a provider sees of one training batch (this process's share of it)."""

    step: int  # optimizer steps taken before this batch
    examples: list[tuple[str, ...]]  # (b,) the training examples
    views: Views  # their texts, view by view
    emb: torch.Tensor  # (V, b, H) the views' embeddings as pooled in training: with grad, raw
    model: torch.nn.Module  # the SentenceModel under training (training pooler, train mode)
    tokenize: Callable[[list[str]], dict]  # texts -> model inputs on the device, cut as the batch


class ExtraColumns:
    """An extra-negative provider: subclass it, override `columns`, register the class."""

    def columns(self, batch: Batch) -> torch.Tensor:  # (k, H)
        """Candidate embeddings appended to every anchor's row for `batch`. k may be 0 and must
        be the same on every process (the columns are gathered); H is the model's width."""
        raise NotImplementedError

    def step_end(self, batch: Batch) -> None:
        """Called after the optimizer step on `batch` (e.g. to enqueue its embeddings)."""


def _check_provider(label: str, factory) -> None:
    if not callable(factory):
        raise UnknownUnit(
            f"negatives provider {label}: expected a class (or function) making an ExtraColumns"
        )


NEGATIVES: Registry[Callable[[], ExtraColumns]] = Registry(
    "negatives provider", plural="negatives", check=_check_provider
)


def make_providers(names: list[str]) -> list[ExtraColumns]:
    """One provider per name, in order; a factory that makes no `columns` method is refused."""
    providers = []
    for name in names:
        provider = NEGATIVES.get(name)()
        if not callable(getattr(provider, "columns", None)):
            raise UnknownUnit(
                f"negatives provider {name!r} made {type(provider).__name__}, which has no "
                "columns(batch) method (see embeval.core.negatives.ExtraColumns)"
            )
        providers.append(provider)
    return providers


@NEGATIVES.register("dclr-noise")
class DCLRNoise(ExtraColumns):
    """DCLR's noise negatives (Zhou et al., ACL 2022; RUCAIBox/DCLR `simcse/models.py`).

    times * b Gaussian vectors (randn, H wide), refined by `steps` gradient-ascent steps of
    size `step_size` along the row-normalised gradient of InfoNCE over [anchor @ positives |
    anchor @ noise] / tau, NaNs set to 0, as the released code (noise_times 1, pgd 4, step 1e-3,
    tau 0.05). The columns carry no gradient to the encoder. Unlike the code, which refines
    against the gathered batch, each process refines against its own share. Pair with loss
    `dclr`; change the settings by subclassing (a provider is built with no arguments).
    """

    times: float = 1.0
    steps: int = 4
    step_size: float = 1e-3
    temperature: float = 0.05

    def columns(self, batch: Batch) -> torch.Tensor:  # (times * b, H)
        import torch
        import torch.nn.functional as F

        z1 = F.normalize(batch.emb[0].detach().float(), dim=-1)  # (b, H) anchors
        z2 = F.normalize(batch.emb[1].detach().float(), dim=-1)  # (b, H) positives
        b, h = z1.shape
        noise = torch.randn(int(b * self.times), h, device=z1.device)
        pos = z1 @ z2.T / self.temperature  # (b, b)
        target = torch.arange(b, device=z1.device)
        for _ in range(self.steps):
            noise.requires_grad_(True)
            neg = z1 @ F.normalize(noise, dim=-1).T / self.temperature  # (b, times * b)
            loss = F.cross_entropy(torch.cat([pos, neg], 1), target)
            (grad,) = torch.autograd.grad(loss, noise)
            step = grad / grad.norm(dim=-1, keepdim=True) * self.step_size
            noise = torch.nan_to_num(noise.detach() + step, nan=0.0)
        return noise
