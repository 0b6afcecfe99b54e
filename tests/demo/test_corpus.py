"""The grammar's structure is present in samples and generation is deterministic."""

from __future__ import annotations

import re

from locattr.demo.corpus import ANIMALS, NAMES, NUMBERS, VERBS, stories, vocabulary

SAMPLE = stories("train", 300, seed=3)


def test_deterministic_and_splits_differ() -> None:
    assert stories("train", 50, seed=3) == SAMPLE[:50]
    assert stories("heldout", 50, seed=3) != SAMPLE[:50]
    assert stories("train", 50, seed=4) != SAMPLE[:50]


def test_words_are_in_the_vocabulary() -> None:
    words = set(vocabulary())
    assert all(w in words for s in SAMPLE for w in s.split())


def test_induction_the_hero_name_recurs() -> None:
    for story in SAMPLE:
        match = re.match(r"once there was an? (?:\w+ )?\w+ named (\w+)", story)
        assert match is not None, story
        name = match.group(1)
        assert name in NAMES
        assert story.split().count(name) >= 2, story
        assert story.endswith(f"in the end , {name} was {story.split()[-2]} .")


def test_subject_verb_agreement() -> None:
    singular = {sg for sg, _ in ANIMALS}
    seen = 0
    for story in SAMPLE:
        for sentence in story.split(" . "):
            words = sentence.split()
            if len(words) < 3 or words[0] != "the":
                continue
            verb = words[2] if words[2] != "near" else words[5]
            seen += 1
            if words[1] in singular:
                assert verb in {third for _, third in VERBS}, sentence
            else:
                assert verb in {base for base, _ in VERBS}, sentence
    assert seen > 50


def test_quotes_and_brackets_are_closed() -> None:
    for story in SAMPLE:
        words = story.split()
        assert words.count('"') % 2 == 0
        depth = 0
        for w in words:
            depth += (w == "(") - (w == ")")
            assert depth in (0, 1), story
        assert depth == 0


def test_counting_runs_in_order() -> None:
    runs = [m.group(1).split() for s in SAMPLE for m in re.finditer(r": ((?:[a-z]+ )+)\.", s)]
    counts = [r for r in runs if r[0] == "one"]
    assert len(counts) > 20
    for run in counts:
        assert run == list(NUMBERS[: len(run)])
