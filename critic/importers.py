"""Import constitutions from other tools' formats into critic's YAML.

- `hf-cai`: the Hugging Face constitutional-AI recipe (llm-swarm `constitution_anthropic.json`):
  `{"constitutions": [{"critic", "revision"}, ...], "system_chat": [[{role, content}] * 6, ...]}`
  becomes one critique_revise constitution; each few-shot chat becomes an example of the
  principle whose critique request it uses.
- `prometheus`: Prometheus score rubrics (`{"rubrics": {"NAME": "[criterion]\\nScore 1: ..."}}`)
  become one 1-5 rubric constitution per rubric.

Every constitution written here validates with `critic constitution lint`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from critic.constitution import Constitution, check
from critic.errors import ConstitutionError, UsageError

IMPORT_FORMATS = ("hf-cai", "prometheus")

_SCORE = re.compile(r"^\s*Score\s+(\d+)\s*[:.-]\s*(.+?)\s*$", re.IGNORECASE)
_CRITERION = re.compile(r"^\s*\[(.+)\]\s*$", re.DOTALL)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConstitutionError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConstitutionError(f"{path}: cannot read it as JSON: {exc}") from None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug if slug[:1].isalpha() else f"c-{slug}"


def from_hf_cai(path: str | Path, constitution_id: str | None = None) -> dict[str, Any]:
    """A critique_revise constitution (as plain data) from the HF CAI recipe's JSON."""
    path = Path(path)
    data = _load_json(path)
    entries = data.get("constitutions") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConstitutionError(
            f"{path}: no 'constitutions' list",
            hint='the HF CAI format is {"constitutions": [{"critic": ..., "revision": ...}]}',
        )
    principles: list[dict[str, Any]] = []
    by_request: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        critic, revision = (entry or {}).get("critic"), (entry or {}).get("revision")
        if not (isinstance(critic, str) and critic.strip() and isinstance(revision, str)):
            raise ConstitutionError(f"{path}: constitutions[{i}] needs 'critic' and 'revision'")
        principle: dict[str, Any] = {
            "id": f"P{i + 1}",
            # The format has no separate principle text; the critique request states it.
            "text": critic.strip(),
            "critique_request": critic.strip(),
            "revision_request": revision.strip(),
        }
        principles.append(principle)
        by_request.setdefault(critic.strip(), principle)
    for chat in data.get("system_chat") or []:
        turns = [m.get("content", "") for m in chat if isinstance(m, dict)]
        if len(turns) < 6:
            continue
        prompt, response, critique_request, critique, _, revision = turns[:6]
        owner = by_request.get(critique_request.strip())
        if owner is None:
            continue  # an example for a request the list does not have: nowhere to attach it
        owner.setdefault("examples", []).append(
            {
                "prompt": prompt.strip(),
                "response": response.strip(),
                "explanation": f"Critique: {critique.strip()}\nRevision: {revision.strip()}",
            }
        )
    return {
        "id": constitution_id or _slug(path.stem),
        "version": "1.0",
        "title": f"Constitutional-AI principles imported from {path.name}",
        "description": "Imported from the Hugging Face constitutional-AI recipe format (hf-cai).",
        "task": {"kind": "critique_revise"},
        "principles": principles,
    }


def parse_rubric(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(criterion, levels) from a Prometheus rubric: `[criterion]` then `Score N: descriptor`."""
    criterion = ""
    levels: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        score = _SCORE.match(line)
        if score:
            levels.append({"score": int(score.group(1)), "description": score.group(2)})
        elif not levels and (match := _CRITERION.match(line)):
            criterion = match.group(1).strip()
        elif levels:
            levels[-1]["description"] += " " + line.strip()
        else:
            criterion = f"{criterion} {line.strip()}".strip()
    return criterion, levels


def from_prometheus(path: str | Path) -> dict[str, dict[str, Any]]:
    """One rubric constitution (as plain data) per rubric, keyed by its id."""
    path = Path(path)
    data = _load_json(path)
    rubrics = data.get("rubrics") if isinstance(data, dict) else None
    if not isinstance(rubrics, dict) or not rubrics:
        raise ConstitutionError(
            f"{path}: no 'rubrics' mapping",
            hint='the Prometheus format is {"rubrics": {"NAME": "[criterion]\\nScore 1: ..."}}',
        )
    out: dict[str, dict[str, Any]] = {}
    for name, text in rubrics.items():
        criterion, levels = parse_rubric(str(text))
        if not criterion or len(levels) < 2:
            raise ConstitutionError(
                f"{path}: rubrics.{name}: expected '[criterion]' and 'Score N: ...' lines"
            )
        base = re.sub(r"(?i)_?rubric$", "", name) or name
        cid = f"prometheus-{_slug(base)}"
        out[cid] = {
            "id": cid,
            "version": "1.0",
            "title": f"{base.replace('_', ' ').title()} (Prometheus rubric)",
            "description": f"Imported from the Prometheus rubric {name} in {path.name}.",
            "task": {"kind": "rubric", "question": criterion, "levels": levels},
            "principles": [{"id": "R1", "text": criterion}],
        }
    return out


def _dump(data: dict[str, Any], source: Path, fmt: str) -> str:
    header = f"# Imported by `critic constitution import --from {fmt}` from {source.name}.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _write_checked(data: dict[str, Any], target: Path, source: Path, fmt: str) -> Constitution:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_dump(data, source, fmt), encoding="utf-8")
    constitution, problems = check(target)
    errors = [p for p in problems if p.severity == "error"]
    if constitution is None or errors:
        listed = "\n  ".join(str(p) for p in errors)
        raise ConstitutionError(f"{target}: the imported constitution is invalid:\n  {listed}")
    return constitution


def import_constitutions(
    fmt: str, source: str | Path, out: str | Path, constitution_id: str | None = None
) -> list[tuple[Path, Constitution]]:
    """Convert `source` and write critic YAML: one file for hf-cai (`out` is the file, or a
    directory to put `<id>.yaml` in), one file per rubric into the directory `out` for
    prometheus (or, for a single rubric, the file `out` when it ends in .yaml). Returns what was
    written, each checked with `critic.constitution.check`."""
    source, out = Path(source), Path(out)
    if fmt == "hf-cai":
        data = from_hf_cai(source, constitution_id)
        target = out / f"{data['id']}.yaml" if out.is_dir() else out
        return [(target, _write_checked(data, target, source, fmt))]
    if fmt == "prometheus":
        if constitution_id:
            raise UsageError("--id applies to hf-cai; prometheus ids come from the rubric names")
        rubrics = from_prometheus(source)
        if out.suffix.lower() in (".yaml", ".yml") and not out.is_dir():
            # A file name: right for a single rubric, never a directory of that name.
            if len(rubrics) != 1:
                raise UsageError(
                    f"{out}: {source} has {len(rubrics)} rubrics, and prometheus import writes "
                    "one file per rubric",
                    hint=f"give a directory with -o (such as {out.with_suffix('')}), or a file "
                    "with one rubric",
                )
            ((_, data),) = rubrics.items()
            return [(out, _write_checked(data, out, source, fmt))]
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out} is a file; prometheus import writes one file per rubric",
                             hint="give a directory with -o")  # fmt: skip
        written = []
        for cid, data in rubrics.items():
            target = out / f"{cid}.yaml"
            written.append((target, _write_checked(data, target, source, fmt)))
        return written
    raise UsageError(
        f"unknown import format '{fmt}'", hint=f"use one of: {', '.join(IMPORT_FORMATS)}"
    )
