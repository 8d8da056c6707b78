"""Env files: systemd's quoting, dotenv's ``export`` and comments, errors that name the
file and the line but never the text (it may be a secret)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patrol.util.dotenv import MAX_ENV_FILE, EnvFileError, parse, read_env_file


def test_the_syntax():
    text = (
        "# a comment\n"
        "; another\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED =  two words   # a comment after a blank\n"
        "export EXPORTED=1\n"
        "HASH=a#b\n"
        "EMPTY=\n"
        "SINGLE='keeps \\n, \"quotes\" and # as written'\n"
        'DOUBLE="a \\"quote\\", a \\\\, a \\$ and \\n"\n'
        "ESCAPED=one\\ two\\#three\n"
        "CONTINUED=first \\\n"
        "second\n"
        'MULTI="line one\n'
        'line two" # done\n'
        "NOEXPAND=$HOME/${USER}\n"
        "CRLF=windows\r\n"
    )
    assert parse(text) == {
        "PLAIN": "value",
        "SPACED": "two words",
        "EXPORTED": "1",
        "HASH": "a#b",
        "EMPTY": "",
        "SINGLE": 'keeps \\n, "quotes" and # as written',
        "DOUBLE": 'a "quote", a \\, a $ and \\n',
        "ESCAPED": "one two#three",
        "CONTINUED": "first second",
        "MULTI": "line one\nline two",
        "NOEXPAND": "$HOME/${USER}",
        "CRLF": "windows",
    }


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("A=1\nB\n", 2, 'must be KEY=VALUE (no "=" found)'),
    ("1A=x\n", 1, 'the name before "=" must be letters, digits and "_", not starting with a digit'),
    ("A B=x\n", 1, "the name before"),
    ("=x\n", 1, "the name before"),
    ("A=1\nB=\"open\nstill open\n", 2, "the quote \" opened here is never closed"),
    ("A='x' y\n", 1, "only a comment may follow a closing quote"),
    ("A=1\nB=\0\n", 2, "holds a NUL character"),
])
def test_errors_name_the_line_and_the_rule(text, line, problem):
    with pytest.raises(Exception) as caught:
        parse(text)
    assert getattr(caught.value, "line") == line and problem in str(caught.value)


def test_reading_a_file_names_it_and_never_blocks_or_reads_without_bound(tmp_path):
    secret_line = "PASSWORD secret-value\n"
    bad = tmp_path / "bad.env"
    bad.write_text("OK=1\n" + secret_line)
    with pytest.raises(EnvFileError) as caught:
        read_env_file(str(bad))
    assert str(caught.value) == f'env-file {bad} line 2: must be KEY=VALUE (no "=" found)'
    assert "secret" not in str(caught.value)

    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    with pytest.raises(EnvFileError, match="not a regular file"):
        read_env_file(str(fifo))  # refused at once, not waiting for a writer

    big = tmp_path / "big.env"
    big.write_bytes(b"A=" + b"x" * MAX_ENV_FILE + b"\n")
    with pytest.raises(EnvFileError, match=f"is larger than {MAX_ENV_FILE} bytes"):
        read_env_file(str(big))

    latin = tmp_path / "latin.env"
    latin.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(EnvFileError, match="line 2: is not UTF-8 text"):
        read_env_file(str(latin))


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\r"), max_size=30)


@given(st.dictionaries(_names, _values, max_size=8))
def test_any_value_written_in_single_quotes_or_escaped_double_quotes_reads_back(env):
    single = "".join(f"{k}='{v}'\n" for k, v in env.items() if "'" not in v)
    assert parse(single) == {k: v for k, v in env.items() if "'" not in v}

    def quoted(value: str) -> str:
        out = "".join("\\" + c if c in '"\\$`' else c for c in value)
        return f'"{out}"'
    double = "".join(f"{k}={quoted(v)}\n" for k, v in env.items())
    assert parse(double) == env
