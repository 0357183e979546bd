"""SentEval's text preprocessing, redone in Python so that `embeval data download` gives the
same bytes as SentEval's data/downstream/get_transfer_data.bash (Conneau & Kiela 2018).

- `moses`: Moses `tokenizer.perl -l en -no-escape` (then `lowercase.perl`), via sacremoses;
- `ptb`: the Penn Treebank `tokenizer.sed` used for MR/CR/SUBJ/MPQA, after `cat_v` (`cat -v`);
- `cut` / `map_lines`: the `cut -f` / `paste` plumbing around them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from embeval.eval.data.paths import DataError


@functools.cache
def moses_tokenizer():
    try:
        from sacremoses import MosesTokenizer
    except ImportError:
        raise DataError(
            "the sts/ preprocessing needs the Moses tokenizer: pip install 'embeval[download]' "
            "(or fetch only the raw releases: --only sts-raw --only transfer)"
        ) from None
    return MosesTokenizer(lang="en")


def moses(text: str, lower: bool = True) -> str:
    """`tokenizer.perl -l en -no-escape` (| `lowercase.perl`) on one line, via sacremoses.

    Adds the perl script's split of a final "word." (`u.s.` -> `u.s .`), which sacremoses lacks;
    with it every STS12-16 and STS-B file matches SentEval's output byte for byte.
    """
    if not text.strip() or re.fullmatch(r"<.+>", text):  # the perl script passes these through
        return text
    out = moses_tokenizer().tokenize(text, escape=False, return_str=True)
    head, sep, last = out.rpartition(" ")
    if re.fullmatch(r".*[^.]\.", last):
        out = f"{head}{sep}{last[:-1]} ."
    return out.lower() if lower else out


# SentEval's data/downstream/tokenizer.sed (R. MacIntyre's Penn Treebank sed script), in order.
_PTB = [
    (r'^"', "`` "),
    (r'([ (\[{<])"', r"\1 `` "),
    (r"\.\.\.", " ... "),
    (r"([,;:@#$%&])", r" \1 "),
    (r"([^.])(\.)([\])}>\"']*)[ \t]*$", r"\1 \2\3 "),  # final period only
    (r"([?!])", r" \1 "),
    (r"([\]\[(){}<>])", r" \1 "),
    (r"--", " -- "),
    (r"$", " "),
    (r"^", " "),
    (r'"', " '' "),
    (r"([^'])' ", r"\1 ' "),
    (r"'([sSmMdD]) ", r" '\1 "),
    *((f"{c} ", f" {c} ") for c in ("'ll", "'re", "'ve", "n't", "'LL", "'RE", "'VE", "N'T")),
    (r" ([Cc])annot ", r" \1an not "),
    (r" ([Dd])'ye ", r" \1' ye "),
    (r" ([Gg])imme ", r" \1im me "),
    (r" ([Gg])onna ", r" \1on na "),
    (r" ([Gg])otta ", r" \1ot ta "),
    (r" ([Ll])emme ", r" \1em me "),
    (r" ([Mm])ore'n ", r" \1ore 'n "),
    (r" '([Tt])is ", r" '\1 is "),
    (r" '([Tt])was ", r" '\1 was "),
    (r" ([Ww])anna ", r" \1an na "),
    (r" +", " "),
    (r"^ *", ""),
]


def ptb(line: str) -> str:
    for pattern, repl in _PTB:
        line = re.sub(pattern, repl, line)
    return line


def _cat_v_char(b: int) -> str:
    meta, b = ("M-", b - 128) if b >= 128 else ("", b)
    if b == 127:
        return meta + "^?"
    if b < 32 and (meta or b not in (9, 10)):
        return f"{meta}^{chr(b + 64)}"
    return meta + chr(b)


_CAT_V = [_cat_v_char(b) for b in range(256)]


def cat_v(data: bytes) -> str:
    """`cat -v`: bytes >= 128 as M-x, control bytes as ^X (tab and newline kept). ASCII out."""
    return "".join(map(_CAT_V.__getitem__, data))


def cut(line: str, field: int) -> str:
    """`cut -f FIELD` (1-based): a line without a tab comes out whole, a missing field empty."""
    cols = line.split("\t")
    return cols[0] if len(cols) == 1 else (cols[field - 1] if field <= len(cols) else "")


def map_lines(text: str, fn: Callable[[str], str]) -> bytes:
    """fn over each line, as a shell pipeline would: every output line ends with a newline."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return "".join(fn(line) + "\n" for line in lines).encode()
