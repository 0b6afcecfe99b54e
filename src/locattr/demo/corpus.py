"""A seeded probabilistic grammar of short stories with structure a small model must learn.

The structure is chosen so that components have something nameable to specialise on:
- induction: the hero's name, drawn from a large pool, is introduced once and recurs later;
- agreement: singular subjects take `runs`, plural ones `run`, also across a prepositional phrase;
- matching delimiters: a quote opened with `"` and a bracket opened with `(` are always closed;
- counting: `one two three ...` sequences, and number words agree with the noun's number.

Text is lower case with every word and punctuation mark separated by one space, so a whitespace
split is the tokenization. Generation is deterministic from `(seed, split)`.
"""

from __future__ import annotations

import random
from typing import Literal

Split = Literal["train", "heldout"]

NAMES = (
    "mia", "leo", "ava", "max", "zoe", "sam", "lily", "ben", "emma", "jack", "nora", "tom",
    "ella", "finn", "ruby", "owen", "ivy", "eli", "rosa", "hugo", "luna", "adam", "kira", "omar",
)  # fmt: skip
KINDS = ("girl", "boy", "cat", "dog", "fox", "bird", "bear", "frog")
ADJECTIVES = ("little", "brave", "happy", "small", "kind", "clever", "sleepy", "quick")
NOUNS = (  # (singular, plural)
    ("ball", "balls"), ("apple", "apples"), ("tree", "trees"), ("star", "stars"),
    ("box", "boxes"), ("cup", "cups"), ("hat", "hats"), ("stone", "stones"),
    ("duck", "ducks"), ("book", "books"), ("kite", "kites"), ("shell", "shells"),
)  # fmt: skip
ANIMALS = (("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("frog", "frogs"))
VERBS = (  # (plural / base form, third-person singular)
    ("run", "runs"), ("jump", "jumps"), ("sing", "sings"), ("play", "plays"),
    ("sleep", "sleeps"), ("swim", "swims"), ("dance", "dances"), ("hide", "hides"),
)  # fmt: skip
PLACES = ("park", "river", "house", "garden", "forest", "hill", "school", "lake")
FEELINGS = ("happy", "tired", "proud", "glad", "calm", "sad")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
QUOTES = (
    "i like the {sg}",
    "look at the {pl}",
    "let us go to the {place}",
    "where is my {sg}",
    "the {pl} are {feeling}",
)
FUNCTION_WORDS = (
    "once", "there", "was", "a", "an", "named", "and", "the", "to", "near", "at", "in", "end",
    "said", "counted", "had", "has", "went", "found", "very", "saw", "with", "friend",
    "i", "like", "look", "let", "us", "go", "where", "is", "my", "are", "it", "then", "day",
    ".", ",", ":", '"', "(", ")",
)  # fmt: skip


def vocabulary() -> tuple[str, ...]:
    """Every word the grammar can emit, sorted, so the tokenizer never needs `[UNK]` on it."""
    words: set[str] = {*NAMES, *KINDS, *ADJECTIVES, *PLACES, *FEELINGS, *NUMBERS}
    words |= {w for pair in NOUNS + ANIMALS + VERBS for w in pair}
    words |= set(FUNCTION_WORDS)
    return tuple(sorted(words))


def _intro(rng: random.Random, name: str, friend: str | None) -> str:
    kind = rng.choice(KINDS)
    adjective = rng.choice(ADJECTIVES) + " " if rng.random() < 0.5 else ""
    article = "an" if (adjective or kind)[0] in "aeiou" else "a"
    text = f"once there was {article} {adjective}{kind} named {name}"
    if friend is not None:
        text += f" and a {rng.choice(KINDS)} named {friend}"
    return text + " ."


def _agreement(rng: random.Random, name: str) -> str:
    base, third = rng.choice(VERBS)
    place = rng.choice(PLACES)
    roll = rng.random()
    if roll < 0.3:
        return f"{name} {third} in the {place} ."
    singular, plural = rng.choice(ANIMALS)
    is_plural = rng.random() < 0.5
    subject = f"the {plural if is_plural else singular}"
    if roll < 0.65:
        # A distractor noun of the other number sits between subject and verb.
        other_sg, other_pl = rng.choice(NOUNS)
        subject += f" near the {other_sg if is_plural else other_pl}"
    return f"{subject} {base if is_plural else third} at the {place} ."


def _quote(rng: random.Random, name: str) -> str:
    singular, plural = rng.choice(NOUNS)
    inner = rng.choice(QUOTES).format(
        sg=singular, pl=plural, place=rng.choice(PLACES), feeling=rng.choice(FEELINGS)
    )
    return f'{name} said : " {inner} " .'


def _bracket(rng: random.Random, name: str) -> str:
    singular, _ = rng.choice(NOUNS)
    aside = rng.choice((f"with {name}", "very " + rng.choice(FEELINGS), f"the {singular}"))
    return f"{name} went to the {rng.choice(PLACES)} ( {aside} ) ."


def _counting(rng: random.Random, name: str) -> str:
    singular, plural = rng.choice(NOUNS)
    n = rng.randint(2, 7)
    if rng.random() < 0.5:
        return f"{name} counted the {plural} : {' '.join(NUMBERS[:n])} ."
    count = rng.randint(1, 6)
    return f"{name} has {NUMBERS[count - 1]} {singular if count == 1 else plural} ."


def _friend(rng: random.Random, name: str, friend: str) -> str:
    return f"then {name} saw {friend} at the {rng.choice(PLACES)} ."


_BODY = (_agreement, _quote, _bracket, _counting)


def story(rng: random.Random) -> str:
    """One story: an introduction, 3-6 body sentences about the hero, a closing line."""
    name = rng.choice(NAMES)
    friend = rng.choice([n for n in NAMES if n != name]) if rng.random() < 0.4 else None
    sentences = [_intro(rng, name, friend)]
    for _ in range(rng.randint(3, 6)):
        if friend is not None and rng.random() < 0.2:
            sentences.append(_friend(rng, name, friend))
        else:
            sentences.append(rng.choice(_BODY)(rng, name))
    sentences.append(f"in the end , {name} was {rng.choice(FEELINGS)} .")
    return " ".join(sentences)


def stories(split: Split, n: int, seed: int = 0) -> list[str]:
    """`n` stories; the splits draw from independent streams, so held-out text is unseen text."""
    rng = random.Random(f"locattr-demo-{split}-{seed}")
    return [story(rng) for _ in range(n)]
