"""The faster MEGNet layers compute exactly matgl's function, forward and backward."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from matgl.layers._activations import SoftPlus2
from matgl.layers._graph_convolution import MEGNetGraphConv

from matgl_ltc import LTCEnsemble, LTCModel
from matgl_ltc.model.backbones import load_pretrained_megnet
from matgl_ltc.model.fast_megnet import (
    GatherLastMEGNetGraphConv,
    InplaceSoftPlus2,
    accelerate,
    bond_features,
    is_accelerated,
    megnet_forward,
    same_bond_expansion,
)


@pytest.fixture(scope="module")
def batch(togo15):
    return togo15.graph_cache(4.0).batch(np.arange(24))


@pytest.fixture(scope="module")
def plain_megnet():
    megnet, _ = load_pretrained_megnet("MEGNet-MP-2018.6.1-Eform")
    assert not is_accelerated(megnet)
    return megnet


def _state(megnet, n: int) -> torch.Tensor:
    return torch.zeros(n, 2)


def test_accelerate_swaps_only_classes_and_keeps_the_state_dict(plain_megnet):
    fast = accelerate(copy.deepcopy(plain_megnet))
    assert any(type(m) is InplaceSoftPlus2 for m in fast.modules())
    assert sum(type(m) is GatherLastMEGNetGraphConv for m in fast.modules()) == len(fast.blocks)
    assert not any(type(m) in (SoftPlus2, MEGNetGraphConv) for m in fast.modules())
    plain_state, fast_state = plain_megnet.state_dict(), fast.state_dict()
    assert plain_state.keys() == fast_state.keys()
    assert all(torch.equal(plain_state[k], fast_state[k]) for k in plain_state)


def test_accelerated_forward_and_gradients_match_matgl(plain_megnet, batch):
    plain = copy.deepcopy(plain_megnet).train()
    fast = accelerate(copy.deepcopy(plain_megnet)).train()
    state = _state(plain, batch.num_graphs)
    out_plain, out_fast = plain(batch, state_attr=state), fast(batch, state_attr=state)
    assert out_plain.shape == (batch.num_graphs,)
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-5, atol=1e-5)
    out_plain.square().sum().backward()
    out_fast.square().sum().backward()
    grads_plain = dict(plain.named_parameters())
    for name, param in fast.named_parameters():
        if param.grad is None:
            assert grads_plain[name].grad is None
            continue
        torch.testing.assert_close(param.grad, grads_plain[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def test_forward_from_a_shared_bond_expansion_matches_matgl(plain_megnet, batch):
    plain = copy.deepcopy(plain_megnet).eval()
    state = _state(plain, batch.num_graphs)
    with torch.no_grad():
        expected = plain(batch, state_attr=state)
        edge_attr = bond_features(plain, batch)
        assert edge_attr.shape[0] == batch.edge_index.shape[1]
        got = megnet_forward(accelerate(copy.deepcopy(plain)).eval(), batch, state, edge_attr)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ensemble_prediction_equals_each_member_on_its_own(togo15):
    members = [LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=s) for s in range(3)]
    ensemble = LTCEnsemble(members)
    assert ensemble.shared_bond_expansion
    graphs = togo15.graph_cache(4.0).graphs[:20]
    together = ensemble.predict_graphs(graphs, batch_size=8)
    alone = np.stack([m.predict_graphs(graphs, batch_size=5) for m in members], axis=1)
    np.testing.assert_allclose(together, alone, rtol=1e-5)


def test_members_with_different_bond_expansions_are_not_shared():
    a = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    b = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=1)
    assert same_bond_expansion([a.backbone, b.backbone])
    with torch.no_grad():
        next(iter(b.backbone.bond_expansion.parameters())).mul_(1.01)
    assert not same_bond_expansion([a.backbone, b.backbone])
    assert not LTCEnsemble([a, b]).shared_bond_expansion


def test_batches_respect_the_graph_and_edge_limits():
    from matgl_ltc.data.graphs import batch_indices

    sizes = [5, 5, 5, 20, 1, 1, 1, 1]
    batches = batch_indices(len(sizes), 3, sizes, max_size=12)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3], [4, 5, 6], [7]]
    assert [b.tolist() for b in batch_indices(5, 2)] == [[0, 1], [2, 3], [4]]
