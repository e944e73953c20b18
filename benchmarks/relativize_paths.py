"""Rewrite absolute machine paths in the committed results to paths relative to the repository.

The JSON and Markdown files under benchmarks/results/ and pretrained/ were written on several
machines, and some recorded where a run happened to live there. Those paths mean nothing on
another machine, so this script rewrites them, in place, by these rules (idempotent: rerun it
after committing new results; it changes only path text, never a number):

  /work/<checkout>/REST        -> REST      a checkout of this repository: REST is relative to
                                            its root (/work/main/runs/x -> runs/x; the root
                                            itself -> .)
  /tmp/<tmpXXXXXXXX>/REST      -> REST      a random temporary folder (tempfile, pytest) is dropped
  /tmp/pytest-of-U/pytest-N/T/REST -> REST
  /tmp/REST                    -> REST      the lent-GPU scripts (benchmarks/gpu_*.sh) work under
                                            /tmp and ship their outputs as archives relative to
                                            /tmp, so REST is the path inside those archives
                                            (/tmp/gruns/w0.5_full_s0 -> gruns/w0.5_full_s0)
  ../../tmp/REST               -> REST      the same folder written relative to a checkout
  /root/REST, /home/<user>/REST -> ~/REST   a home folder (e.g. torch's hub cache named in a
                                            message): not part of the repository

Only text in .json, .jsonl and .md files changes; device logs (.log, .txt) are kept verbatim.
Every rewritten JSON file is parsed before and after and its numbers compared: a rewrite that
would change any number (or break the JSON) is refused.

    python benchmarks/relativize_paths.py            # rewrite
    python benchmarks/relativize_paths.py --check    # exit 1 listing the files that would change
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("benchmarks/results", "pretrained")
SUFFIXES = (".json", ".jsonl", ".md")

# a path starts after a quote, whitespace, '=', '(', '[', ',' or ':' (or at the start of the text)
_START = r"(?:(?<=[\s\"'=(\[,:])|^)"
_END = r"(?=[\s\"'),\]]|$)"  # a bare prefix (the checkout root itself) ends here
_RULES = [
    (re.compile(_START + r"/work/[^/\s\"']+/"), ""),
    (re.compile(_START + r"/work/[^/\s\"']+" + _END), "."),
    (re.compile(_START + r"/tmp/pytest-of-[^/\s\"']+/pytest-\d+/[^/\s\"']+/"), ""),
    (re.compile(_START + r"/tmp/tmp[a-z0-9_]{6,}/"), ""),
    (re.compile(_START + r"(?:\.\./)+tmp/"), ""),
    (re.compile(_START + r"/tmp/"), ""),
    (re.compile(_START + r"/root/"), "~/"),
    (re.compile(_START + r"/home/[^/\s\"']+/"), "~/"),
]


def relativize(text: str) -> str:
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


def _numbers(obj, out: list) -> list:
    """Every number of a parsed JSON value, in document order."""
    if isinstance(obj, dict):
        for v in obj.values():
            _numbers(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _numbers(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(obj)
    return out


def _parse(path: Path, text: str) -> list:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def rewrite(path: Path) -> str | None:
    """The new text of one file, or None when it holds no absolute path."""
    old = path.read_text()
    new = relativize(old)
    if new == old:
        return None
    if path.suffix in (".json", ".jsonl"):
        before, after = _parse(path, old), _parse(path, new)
        if _numbers(before, []) != _numbers(after, []):
            raise SystemExit(f"relativize_paths: refusing {path}: the rewrite would change a number")
    return new


def files(root: Path = ROOT) -> list[Path]:
    return sorted(p for t in TREES for p in (root / t).rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only list the files that hold absolute paths")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = ap.parse_args(argv)
    changed = []
    for path in files(args.root):
        new = rewrite(path)
        if new is None:
            continue
        changed.append(path.relative_to(args.root))
        if not args.check:
            path.write_text(new)
    for p in changed:
        print(("holds absolute paths: " if args.check else "rewrote ") + str(p))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
