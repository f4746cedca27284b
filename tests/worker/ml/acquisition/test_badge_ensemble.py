import numpy as np

from tests.worker.ml.acquisition.synthetic import blobs
from worker.ml.acquisition import Badge, EnsembleDisagreement, Entropy, PoolView
from worker.ml.acquisition.ensemble import kl_from_consensus, vote_entropy


def badge_pool() -> tuple[PoolView, np.ndarray, np.ndarray]:
    """Four tight blobs of uncertain items and four of confident ones."""
    x, ids = blobs(8, 25, seed=1)
    uncertain = ids < 4
    probs = np.where(uncertain[:, None], [0.4, 0.35, 0.25], [0.98, 0.01, 0.01])
    return PoolView(probs=probs, embeddings=x), ids, uncertain


def test_badge_picks_uncertain_items_spread_over_clusters() -> None:
    """Half the pool is confident (tiny gradients); D^2 sampling is random, so count over seeds."""
    view, ids, uncertain = badge_pool()
    uncertain_share, blobs_covered = [], []
    for seed in range(30):
        rows = [p.index for p in Badge().select(view, 4, seed=seed)]
        uncertain_share.append(uncertain[rows].mean())
        blobs_covered.append(len(set(ids[rows][uncertain[rows]].tolist())))
    assert np.mean(uncertain_share) > 0.7  # vs 0.5 for random picks
    assert min(blobs_covered) >= 3  # plain entropy puts all four picks in one blob
    entropy_rows = [p.index for p in Entropy().select(view, 4)]
    assert len(set(ids[entropy_rows].tolist())) == 1
    first = Badge().select(view, 1)[0]
    assert uncertain[first.index] and first.reason.startswith("largest gradient norm")


def test_badge_uses_materialised_head_gradients_when_given() -> None:
    view, ids, _ = badge_pool()
    grads = np.zeros((len(view), 6))
    grads[ids == 6, 0] = 2.0  # the head says only blob 6 matters; no embeddings in the view
    picks = Badge().select(PoolView(probs=view.probs, grad_embeddings=grads), 1)
    assert ids[picks[0].index] == 6


def test_vote_entropy_and_kl_are_zero_when_variants_agree() -> None:
    p = np.array([[0.7, 0.3], [0.6, 0.4]])
    assert vote_entropy((p, p)).tolist() == [0.0, 0.0]
    assert np.allclose(kl_from_consensus((p, p)), 0.0)
    q = p[:, ::-1]
    assert np.allclose(vote_entropy((p, q)), np.log(2))
    assert (kl_from_consensus((p, q)) > 0).all()


def test_ensemble_disagreement_picks_where_variants_disagree() -> None:
    rng = np.random.default_rng(0)
    a = rng.dirichlet([5, 1, 1], size=40)
    b = a.copy()
    disagree = [3, 17, 29]
    b[disagree] = a[disagree][:, [1, 0, 2]]  # swap the top class on three rows
    view = PoolView(variant_probs=(a, b), label_names=("sports", "tech", "misc"))
    for measure in ("vote", "kl"):
        picks = EnsembleDisagreement(measure=measure).select(view, 3)
        assert sorted(p.index for p in picks) == disagree
    assert "'sports' vs 'tech'" in picks[0].reason or "'tech' vs 'sports'" in picks[0].reason


def test_vote_measure_prefers_a_hard_split_over_soft_disagreement() -> None:
    a = np.array([[0.55, 0.45], [0.99, 0.01]])
    b = np.array([[0.45, 0.55], [0.60, 0.40]])  # row 1: same vote, big KL
    view = PoolView(variant_probs=(a, b))
    assert EnsembleDisagreement(measure="vote").select(view, 1)[0].index == 0
    assert EnsembleDisagreement(measure="kl").select(view, 1)[0].index == 1
