"""LlamaSimple and LlamaSimpleMLP (simple_stories_train): RMSNorm, rotary, GQA attention.

The two differ only in the MLP: SwiGLU (`gate_proj`, `up_proj`, `down_proj`) for LlamaSimple,
`c_fc` -> tanh GELU -> `down_proj` for LlamaSimpleMLP.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from locattr.compute.architectures.attention import causal_attention
from locattr.compute.architectures.common import (
    NewGELU,
    RMSNorm,
    merge_heads,
    silu,
    split_heads,
)


class LlamaSimpleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_intermediate: int = 4 * 768
    mlp_bias: bool = False
    attn_bias: bool = False
    rotary_adjacent_pairs: bool = False
    rotary_dim: int | None = None
    rotary_base: float = 10000.0
    n_ctx: int = 1024
    n_key_value_heads: int | None = None
    use_grouped_query_attention: bool = True
    flash_attention: bool = True
    rms_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_key_value_heads or self.n_head


class LlamaSimpleMLPConfig(LlamaSimpleConfig):
    pass


def _rotate(
    x: Float[Tensor, "batch seq head hd"], cos: Tensor, sin: Tensor, adjacent: bool
) -> Tensor:
    if adjacent:
        pairs = x.unflatten(-1, (-1, 2))
        x1, x2 = pairs[..., 0], pairs[..., 1]
        c, s = cos[..., ::2], sin[..., ::2]
        return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class _Attention(nn.Module):
    def __init__(self, config: LlamaSimpleConfig) -> None:
        super().__init__()
        d, hd = config.n_embd, config.head_dim
        self.n_head, self.kv_heads = config.n_head, config.kv_heads
        self.adjacent = config.rotary_adjacent_pairs
        self.use_gqa = config.use_grouped_query_attention
        if self.use_gqa:
            self.q_proj = nn.Linear(d, d, bias=config.attn_bias)
            self.k_proj = nn.Linear(d, self.kv_heads * hd, bias=config.attn_bias)
            self.v_proj = nn.Linear(d, self.kv_heads * hd, bias=config.attn_bias)
        else:
            self.kv_heads = self.n_head
            self.c_attn = nn.Linear(d, 3 * d, bias=config.attn_bias)
        self.o_proj = nn.Linear(d, d, bias=config.attn_bias)
        inv_freq = 1.0 / config.rotary_base ** (
            torch.arange(hd // 2, dtype=torch.float32) / (hd // 2)
        )
        angles = torch.outer(torch.arange(config.n_ctx, dtype=torch.float32), inv_freq)
        if self.adjacent:
            angles = angles.repeat_interleave(2, dim=-1)
        else:
            angles = torch.cat((angles, angles), dim=-1)
        self.rotary_cos: Tensor
        self.rotary_sin: Tensor
        self.register_buffer("rotary_cos", angles.cos(), persistent=False)
        self.register_buffer("rotary_sin", angles.sin(), persistent=False)
        self.n_ctx = config.n_ctx

    def forward(self, x: Float[Tensor, "batch seq d"]) -> Float[Tensor, "batch seq d"]:
        if self.use_gqa:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        else:
            q, k, v = self.c_attn(x).chunk(3, dim=-1)
        q, k, v = (
            split_heads(q, self.n_head),
            split_heads(k, self.kv_heads),
            split_heads(v, self.kv_heads),
        )
        pos = torch.arange(x.shape[1], device=x.device).clamp(max=self.n_ctx - 1)
        cos = self.rotary_cos[pos, None].to(x.dtype)  # [seq, 1, hd]: heads in dim 2
        sin = self.rotary_sin[pos, None].to(x.dtype)
        q, k = _rotate(q, cos, sin, self.adjacent), _rotate(k, cos, sin, self.adjacent)
        repeat = self.n_head // self.kv_heads
        k, v = k.repeat_interleave(repeat, dim=2), v.repeat_interleave(repeat, dim=2)
        return self.o_proj(merge_heads(causal_attention(q, k, v)))


class _SwiGLU(nn.Module):
    def __init__(self, config: LlamaSimpleConfig) -> None:
        super().__init__()
        d, n = config.n_embd, config.n_intermediate
        self.gate_proj = nn.Linear(d, n, bias=config.mlp_bias)
        self.up_proj = nn.Linear(d, n, bias=config.mlp_bias)
        self.down_proj = nn.Linear(n, d, bias=config.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(silu(self.gate_proj(x)) * self.up_proj(x))


class _GeluMLP(nn.Module):
    def __init__(self, config: LlamaSimpleConfig) -> None:
        super().__init__()
        d, n = config.n_embd, config.n_intermediate
        self.c_fc = nn.Linear(d, n, bias=config.mlp_bias)
        self.gelu = NewGELU()
        self.down_proj = nn.Linear(n, d, bias=config.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.gelu(self.c_fc(x)))


class _Block(nn.Module):
    def __init__(self, config: LlamaSimpleConfig, gelu_mlp: bool) -> None:
        super().__init__()
        self.rms_1 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.attn = _Attention(config)
        self.rms_2 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = _GeluMLP(config) if gelu_mlp else _SwiGLU(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.rms_1(x))
        return x + self.mlp(self.rms_2(x))


class LlamaSimple(nn.Module):
    config_class: type[LlamaSimpleConfig] = LlamaSimpleConfig
    _gelu_mlp = False

    def __init__(self, config: LlamaSimpleConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.h = nn.ModuleList(_Block(config, self._gelu_mlp) for _ in range(config.n_layer))
        self.ln_f = RMSNorm(config.n_embd, config.rms_norm_eps)
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
        x = self.wte(idx)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return (logits if return_logits else None), loss


class LlamaSimpleMLP(LlamaSimple):
    config_class = LlamaSimpleMLPConfig
    _gelu_mlp = True
