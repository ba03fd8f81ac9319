"""Content-based and hybrid recommendations: item descriptions as TF-IDF vectors, blended with SVD.

* Content: each item is the L2-normalised TF-IDF vector of its description; a user's profile is
  the normalised sum of the vectors of the items they used; an item's score is its cosine with
  the profile. It needs no other user's history, so a new item is recommendable at once.
* Collaborative: the SVD scores of the ``recommend`` model (history x factors x factors^T).
* Hybrid: per user, both score vectors are min-max scaled over the items the user has not used,
  then blended ``alpha * collaborative + (1 - alpha) * content``.

One ONNX graph serves all three: ``alpha`` is an input per row (1 collaborative, 0 content,
0.5 hybrid), so requests of different strategies share a batch.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from eventray.platform.ml import datasets

#: the ``alpha`` of each strategy (the GraphQL ``RecommendationStrategy`` values)
STRATEGIES = {"COLLABORATIVE": 1.0, "CONTENT": 0.0, "HYBRID": 0.5}
SEEN_PENALTY = 1e6

#: words that describe each of the synthetic catalogue's taste groups (its "category")
_GROUP_WORDS = (
    ("coffee", "espresso", "roastery", "latte", "beans", "barista"),
    ("travel", "airline", "hotel", "luggage", "passport", "resort"),
    ("books", "novel", "poetry", "library", "author", "paperback"),
    ("fitness", "gym", "running", "yoga", "protein", "trainer"),
    ("music", "concert", "vinyl", "guitar", "festival", "album"),
    ("garden", "plants", "seeds", "compost", "flowers", "nursery"),
    ("games", "console", "arcade", "puzzle", "boardgame", "esports"),
    ("kids", "toys", "school", "nappies", "playground", "crayons"),
)
_COMMON_WORDS = ("shop", "store", "online", "local", "market", "service", "premium", "discount", "gift", "card")


def item_catalogue(seed: int, *, items: int = 160, taste_groups: int = 8) -> list[str]:
    """A description per item of :func:`~eventray.platform.ml.datasets.synthetic_interactions`.

    The item's taste group is the one that generator drew (its first draw from the same seed);
    a description has three words of that group, one of a random other group (noise) and two
    common words.
    """
    group_of_item = np.random.default_rng(seed).integers(0, taste_groups, size=items)
    rng = random.Random(seed + 7)
    out = []
    for g in group_of_item.tolist():
        own = rng.sample(_GROUP_WORDS[g], 3)
        other = rng.choice(_GROUP_WORDS[rng.choice([k for k in range(taste_groups) if k != g])])
        out.append(" ".join(own + [other] + rng.sample(_COMMON_WORDS, 2)))
    return out


def item_vectors(descriptions: list[str]) -> tuple[np.ndarray, Any]:
    """L2-normalised TF-IDF rows (items x terms) and the fitted vectorizer."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from eventray.platform.ml.training import TOKEN_PATTERN

    vectorizer = TfidfVectorizer(token_pattern=TOKEN_PATTERN)
    return vectorizer.fit_transform(descriptions).toarray().astype(np.float32), vectorizer


def reference_scores(history: np.ndarray, vectors: np.ndarray, factors: np.ndarray, alpha: float) -> np.ndarray:
    """The blended score of every item for each history row, in plain numpy (the ONNX graph's twin)."""
    from sklearn.metrics.pairwise import cosine_similarity

    content = cosine_similarity(history @ vectors, vectors)
    collaborative = (history @ factors) @ factors.T
    unseen = history == 0

    def scaled(s: np.ndarray) -> np.ndarray:
        lo = np.where(unseen, s, np.inf).min(axis=1, keepdims=True)
        hi = np.where(unseen, s, -np.inf).max(axis=1, keepdims=True)
        return (s - lo) / np.maximum(hi - lo, 1e-9)

    return alpha * scaled(collaborative) + (1 - alpha) * scaled(content) - SEEN_PENALTY * history


def hybrid_graph(interactions: np.ndarray, vectors: np.ndarray, factors: np.ndarray) -> Any:
    """ONNX: user index, alpha, k -> top-k items by the blend of content and SVD scores."""
    from onnx import TensorProto, helper, numpy_helper

    from eventray.platform.ml.training import OPSET

    f32 = np.float32
    inits = [
        numpy_helper.from_array(interactions.astype(f32), "interactions"),
        numpy_helper.from_array(vectors.astype(f32), "item_vectors"),
        numpy_helper.from_array(np.ascontiguousarray(vectors.T.astype(f32)), "item_vectors_t"),
        numpy_helper.from_array(factors.astype(f32), "item_factors"),
        numpy_helper.from_array(np.ascontiguousarray(factors.T.astype(f32)), "item_factors_t"),
        numpy_helper.from_array(np.array(SEEN_PENALTY, dtype=f32), "seen_penalty"),
        numpy_helper.from_array(np.array(1e-9, dtype=f32), "eps"),
        numpy_helper.from_array(np.array(1.0, dtype=f32), "one"),
    ]
    n = helper.make_node
    nodes = [
        n("Gather", ["interactions", "user_index"], ["history"], axis=0),
        n("Mul", ["history", "seen_penalty"], ["penalty"]),
        # content: the profile is the sum of used items' vectors; cosine = normalised dot product
        n("MatMul", ["history", "item_vectors"], ["profile_raw"]),
        n("LpNormalization", ["profile_raw"], ["profile"], axis=-1, p=2),
        n("MatMul", ["profile", "item_vectors_t"], ["content"]),
        # collaborative: the recommend model's SVD scores
        n("MatMul", ["history", "item_factors"], ["user_factors"]),
        n("MatMul", ["user_factors", "item_factors_t"], ["collaborative"]),
    ]
    for s in ("content", "collaborative"):  # min-max over the items the user has not used
        nodes += [
            n("Sub", [s, "penalty"], [f"{s}_for_max"]),
            n("ReduceMax", [f"{s}_for_max"], [f"{s}_hi"], axes=[-1], keepdims=1),
            n("Add", [s, "penalty"], [f"{s}_for_min"]),
            n("ReduceMin", [f"{s}_for_min"], [f"{s}_lo"], axes=[-1], keepdims=1),
            n("Sub", [s, f"{s}_lo"], [f"{s}_shifted"]),
            n("Sub", [f"{s}_hi", f"{s}_lo"], [f"{s}_range_raw"]),
            n("Max", [f"{s}_range_raw", "eps"], [f"{s}_range"]),
            n("Div", [f"{s}_shifted", f"{s}_range"], [f"{s}_scaled"]),
        ]
    nodes += [
        n("Sub", ["one", "alpha"], ["beta"]),
        n("Mul", ["collaborative_scaled", "alpha"], ["collaborative_part"]),
        n("Mul", ["content_scaled", "beta"], ["content_part"]),
        n("Add", ["collaborative_part", "content_part"], ["blend"]),
        n("Sub", ["blend", "penalty"], ["masked"]),
        n("TopK", ["masked", "k"], ["scores", "item_index"], axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes, "recommend_hybrid",
        [helper.make_tensor_value_info("user_index", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("alpha", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", "K"]),
         helper.make_tensor_value_info("item_index", TensorProto.INT64, ["N", "K"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET[""])])


def hit_rate(scores: np.ndarray, hidden: np.ndarray, users: np.ndarray, k: int = 10) -> float:
    """Share of ``users`` whose hidden item is in their top ``k`` by ``scores``."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([hidden[u] in top[u] for u in users]))


def train_hybrid(seed: int) -> Any:
    """Fit the content vectors and the SVD on the recommend model's training split; measure all three."""
    import onnx
    from sklearn.decomposition import TruncatedSVD

    from eventray.platform.ml.training import Trained, _finish, _metadata, holdout_one_per_user

    full = datasets.synthetic_interactions(seed)
    train, hidden = holdout_one_per_user(full, seed)
    descriptions = item_catalogue(seed, items=full.shape[1])
    vectors, vectorizer = item_vectors(descriptions)
    params: dict[str, Any] = {"n_components": 16, "algorithm": "randomized", "n_iter": 7, "random_state": seed}
    svd = TruncatedSVD(**params).fit(train)
    factors = svd.components_.T.astype(np.float32)
    users_with_hidden = np.flatnonzero(hidden >= 0)
    metrics = {f"heldout_hit_rate_at_10_{name.lower()}": hit_rate(reference_scores(train, vectors, factors, a),
                                                                   hidden, users_with_hidden)
               for name, a in STRATEGIES.items()}
    metrics["heldout_users"] = float(len(users_with_hidden))
    onx = hybrid_graph(train, vectors, factors)
    onnx.checker.check_model(onx)
    users = datasets.user_ids(len(full))
    _metadata(onx, users=users, items=[f"item-{i:04d}" for i in range(full.shape[1])],
              descriptions=descriptions, strategies=STRATEGIES)
    params.update({"vectorizer": "tfidf", "strategies": STRATEGIES})
    return Trained("recommend_hybrid", "hybrid", svd, _finish(onx, "recommend_hybrid"), metrics,
                   datasets.data_hash(full, hidden, descriptions), params, heldout=train,
                   extra={"users": users, "train": train, "vectors": vectors, "factors": factors,
                          "hidden": hidden, "vectorizer": vectorizer},
                   source="the recommend model's synthetic interactions plus a seeded item catalogue "
                          "(descriptions drawn from each item's taste group)",
                   licence="generated here: no third-party data")
