"""Exact, cheaper evaluation of matgl's MEGNet: same weights, same outputs, less memory traffic.

In Materials Project crystals at a 4 Å cutoff, edges outnumber atoms about 17 to 1, and
almost all of a MEGNet forward pass is elementwise work and matrix products on
``(edges × width)`` tensors. Two rewrites of matgl's layers cut that work without changing
the function (results agree to float rounding, see ``tests/test_fast_megnet.py``):

- ``SoftPlus2`` (``softplus(x) - log 2``) subtracts in place instead of allocating a second
  edge-sized tensor;
- the edge update's first linear layer acts on ``hstack([v_src, v_dst, e, u])``. Split into
  its four column blocks, the node and state blocks are applied once per atom and once per
  crystal and then gathered to the edges, so the ``(edges × 4d)`` concatenation and its
  large matrix product are never formed.

:func:`megnet_forward` runs MEGNet from a precomputed bond expansion, which an ensemble
computes once per batch for all its members (the expansion has no learned weights).

:func:`accelerate` swaps these classes in place on an existing module; parameters and
``state_dict`` keys are untouched, so saving, loading and training work as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matgl.graph._compute import compute_pair_vector_and_distance
from matgl.layers import MLP
from matgl.layers._activations import SoftPlus2
from matgl.layers._graph_convolution import MEGNetGraphConv, _broadcast_to_nodes
from matgl.models import MEGNet
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

LOG2 = math.log(2.0)


class InplaceSoftPlus2(SoftPlus2):
    """``softplus(x) - log 2`` with the subtraction done in place on softplus's fresh output."""

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.ssp.beta, self.ssp.threshold).sub_(LOG2)


class GatherLastMEGNetGraphConv(MEGNetGraphConv):
    """MEGNet graph convolution whose edge update projects atoms and states before gathering them."""

    def _edge_update(
        self,
        edge_index: Tensor,
        edge_feat: Tensor,
        node_feat: Tensor,
        state_feat: Tensor,
        edge_batch: Tensor | None,
    ) -> Tensor:
        first = self.edge_func.layers[0]
        d_node, d_edge = node_feat.shape[1], edge_feat.shape[1]
        w_src, w_dst, w_edge, w_state = first.weight.split(
            [d_node, d_node, d_edge, first.in_features - 2 * d_node - d_edge], dim=1
        )
        state = state_feat if state_feat.dim() == 2 else state_feat.unsqueeze(0)
        per_graph = F.linear(state, w_state, first.bias)
        hidden = F.linear(edge_feat, w_edge)
        hidden += F.linear(node_feat, w_src).index_select(0, edge_index[0])
        hidden += F.linear(node_feat, w_dst).index_select(0, edge_index[1])
        hidden += per_graph if edge_batch is None else per_graph.index_select(0, edge_batch)
        for layer in self.edge_func.layers[1:]:
            hidden = layer(hidden)
        return hidden

    def forward(
        self,
        edge_index: Tensor,
        edge_feat: Tensor,
        node_feat: Tensor,
        state_feat: Tensor,
        node_batch: Tensor | None,
        edge_batch: Tensor | None,
        num_nodes: int,
        num_graphs: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        edge_batch = None if edge_batch is None else edge_batch.to(torch.long)
        edge_feat_new = self._edge_update(edge_index, edge_feat, node_feat, state_feat, edge_batch)
        u_per_node = _broadcast_to_nodes(state_feat, node_batch, num_nodes)
        node_feat_new = self.node_update_(edge_index, edge_feat_new, node_feat, u_per_node, num_nodes)
        state_feat_new = self.state_update_(
            edge_feat_new, node_feat_new, state_feat, edge_batch, node_batch, num_graphs
        )
        return edge_feat_new, node_feat_new, state_feat_new


def _can_gather_last(conv: MEGNetGraphConv) -> bool:
    return isinstance(conv.edge_func, MLP) and isinstance(conv.edge_func.layers[0], nn.Linear)


def accelerate(module: nn.Module) -> nn.Module:
    """Switch the MEGNet layers inside ``module`` to their exact, cheaper versions (in place)."""
    for sub in module.modules():
        if type(sub) is SoftPlus2:
            sub.__class__ = InplaceSoftPlus2
        elif type(sub) is MEGNetGraphConv and _can_gather_last(sub):
            sub.__class__ = GatherLastMEGNetGraphConv
    return module


def is_accelerated(module: nn.Module) -> bool:
    return any(isinstance(sub, (InplaceSoftPlus2, GatherLastMEGNetGraphConv)) for sub in module.modules())


def bond_features(megnet: MEGNet, g: Batch | Data) -> Tensor:
    """MEGNet's radial-basis expansion of the bond lengths of ``g`` (no learned weights)."""
    _, bond_dist = compute_pair_vector_and_distance(g.pos, g.edge_index, getattr(g, "pbc_offshift", None))
    return megnet.bond_expansion(bond_dist)


def same_bond_expansion(megnets: Sequence[MEGNet]) -> bool:
    """Whether every model expands bond lengths identically, so one expansion can serve them all."""
    first = megnets[0].bond_expansion
    reference = first.state_dict()
    for other in megnets[1:]:
        mod = other.bond_expansion
        if repr(mod) != repr(first) or mod.state_dict().keys() != reference.keys():
            return False
        if not all(torch.equal(v, reference[k]) for k, v in mod.state_dict().items()):
            return False
    return True


def megnet_forward(megnet: MEGNet, g: Batch | Data, state_attr: Tensor, edge_attr: Tensor) -> Tensor:
    """``MEGNet.forward`` from a precomputed bond expansion (see :func:`bond_features`).

    Mirrors matgl's forward step by step (embedding, encoders, blocks, Set2Set readouts,
    output projection) so an ensemble expands each batch's bonds once for all its members.
    Intermediate features are not stored on ``feature_dict``.
    """
    edge_index, batch = g.edge_index, getattr(g, "batch", None)
    num_nodes = g.pos.size(0)
    num_graphs = getattr(g, "num_graphs", None) or (1 if batch is None else int(batch.max()) + 1)
    edge_batch = None if batch is None else batch[edge_index[0]].to(torch.long)
    node_attr = getattr(g, "node_type", getattr(g, "z", None))

    node_feat, edge_feat, state_feat = megnet.embedding(node_attr, edge_attr, state_attr)
    edge_feat = megnet.edge_encoder(edge_feat)
    node_feat = megnet.node_encoder(node_feat)
    state_feat = megnet.state_encoder(state_feat)
    if state_feat.dim() == 1:
        state_feat = state_feat.unsqueeze(0)
    for block in megnet.blocks:
        edge_feat, node_feat, state_feat = block(
            edge_index, edge_feat, node_feat, state_feat, batch, edge_batch, num_nodes, num_graphs
        )
        if state_feat.dim() == 1:
            state_feat = state_feat.unsqueeze(0)
    node_vec = megnet.node_s2s(node_feat, batch).view(num_graphs, -1)
    edge_vec = megnet.edge_s2s(edge_feat, edge_batch, num_graphs=num_graphs).view(num_graphs, -1)
    vec = torch.cat([node_vec, edge_vec, state_feat.view(num_graphs, -1)], dim=-1)
    if megnet.dropout:
        vec = megnet.dropout(vec)
    output = megnet.output_proj(vec)
    if megnet.is_classification:
        output = torch.sigmoid(output)
    return torch.squeeze(output)
