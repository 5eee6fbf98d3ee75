"""IMDb non-commercial dataset: streaming, filtered readers; enrichment of movies; a writer for tests.

The IMDb files (``title.basics``, ``title.ratings``, ``title.crew``, ``title.principals``,
``name.basics``; ``.tsv`` or ``.tsv.gz``) are UTF-8, tab-separated, with a header row, ``\\N`` for null
and no quoting at all: a field may contain ``"``, so they are read with ``csv.QUOTE_NONE`` (a default CSV
reader would take a leading ``"`` as an opening quote and swallow the following tabs and lines). The full
files are large (``title.principals`` has tens of millions of rows), so every reader streams them in
chunks and keeps only the rows for the wanted titles or people.

Movies are linked to IMDb by their ``imdb_id`` (MovieLens 25M/20M/latest carry it from ``links.csv``)
or, without one, by normalised title and year: ``Usual Suspects, The (1995)`` becomes
``("the usual suspects", 1995)`` and is matched against the normalised ``primaryTitle`` and
``originalTitle`` of IMDb movies, TV movies and videos of that year (±1 year as a fallback).
"""

from __future__ import annotations

import csv
import gzip as gzip_module
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.data.errors import BadLines, DataFormatError, MissingDataFileError

FORMAT = "IMDb"
DEFAULT_CHUNK_ROWS = 1_000_000
MATCH_TYPES = ("movie", "tvMovie", "video")  # title types a film in a ratings dataset can be
_TYPE_RANK = {t: i for i, t in enumerate(MATCH_TYPES)}  # prefer a movie over a TV movie over a video
LEAD_CATEGORIES = ("actor", "actress")
N_ACTORS = 3

# IMDb column names: they name fields in IMDb's files, not canonical columns.
TCONST, TITLE_TYPE, PRIMARY_TITLE, ORIGINAL_TITLE = "tconst", "titleType", "primaryTitle", "originalTitle"
IS_ADULT, START_YEAR, END_YEAR, RUNTIME_MINUTES, IMDB_GENRES = (
    "isAdult", "startYear", "endYear", "runtimeMinutes", "genres",
)  # fmt: skip
AVERAGE_RATING, NUM_VOTES = "averageRating", "numVotes"
DIRECTORS_COL, WRITERS_COL = "directors", "writers"
ORDERING, NCONST, CATEGORY, JOB, CHARACTERS = "ordering", "nconst", "category", "job", "characters"
PRIMARY_NAME, BIRTH_YEAR, DEATH_YEAR, PROFESSION, KNOWN_FOR = (
    "primaryName", "birthYear", "deathYear", "primaryProfession", "knownForTitles",
)  # fmt: skip

FILES: dict[str, tuple[str, ...]] = {
    "title.basics": (TCONST, TITLE_TYPE, PRIMARY_TITLE, ORIGINAL_TITLE, IS_ADULT, START_YEAR, END_YEAR,
                     RUNTIME_MINUTES, IMDB_GENRES),
    "title.ratings": (TCONST, AVERAGE_RATING, NUM_VOTES),
    "title.crew": (TCONST, DIRECTORS_COL, WRITERS_COL),
    "title.principals": (TCONST, ORDERING, NCONST, CATEGORY, JOB, CHARACTERS),
    "name.basics": (NCONST, PRIMARY_NAME, BIRTH_YEAR, DEATH_YEAR, PROFESSION, KNOWN_FOR),
}  # fmt: skip

# Columns added to the title.basics rows a title search returns: the normalised titles.
_PRIMARY_KEY, _ORIGINAL_KEY = "primary_key", "original_key"

# Genre names a dataset uses to say "none": such movies take IMDb's genres.
NO_GENRES = ("", "unknown", "(no genres listed)")

# --------------------------------------------------------------------------------------------- titles

# Trailing articles MovieLens moves to the end ("Usual Suspects, The"), in the languages its titles use.
ARTICLES = (
    "the", "a", "an",  # English
    "les", "la", "le", "l'", "un", "une",  # French
    "il", "lo", "gli", "i", "l'", "uno", "una",  # Italian
    "der", "die", "das", "den", "ein", "eine",  # German
    "el", "los", "las",  # Spanish
    "de", "het", "een",  # Dutch
    "det", "en", "et",  # Scandinavian
    "o", "os", "as",  # Portuguese
)  # fmt: skip
_ARTICLE_RE = re.compile(
    r"^(?P<rest>.+?),\s*(?P<art>"
    + "|".join(sorted({re.escape(a) for a in ARTICLES}, key=len, reverse=True))
    + r")\s*$",
    re.IGNORECASE,
)
_YEAR_RE = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")
_ALT_RE = re.compile(r"^(?P<main>.+?)\s*\((?:a\.k\.a\.\s*|aka\s+)?(?P<alt>[^()]+)\)\s*$", re.IGNORECASE)
# Combining marks (accents) dropped after NFKD decomposition: "Misérables" -> "Miserables".
_COMBINING_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_APOSTROPHE_RE = re.compile("['\u2019`\u00b4]")
_NON_WORD_RE = re.compile(r"[\W_]+")


def split_title_year(title: str) -> tuple[str, int | None]:
    """``"Sabrina (1995)"`` -> ``("Sabrina", 1995)``; a title without a trailing year gives None."""
    m = _YEAR_RE.match(title)
    if m is None:
        return title.strip(), None
    return m.group("name").strip(), int(m.group("year"))


def deinvert_title(name: str) -> str:
    """Move a trailing article to the front: ``"Usual Suspects, The"`` -> ``"The Usual Suspects"``."""
    m = _ARTICLE_RE.match(name.strip())
    if m is None:
        return name.strip()
    art = m.group("art")
    return f"{art}{m.group('rest')}" if art.endswith("'") else f"{art} {m.group('rest')}"


def normalize_text(text: str) -> str:
    """Lowercase, accents and punctuation stripped, spaces collapsed: the form titles are compared in."""
    text = _COMBINING_RE.sub("", unicodedata.normalize("NFKD", text)).casefold()
    text = _APOSTROPHE_RE.sub("", text.replace("&", " and "))  # "L'Homme" and "Lhomme" compare equal
    return _NON_WORD_RE.sub(" ", text).strip()


def title_keys(title: str) -> list[str]:
    """Every normalised form a dataset title may match, best first (the main title, de-inverted, first).

    Alternative titles in trailing parentheses count too: ``City of Lost Children, The (Cité des enfants
    perdus, La) (1995)`` gives "the city of lost children" and "la cite des enfants perdus".
    """
    name, _ = split_title_year(title)
    parts = [name]
    m = _ALT_RE.match(name)
    if m is not None:
        parts = [m.group("main"), m.group("alt"), name]
    keys: list[str] = []
    for part in parts:
        for form in (deinvert_title(part), part):
            key = normalize_text(form)
            if key and key not in keys:
                keys.append(key)
    return keys


def normalize_title(title: str) -> tuple[str, int | None]:
    """``"Usual Suspects, The (1995)"`` -> ``("the usual suspects", 1995)``."""
    keys = title_keys(title)
    return (keys[0] if keys else ""), split_title_year(title)[1]


def normalize_imdb_id(value: object) -> str | None:
    """``"tt0114709"``, ``"0114709"``, ``114709`` -> ``"tt0114709"``; missing or malformed -> None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (int, np.integer)):
        return f"tt{int(value):07d}" if value > 0 else None
    text = str(value).strip()
    if text.startswith("tt"):
        text = text[2:]
    if text.endswith(".0"):  # an id column pandas read as float
        text = text[:-2]
    return f"tt{int(text):07d}" if text.isdigit() and int(text) > 0 else None


# -------------------------------------------------------------------------------------------- readers


def imdb_file(imdb_dir: str | Path, name: str) -> Path:
    """``<imdb_dir>/<name>.tsv.gz`` or ``.tsv``, whichever exists."""
    base = Path(imdb_dir)
    for suffix in (".tsv.gz", ".tsv"):
        if (base / f"{name}{suffix}").is_file():
            return base / f"{name}{suffix}"
    raise MissingDataFileError(base / f"{name}.tsv.gz", f"{FORMAT} ({name}.tsv.gz or {name}.tsv)")


_EXPECTED_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_SKIPPING_RE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


def iter_imdb(
    imdb_dir: str | Path,
    name: str,
    columns: Iterable[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_bad_lines: str = "error",
    bad: BadLines | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream one IMDb file in chunks of ``chunk_rows`` rows, all values as strings (``\\N`` -> NaN).

    Every column is parsed (``usecols`` would let pandas pass lines with too many fields silently) and
    then only ``columns`` are kept. A line with too many fields raises :class:`DataFormatError` (file and
    line) or is counted in ``bad`` under ``on_bad_lines="skip"``.
    """
    path = imdb_file(imdb_dir, name)
    bad = bad or BadLines(on_bad_lines)
    wanted = list(columns) if columns is not None else list(FILES[name])
    reader = None
    try:
        reader = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,  # no quoting at all: '"' is an ordinary character
            na_values=["\\N"],
            keep_default_na=False,  # only \N is null: a title "NA" or "null" stays text
            dtype=str,
            encoding="utf-8",
            chunksize=chunk_rows,
            on_bad_lines="error" if bad.mode == "error" else "warn",
            compression="infer",
        )
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    chunk = next(reader)
                except StopIteration:
                    return
            for w in caught:  # skip mode: pandas reports each skipped line as a warning
                for m in _SKIPPING_RE.finditer(str(w.message)):
                    bad.bad(path, int(m.group(1)), f"{m.group(2)} tab-separated fields", None)
            missing = [c for c in wanted if c not in chunk.columns]
            if missing:
                raise DataFormatError(
                    path, 1, f"a header row naming {', '.join(wanted)}", "\t".join(chunk.columns)
                )
            yield chunk[wanted]
    except pd.errors.ParserError as exc:
        m = _EXPECTED_RE.search(str(exc))
        if m is None:
            raise DataFormatError(path, 0, f"tab-separated {name} lines ({exc})") from exc
        raise DataFormatError(path, int(m.group(2)), f"{m.group(1)} tab-separated fields", None) from exc
    finally:
        if reader is not None:
            reader.close()


def _read_filtered(
    imdb_dir: str | Path, name: str, columns: list[str], key: str, keep: Iterable[str], chunk_rows: int,
    bad: BadLines | None, extra: dict | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Rows of ``name`` whose ``key`` is in ``keep`` (and, with ``extra``, whose columns are in lists)."""
    keep = pd.Index(pd.unique(np.asarray(list(keep), dtype=object)))
    parts = [pd.DataFrame({c: pd.Series(dtype=object) for c in columns})]
    if len(keep):
        for chunk in iter_imdb(imdb_dir, name, columns, chunk_rows, bad=bad):
            mask = chunk[key].isin(keep)
            for col, allowed in (extra or {}).items():
                mask &= chunk[col].isin(allowed)
            if mask.any():
                parts.append(chunk.loc[mask])
    return pd.concat(parts, ignore_index=True)


def read_title_ratings(
    imdb_dir: str | Path,
    tconsts: Iterable[str],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad: BadLines | None = None,
) -> pd.DataFrame:
    """``title.ratings`` rows of ``tconsts``: tconst, averageRating and numVotes as floats."""
    out = _read_filtered(
        imdb_dir, "title.ratings", list(FILES["title.ratings"]), TCONST, tconsts, chunk_rows, bad
    )
    for col in (AVERAGE_RATING, NUM_VOTES):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float32)
    return out


def read_title_crew(
    imdb_dir: str | Path,
    tconsts: Iterable[str],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad: BadLines | None = None,
) -> pd.DataFrame:
    """``title.crew`` rows of ``tconsts``: tconst, directors, writers (comma-separated nconsts or NaN)."""
    return _read_filtered(imdb_dir, "title.crew", list(FILES["title.crew"]), TCONST, tconsts, chunk_rows, bad)


def read_title_principals(
    imdb_dir: str | Path,
    tconsts: Iterable[str],
    categories: Iterable[str] | None = LEAD_CATEGORIES,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad: BadLines | None = None,
) -> pd.DataFrame:
    """``title.principals`` rows of ``tconsts`` (in ``categories``), sorted by tconst and ordering.

    The job and characters columns are dropped chunk by chunk: they are the bulk of the file.
    """
    extra = {CATEGORY: list(categories)} if categories is not None else None
    cols = [TCONST, ORDERING, NCONST, CATEGORY]
    out = _read_filtered(imdb_dir, "title.principals", cols, TCONST, tconsts, chunk_rows, bad, extra)
    out[ORDERING] = pd.to_numeric(out[ORDERING], errors="coerce")
    return out.sort_values([TCONST, ORDERING], kind="stable").reset_index(drop=True)


def read_name_basics(
    imdb_dir: str | Path,
    nconsts: Iterable[str],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad: BadLines | None = None,
) -> pd.DataFrame:
    """``name.basics`` rows of ``nconsts``: nconst, primaryName."""
    return _read_filtered(imdb_dir, "name.basics", [NCONST, PRIMARY_NAME], NCONST, nconsts, chunk_rows, bad)


def read_title_basics(
    imdb_dir: str | Path,
    tconsts: Iterable[str] = (),
    keys: Iterable[str] = (),
    years: Iterable[int] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad: BadLines | None = None,
) -> pd.DataFrame:
    """``title.basics`` rows that are in ``tconsts``, or are movie-like titles of one of ``years`` whose
    normalised primaryTitle or originalTitle is one of ``keys``.

    Adds ``primary_key`` and ``original_key`` (the normalised titles) for the title-matched rows. Only the
    rows that pass the cheap type and year filters are normalised (plain Python per distinct title).
    """
    ids = pd.Index(pd.unique(np.asarray(list(tconsts), dtype=object)))
    keyset = set(keys)
    year_index = pd.Index(sorted({int(y) for y in years}), dtype=np.int64)
    cols = list(FILES["title.basics"])
    parts = [pd.DataFrame({c: pd.Series(dtype=object) for c in [*cols, _PRIMARY_KEY, _ORIGINAL_KEY]})]
    for chunk in iter_imdb(imdb_dir, "title.basics", cols, chunk_rows, bad=bad):
        by_id = chunk[TCONST].isin(ids) if len(ids) else pd.Series(False, index=chunk.index)
        by_title = pd.Series(False, index=chunk.index)
        primary_key = original_key = None
        if keyset and len(year_index):
            year = pd.to_numeric(chunk[START_YEAR], errors="coerce")
            maybe = chunk[TITLE_TYPE].isin(MATCH_TYPES) & year.isin(year_index)
            if maybe.any():
                sub = chunk.loc[maybe]
                primary_key = _normalize_many(sub[PRIMARY_TITLE])
                original_key = _normalize_many(sub[ORIGINAL_TITLE])
                hit = primary_key.isin(keyset) | original_key.isin(keyset)
                by_title.loc[hit.index[hit.to_numpy()]] = True
        mask = by_id | by_title
        if mask.any():
            part = chunk.loc[mask].copy()
            part[_PRIMARY_KEY] = primary_key.reindex(part.index) if primary_key is not None else np.nan
            part[_ORIGINAL_KEY] = original_key.reindex(part.index) if original_key is not None else np.nan
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    for col in (START_YEAR, RUNTIME_MINUTES):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def _normalize_many(titles: pd.Series) -> pd.Series:
    """normalize_text over a column, computing each distinct title once."""
    filled = titles.fillna("").astype(object)
    uniq = pd.unique(filled.to_numpy())
    mapping = dict(zip(uniq, (normalize_text(t) for t in uniq), strict=True))
    return filled.map(mapping)


# ------------------------------------------------------------------------------------------ enrichment


def _links_series(links: object, movie_ids: pd.Series) -> pd.Series:
    """IMDb ids per movie (index: position in the movies frame) from ``links``."""
    if isinstance(links, pd.DataFrame):
        mapping = dict(zip(links[S.MOVIE_ID].to_numpy(), links[S.IMDB_ID].to_numpy(), strict=True))
    elif isinstance(links, pd.Series):
        mapping = links.to_dict()
    elif isinstance(links, Mapping):
        mapping = dict(links)
    else:
        raise TypeError("links must be a frame with movie_id and imdb_id columns, a Series or a mapping")
    return movie_ids.map(lambda m: normalize_imdb_id(mapping.get(m)))


def _has_no_genres(genres: object) -> bool:
    if not isinstance(genres, (tuple, list)):
        return True
    return all(g in NO_GENRES for g in genres)


def enrich_with_imdb(
    dataset: S.Dataset,
    imdb_dir: str | Path,
    links: object = None,
    *,
    on_bad_lines: str = "error",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> S.Dataset:
    """A copy of ``dataset`` whose movies carry IMDb facts, linked by IMDb id or by title and year.

    Adds or replaces the movie columns imdb_id, runtime, imdb_rating, imdb_votes, directors (names) and
    actors (up to three leading actors/actresses, in billing order); fills genres from IMDb for movies
    that have none. ``links`` (a frame with movie_id and imdb_id, or a mapping movie_id -> id) overrides
    the movies' own imdb_id column. Movies with an IMDb id are linked by it; the others by normalised
    title + year (exact year first, then ±1). Unmatched movies keep NaN / empty values: never an error.
    ``report`` gains ``imdb_matched``, ``imdb_movies`` and ``imdb_matched_share`` (and a breakdown).
    """
    bad = BadLines(on_bad_lines)
    movies = dataset.movies.reset_index(drop=True).copy()
    n = len(movies)
    if links is not None:
        ids = _links_series(links, movies[S.MOVIE_ID])
    elif S.IMDB_ID in movies:
        ids = movies[S.IMDB_ID].map(normalize_imdb_id)
    else:
        ids = pd.Series([None] * n, dtype=object)
    ids = ids.astype(object).where(ids.notna(), None)
    by_title = ids.isna().to_numpy()

    # What to look for by title: every key of every id-less movie, with its year.
    wanted: dict[str, list[tuple[int, int, int]]] = {}  # key -> [(row, year, key rank)]
    years: set[int] = set()
    for row in np.flatnonzero(by_title):
        title = str(movies.at[row, S.TITLE])
        year = movies.at[row, S.YEAR] if S.YEAR in movies else np.nan
        year = int(year) if pd.notna(year) else split_title_year(title)[1]
        if year is None:
            continue  # no year: a title alone is too ambiguous to link
        for rank, key in enumerate(title_keys(title)):
            wanted.setdefault(key, []).append((int(row), year, rank))
        years.update((year - 1, year, year + 1))

    basics = read_title_basics(imdb_dir, ids.dropna(), wanted.keys(), years, chunk_rows, bad)
    title_rows = basics[basics[_PRIMARY_KEY].notna()]
    candidates = _title_candidates(title_rows, wanted)
    votes = read_title_ratings(imdb_dir, set(basics[TCONST]), chunk_rows, bad)
    vote_of = votes.set_index(TCONST)[NUM_VOTES] if len(votes) else pd.Series(dtype=np.float32)

    matched = pd.Series([None] * n, dtype=object)
    known = set(basics[TCONST])
    id_rows = ~by_title & ids.isin(known).to_numpy()
    matched[id_rows] = ids[id_rows]
    near_year = 0
    if len(candidates):
        candidates["votes"] = candidates[TCONST].map(vote_of).fillna(-1.0).to_numpy()
        best = candidates.sort_values(
            ["row", "year_diff", "type_rank", "key_rank", "via_original", "votes", TCONST],
            ascending=[True, True, True, True, True, False, True],
            kind="stable",
        ).drop_duplicates("row")
        matched.iloc[best["row"].to_numpy()] = best[TCONST].to_numpy()
        near_year = int((best["year_diff"] > 0).sum())

    movies = _attach(movies, ids, matched, basics, votes, imdb_dir, chunk_rows, bad)
    n_matched = int(matched.notna().sum())
    vocabulary = tuple(dataset.genres)
    new_genres = sorted({g for gs in movies[S.GENRES] for g in gs} - set(vocabulary) - set(NO_GENRES))
    report = {
        **dataset.report,
        "imdb_matched": n_matched,
        "imdb_movies": n,
        "imdb_matched_share": round(n_matched / n, 6) if n else 0.0,
        "imdb_matched_by_id": int(id_rows.sum()),
        "imdb_matched_by_title": n_matched - int(id_rows.sum()),
        "imdb_matched_by_near_year": near_year,
        **{f"imdb_{k}": v for k, v in bad.report().items()},
    }
    return replace(dataset, movies=movies, genres=vocabulary + tuple(new_genres), report=report)


def _title_candidates(rows: pd.DataFrame, wanted: dict[str, list[tuple[int, int, int]]]) -> pd.DataFrame:
    """Every (movie row, IMDb title) pair whose keys agree and whose years are at most one apart."""
    records = []
    for rec in rows.itertuples(index=False):
        year = getattr(rec, START_YEAR)
        rank = _TYPE_RANK.get(getattr(rec, TITLE_TYPE))
        if pd.isna(year) or rank is None:
            continue
        seen = set()
        for via_original, key in enumerate((rec.primary_key, rec.original_key)):
            for row, want_year, key_rank in wanted.get(key, ()):
                diff = abs(int(year) - want_year)
                if diff <= 1 and (row, via_original) not in seen:
                    seen.add((row, via_original))
                    records.append((row, getattr(rec, TCONST), diff, rank, key_rank, via_original))
    return pd.DataFrame(
        records, columns=["row", TCONST, "year_diff", "type_rank", "key_rank", "via_original"]
    )


def _split_ids(value: object) -> list[str]:
    return [] if not isinstance(value, str) or not value else value.split(",")


def _attach(
    movies: pd.DataFrame,
    ids: pd.Series,
    matched: pd.Series,
    basics: pd.DataFrame,
    votes: pd.DataFrame,
    imdb_dir: str | Path,
    chunk_rows: int,
    bad: BadLines,
) -> pd.DataFrame:
    """Set the IMDb columns of ``movies`` from the matched titles (reading crew, principals, names)."""
    tconsts = set(matched.dropna())
    crew = read_title_crew(imdb_dir, tconsts, chunk_rows, bad).set_index(TCONST)
    principals = read_title_principals(imdb_dir, tconsts, LEAD_CATEGORIES, chunk_rows, bad)
    leads = (
        principals.groupby(TCONST, sort=False).head(N_ACTORS).groupby(TCONST, sort=False)[NCONST].agg(list)
    )
    director_ids = {t: _split_ids(d) for t, d in crew[DIRECTORS_COL].items()}
    people = {p for ps in director_ids.values() for p in ps} | {p for ps in leads for p in ps}
    names = read_name_basics(imdb_dir, people, chunk_rows, bad).drop_duplicates(NCONST)
    name_of = dict(zip(names[NCONST], names[PRIMARY_NAME], strict=True))

    info = basics.drop_duplicates(TCONST).set_index(TCONST)
    rated = votes.drop_duplicates(TCONST).set_index(TCONST)

    def column(frame: pd.DataFrame, col: str) -> np.ndarray:
        values = frame[col].reindex(matched.fillna("").to_numpy()) if len(frame) else None
        if values is None:
            return np.full(len(matched), np.nan, np.float32)
        return pd.to_numeric(values, errors="coerce").to_numpy(np.float32)

    def people_names(t: object, table: Mapping) -> tuple[str, ...]:
        if not isinstance(t, str):
            return ()
        return tuple(name_of[p] for p in table.get(t, ()) if isinstance(name_of.get(p), str))

    leads_of = leads.to_dict()
    movies[S.IMDB_ID] = pd.Series(
        [m if isinstance(m, str) else i for m, i in zip(matched, ids, strict=True)], dtype=object
    )
    movies[S.RUNTIME] = column(info, RUNTIME_MINUTES)
    movies[S.IMDB_RATING] = column(rated, AVERAGE_RATING)
    movies[S.IMDB_VOTES] = column(rated, NUM_VOTES)
    movies[S.DIRECTORS] = pd.Series([people_names(t, director_ids) for t in matched], dtype=object)
    movies[S.ACTORS] = pd.Series([people_names(t, leads_of) for t in matched], dtype=object)

    imdb_genres = info[IMDB_GENRES] if len(info) else pd.Series(dtype=object)
    current = movies[S.GENRES] if S.GENRES in movies else pd.Series([()] * len(movies), dtype=object)
    filled = []
    for t, gs in zip(matched, current, strict=True):
        if _has_no_genres(gs) and isinstance(t, str) and isinstance(imdb_genres.get(t), str):
            filled.append(tuple(imdb_genres[t].split(",")))
        else:
            filled.append(tuple(gs) if isinstance(gs, (tuple, list)) else ())
    movies[S.GENRES] = pd.Series(filled, dtype=object)
    return movies


# -------------------------------------------------------------------------------------------- writing

# MovieLens genre names that IMDb spells differently; None: IMDb has no such genre.
_TO_IMDB_GENRE = {"Children's": "Family", "Children": "Family", "IMAX": None, "unknown": None,
                  "(no genres listed)": None}  # fmt: skip
MATCHED = "matched"
IMDB_GENRE_TUPLE = "imdb_genres"


@dataclass
class ImdbFiles:
    """What :func:`write_imdb` wrote and what :func:`enrich_with_imdb` should find in it.

    ``truth`` has one row per dataset movie (same order): movie_id, ``matched``, and the expected
    imdb_id (None when absent), runtime, imdb_rating, imdb_votes, directors, actors and
    ``imdb_genres`` (tuple) for matched movies (NaN / empty otherwise).
    """

    out_dir: Path
    paths: dict[str, Path]
    truth: pd.DataFrame
    absent_movie_ids: list[int]
    shifted_movie_ids: list[int]

    @property
    def matched_share(self) -> float:
        return float(self.truth[MATCHED].mean()) if len(self.truth) else 0.0


def _clean(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").split())


def write_imdb(
    dataset: S.Dataset,
    out_dir: str | Path,
    gzip: bool = True,
    noise_titles: int = 40,
    absent_every: int = 10,
    seed: int = 0,
) -> ImdbFiles:
    """Write the five IMDb TSVs for ``dataset``'s movies, with the odd cases real files have.

    tconst is the movie's imdb_id (made up when the movies frame has none); primaryTitle is the title
    de-inverted without its year. Movies whose title is unique in the dataset also get the awkward cases:
    every ``absent_every``-th is left out of IMDb (so the matched share is known and below 100%; a TV
    series of the same title and year and a movie three years later are written instead, which must not
    match); some are a year off (the ±1 fallback), some only match by originalTitle, some have a
    lower-voted ``video`` duplicate. Titles with accents are written without them. Some fields are
    ``\\N``, fields may contain ``"``, and ``noise_titles`` unrelated titles (and people) are added.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    movies = dataset.movies.reset_index(drop=True)
    n = len(movies)

    def col(name: str, default: object) -> list:
        return list(movies[name]) if name in movies else [default] * n

    tconsts = [normalize_imdb_id(v) or f"tt{8_000_000 + int(m):07d}" for v, m in
               zip(col(S.IMDB_ID, None), movies[S.MOVIE_ID], strict=True)]  # fmt: skip
    keys = [set(title_keys(str(t))) for t in movies[S.TITLE]]
    key_count: dict[str, int] = {}
    for ks in keys:
        for k in ks:
            key_count[k] = key_count.get(k, 0) + 1
    unique = [all(key_count[k] == 1 for k in ks) and bool(ks) for ks in keys]

    basics: list[list] = []
    ratings: list[list] = []
    crew: list[list] = []
    principals: list[list] = []
    person_ids: dict[str, str] = {}
    known_for: dict[str, list[str]] = {}

    def person(name: str, title: str) -> str:
        nid = person_ids.setdefault(name, f"nm{1_000_000 + len(person_ids):07d}")
        known_for.setdefault(nid, [])
        if len(known_for[nid]) < 4 and title not in known_for[nid]:
            known_for[nid].append(title)
        return nid

    truth_rows, absent, shifted = [], [], []
    noise_id = iter(range(9_000_000, 10_000_000))
    for j in range(n):
        movie_id = int(movies.at[j, S.MOVIE_ID])
        name, title_year = split_title_year(str(movies.at[j, S.TITLE]))
        year = movies.at[j, S.YEAR] if S.YEAR in movies else np.nan
        year = int(year) if pd.notna(year) else title_year
        primary = _clean(deinvert_title(name))
        tconst = tconsts[j]
        if year is None or (unique[j] and j % absent_every == 4):
            # Not in IMDb. Decoys that share the title must not be taken for it.
            absent.append(movie_id)
            truth_rows.append((movie_id, False, None, np.nan, np.nan, np.nan, (), (), ()))
            if year is not None:
                basics.append([f"tt{next(noise_id):07d}", "tvSeries", primary, primary, "0", year, year + 2,
                               "\\N", "Drama"])  # fmt: skip
                basics.append([f"tt{next(noise_id):07d}", "movie", primary, primary, "0", year + 3, "\\N",
                               "90", "Drama"])  # fmt: skip
                basics.append([f"tt{next(noise_id):07d}", "tvEpisode", primary, primary, "0", year, "\\N",
                               "30", "\\N"])  # fmt: skip
            continue

        start_year = year
        if unique[j] and j % 10 == 6:
            start_year = year + 1  # IMDb and MovieLens disagree by a year: the fallback must catch it
            shifted.append(movie_id)
        original = primary
        if unique[j] and j % 13 == 2:
            primary, original = f"Working Title {movie_id}", primary  # only originalTitle matches
        elif j % 9 == 1:
            original = f"Le titre original {movie_id}"
        if not primary.isascii() and not primary.startswith("Working Title"):
            primary = "".join(
                c for c in unicodedata.normalize("NFKD", primary) if not unicodedata.combining(c)
            )
        title_type = "tvMovie" if j % 19 == 3 else "movie"
        runtime = movies.at[j, S.RUNTIME] if S.RUNTIME in movies else np.nan
        if j % 8 == 3:
            runtime = np.nan
        genres = sorted({_TO_IMDB_GENRE.get(g, g) for g in col(S.GENRES, ())[j]} - {None})[:3]
        basics.append([tconst, title_type, primary, original, "0", start_year, "\\N",
                       "\\N" if pd.isna(runtime) else int(runtime), ",".join(genres) or "\\N"])  # fmt: skip
        if unique[j] and j % 17 == 8:  # a lower-voted video of the same name: the movie must win
            dup = f"tt{next(noise_id):07d}"
            basics.append([dup, "video", primary, original, "0", start_year, "\\N", "45", "Documentary"])
            ratings.append([dup, "5.0", 3])

        rating = movies.at[j, S.IMDB_RATING] if S.IMDB_RATING in movies else np.nan
        votes = movies.at[j, S.IMDB_VOTES] if S.IMDB_VOTES in movies else np.nan
        if j % 12 == 5 or pd.isna(rating) or pd.isna(votes):
            rating = votes = np.nan
        else:
            rating, votes = round(float(rating), 1), max(int(votes), 5)
            ratings.append([tconst, f"{rating:.1f}", votes])

        directors = [_clean(d) for d in col(S.DIRECTORS, ())[j]] if j % 15 != 7 else []
        actors = [_clean(a) for a in col(S.ACTORS, ())[j]]
        director_ids = [person(d, tconst) for d in directors]
        writer = person(f"Writer {movie_id % 7}", tconst)
        crew.append([tconst, ",".join(director_ids) or "\\N", writer])
        # Billing order with other categories in between; a fourth actor who must not be picked.
        cast = [(actors[0], 1)] if actors else []
        cast += [(a, k) for a, k in zip(actors[1:N_ACTORS], (2, 4), strict=False)]
        rows = [(k, person(a, tconst), "actress" if (j + k) % 2 else "actor", "\\N", f'["{a.split()[0]}"]')
                for a, k in cast]  # fmt: skip
        rows += [(3, d, "director", "\\N", "\\N") for d in director_ids[:1]]
        rows += [(5, writer, "writer", "screenplay", "\\N"), (6, person("Pat Producer", tconst), "producer",
                 "producer", "\\N"), (7, person(f"Extra Person {j % 5}", tconst), "actor", "\\N",
                 '["Man in \\"Bar\\""]')]  # fmt: skip
        principals += [[tconst, k, p, c, job, ch] for k, p, c, job, ch in sorted(rows)]
        truth_rows.append((
            movie_id, True, tconst, np.float32(runtime), np.float32(rating), np.float32(votes),
            tuple(directors), tuple(actors[:N_ACTORS]), tuple(genres),
        ))  # fmt: skip

    # Unrelated titles (including one that opens with a quote character) and their people.
    types = ("tvSeries", "tvEpisode", "short", "movie", "tvMiniSeries", "videoGame", "tvSpecial")
    for i in range(noise_titles):
        t = f"tt{next(noise_id):07d}"
        name = f'"Quoted" Unrelated Feature {i}' if i == 0 else f"Unrelated Feature {i}"
        year, minutes = int(rng.integers(1900, 2024)), int(rng.integers(20, 180))
        adult = str(int(i % 23 == 0))
        basics.append([t, types[i % len(types)], name, name, adult, year, "\\N", minutes, "Comedy,Drama"])
        ratings.append([t, f"{rng.uniform(1, 10):.1f}", int(rng.integers(5, 100_000))])
        crew.append([t, person(f"Noise Director {i}", t), "\\N"])
        principals.append([t, 1, person(f"Noise Actor {i}", t), "actor", "\\N", '["Self"]'])

    names = []
    for k, (name, nid) in enumerate(person_ids.items()):
        born = "\\N" if k % 4 == 0 else 1930 + k % 60
        jobs = "actor,producer" if k % 3 else "director,writer"
        names.append([nid, name, born, "\\N", jobs, ",".join(known_for[nid])])
    tables = {
        "title.basics": sorted(basics, key=lambda r: r[0]),
        "title.ratings": sorted(ratings, key=lambda r: r[0]),
        "title.crew": sorted(crew, key=lambda r: r[0]),
        "title.principals": sorted(principals, key=lambda r: (r[0], r[1])),
        "name.basics": names,
    }
    paths = {}
    for name, rows in tables.items():
        path = out_dir / f"{name}.tsv{'.gz' if gzip else ''}"
        opener = gzip_module.open if gzip else open
        with opener(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write("\t".join(FILES[name]) + "\n")
            for row in rows:
                fh.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
        paths[name] = path

    truth = pd.DataFrame(
        truth_rows,
        columns=[
            S.MOVIE_ID, MATCHED, S.IMDB_ID, S.RUNTIME, S.IMDB_RATING, S.IMDB_VOTES, S.DIRECTORS, S.ACTORS,
            IMDB_GENRE_TUPLE,
        ],
    )  # fmt: skip
    for c in (S.RUNTIME, S.IMDB_RATING, S.IMDB_VOTES):
        truth[c] = truth[c].astype(np.float32)
    return ImdbFiles(out_dir, paths, truth, absent, shifted)
