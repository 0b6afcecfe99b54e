"""GPT2Simple (simple_stories_train): learned positions, LayerNorm, biased projections."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from locattr.compute.architectures.attention import causal_attention
from locattr.compute.architectures.common import (
    LayerNorm,
    NewGELU,
    merge_heads,
    split_heads,
)


class GPT2SimpleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    flash_attention: bool = True


class _Attention(nn.Module):
    def __init__(self, config: GPT2SimpleConfig) -> None:
        super().__init__()
        d = config.n_embd
        self.n_head = config.n_head
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)

    def forward(self, x: Float[Tensor, "batch seq d"]) -> Float[Tensor, "batch seq d"]:
        q, k, v = (
            split_heads(proj(x), self.n_head) for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        return self.o_proj(merge_heads(causal_attention(q, k, v)))


class _MLP(nn.Module):
    def __init__(self, config: GPT2SimpleConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = NewGELU()
        self.down_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.gelu(self.c_fc(x)))


class _Block(nn.Module):
    def __init__(self, config: GPT2SimpleConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd)
        self.attn = _Attention(config)
        self.ln_2 = LayerNorm(config.n_embd)
        self.mlp = _MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Simple(nn.Module):
    config_class = GPT2SimpleConfig

    def __init__(self, config: GPT2SimpleConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(
        self,
        idx: Int[Tensor, "batch seq"],
        targets: Tensor | None = None,
        return_logits: bool = True,
    ) -> tuple[Float[Tensor, "batch seq vocab"] | None, Tensor | None]:
        seq = idx.shape[1]
        assert seq <= self.config.block_size, f"sequence length {seq} > block_size"
        pos = torch.arange(seq, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return (logits if return_logits else None), loss
