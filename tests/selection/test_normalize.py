"""Keys under which patches count as one change: patch text, changed lines, and the patched files' trees."""

from __future__ import annotations

from patchfleet.selection.normalize import (
    ast_key,
    change_shape,
    changed_files,
    hunks_consistent,
    normalise_patch,
    parses,
    patch_id,
    patch_key,
    python_parses,
    python_tokens,
)

ORIGINAL = '''def area(width, height):
    """Area of a rectangle."""
    # multiply
    return width * height


def label(name):
    return "x: " + name
'''

REFORMATTED = """def area(width,height):
    return (
        width
        * height  # still multiplies
    )
def label(name, ):
    return 'x: ' + name
"""

CHANGED = ORIGINAL.replace("width * height", "width + height")


def test_formatting_comment_and_docstring_variants_share_an_ast_key():
    assert ast_key({"geo.py": ORIGINAL}) == ast_key({"geo.py": REFORMATTED})
    assert list(python_tokens(ORIGINAL)) == list(python_tokens(REFORMATTED))


def test_a_real_change_gets_another_ast_key():
    assert ast_key({"geo.py": ORIGINAL}) != ast_key({"geo.py": CHANGED})
    assert ast_key({"geo.py": ORIGINAL}) != ast_key({"other.py": ORIGINAL})  # the path counts
    # string prefixes and contents count, quote styles do not
    assert ast_key({"a.py": "x = b'1'\n"}) != ast_key({"a.py": "x = '1'\n"})
    assert ast_key({"a.py": "x = f'{y!r}'\n"}) == ast_key({"a.py": 'x = f"{y!r}"\n'})
    assert ast_key({"a.py": "x = f'{y!r}'\n"}) != ast_key({"a.py": "x = f'{y!s}'\n"})
    # a tuple is not a parenthesised expression
    assert ast_key({"a.py": "x = (1,)\n"}) != ast_key({"a.py": "x = (1)\n"})
    assert ast_key({"a.py": "x = (1)\n"}) == ast_key({"a.py": "x = 1\n"})


def test_other_files_compare_by_whitespace_normalised_text_and_deletions_count():
    assert ast_key({"setup.cfg": "[a]\r\nx = 1  \n\n"}) == ast_key({"setup.cfg": "[a]\nx = 1\n"})
    assert ast_key({"setup.cfg": "[a]\nx = 1\n"}) != ast_key({"setup.cfg": "[a]\nx = 2\n"})
    assert ast_key({"old.py": None}) != ast_key({"old.py": ""})
    assert ast_key({"a.py": ORIGINAL, "b.txt": "x"}) == ast_key({"b.txt": "x", "a.py": REFORMATTED})


def test_python_parses_accepts_every_python_version_and_flags_errors():
    assert python_parses('print "python 2"\n')
    assert python_parses("match x:\n    case 1:\n        pass\n")
    assert python_parses("async def f():\n    await g()\n")
    assert not python_parses("def f(:\n    pass\n")
    assert not python_parses("def f():\nreturn 1\n")
    assert parses("notes.txt", "def f(:") and parses("gone.py", None)
    assert not parses("m.py", "x = (\n")


MODIFY = (
    "diff --git a/src/m.py b/src/m.py\n"
    "index 1111111..2222222 100644\n"
    "--- a/src/m.py\n"
    "+++ b/src/m.py\n"
    "@@ -10,4 +10,4 @@ def f():\n"
    "     a = 1\n"
    "-    return a\n"
    "+    return a + 1  # bump\n"
    " \n"
    " \n"
)


def test_normalised_patch_ignores_whitespace_index_lines_and_line_numbers():
    variants = [
        MODIFY.replace("\n", "\r\n"),
        MODIFY.replace("    return a + 1  # bump\n", "    return a + 1  # bump   \n"),
        MODIFY.replace("index 1111111..2222222 100644", "index 3333333..4444444 100644"),
        MODIFY.replace("@@ -10,4 +10,4 @@", "@@ -12,4 +12,4 @@"),
        MODIFY.removesuffix(" \n"),  # a copy that lost its last blank context line
    ]
    assert {patch_id(v) for v in variants} == {patch_id(MODIFY)}
    assert patch_id(MODIFY.replace("a + 1", "a + 2")) != patch_id(MODIFY)
    assert "@@\n" in normalise_patch(MODIFY) and "index" not in normalise_patch(MODIFY)


def test_patch_key_ignores_comments_context_and_layout():
    reworded = MODIFY.replace("+    return a + 1  # bump", "+    return a+1").replace(
        "     a = 1", "     a = 1 "
    )
    with_comment = MODIFY.replace("+    return a + 1  # bump\n", "+    # explain\n+    return a + 1\n")
    assert patch_key(reworded) == patch_key(MODIFY) == patch_key(with_comment)
    assert patch_key(MODIFY.replace("a + 1", "a - 1")) != patch_key(MODIFY)
    # a `#` inside a string literal is code, not a comment
    hashes = MODIFY.replace("a + 1  # bump", "'#a'  # bump")
    assert patch_key(hashes) != patch_key(MODIFY.replace("a + 1  # bump", "'#b'"))
    assert patch_key(hashes) == patch_key(MODIFY.replace("a + 1  # bump", "'#a'"))


def test_hunks_consistent_detects_damaged_copies():
    assert hunks_consistent(MODIFY)
    assert not hunks_consistent(MODIFY.removesuffix(" \n"))  # the header announces one more line
    assert not hunks_consistent(MODIFY.replace("\n \n \n", "\n\n\n"))  # blank context lost its space
    assert hunks_consistent(MODIFY + MODIFY.replace("src/m.py", "src/n.py"))


def test_changed_files_lists_new_modified_deleted_and_renamed_paths():
    patch = (
        MODIFY
        + "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n"
        + "@@ -0,0 +1 @@\n+x = 1\n"
        + "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n+++ /dev/null\n"
        + "@@ -1 +0,0 @@\n-x = 1\n"
        + "diff --git a/old.py b/moved.py\nsimilarity index 100%\nrename from old.py\nrename to moved.py\n"
    )
    assert changed_files(patch) == {"src/m.py": True, "new.py": True, "gone.py": False, "moved.py": True}
    plain = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert changed_files(plain) == {"x.py": True}


def _diff(path: str, removed: str, added: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{removed}\n+{added}\n"


def test_change_shape_compares_files_and_lines_ignoring_layout_comments_and_tests():
    fix = change_shape(_diff("pkg/m.py", "x = a+b", "x = a - b"))
    same = change_shape(
        _diff("pkg/m.py", "x = a + b  # old", "x  =  a-b") + _diff("tests/test_m.py", "", "t()")
    )
    assert fix.similarity(same) == 1.0  # whitespace, comments and the added test do not count
    elsewhere = change_shape(_diff("pkg/m.py", "x = a+b", "x = b - a"))
    assert fix.similarity(elsewhere) == 0.5 + 0.5 * (1 / 3)  # same file; shares the removed line only
    unrelated = change_shape(_diff("pkg/other.py", "y = 1", "y = 2"))
    assert fix.similarity(unrelated) == 0.0
    assert fix.similarity(elsewhere) == elsewhere.similarity(fix)
