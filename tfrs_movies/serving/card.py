"""The model card of an export (``MODEL_CARD.md``), written from its ``manifest.json`` alone.

``model_card(manifest, path) -> str`` (Markdown): what the model is, the data and split it learned from,
training time, its headline figures with reference baselines beside them where ``docs/EVALUATION.md``
has figures measured on the very same split (else it says that there are none), its settings and
number of learned weights, intended use, known limitations (the cold start the export really does:
:mod:`tfrs_movies.serving.load`; popularity bias; what it never saw) and how to load it. Pure Python:
no TensorFlow, so a card can be written again from any manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.evaluation.report import model_settings

CARD_FILE = "MODEL_CARD.md"

# Baselines measured on exactly these splits (docs/EVALUATION.md, "Reference figures"): the run's data,
# split kind and files, with every test rating relevant and the user's train movies removed.
# key -> (where the figures come from, {system: {metric: value}}).
REFERENCE_FIGURES: dict[tuple[str, str, str | None, str | None], tuple[str, dict[str, dict[str, float]]]] = {
    ("ml-100k", "files", "u1.base", "u1.test"): (
        "docs/EVALUATION.md, measured with Surprise (default settings), implicit and a NumPy EASE on the "
        "same u1.base / u1.test; EASE's and ALS's settings are the best of a small grid read on test, which "
        "flatters them",
        {
            "EASE (l2 400)": {
                "recall@10": 0.1912,
                "recall@20": 0.3072,
                "precision@10": 0.5139,
                "ndcg@10": 0.5659,
                "map@10": 0.4316,
            },
            "implicit ALS (32 factors)": {
                "recall@10": 0.1844,
                "recall@20": 0.2850,
                "precision@10": 0.4871,
                "ndcg@10": 0.5360,
                "map@10": 0.3965,
            },
            "popularity": {
                "recall@10": 0.0975,
                "recall@20": 0.1481,
                "precision@10": 0.3046,
                "ndcg@10": 0.3253,
                "map@10": 0.1990,
            },
            "Surprise SVD++": {"rmse": 0.9330, "mae": 0.7327},
            "Surprise BaselineOnly": {"rmse": 0.9599, "mae": 0.7616},
        },
    ),
    ("ml-100k", "leave_last_out", None, None): (
        "docs/EVALUATION.md, measured with implicit and a NumPy EASE on the same leave-last-out split "
        "of u.data; each the best of a small grid read on test, which flatters them",
        {
            "implicit BPR": {"hr@10": 0.1018},
            "implicit ALS": {"ndcg@10": 0.0494},
            "EASE": {"hr@10": 0.0912, "ndcg@10": 0.0417},
            "popularity": {"hr@10": 0.0498, "ndcg@10": 0.0257},
        },
    ),
}


def first_sentence(text: str) -> str:
    """A docstring's first sentence as prose: reStructuredText markup and pointers to other docs dropped."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text).replace("``", "`")
    text = re.sub(r"\s*(;\s*see the module docstring|\(module docstring\))", "", text)
    text = " ".join(text.split())
    first = re.split(r"(?<=[a-z0-9)`])\.\s", text, maxsplit=1)[0]
    return first.rstrip(".")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def _split_words(split: Mapping[str, Any]) -> str:
    """One sentence per split kind (the kinds of :mod:`tfrs_movies.data.splits`)."""
    describe: dict[str, Callable[[Mapping[str, Any]], str]] = {
        "files": lambda s: f"the dataset's own files: train `{s.get('train')}`, test `{s.get('test')}`",
        "random": lambda s: (
            f"per user, a random {s.get('test_fraction', 0.2):.0%} of ratings to test (seed "
            f"{s.get('seed')}; users with fewer than {s.get('min_ratings')} ratings all in "
            "train)"
        ),
        "user_holdout": lambda s: (
            f"a random {s.get('test_fraction', 0.2):.0%} of users to test with all "
            f"their ratings (seed {s.get('seed')})"
        ),
        "leave_last_out": lambda s: (
            "per user, by time: the last rating to test, the one before it to validation, the rest to train"
        ),
        "probe": lambda s: "the Netflix Prize probe pairs to test, removed from train",
    }
    kind = split.get("kind")
    words = describe[kind](split) if kind in describe else f"`{kind}`"
    fraction = split.get("validation_fraction")
    if kind != "leave_last_out" and fraction:
        words += f"; validation (early stopping, choices) a per-user {fraction:.0%} carved from train"
    return words


def _headline(metrics: Mapping[str, Any], ks: list[int]) -> list[str]:
    """The figures a card shows, only those the run has: the rating and classification figures, the
    train command's headline top-N figures, and novelty and Gini at the smallest cut-off (every other
    figure is in ``manifest.json``)."""
    k = min(ks, default=10)
    names = list(M.families(M.RATING) + M.families(M.CLASSIFICATION))
    names += [n for n in M.HEADLINE if M.is_top_n(n)] + [f"novelty@{k}", f"gini@{k}"]
    return [n for n in dict.fromkeys(names) if isinstance(metrics.get(n), (int, float))]


def _reference(manifest: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, float]]] | None:
    """The reference baselines measured on this run's split, if docs/EVALUATION.md has them."""
    config = manifest.get("config") or {}
    metrics = manifest.get("metrics") or {}
    data, evaluation = config.get("data") or {}, config.get("eval") or {}
    split = data.get("split") or {}
    kind = split.get("kind")
    files = (split.get("train"), split.get("test")) if kind == "files" else (None, None)
    dataset = metrics.get("dataset", data.get("name"))
    comparable = (
        not evaluation.get("relevance_threshold")
        and evaluation.get("exclude_seen", True)
        and not evaluation.get("max_users")
        and metrics.get("evaluated_on", "test") == "test"
    )
    return REFERENCE_FIGURES.get((dataset, kind, *files)) if comparable else None


def _figures_section(manifest: Mapping[str, Any]) -> list[str]:
    metrics = manifest.get("metrics") or {}
    config = manifest.get("config") or {}
    ks = [int(k) for k in (config.get("eval") or {}).get("ks") or []]
    names = _headline(metrics, ks)
    if not names:
        return [
            "This export was written without test figures (its manifest holds none): it was exported "
            "outside a training run, so nothing here says how good it is."
        ]
    where = metrics.get("evaluated_on", "test")
    users = metrics.get("users")
    lines = [
        f"Measured on the {where} split"
        + (f" ({users:,} users)" if isinstance(users, int) else "")
        + ": top-N figures rank every movie of the catalogue with the user's training movies removed, "
        "every held-out rating relevant unless the config sets a threshold; RMSE and MAE are over the "
        "held-out ratings, predictions clipped to the rating scale (docs/EVALUATION.md defines each figure)."
    ]
    reference = _reference(manifest)
    systems = reference[1] if reference else {}
    systems = {s: f for s, f in systems.items() if any(n in f for n in names)}
    lines += [
        "",
        "| " + " | ".join(["figure", "this model", *systems]) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    for name in names:
        direction = f"{M.direction(name)} is better"
        cells = [_number(float(metrics[name]))] + [
            _number(f[name]) if name in f else "" for f in systems.values()
        ]
        lines.append(f"| {name} ({direction}) | " + " | ".join(cells) + " |")
    lines.append("")
    if reference and systems:
        lines.append(f"The baselines are reference figures on the same split ({reference[0]}).")
    else:
        lines.append(
            "This run recorded no baseline figures, and docs/EVALUATION.md has none measured on its "
            "split; to compare, train `--model popularity` and `--model ease` with the same config "
            "and put the runs side by side with `tfrs-movies report`."
        )
    return lines


def _cold_start(manifest: Mapping[str, Any]) -> list[str]:
    """What :class:`tfrs_movies.serving.load.Exported` does for users and movies it does not know: the
    request fields its query tower reads (:data:`~tfrs_movies.serving.load.COLD_START_FIELDS`), the
    watch-history input, movie vectors to fold a user in, else popularity."""
    from tfrs_movies.serving.load import COLD_START_FIELDS

    inputs = manifest.get("user_feature_inputs") or {}
    fields = [f for f, names in COLD_START_FIELDS.items() if set(names) & set(inputs)]
    if fields:
        flags = ", ".join(f"`--{f}`" for f in fields)
        users = (
            f"a user id it never saw gets recommendations from the features given through its query "
            f"tower ({flags}), or the most popular movies of training when none of them is given"
        )
    else:
        users = "a user id it never saw gets the most popular movies of training (its towers read ids only)"
    if "history" in inputs:
        watched = "the query tower over those movies as the user's history"
    elif manifest.get("movie_vectors") and manifest.get("form") == "dot":
        watched = "the least-squares query vector over their movie vectors (folded in, no retraining)"
    else:
        watched = "nothing this model can fold in: the most popular movies"
    return [
        f"- **Cold start.** {users[0].upper() + users[1:]}; the answer says so (`cold_start: true`). A new "
        f"user described by a few watched movies gets {watched}. A movie that is not in its catalogue "
        "(a film added after training) is never recommended, and asking for movies similar to it is an error "
        "(`unknown movie id`): new movies need a new training run.",
    ]


def _popularity_bias(metrics: Mapping[str, Any]) -> str:
    coverage = next((k for k in ("coverage@10", "coverage@20") if k in metrics), None)
    if coverage is None:
        return (
            "- **Popularity bias.** Collaborative models learn from what many people rated, so popular "
            "movies are recommended more often than their share of good matches; this run did not "
            "measure how much (no coverage figure)."
        )
    k = coverage.split("@")[1]
    gini = metrics.get(f"gini@{k}")
    novelty = metrics.get(f"novelty@{k}")
    extra = (
        f", Gini {gini:.2f} (0: every movie recommended equally often, 1: one movie for everyone)"
        if isinstance(gini, (int, float))
        else ""
    )  # noqa: E501
    extra += f", novelty {novelty:.2f} bits" if isinstance(novelty, (int, float)) else ""
    return (
        f"- **Popularity bias.** Its top-{k} lists for the test users use {metrics[coverage]:.0%} of the "
        f"catalogue{extra}: popular movies are recommended far more often than the rest, and a "
        "movie few people rated is rarely shown."
    )


def model_card(manifest: Mapping[str, Any], path: str = "<export>") -> str:
    """The Markdown model card of the export at ``path`` described by ``manifest`` (see the module doc)."""
    config = manifest.get("config") or {}
    metrics = manifest.get("metrics") or {}
    data = config.get("data") or {}
    train = config.get("train") or {}
    name = manifest.get("model", "?")
    vocabulary = manifest.get("vocabulary") or {}
    versions = manifest.get("versions") or {}
    indexes = " and ".join(f"`{name}/`" for name in manifest.get("indexes") or {}) or "no index"
    form = (
        "a dot product: a user's score for a movie is their query vector times the movie's vector"
        if manifest.get("form") == "dot"
        else "a scorer over the whole catalogue"
    ) + f", searched by the top-K SavedModels {indexes}"
    dataset = metrics.get("dataset", data.get("name", "?"))
    sizes = metrics.get("sizes") or {}
    lines = [
        f"# Model card: `{name}`",
        "",
        f"Written by tfrs_movies {versions.get('tfrs_movies', '?')} from this export's `manifest.json`"
        + (f" on {manifest['exported_at']}" if manifest.get("exported_at") else "")
        + ".",
        "",
        "## What it is",
        "",
        f"`{name}`: {manifest.get('description') or 'a registered tfrs_movies model'}. It recommends "
        f"movies to users as {form}."
        + (
            " A ranking model re-orders the candidates by predicted rating (two stages)."
            if manifest.get("ranking")
            else ""
        ),
        "",
        "## Data and split",
        "",
        f"- Dataset: `{dataset}`"
        + (
            " (a generated sample: its figures say nothing about real people)"
            if dataset == "synthetic"
            else ""
        )
        + f"; {_number(vocabulary.get('users', '?'))} users and {_number(vocabulary.get('movies', '?'))} "
        "movies known to the model.",
        f"- Split `{(data.get('split') or {}).get('kind', '?')}`: {_split_words(data.get('split') or {})}.",
    ]
    if sizes:
        parts = [part for part in ("train", "valid", "test") if part in sizes]
        lines.append("- Ratings: " + ", ".join(f"{part} {sizes[part]:,}" for part in parts) + ".")
    seconds = metrics.get("train_seconds")
    lines += ["", "## Training", ""]
    if isinstance(seconds, (int, float)) and "best_epoch" in metrics:  # trained by epochs (Keras)
        lines.append(
            f"- {seconds:,.1f} s of fitting; best epoch {metrics['best_epoch']} of at most "
            f"{train.get('epochs')} (early stopping on validation restores it), batch "
            f"{train.get('batch_size')}, {train.get('optimizer')} at learning rate "
            f"{train.get('learning_rate')}."
        )
    elif isinstance(seconds, (int, float)):  # fitted in closed form or by its own iterations
        lines.append(f"- {seconds:,.2f} s of fitting.")
    else:
        lines.append("- Training time not recorded (exported outside a training run).")
    lines += [
        f"- Settings: `{model_settings(dict(config))}` (`model.params` and what differs from the built-in "
        "defaults; the full config is in `manifest.json`).",
        f"- Learned weights: {manifest['parameters']:,}."
        if isinstance(manifest.get("parameters"), int)
        else "- Learned weights: none counted (the model keeps no float arrays).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".",
        "",
        "## Figures",
        "",
        *_figures_section(manifest),
        "",
        "## Intended use",
        "",
        f"Top-N movie recommendations (up to k = {manifest.get('k_max', '?')} per request) for the users of "
        f"`{dataset}`, from its catalogue, with the movies a user rated in training left out; similar "
        "movies; a starting point for comparing recommenders on the same data. It is not meant for "
        "decisions about people, for another catalogue, or for ratings on another scale.",
        "",
        "## Known limitations",
        "",
        *_cold_start(manifest),
        _popularity_bias(metrics),
        f"- **Data it never saw.** It learned only from the training part of `{dataset}`: no movie, user or "
        "rating added later, no change of taste after the data was collected, and nothing about the people "
        "beyond what the dataset records. Figures on another population will differ.",
        "",
        "## How to load it",
        "",
        "```python",
        "from tfrs_movies import load_export",
        "",
        f'export = load_export("{path}")',
        "print(export.recommend(42, k=10).frame)   # a user id of the training data",
        "```",
        "",
        "```",
        f"tfrs-movies recommend --model {path} --user 42 --k 10",
        f"tfrs-movies serve --model {path}            # HTTP, and TensorFlow Serving's REST dialect",
        "```",
        "",
        "TensorFlow Serving: copy `brute_force/` to `models/brute_force/1/` and run `tensorflow_model_server "
        "--rest_api_port=8501 --model_name=brute_force --model_base_path=$PWD/models/brute_force`; "
        '`POST /v1/models/brute_force:predict` with `{"signature_name": "serving_default", "inputs": '
        '{"user_id": ["42"], "k": 10, "exclude": [[""]]}}`'
        + (
            " (`scann/` needs a server built with the ScaNN ops, or `tfrs-movies serve`)."
            if "scann" in (manifest.get("indexes") or {})
            else "."
        ),
        "",
    ]
    return "\n".join(lines)
