"""Reading and validating files, without the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation import formats


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path, fmt: str = "auto", **opts) -> list:
    return [item for _, item, _ in formats.read_records(path, fmt, formats.Options(**opts))]


def test_trl_strings_and_conversations_are_read(tmp_path):
    path = _jsonl(
        tmp_path / "x.jsonl",
        [
            {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "id": 7, "margin": 1.5},
            {
                "prompt": [{"role": "user", "content": "2+2?"}],
                "chosen": [{"role": "assistant", "content": "4"}],
                "rejected": [{"role": "assistant", "content": "5"}],
            },
        ],
    )
    first, second = _read(path)
    assert first.prompt.text == "Hi?"
    assert first.prompt.messages is None
    assert [r.content.text for r in first.responses] == ["Hello!", "Go away."]
    assert first.pairs == [(0, 1, "first")]
    assert (first.external_id, first.margin) == ("7", 1.5)
    assert second.prompt.messages == [{"role": "user", "content": "2+2?"}]
    # A single assistant message is stored as plain text.
    assert second.responses[0].content.text == "4"
    assert second.responses[0].content.messages is None


def test_hh_transcripts_split_into_prompt_and_answers(tmp_path):
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell me a joke\n\nAssistant: A good one"
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell me a joke\n\nAssistant: No."
    (record,) = _read(_jsonl(tmp_path / "hh.jsonl", [{"chosen": chosen, "rejected": rejected}]))
    assert record.prompt.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    assert [r.content.text for r in record.responses] == ["A good one", "No."]


def test_hh_transcripts_that_diverge_earlier_keep_the_whole_continuation(tmp_path):
    chosen = "\n\nHuman: Q\n\nAssistant: A1\n\nHuman: more\n\nAssistant: A2"
    rejected = "\n\nHuman: Q\n\nAssistant: B1"
    (record,) = _read(_jsonl(tmp_path / "hh.jsonl", [{"chosen": chosen, "rejected": rejected}]))
    assert record.prompt.messages == [{"role": "user", "content": "Q"}]
    assert record.responses[0].content.messages == [
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "more"},
        {"role": "assistant", "content": "A2"},
    ]
    assert record.responses[1].content.text == "B1"


def test_ranked_rows_make_labelled_pairs_from_ranks(tmp_path):
    row = {
        "prompt": "Pick",
        "responses": [
            {"text": "x", "model": "m1", "rank": 2},
            {"text": "y", "model": "m2", "rank": 1},
            {"text": "z", "model": "m3", "rank": 3},
        ],
    }
    (all_pairs,) = _read(_jsonl(tmp_path / "r.jsonl", [row]))
    assert sorted(all_pairs.pairs) == [(0, 1, "second"), (0, 2, "first"), (1, 2, "first")]
    assert [r.model for r in all_pairs.responses] == ["m1", "m2", "m3"]
    (adjacent,) = _read(tmp_path / "r.jsonl", pairs="adjacent")
    assert adjacent.pairs == [(1, 0, "first"), (0, 2, "first")]
    (capped,) = _read(tmp_path / "r.jsonl", max_pairs=1)
    assert len(capped.pairs) == 1


def test_ranked_rows_without_ranks_make_unlabelled_pairs(tmp_path):
    (record,) = _read(_jsonl(tmp_path / "r.jsonl", [{"prompt": "P", "responses": ["a", "b"]}]))
    assert record.pairs == [(0, 1, None)]


@pytest.mark.parametrize(
    ("row", "message", "field"),
    [
        ({"prompt": "p", "chosen": "", "rejected": "r"}, "missing or empty", "chosen"),
        ({"prompt": "p", "rejected": "r", "chosen": None}, "missing or empty", "chosen"),
        ({"prompt": 5, "chosen": "c", "rejected": "r"}, "must be a string, got int", "prompt"),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical", "rejected"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "margin": "x"}, "number", "margin"),
        (
            {"prompt": [{"role": "robot", "content": "x"}], "chosen": "c", "rejected": "r"},
            "role must be",
            "prompt[0]",
        ),
    ],
)
def test_bad_trl_rows_name_the_line_and_field(tmp_path, row, message, field):
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    _, error = _read(_jsonl(tmp_path / "bad.jsonl", [good, row]), "trl")
    assert isinstance(error, formats.RowError)
    assert (error.line, error.field) == (2, field)
    assert message in error.message
    assert str(error).startswith(f"line 2, field '{field}'")


def test_unknown_shape_is_a_file_error(tmp_path):
    with pytest.raises(formats.FileError, match="line 1: unknown format"):
        _read(_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}]))


def test_csv_rows_are_numbered_by_their_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('prompt,chosen,rejected\nhi,"multi\nline",no\nq,,r\n')
    first, second = _read(path)
    assert first.responses[0].content.text == "multi\nline"
    assert isinstance(second, formats.RowError)
    assert (second.line, second.field) == (4, "chosen")
