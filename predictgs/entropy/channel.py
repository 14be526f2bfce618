"""HAC++'s entropy model: HAC's hash-grid context plus an intra-anchor channel context for the attribute
vector (the feature f; Predict-GS's residual f_r in ``predictgs_hacpp``).

The vector is cut into ``chunks`` consecutive chunks (HAC++: 5 chunks of 10 of the 50-d feature).
Chunk c is predicted by a small MLP (Linear(3D + sum of earlier chunk sizes -> 4 x chunk) ->
LeakyReLU -> Linear(-> 3 x chunk)) from the already-decoded chunks 0..c-1 and the hash context's
[mu, sigma, pi] of the whole vector; it outputs (mu', sigma', pi') for the chunk's values. Each value's
likelihood is a two-component mixture of discretised Gaussians with weights softmax([pi, pi']):

    p(x) = w N(mu, sigma) + (1 - w) N(mu', sigma'),  each integrated over the bin of step Q.

``mlp_grid`` gives (mu, sigma, pi) for the attribute vector (one logit per value, HAC++'s ``prob``) and
(mu, sigma) for the scaling and offsets, which stay HAC's single Gaussians. Training conditions the
channel context on the noisy values (teacher forcing, as HAC++ does); the coder on the decoded ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..codec.arithmetic import CodeLength
from ..codec.mixture import decode_mixture, encode_mixture, mixture_code_bits
from .anchor import AnchorEntropyModel, ContextConfig, Distributions
from .functional import SCALE_FLOOR, clamp_around, low_bound


def chunk_sizes(dim: int, chunks: int) -> list[int]:
    """``dim`` cut into ``chunks`` nearly equal parts (the first ones larger); empty parts dropped."""
    base, extra = divmod(dim, chunks)
    return [base + (1 if i < extra else 0) for i in range(chunks) if base + (1 if i < extra else 0) > 0]


class ChannelContext(nn.Module):
    """HAC++'s ``Channel_CTX_fea``: one MLP per chunk, conditioned on the earlier chunks."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.dim = dim
        self.sizes = chunk_sizes(dim, chunks)
        self.mlps = nn.ModuleList()
        done = 0
        for size in self.sizes:
            self.mlps.append(nn.Sequential(nn.Linear(3 * dim + done, 4 * size), nn.LeakyReLU(inplace=True),
                                           nn.Linear(4 * size, 3 * size)))
            done += size

    def chunk(self, c: int, values: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mu', sigma', pi') of chunk c from the values of the earlier chunks and the hash context."""
        done = sum(self.sizes[:c])
        out = self.mlps[c](torch.cat([values[:, :done], hyper], dim=-1))
        return torch.chunk(out, 3, dim=-1)

    def forward(self, values: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        parts = [self.chunk(c, values, hyper) for c in range(len(self.sizes))]
        return tuple(torch.cat([p[i] for p in parts], dim=-1) for i in range(3))


def discretised(x: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    scale = torch.clamp(scale, min=SCALE_FLOOR)
    normal = torch.distributions.Normal(mean, scale, validate_args=False)
    return torch.abs(normal.cdf(x + 0.5 * step) - normal.cdf(x - 0.5 * step))


class ChannelContextEntropyModel(AnchorEntropyModel):
    """The first group (the attribute vector) has the mixture likelihood; the others are HAC's."""

    def __init__(self, groups: Mapping[str, int], base_steps: Mapping[str, float], config: ContextConfig,
                 chunks: int = 5):
        self.mixture_group = next(iter(groups))
        self.mixture_dim = groups[self.mixture_group]
        super().__init__(groups, base_steps, config)
        last = self.mlp_grid[-1]
        self.mlp_grid[-1] = nn.Linear(last.in_features, last.out_features + self.mixture_dim)
        self.channel = ChannelContext(self.mixture_dim, chunks)

    @property
    def gaussian_groups(self) -> list[str]:
        return [g for g in self.groups if g != self.mixture_group]

    # -- training ------------------------------------------------------------------------------------
    def distributions(self, normalised_positions: Tensor, tables=None) -> Distributions:
        out = self.mlp_grid(self.encoding(normalised_positions, tables))
        split = out.shape[1] - self.mixture_dim
        # logits: the mixture's (HAC++'s prob)
        return self.split_distributions(out[:, :split], logits=out[:, split:])

    def hyper(self, dist: Distributions) -> Tensor:
        g = self.mixture_group
        return torch.cat([dist.mean[g], dist.scale[g], dist.logits], dim=-1)

    def mixture(self, values: Tensor, dist: Distributions):
        """(means [2,n,D], scales [2,n,D], weights [2,n,D]) of the attribute vector given ``values``
        (the noisy values in training, the decoded ones when coding: only earlier chunks are read)."""
        g = self.mixture_group
        mean_adj, scale_adj, logit_adj = self.channel(values, self.hyper(dist))
        weights = torch.softmax(torch.stack([dist.logits, logit_adj]), dim=0)
        return torch.stack([dist.mean[g], mean_adj]), torch.stack([dist.scale[g], scale_adj]), weights

    def forward(self, values: dict[str, Tensor], dist: Distributions, centres: Mapping[str, Tensor]):
        hat, likelihoods = super().forward(values, dist, centres)
        g = self.mixture_group
        step = dist.step[g].expand_as(hat[g])
        x = clamp_around(hat[g], step, centres[g])
        means, scales, weights = self.mixture(hat[g], dist)
        mixed = sum(weights[k] * discretised(x, means[k], scales[k], step) for k in range(2))
        likelihoods[g] = low_bound(mixed)
        return hat, likelihoods

    # -- coding --------------------------------------------------------------------------------------
    def _mixture_chunks(self, network, hyper_dist: Distributions, decoded: Tensor, step: Tensor):
        """Per channel chunk: (columns, means, scales, weights as float32 [2, n*size]) given the decoded
        values of the earlier chunks; ``network`` is the float64 coding copy."""
        hyper = network.hyper(hyper_dist)
        start = 0
        for c, size in enumerate(network.channel.sizes):
            columns = slice(start, start + size)
            mean_adj, scale_adj, logit_adj = network.channel.chunk(c, decoded.to(hyper.device, torch.float64), hyper)
            weights = torch.softmax(torch.stack([hyper_dist.logits[:, columns], logit_adj]), dim=0)
            means = torch.stack([hyper_dist.mean[self.mixture_group][:, columns], mean_adj])
            scales = torch.stack([hyper_dist.scale[self.mixture_group][:, columns], scale_adj])
            yield (columns, means.float().cpu().reshape(2, -1),
                   scales.float().clamp(min=SCALE_FLOOR).cpu().reshape(2, -1),
                   weights.float().cpu().reshape(2, -1), step[:, columns].reshape(-1))
            start += size

    def _chunk_mixtures(self, symbols: Tensor, dists, extra):
        """Per channel chunk of a chunk of anchors: (columns, symbols, means, scales, weights, steps)."""
        dist64, network = extra
        step = dists[self.mixture_group].step.reshape(symbols.shape)
        for columns, means, scales, weights, q in self._mixture_chunks(network, dist64, symbols * step, step):
            yield symbols[:, columns].reshape(-1).to(torch.int64), means, scales, weights, q

    def _chunk_code_lengths(self, rows, dists, symbols, extra) -> dict[str, CodeLength]:
        total = CodeLength(0.0, 0.0)
        for flat, means, scales, weights, q in self._chunk_mixtures(symbols[self.mixture_group], dists, extra):
            total = total + mixture_code_bits(flat, means, scales, weights, q)
        return {self.mixture_group: total}

    def _chunk_compress(self, writers, rows, dists, symbols, extra) -> None:
        writer = writers[self.mixture_group]
        for flat, means, scales, weights, q in self._chunk_mixtures(symbols[self.mixture_group], dists, extra):
            encode_mixture(writer, flat, means, scales, weights, q)

    def _chunk_decompress(self, streams, rows, dists, extra, out) -> None:
        dist64, network = extra
        g = self.mixture_group
        count = rows.stop - rows.start
        step = dists[g].step.reshape(count, self.mixture_dim)
        chunk_values = torch.zeros(count, self.mixture_dim)
        # The channel context reads the decoded values of the earlier channel chunks as they are filled in.
        for columns, means, scales, weights, q in self._mixture_chunks(network, dist64, chunk_values, step):
            symbols = decode_mixture(streams[g], means, scales, weights, q)
            chunk_values[:, columns] = (symbols.to(torch.float32) * q).reshape(count, -1)
        out[g][rows] = chunk_values
