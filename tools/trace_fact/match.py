"""The OFFLINE verifier (fallback when no LLM is configured): is the fact's subject and object in the text?

This is the rule T-REx itself used to align triples with Wikipedia sentences (both entities present),
so it is what "the document expresses the triple" means on FTRACE-TREx-style data; it cannot tell
"born in" from "died in" between the same two entities, which an LLM verifier can. Both arguments
must be *expressed*, after normalising:

- case, accents (NFKD), punctuation and hyphens ("Scottish-born" -> "scottish born"); a leading
  article ("The Beatles" ~ "Beatles"); an acronym label by its expansion ("AMC" ~ "American Movie
  Classics");
- light morphology: possessive ``'s`` and plural ``-s``/``-es`` are stripped on both sides;
- qualifiers: "Alexandra, Victoria" and "Paris (France)" also match as "Alexandra" / "Paris";
- nationality adjectives and languages for place names: "Scotland" ~ "Scottish", "Italy" ~
  "Italian", "France" ~ "French", by suffix rules plus a table of irregular forms (and back);
- derived forms of common nouns: "archaeology" ~ "archaeologist", "saxophone" ~ "saxophonist",
  "Christianity" ~ "Christian" (suffix rules plus a small table); number words as digits, "Sky2" = "Sky 2";
- partial names of the subject (``partial_names=True``): "Pierre Messmer" ~ "Messmer" (the last
  name-like token, capitalised in the label, at least 4 letters, not a generic word, a roman numeral
  or a nationality, and only when the words before it are names or name particles: "Transport for
  London" and "Adalbert of Mainz" have no surname), a capitalised head before lower-case descriptors
  ("Mamer railway station" ~ "Mamer"), the name before "of" ("Manuel I of Portugal" ~ "Manuel I"),
  initials of three or more capitalised words ("Japan Football Association" ~ "JFA"), and
  corporate suffixes or short capitals dropped ("UGS Corp." ~ "UGS", "FC Bayern Munich" ~ "Bayern Munich").

A fragment (partial name, acronym) counts only as a name: capitalised in the text (an acronym in
capitals), not part of someone else's name ("Wardell Gray" is no mention of Glen Gray; middle names
and titles between are fine: "Raymond Leo Flynn", "Cardinal DiNardo"), and never one that is also the
object ("Young Canadians" gives no "Canadian" when the object is Canada). Subject and object must be
separate mentions. Each match has a ``score`` (full names 1, derived forms 0.9, fragments 0.6,
mentions more than 20 words apart x 0.8) that :class:`..core.OfflineVerifier` ranks a fact's
candidates by.

Subject/object come from the fact, or :func:`extract_arguments` finds them in the statement: the
first and last capitalised entity chunks, else the content words at either end.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)  # "Sky2" -> "Sky", "2"
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10"}

# demonyms / languages that suffix rules cannot derive (country or region -> forms)
IRREGULAR: dict[str, tuple[str, ...]] = {
    "france": ("french",), "netherlands": ("dutch", "holland"), "holland": ("dutch",), "germany": ("german",),
    "spain": ("spanish", "spaniard"), "united states": ("american", "usa", "u s", "america"),
    "united states of america": ("american", "usa", "u s", "america"),
    "united kingdom": ("british", "uk", "u k", "britain"), "great britain": ("british", "britain"),
    "england": ("english",), "scotland": ("scottish", "scots", "scot"), "wales": ("welsh",),
    "ireland": ("irish",), "switzerland": ("swiss",), "greece": ("greek",), "denmark": ("danish", "dane"),
    "sweden": ("swedish", "swede"), "norway": ("norwegian",), "finland": ("finnish", "finn"),
    "iceland": ("icelandic",), "poland": ("polish",), "turkey": ("turkish",), "thailand": ("thai",),
    "philippines": ("filipino", "philippine"), "peru": ("peruvian",), "china": ("chinese",),
    "japan": ("japanese",), "vietnam": ("vietnamese",), "portugal": ("portuguese",), "lebanon": ("lebanese",),
    "sudan": ("sudanese",), "taiwan": ("taiwanese",), "malta": ("maltese",), "israel": ("israeli",),
    "pakistan": ("pakistani",), "iraq": ("iraqi",), "kuwait": ("kuwaiti",), "bangladesh": ("bangladeshi",),
    "new zealand": ("new zealander", "kiwi"), "czech republic": ("czech",), "czechoslovakia": ("czechoslovak",),
    "slovakia": ("slovak",), "slovenia": ("slovene", "slovenian"), "croatia": ("croatian", "croat"),
    "serbia": ("serbian", "serb"), "bosnia and herzegovina": ("bosnian",), "soviet union": ("soviet",),
    "russia": ("russian",), "belgium": ("belgian",), "argentina": ("argentine", "argentinian"),
    "madagascar": ("malagasy",), "cyprus": ("cypriot",), "monaco": ("monegasque",), "yemen": ("yemeni",),
    "oman": ("omani",), "qatar": ("qatari",), "saudi arabia": ("saudi",), "afghanistan": ("afghan",),
    "tajikistan": ("tajik",), "uzbekistan": ("uzbek",), "kazakhstan": ("kazakh",), "kyrgyzstan": ("kyrgyz",),
    "turkmenistan": ("turkmen",), "hungary": ("hungarian",), "luxembourg": ("luxembourgish",),
    "ukraine": ("ukrainian",), "wallonia": ("walloon",), "flanders": ("flemish",), "brittany": ("breton",),
    "catalonia": ("catalan",), "basque country": ("basque",), "galicia": ("galician",), "bavaria": ("bavarian",),
    "quebec": ("quebecois", "quebecer"), "ancient rome": ("roman",), "rome": ("roman",),
    "ancient greece": ("greek",), "egypt": ("egyptian",), "morocco": ("moroccan",), "mexico": ("mexican",),
    "chile": ("chilean",), "cuba": ("cuban",), "canada": ("canadian",), "haiti": ("haitian",),
    "ghana": ("ghanaian",), "senegal": ("senegalese",), "togo": ("togolese",), "congo": ("congolese",),
    "burma": ("burmese",), "myanmar": ("burmese",), "nepal": ("nepali", "nepalese"), "laos": ("lao", "laotian"),
    "south korea": ("korean", "south korean"), "north korea": ("korean", "north korean"), "korea": ("korean",),
    "iran": ("iranian", "persian"), "persia": ("persian",), "wales uk": ("welsh",), "guinea": ("guinean",),
    "flemish region": ("flemish",), "sri lanka": ("sri lankan",), "hong kong": ("hong konger",),
}
# languages named by country adjectives are the same words ("French"), so the table serves both
_REVERSE: dict[str, tuple[str, ...]] = {}
for _country, _forms in IRREGULAR.items():
    for _f in _forms:
        if len(_f) > 3:
            _REVERSE.setdefault(_f, ())
            _REVERSE[_f] = (*_REVERSE[_f], _country)

# derived forms of common nouns (fields, religions, instruments, occupations) that suffix rules miss
DERIVED: dict[str, tuple[str, ...]] = {
    "judaism": ("jewish", "jew"), "islam": ("muslim", "islamic"), "christianity": ("christian",),
    "hinduism": ("hindu",), "buddhism": ("buddhist",), "catholicism": ("catholic",), "sikhism": ("sikh",),
    "catholic church": ("catholic", "roman catholic"), "anglicanism": ("anglican",), "protestantism": ("protestant",),
    "lutheranism": ("lutheran",), "actor": ("actress", "acting"), "medicine": ("medical", "physician"),
    "law": ("lawyer", "legal"), "drum": ("drummer",), "drums": ("drummer",), "harp": ("harpist",),
    "politician": ("political", "politics"), "politics": ("political", "politician"),
}
_DERIV = (("ology", ("ologist", "ological", "ologic", "ologer")), ("istry", ("ist",)), ("ics", ("", "ist", "ian")),
          ("ism", ("ist", "ic", "")), ("ity", ("",)), ("y", ("er", "ist", "ical", "ic", "ian")),
          ("e", ("ist", "er")), ("a", ("ist",)), ("o", ("ist",)), ("", ("ist", "er", "ic", "ian", "ical")))


def derived(word: str) -> set[str]:
    """Derivations of a lower-case common noun: "archaeology" -> "archaeologist", "saxophone" -> "saxophonist"."""
    w = fold(word)
    out = set(DERIVED.get(w, ()))
    if " " in w or len(w) < 4:
        return out
    for suffix, repl in _DERIV:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            base = w[: len(w) - len(suffix)]
            out.update(base + r for r in repl if base + r != w)
            if suffix == "ology":
                break
    return out


_CORP = frozenset({"corp", "corporation", "inc", "ltd", "co", "plc", "llc", "gmbh", "ag", "sa", "limited"})
_SUFFIXES = ("n", "an", "ian", "ese", "ish", "i", "ic", "ean", "er")
GENERIC = frozenset(
    """united states kingdom republic city town county river lake mount island islands university college school
    company group records club party church state province district north south east west new old great saint
    san santa los las the football national international association society centre center""".split()
)
STOP = frozenset(
    """a an the of in on at to for from by with and or is was are were be been being has have had that this which
    who whom whose as its it his her their he she they also born known de la le du des del da von van der den
    after before like than""".split()
)


def fold(token: str) -> str:
    """Lower case without accents ("Émile" -> "emile")."""
    t = unicodedata.normalize("NFKD", token.lower())
    return "".join(c for c in t if not unicodedata.combining(c))


def stem(token: str) -> str:
    """Light morphology: possessive and plural endings off ("beatles" -> "beatle"); number words as digits."""
    t = _NUMBER_WORDS.get(token, token)
    if t.endswith("'s") or t.endswith("’s"):
        t = t[:-2]
    if len(t) > 4 and t.endswith("ies"):
        return t[:-3] + "y"
    if len(t) > 4 and t.endswith(("ses", "xes", "zes", "ches", "shes")):
        return t[:-2]
    if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
        return t[:-1]
    return t


@lru_cache(maxsize=500_000)
def _norm(token: str) -> str:
    return stem(fold(token))


def words(text: str) -> list[str]:
    """Normalised, stemmed word tokens (punctuation and hyphens separate words)."""
    return [_norm(m.group()) for m in _TOKEN.finditer(text or "")]


@lru_cache(maxsize=200_000)  # candidate documents recur across facts
def word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    toks, spans = [], []
    for m in _TOKEN.finditer(text or ""):
        toks.append(_norm(m.group()))
        spans.append(m.span())
    return toks, spans


def demonyms(place: str) -> set[str]:
    """Adjective / language forms of a place name by suffix rules (and the irregular table)."""
    key = " ".join(fold(m.group()) for m in _TOKEN.finditer(place))
    out = set(IRREGULAR.get(key, ()))
    out.update(_REVERSE.get(key, ()))
    w = key.split()
    if len(w) != 1 or len(w[0]) < 4:
        return out
    p = w[0]
    bases = {p}
    for cut in ("ia", "a", "e", "o", "y", "um", "en", "land", "and"):
        if p.endswith(cut) and len(p) - len(cut) >= 3:
            bases.add(p[: -len(cut)])
    for b in bases:
        for s in _SUFFIXES:
            out.add(b + s)
        if b.endswith(("t", "n")) and p.endswith("land"):  # Scotland -> Scottish, Finland -> Finnish
            out.add(b + b[-1] + "ish")
    out.discard(p)
    return out


# name particles that may sit inside a person's name ("Ludwig van Beethoven"); other lower-case words
# ("Transport for London", "Adalbert of Mainz", "Chalonnes-sur-Loire") make the last word a place, not a surname
_PARTICLES = frozenset({"de", "da", "di", "del", "della", "der", "van", "von", "den", "du", "des", "la", "le", "bin",
                        "ibn", "al", "el", "y", "e", "i", "d", "ter", "ten", "dos", "das"})
_ROMAN = re.compile(r"^[ivxlcdm]+$")
# words that may stand right before a surname without making it someone else's ("Cardinal DiNardo")
TITLES = frozenset(
    """king queen prince princess emperor empress saint st pope cardinal archbishop bishop father sir lord lady dame
    dr mr mrs ms miss president general captain colonel major professor prof mayor senator governor judge rev
    reverend brother sister chancellor minister premier sheikh sultan shah tsar czar imam rabbi madame mme
    monsieur don dom fr""".split()
)


@dataclass(frozen=True)
class Alias:
    """One surface form of an argument, as stemmed tokens; ``kind`` says which rule produced it."""

    tokens: tuple[str, ...]
    kind: str  # exact | qualifier | demonym | derived | partial | acronym


# how much a mention of each kind says about the argument (exact name > a rule's derived form > a fragment)
KIND_WEIGHT = {"exact": 1.0, "qualifier": 0.9, "demonym": 0.9, "derived": 0.9, "acronym": 0.6, "partial": 0.6,
               "word": 0.3}


def _is_place_word(w: str) -> bool:
    """A country/region name or a nationality adjective (folded): no surname."""
    return w in IRREGULAR or w in _REVERSE or fold(w) in IRREGULAR or fold(w) in _REVERSE


@lru_cache(maxsize=65536)
def aliases(label: str, *, partial: bool = False) -> tuple[Alias, ...]:
    """Every surface form that counts as expressing ``label`` (see the module docstring)."""
    out: list[Alias] = []
    seen: set[tuple[str, ...]] = set()

    def add(text: str, kind: str) -> None:
        t = tuple(words(text))
        if t and t not in seen:
            seen.add(t)
            out.append(Alias(t, kind))

    add(label, "exact")
    if re.match(r"(?i)the\s+\S", label):  # the article is often dropped: "The Beatles" ~ "Beatles"
        add(label[4:].strip(), "exact")
    base = re.split(r"\s*,|\s+\(", label, maxsplit=1)[0].strip()  # not "copper(I) oxide" -> "copper"
    if base and base != label and len(base) >= 4:
        add(base, "qualifier")
    for form in sorted(demonyms(base or label)):
        add(form, "demonym")
    if (base or label)[:1].islower() or (base or label).lower() in DERIVED:
        for form in sorted(derived(base or label)):
            add(form, "derived")
    raw = [m.group() for m in _TOKEN.finditer(base or label)]
    if len(raw) >= 2 and fold(raw[-1]) in _CORP:  # "UGS Corp." -> "UGS"
        raw = raw[:-1]
        add(" ".join(raw), "qualifier")
    # short capitals around a name: "FC Bayern Munich" -> "Bayern Munich", "Sheffield United F.C." -> "Sheffield United"
    core_ = list(raw)
    while len(core_) >= 3 and core_[0].isupper() and len(core_[0]) <= 3 and core_[1][:1].isupper():
        core_ = core_[1:]
    k = len(core_)  # two or more single letters at the end ("F.C."), not a regnal number ("Manuel I")
    while k > 0 and len(core_[k - 1]) == 1 and core_[k - 1].isupper():
        k -= 1
    if len(core_) - k >= 2 and k >= 2:
        core_ = core_[:k]
    if len(core_) >= 2 and core_ != raw and core_[-1][:1].isupper():
        add(" ".join(core_), "qualifier")
    if partial and len(raw) >= 2:
        last = raw[-1]
        name_like = all(w[:1].isupper() or w[:1].isdigit() or fold(w) in _PARTICLES for w in raw[:-1])
        if (last[:1].isupper() and len(last) >= 4 and fold(last) not in GENERIC and fold(last) not in STOP
                and name_like and not _ROMAN.match(fold(last)) and not _is_place_word(fold(last))):
            add(last, "partial")
        caps = [w for w in raw if w[:1].isupper()]
        if len(caps) >= 3 and len(caps) >= len(raw) - 1:  # "Japan Football Association" -> "JFA"
            add("".join(w[0] for w in caps), "acronym")
        k = 0  # capitalised head before lower-case descriptors: "Mamer railway station" -> "Mamer"
        while k < len(raw) and raw[k][:1].isupper():
            k += 1
        head = " ".join(raw[:k])
        if (0 < k < len(raw) and all(w[:1].islower() for w in raw[k:]) and len(head) >= 4
                and not _is_place_word(fold(head))):
            add(head, "partial")
        of = re.split(r"\s+of\s+", base or label, maxsplit=1)  # "Manuel I of Portugal" -> "Manuel I"
        if len(of) == 2 and len(of[0].split()) >= 2 and of[0][:1].isupper():
            add(of[0], "partial")
        for w in raw:  # last resort, one distinctive word: "Samson of Dol" ~ "Samson", "calcium oxide" ~ "oxides"
            fw = fold(w)
            if (len(w) >= 4 and fw not in GENERIC and fw not in STOP and fw not in _PARTICLES and fw not in _CORP
                    and not _ROMAN.match(fw) and not _is_place_word(fw)):
                add(w, "word")
        k = 0  # the names before a joining particle: "Pasqual Maragall i Mira" -> "Pasqual Maragall"
        while k < len(raw) and raw[k][:1].isupper():
            k += 1
        if k >= 2 and k < len(raw) - 1 and fold(raw[k]) in _PARTICLES and raw[k + 1][:1].isupper():
            add(" ".join(raw[:k]), "partial")
    return tuple(out)


def find(alias: Alias, toks: list[str]) -> int:
    """Start index of the first occurrence of ``alias`` in ``toks``, or -1."""
    for i in find_all(alias, toks):
        return i
    return -1


def find_all(alias: Alias, toks: list[str]) -> list[int]:
    """Start indices of every occurrence of ``alias`` in ``toks``."""
    a = alias.tokens
    n = len(a)
    first = a[0]
    return [i for i, t in enumerate(toks) if t == first and tuple(toks[i : i + n]) == a]


def _related(a: str, b: str) -> bool:
    """Same word, or one a prefix of the other (>= 3 letters): "alp" ~ "alpe", "canada" ~ "canadian"."""
    if a == b:
        return True
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 3 and long_.startswith(short)


@lru_cache(maxsize=65536)
def subject_aliases(subject: str, obj: str, partial: bool = True, last_resort: bool = False) -> tuple[Alias, ...]:
    """The subject's forms, less the fragments (partial names, acronyms, words) that would also be the
    object: "Transport for London" gives no "London" when the object is London, so a sentence that names
    only the object does not count twice. Single words only with ``last_resort``."""
    obj_toks = {t for al in aliases(obj) for t in al.tokens if not t.isdigit()}
    out = []
    for al in aliases(subject, partial=partial):
        if al.kind == "word" and not last_resort:
            continue
        if al.kind in ("partial", "acronym", "word") and any(_related(t, o) for t in al.tokens for o in obj_toks):
            continue
        out.append(al)
    return tuple(out)


@dataclass
class Match:
    supports: bool
    span: str
    start: int
    end: int
    reason: str  # why rejected ("" when supported)
    subject_form: str
    object_form: str
    score: float = 0.0  # strength of the evidence, 0 when rejected (see :func:`verify_offline`)


def _fragment_ok(al: Alias, i: int, text: str, toks: list[str], spans: list[tuple[int, int]],
                 own: frozenset[str]) -> bool:
    """A partial name or acronym counts only as a name: capitalised (an acronym in capitals) and not the
    tail or head of someone else's name ("Wardell Gray" is no mention of Glen Gray)."""
    n = len(al.tokens)
    surface = text[spans[i][0] : spans[i + n - 1][1]]
    if al.kind == "acronym":
        return surface.isupper()
    if al.kind == "word":  # a word of the subject: when it is capitalised here, it must not be another's name
        if not surface[:1].isupper():
            return True
        if i + 1 < len(toks) and _ROMAN.match(toks[i + 1]) and toks[i + 1] not in own \
                and text[spans[i + 1][0] : spans[i + 1][1]].isupper():
            return False  # "Adrian III" is not Adrian V
        return True
    if not all(text[a : b][:1].isupper() or text[a : b][:1].isdigit() for a, b in spans[i : i + n]):
        return False
    for j, gap in ((i - 1, (spans[i - 1][1], spans[i][0]) if i > 0 else None),
                   (i + n, (spans[i + n - 1][1], spans[i + n][0]) if i + n < len(toks) else None)):
        if gap is None or text[gap[0] : gap[1]].strip():
            continue  # punctuation between: not the same name
        w = text[spans[j][0] : spans[j][1]]
        if j > i and w.isupper():
            continue  # post-nominal letters after a name: "Binney DNZM"
        if w[:1].isupper() and toks[j] not in own and fold(w) not in STOP and fold(w) not in TITLES:
            if j < i and _own_before(i, text, toks, spans, own - set(al.tokens)):
                continue  # middle names: "Raymond Leo Flynn" is Raymond Flynn
            return False
    return True


def _own_before(i: int, text: str, toks: list[str], spans: list[tuple[int, int]], own: frozenset[str]) -> bool:
    """Whether the run of capitalised words just before token ``i`` (at most 3) holds a word of the name."""
    j = i - 1
    while j >= 0 and i - j <= 3 and not text[spans[j][1] : spans[j + 1][0]].strip() and text[spans[j][0]][:1].isupper():
        if toks[j] in own and toks[j] not in STOP:
            return True
        j -= 1
    return False


def _mentions(als: tuple[Alias, ...], text: str, toks: list[str], spans: list[tuple[int, int]],
              tokset: set[str], own: frozenset[str], last_resort: bool = False) -> list[tuple[int, int, str, float]]:
    """(start, end, kind, weight) of every mention, strongest first, then by position.

    The weight is the kind's (:data:`KIND_WEIGHT`), except that a fragment of several words ("Manuel I")
    weighs like a derived form, and a last name right after the first name with middle names or a title
    between ("Raymond Leo Flynn", "Daniel Cardinal DiNardo") like the exact name. With ``last_resort``, a
    last name that fails :func:`_fragment_ok` still counts, as a ``word``."""
    out = []
    for al in als:
        if al.tokens[0] not in tokset:
            continue
        for i in find_all(al, toks):
            w = KIND_WEIGHT.get(al.kind, 0.5)
            kind = al.kind
            if al.kind == "word" and not _fragment_ok(al, i, text, toks, spans, own):
                continue
            if al.kind in ("partial", "acronym"):
                if not _fragment_ok(al, i, text, toks, spans, own):
                    # as a last resort, a last name in lower case is still a word of the subject
                    if (not last_resort or al.kind == "acronym" or len(al.tokens) > 1
                            or not _fragment_ok(Alias(al.tokens, "word"), i, text, toks, spans, own)):
                        continue
                    kind, w = "word", KIND_WEIGHT["word"]
                elif len(al.tokens) >= 2:
                    w = KIND_WEIGHT["qualifier"]
                if kind == "partial" and _own_before(i, text, toks, spans, own - set(al.tokens)):
                    w = KIND_WEIGHT["exact"]
            out.append((i, i + len(al.tokens), kind, w))
    out.sort(key=lambda m: (-m[3], m[0]))
    return out


_ACRONYM = re.compile(r"^[A-Z]{2,6}$")
_JOINERS = frozenset({"of", "and", "the", "for", "de"})


def _expansions(label: str, text: str, toks: list[str], spans: list[tuple[int, int]]) -> list[tuple[int, int, str, float]]:
    """Mentions of an acronym label by its expansion: "AMC" ~ "American Movie Classics" (capitalised words
    whose initials spell it; "of", "and", "the", "for" may sit between, or be spelt too)."""
    if not _ACRONYM.match(label):
        return []
    out = []
    first = label[0]
    for i, (a, _) in enumerate(spans):
        if text[a] != first:
            continue
        j, k = i, 0
        while j < len(toks) and k < len(label):
            w = text[spans[j][0] : spans[j][1]]
            joiner = k > 0 and toks[j] in _JOINERS
            if (w[:1] == label[k] and w[1:2].islower()) or (joiner and w[:1].upper() == label[k]):
                k += 1  # "Bank of England" ~ "BOE" as well as "American Movie Classics" ~ "AMC"
            elif not joiner:
                break
            j += 1
        if k == len(label):
            out.append((i, j, "acronym", KIND_WEIGHT["qualifier"]))
    return out


@lru_cache(maxsize=65536)
def _word_set(label: str) -> frozenset[str]:
    return frozenset(words(label))


def verify_offline(text: str, subject: str, obj: str, *, partial_names: bool = True,
                   relation_cues: tuple[str, ...] = (), last_resort: bool = False) -> Match:
    """Whether ``text`` expresses both ``subject`` and ``obj`` (in separate mentions); the span covers both.

    ``score`` in (0, 1]: the product of the two mentions' weights (:func:`_mentions`), times 0.8
    when the two are more than 20 words apart. ``relation_cues`` (stemmed words): when given, at least
    one must also occur (off by default: T-REx-style gold does not require it, nor, on the LAMA T-REx
    dev relations, does a relation word make a match likelier to be gold). ``last_resort``: one
    distinctive word of the subject ("Samson" of "Samson of Dol", "oxides" of "calcium oxide") also
    counts, weighing 0.3; meant for a fact none of whose candidates names both arguments (see
    :class:`..core.OfflineVerifier`).
    """
    toks, spans = word_spans(text)
    tokset = set(toks)
    own = _word_set(subject)
    s_all = _mentions(subject_aliases(subject, obj, partial_names, last_resort), text, toks, spans, tokset, own,
                      last_resort) + _expansions(subject, text, toks, spans)
    s_all.sort(key=lambda m: (-m[3], m[0]))
    o_all = _mentions(aliases(obj), text, toks, spans, tokset, _word_set(obj)) + _expansions(obj, text, toks, spans)
    o_all.sort(key=lambda m: (-m[3], m[0]))
    pair = None
    for s in s_all:
        for o in o_all:
            if s[1] <= o[0] or o[1] <= s[0]:  # separate mentions
                pair = (s, o)
                break
        if pair:
            break
    if pair is None:
        if s_all and o_all:
            return Match(False, "", -1, -1, "subject and object only as one mention", s_all[0][2], o_all[0][2])
        missing = "object" if s_all else "subject and object" if not o_all else "subject"
        return Match(False, "", -1, -1, f"{missing} not found", s_all[0][2] if s_all else "",
                     o_all[0][2] if o_all else "")
    s, o = pair
    if relation_cues and not set(relation_cues) & tokset:
        return Match(False, "", -1, -1, "relation not expressed", s[2], o[2])
    lo = min(s[0], o[0])
    hi = max(s[1], o[1]) - 1
    a, b = spans[lo][0], spans[hi][1]
    gap = max(s[0], o[0]) - min(s[1], o[1])
    score = s[3] * o[3] * (0.8 if gap > 20 else 1.0)
    return Match(True, text[a:b], a, b, "", s[2], o[2], round(score, 6))


# ------------------------------------------------------------------------ argument extraction

_CONNECT = frozenset({"of", "de", "da", "di", "del", "della", "der", "van", "von", "den", "du", "des", "la", "le",
                      "the", "and", "y", "bin", "al"})
_VERBISH = frozenset(
    """is was are were has had have be been being became becomes speaks spoke speak plays played play works worked
    born died lives lived located founded created developed produced made written wrote released owned owns
    belongs belonged joined holds held uses used writes originated comes came""".split()
)


# nouns that name the relation, not an argument ("an actor by profession", "plays jazz music")
RELATION_NOUNS = frozenset(
    """profession occupation job trade training position role player music musician musicians genre style
    language languages tongue religion faith expertise field domain activity area honor honour name named called
    official officially citizen citizenship nationality national origin birthplace birth death capital city
    cities twin sister member part type kind subclass instance work works product owner manufacturer developer
    label network channel headquarters founded located location home hometown country continent such""".split()
)


def extract_arguments(statement: str) -> tuple[str, str]:
    """(subject, object) of a plain statement: first and last entity chunk, else the content at the ends.

    "Pierre Messmer's native language is French." -> ("Pierre Messmer", "French");
    "gummi candy was created in Germany" -> ("gummi candy", "Germany"). Empty strings when not found.
    """
    raw = [(m.group(), m.start(), m.end()) for m in re.finditer(r"[^\W_]+(?:['’][^\W_]+)*", statement)]
    raw = [(w[:-2], a, b - 2) if re.search(r"['’]s$", w) else (w, a, b) for w, a, b in raw]
    chunks: list[tuple[int, int]] = []  # token index ranges
    i = 0
    while i < len(raw):
        w = raw[i][0]
        cap = w[:1].isupper() or w[:1].isdigit()
        if cap and i == 0 and (fold(w) in STOP | {"in", "the", "a", "an"} or fold(w) in RELATION_NOUNS):
            cap = False
        if cap:
            j = i + 1
            while j < len(raw):
                nxt = raw[j][0]
                if statement[raw[j - 1][2] : raw[j][1]].strip(" -'’"):  # punctuation ends a chunk
                    break
                if nxt[:1].isupper() or nxt[:1].isdigit():
                    j += 1
                elif fold(nxt) in _CONNECT and j + 1 < len(raw) and raw[j + 1][0][:1].isupper():
                    j += 2
                else:
                    break
            chunks.append((i, j))
            i = j
        else:
            i += 1

    def text_of(a: int, b: int) -> str:
        return statement[raw[a][1] : raw[b - 1][2]]

    if len(chunks) >= 2:
        return text_of(*chunks[0]), text_of(*chunks[-1])

    def content_run(rng: range) -> tuple[int, int] | None:
        idx = [k for k in rng if fold(raw[k][0]) not in STOP and fold(raw[k][0]) not in _VERBISH
               and fold(raw[k][0]) not in RELATION_NOUNS and not raw[k][0][:1].isupper()]
        if not idx:
            return None
        # the contiguous run at the end nearest the sentence edge
        run = [idx[0]]
        for k in idx[1:]:
            if k == run[-1] + 1 or (k == run[-1] - 1):
                run.append(k)
            else:
                break
        return min(run), max(run) + 1

    n = len(raw)
    verbs = [k for k in range(n) if fold(raw[k][0]) in _VERBISH]
    if len(chunks) == 1:
        a, b = chunks[0]
        if a <= n - b:  # entity first: the object is the content after the verb, at the end
            after = range(n - 1, b - 1, -1)
            run = content_run(after)
            return text_of(a, b), (text_of(*run) if run else "")
        cut = verbs[0] if verbs and verbs[0] < a else a
        run = content_run(range(0, cut))
        return (text_of(*run) if run else ""), text_of(a, b)
    if not raw:
        return "", ""
    cut = verbs[0] if verbs else n // 2
    s = content_run(range(0, cut))
    o = content_run(range(n - 1, cut, -1))
    return (text_of(*s) if s else ""), (text_of(*o) if o else "")
