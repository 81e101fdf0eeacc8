"""Methods: Algorithm 1 exactly, MoCo's FIFO queue, EMA's formula, fair i-Mix on/off switching."""
import copy

import pytest
import torch
import torch.nn.functional as F

from imix_teach.losses import byol_loss, moco_loss, npair_loss, simclr_loss, simclr_targets, supervised_targets
from imix_teach.methods import BYOL, METHODS, MoCo, NPair, SimCLR, SupervisedNPair, build_method, ema_update
from imix_teach.mixing import sample_lambda
from imix_teach.models import SmallConvNet, TabularMLP, cifar_resnet


def _encoder():
    torch.manual_seed(0)
    return TabularMLP(6, widths=(16, 16, 32), pieces=4)


def test_npair_with_alpha_is_algorithm_1():
    method = NPair(_encoder(), proj_hidden=16, proj_dim=8).eval()
    a, b = torch.randn(6, 6), torch.randn(6, 6)
    loss = method(a, b, alpha=1.0, generator=torch.Generator().manual_seed(7))
    # Replay the generator's draws: lam first, then perm (the order imix uses).
    g = torch.Generator().manual_seed(7)
    lam = sample_lambda(1.0, generator=g)
    perm = torch.randperm(6, generator=g)
    mixed = lam * a + (1 - lam) * a[perm]
    logits = F.normalize(method.embed(mixed), dim=1) @ F.normalize(method.embed(b), dim=1).T / method.tau
    expected = lam * F.cross_entropy(logits, torch.arange(6)) + (1 - lam) * F.cross_entropy(logits, perm)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_moco_queue_is_fifo_and_wraps():
    method = MoCo(_encoder(), queue_size=5, proj_hidden=16, proj_dim=2)
    batches = [torch.full((2, 2), float(i)) for i in range(1, 4)]
    for keys in batches:
        method.enqueue(keys)
    # Queue slots after writing 1,1 | 2,2 | 3,3 into 5 slots: [3, 1, 2, 2, 3]; pointer at 1.
    assert method.queue[:, 0].tolist() == [3.0, 1.0, 2.0, 2.0, 3.0]
    assert int(method.queue_ptr) == 1


def test_moco_step_enqueues_its_clean_keys_after_using_the_old_queue():
    method = MoCo(_encoder(), queue_size=16, proj_hidden=16, proj_dim=8, momentum=0.9)
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    old_queue = method.queue.clone()
    loss = method(a, b, alpha=None)
    with torch.no_grad():
        keys = F.normalize(method.key_projector(method.key_encoder(b)), dim=1)
    from imix_teach.losses import moco_loss

    assert loss.item() == pytest.approx(moco_loss(method.embed(a), keys, old_queue, tau=method.tau).item(), rel=1e-6)
    assert torch.allclose(method.queue[:4], keys, atol=1e-6)
    assert int(method.queue_ptr) == 4
    loss.backward()  # the in-place enqueue did not break the graph
    method.eval()
    method(a, b)
    assert int(method.queue_ptr) == 4  # evaluation does not enqueue


@pytest.mark.parametrize("cls", [MoCo, BYOL])
def test_ema_follows_its_formula(cls):
    method = cls(_encoder(), proj_hidden=16, proj_dim=8, momentum=0.9)
    online = method.encoder
    twin = method.key_encoder if cls is MoCo else method.target_encoder
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in twin.parameters()]
    method.after_step()
    for t0, t1, o in zip(before, twin.parameters(), online.parameters()):
        assert torch.allclose(t1, 0.9 * t0 + 0.1 * o, atol=1e-6)
    assert all(not p.requires_grad for p in twin.parameters())


def test_ema_update_momentum_one_and_zero():
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    a0 = copy.deepcopy(a)
    ema_update(a, b, 1.0)
    assert torch.equal(a.weight, a0.weight)
    ema_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_with_and_without_imix_and_only_anchor_changes(name):
    """i-Mix mixes the anchors (view 1) and leaves the positives (view 2) as they are; SimCLR, whose
    2N views are all anchors (Eq. 5 over both halves), mixes both and compares them with the 2N clean
    views. Checked on what the encoders see."""
    torch.manual_seed(0)
    method = build_method(name, _encoder(), proj_hidden=16, proj_dim=8)
    seen = []
    for module in method.modules():  # the online encoder and, for MoCo/BYOL, its momentum copy
        if type(module) is type(method.encoder):
            module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    a, b = torch.randn(8, 6), torch.randn(8, 6)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])

    def shown(x):  # x is fed to an encoder, alone or as one half of a concatenated batch
        return any(torch.equal(s, x) or torch.equal(s[:len(x)], x) or torch.equal(s[-len(x):], x) for s in seen)

    plain = method(a, b, None, labels=labels)
    assert shown(a) and shown(b)
    seen.clear()
    mixed = method(a, b, 1.0, generator=torch.Generator().manual_seed(0), labels=labels)
    if name == "simclr":
        both_mixed = [s for s in seen if len(s) == 16 and not torch.equal(s[:8], a) and not torch.equal(s[8:], b)]
        assert len(both_mixed) == 1 and shown(a) and shown(b), "SimCLR: 2N mixed anchors against 2N clean views"
    else:
        assert not shown(a), "i-Mix must feed mixed anchors, not view 1 itself"
        assert shown(b), "view 2 (the positives) must stay unmixed"
    for loss in (plain, mixed):
        assert loss.dim() == 0 and torch.isfinite(loss)
    mixed.backward()
    grads = [p.grad for p in method.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_simclr_imix_with_lam_one_equals_plain():
    method = SimCLR(_encoder(), proj_hidden=16, proj_dim=8).eval()
    a, b = torch.randn(6, 6), torch.randn(6, 6)
    plain = method(a, b, None)
    # Beta(1e-4, 1e-4) puts lam at 0 or 1; max_lam makes it 1: i-Mix reduces to the plain loss.
    mixed = method(a, b, 1e-4, generator=torch.Generator().manual_seed(1), max_lam=True)
    assert mixed.item() == pytest.approx(plain.item(), rel=1e-3)


def test_models_output_sizes():
    assert cifar_resnet(18)(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert cifar_resnet(18, in_channels=1).out_dim == 512
    net = SmallConvNet(1, 8)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, net.out_dim)
    mlp = TabularMLP(54, width=1 / 16)
    assert mlp(torch.randn(3, 54)).shape == (3, 128) and mlp.out_dim == 128
    assert TabularMLP(10).out_dim == 2048  # the paper's 8192 / 4 maxout pieces


def test_bad_method_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        build_method("simsiam", _encoder())
    with pytest.raises(ValueError, match="tau"):
        NPair(_encoder(), tau=0)
    with pytest.raises(ValueError, match="out_dim"):
        NPair(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="labels"):
        build_method("supnpair", _encoder())(torch.randn(4, 6), torch.randn(4, 6))


def test_a_registered_method_is_buildable_by_name_with_its_cpu_settings():
    from imix_teach.methods import ContrastiveMethod, register

    @register
    class Toy(NPair):
        name = "toy-npair"
        cpu_overrides = dict(proj_hidden=8, proj_dim=4)

    try:
        method = build_method("toy-npair", _encoder(), scale="cpu")
        assert isinstance(method, ContrastiveMethod) and method.projector[-1].out_features == 4
    finally:
        METHODS.pop("toy-npair")
    moco = build_method("moco", _encoder(), scale="cpu", n_train=300, proj_dim=8)
    assert moco.queue.shape == (150, 8) and moco.momentum == 0.99  # explicit arguments win, queue from n_train
    assert build_method("moco", _encoder()).momentum == 0.999  # paper scale: the constructor's defaults


# ----------------------------------------------------------------------------- i-Mix replayed by hand
SMALL = dict(proj_hidden=16, proj_dim=8)


def _replay_mix(view, seed, per_sample=True):
    """lam then perm from a generator seeded with ``seed``, as imix draws them; the mixed view, and
    ``mix(t)`` = lam * t + (1 - lam) * t[perm] for label rows t."""
    g = torch.Generator().manual_seed(seed)
    n = view.shape[0]
    lam = sample_lambda(1.0, n if per_sample else None, generator=g)
    perm = torch.randperm(n, generator=g)
    lam_b = lam.view(-1, *([1] * (view.dim() - 1))) if per_sample else lam
    col = lam.view(-1, 1) if per_sample else lam
    return lam_b * view + (1 - lam_b) * view[perm], lambda t: col * t + (1 - col) * t[perm]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_simclr_with_alpha_mixes_both_views_with_the_same_partners():
    """Appendix A.1: [mix(view1); mix(view2)] against the clean [view1; view2], targets
    [mix(base[:N]); mix(base[N:])]; per-sample lam and tau = 0.5 reach the loss. Also the plain loss."""
    method = SimCLR(_encoder(), tau=0.5, **SMALL).eval()
    a, b = torch.randn(2, 5, 6, generator=_gen(0))
    clean = method.embed(torch.cat([a, b]))
    assert method(a, b).item() == pytest.approx(simclr_loss(clean, clean, tau=0.5).item(), rel=1e-5)
    (ma, mix), (mb, _) = _replay_mix(a, 3), _replay_mix(b, 3)
    base = simclr_targets(5)
    expected = simclr_loss(method.embed(torch.cat([ma, mb])), clean, torch.cat([mix(base[:5]), mix(base[5:])]), 0.5)
    loss = method(a, b, 1.0, generator=_gen(3), per_sample=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_simclr_with_cutmix_draws_both_boxes_from_its_generator():
    """mode="cutmix": view 1's box, then view 2's (of view 1's clipped area), both from the generator;
    each half of the targets is mixed with its own clipped share."""
    from imix_teach.mixing import cutmix

    method = SimCLR(SmallConvNet(1, 4), **SMALL).eval()
    a, b = torch.randn(2, 4, 1, 6, 6, generator=_gen(1))
    g = _gen(2)
    lam, perm = sample_lambda(1.0, generator=g), torch.randperm(4, generator=g)
    ma, lam1 = cutmix(a, lam, perm, generator=g)
    mb, lam2 = cutmix(b, lam1, perm, generator=g)
    base = simclr_targets(4)
    targets = torch.cat([lam1 * base[:4] + (1 - lam1) * base[:4][perm], lam2 * base[4:] + (1 - lam2) * base[4:][perm]])
    expected = simclr_loss(method.embed(torch.cat([ma, mb])), method.embed(torch.cat([a, b])), targets, method.tau)
    loss = method(a, b, 1.0, generator=_gen(2), mode="cutmix")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_moco_with_alpha_mixes_the_queries_only():
    """Eq. 8: mixed queries against the clean keys of view 2 and the queue, targets mix(eye); the
    per-sample option and tau = 0.5 reach the loss."""
    method = MoCo(_encoder(), queue_size=8, tau=0.5, **SMALL).eval()  # eval: no enqueue, the queue stays put
    a, b = torch.randn(2, 5, 6, generator=_gen(4))
    mixed, mix = _replay_mix(a, 6)
    with torch.no_grad():
        keys = F.normalize(method.key_projector(method.key_encoder(b)), dim=1)
    expected = moco_loss(method.embed(mixed), keys, method.queue, mix(torch.eye(5)), 0.5)
    loss = method(a, b, 1.0, generator=_gen(6), per_sample=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_byol_with_alpha_predicts_the_target_of_both_partners():
    """Eq. 12: the online network sees mix(view1), the target network the clean view 2, targets mix(eye)."""
    method = BYOL(_encoder(), pred_hidden=8, **SMALL).eval()
    a, b = torch.randn(2, 5, 6, generator=_gen(5))
    mixed, mix = _replay_mix(a, 7)
    with torch.no_grad():
        target = method.target_projector(method.target_encoder(b))
    expected = byol_loss(method.predictor(method.embed(mixed)), target, mix(torch.eye(5)))
    loss = method(a, b, 1.0, generator=_gen(7), per_sample=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_supervised_npair_mixes_its_label_targets():
    """Appendix A.2 with i-Mix: the supervised targets (same label = positive), mixed like the anchors."""
    method = SupervisedNPair(_encoder(), **SMALL).eval()
    a, b = torch.randn(2, 6, 6, generator=_gen(8))
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    mixed, mix = _replay_mix(a, 9)
    expected = npair_loss(method.embed(mixed), method.embed(b), mix(supervised_targets(labels)), method.tau)
    loss = method(a, b, 1.0, generator=_gen(9), labels=labels, per_sample=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_npair_single_pass_embeds_anchors_and_positives_in_one_batch():
    """single_pass=True: [mixed anchors; positives] go through one forward pass, so batch norm (train
    mode) normalises both with the same statistics, which two passes would not."""
    method = NPair(_encoder(), single_pass=True, **SMALL)
    a, b = torch.randn(2, 6, 6, generator=_gen(10))
    mixed, mix = _replay_mix(a, 11)
    anchor_emb, positive_emb = method.embed(torch.cat([mixed, b])).chunk(2)
    expected = npair_loss(anchor_emb, positive_emb, mix(torch.eye(6)), method.tau).item()
    two_passes = npair_loss(method.embed(mixed), method.embed(b), mix(torch.eye(6)), method.tau).item()
    loss = method(a, b, 1.0, generator=_gen(11), per_sample=True)
    assert loss.item() == pytest.approx(expected, rel=1e-5) and two_passes != pytest.approx(expected, rel=1e-3)


@pytest.fixture
def rank1_of_2(monkeypatch):
    """This process plays rank 1 of 2: gather(x) returns [the other rank's rows; x], the other rank's
    rows being x flipped. Checks, on one process, how the methods place their targets among gathered rows."""
    from imix_teach import distributed

    def gather(x):
        return torch.cat([x.detach().flip(0), x])

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "gather", gather)
    return gather


def test_npair_targets_point_at_this_ranks_block_of_gathered_positives(rank1_of_2):
    """N-pair and supervised N-pair on rank 1: the targets are (N, 2N), this rank's own block second."""
    a, b = torch.randn(2, 4, 6, generator=_gen(12))
    labels = torch.tensor([0, 1, 0, 1])
    own = F.pad(torch.eye(4), (4, 0))
    mixed, mix = _replay_mix(a, 13)
    npair = NPair(_encoder(), tau=0.5, **SMALL).eval()
    positives = rank1_of_2(npair.embed(b))
    assert npair(a, b).item() == pytest.approx(npair_loss(npair.embed(a), positives, own, 0.5).item(), rel=1e-5)
    expected = npair_loss(npair.embed(mixed), positives, mix(own), 0.5)
    assert npair(a, b, 1.0, generator=_gen(13), per_sample=True).item() == pytest.approx(expected.item(), rel=1e-5)
    sup = SupervisedNPair(_encoder(), **SMALL).eval()
    targets = supervised_targets(labels, rank1_of_2(labels))
    expected = npair_loss(sup.embed(mixed), rank1_of_2(sup.embed(b)), mix(targets), sup.tau)
    assert sup(a, b, 1.0, generator=_gen(13), labels=labels, per_sample=True).item() == pytest.approx(expected.item(), rel=1e-5)


def test_moco_targets_point_at_this_ranks_block_of_gathered_keys(rank1_of_2):
    """MoCo on rank 1: queries contrast with both ranks' keys and the queue, targets (N, 2N) on the second block."""
    method = MoCo(_encoder(), queue_size=8, tau=0.5, **SMALL).eval()
    a, b = torch.randn(2, 4, 6, generator=_gen(14))
    with torch.no_grad():
        keys = rank1_of_2(F.normalize(method.key_projector(method.key_encoder(b)), dim=1))
    own = F.pad(torch.eye(4), (4, 0))
    assert method(a, b).item() == pytest.approx(moco_loss(method.embed(a), keys, method.queue, own, 0.5).item(), rel=1e-5)
    mixed, mix = _replay_mix(a, 15)
    expected = moco_loss(method.embed(mixed), keys, method.queue, mix(own), 0.5)
    assert method(a, b, 1.0, generator=_gen(15), per_sample=True).item() == pytest.approx(expected.item(), rel=1e-5)


def test_simclr_places_this_ranks_2n_rows_at_offset_2n_of_the_gathered_candidates(rank1_of_2):
    """SimCLR on rank 1: candidates are both ranks' clean [view1; view2], this rank's at rows 2N ... 4N - 1."""
    method = SimCLR(_encoder(), tau=0.5, **SMALL).eval()
    a, b = torch.randn(2, 3, 6, generator=_gen(16))
    clean_here = method.embed(torch.cat([a, b]))
    clean, base = rank1_of_2(clean_here), simclr_targets(3)
    plain = simclr_loss(clean_here, clean, F.pad(base, (6, 0)), 0.5, offset=6)
    assert method(a, b).item() == pytest.approx(plain.item(), rel=1e-5)
    (ma, mix), (mb, _) = _replay_mix(a, 17), _replay_mix(b, 17)
    targets = F.pad(torch.cat([mix(base[:3]), mix(base[3:])]), (6, 0))
    expected = simclr_loss(method.embed(torch.cat([ma, mb])), clean, targets, 0.5, offset=6)
    assert method(a, b, 1.0, generator=_gen(17), per_sample=True).item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------- settings and arguments
def test_constructor_defaults_are_the_papers_settings():
    """A 2048-2048-128 head without output BN, tau 0.2, two passes for N-pair; MoCo: 4096 unit-norm queue
    entries, no shuffle-BN; BYOL: a 512-wide predictor without output BN. settings() means "paper" = {}."""
    from imix_teach.models import OutputBatchNorm

    npair = NPair(_encoder())
    assert [m.out_features for m in npair.projector if isinstance(m, torch.nn.Linear)] == [2048, 128]
    assert len(npair.projector) == 4 and npair.tau == 0.2 and npair.single_pass is False
    assert isinstance(NPair(_encoder(), proj_bn=True, **SMALL).projector[-1], OutputBatchNorm)
    moco = MoCo(_encoder())
    assert moco.queue.shape == (4096, 128) and moco.shuffle_bn is False
    assert torch.allclose(moco.queue.norm(dim=1), torch.ones(4096))
    assert MoCo(_encoder(), shuffle_bn=True, **SMALL).shuffle_bn is True
    byol = BYOL(_encoder())
    assert byol.predictor[0].out_features == 512 and len(byol.predictor) == 4
    small = BYOL(_encoder(), pred_hidden=8, pred_bn=True, **SMALL).predictor
    assert small[0].out_features == 8 and isinstance(small[-1], OutputBatchNorm)
    assert all(cls.settings() == {} for cls in METHODS.values())
    assert MoCo.settings("paper", n_train=300) == {}  # n_train sizes the queue on CPU only


def _no_out_dim():
    encoder = _encoder()
    encoder.out_dim = 0
    return encoder


@pytest.mark.parametrize("call, message", [
    (lambda: NPair(torch.nn.Linear(3, 3)), r"^encoder must have an `out_dim` attribute \(its feature size\), see imix_teach.models$"),
    (lambda: NPair(_no_out_dim()), r"^encoder.out_dim must be an integer"),
    (lambda: NPair(_encoder(), proj_hidden=0), r"^proj_hidden must be an integer"),
    (lambda: NPair(_encoder(), proj_dim=0), r"^proj_dim must be an integer"),
    (lambda: NPair(_encoder(), tau=0), r"^tau must be a finite number > 0"),
    (lambda: NPair(_encoder(), proj_bn="no"), r"^proj_bn must be True or False"),
    (lambda: NPair(_encoder(), single_pass="no"), r"^single_pass must be True or False"),
    (lambda: MoCo(_encoder(), momentum=2.0), r"^momentum must be a number in \[0, 1\]"),
    (lambda: MoCo(_encoder(), queue_size=0), r"^queue_size must be an integer"),
    (lambda: MoCo(_encoder(), shuffle_bn="no"), r"^shuffle_bn must be True or False"),
    (lambda: BYOL(_encoder(), pred_hidden=0), r"^pred_hidden must be an integer"),
    (lambda: BYOL(_encoder(), pred_bn="no"), r"^pred_bn must be True or False"),
    (lambda: NPair.settings("gpu"), r"^scale must be 'paper' or 'cpu', got 'gpu'$"),
    (lambda: SupervisedNPair(_encoder(), **SMALL)(torch.randn(4, 6), torch.randn(4, 6)),
     r"^labels must be given to SupervisedNPair: a tensor of shape \(4,\) holding integer class ids$"),
    (lambda: SupervisedNPair(_encoder(), **SMALL)(torch.randn(4, 6), torch.randn(4, 6), labels=torch.zeros(4)),
     r"^labels must be a tensor of shape \(4,\)"),
    (lambda: NPair(_encoder(), **SMALL).checked_views(torch.full((4, 6), float("nan")), torch.randn(4, 6)),
     r"^view1 contains NaN or inf"),
    (lambda: NPair(_encoder(), **SMALL).checked_views(torch.randn(4, 6), torch.full((4, 6), float("inf"))),
     r"^view2 contains NaN or inf"),
])
def test_method_errors_begin_with_the_argument_they_are_about(call, message):
    """The contract for bad input: the error's first word names the argument (checked_views checks
    values by default, as forward does)."""
    with pytest.raises((TypeError, ValueError), match=message):
        call()


def test_moco_shuffle_bn_orders_the_global_batch_with_the_generator(rank1_of_2, monkeypatch):
    """shuffle_bn on rank 1 of 2: the 2N gathered key views are ordered by randperm(2N) from the step's
    generator, this rank encodes the second half of that order, and the gathered keys are put back."""
    from imix_teach import distributed

    monkeypatch.setattr(distributed.dist, "broadcast", lambda tensor, src: None)  # rank 0's order is ours
    method = MoCo(_encoder(), queue_size=8, shuffle_bn=True, **SMALL).eval()
    a, b = torch.randn(2, 4, 6, generator=_gen(18))
    order = torch.randperm(8, generator=_gen(19))
    with torch.no_grad():
        mine = rank1_of_2(b)[order.view(2, -1)[1]]
        keys = rank1_of_2(F.normalize(method.key_projector(method.key_encoder(mine)), dim=1))[torch.argsort(order)]
    expected = moco_loss(method.embed(a), keys, method.queue, F.pad(torch.eye(4), (4, 0)), method.tau)
    assert method(a, b, generator=_gen(19)).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("cls, extra", [(NPair, {}), (MoCo, dict(queue_size=8)), (SimCLR, {}), (BYOL, dict(pred_hidden=8))])
def test_multi_process_targets_are_made_on_the_views_device(rank1_of_2, cls, extra):
    """On rank 1 of 2 the (N, W*N) targets are built by the method: on the meta device (shapes only, no
    CPU fallback) a target tensor made on the CPU fails, so the loss must come back on meta."""
    method = cls(_encoder(), **SMALL, **extra).eval().to("meta")
    views = torch.empty(4, 6, device="meta")
    for alpha in (None, 1.0):
        assert method(views, views, alpha, generator=_gen(0), check=False).device.type == "meta"
