"""A profile (:mod:`kdlab.deploy.profile`) as people read it: the one-line summary and the side-by-side table."""

from __future__ import annotations

from typing import Any, Optional


def _times(ratio: Optional[float], more: str, less: str) -> Optional[str]:
    """``3.9x smaller`` for a teacher/student ratio above 1, ``2.0x larger`` below (the inverse)."""
    if ratio is None:
        return None
    return f"{ratio:.1f}x {more}" if ratio >= 1 else f"{1 / ratio:.1f}x {less}"


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _who(profile: dict[str, Any]) -> str:
    teacher = profile["teacher"]["name"]
    if profile.get("teachers"):
        teacher = f"{profile['teacher_key']} ({teacher}; the first of {len(profile['teachers'])} teachers)"
    return f"student {profile['student']['name']} vs teacher {teacher}"


def _top1_words(profile: dict[str, Any]) -> str:
    student, teacher, delta = profile["student"]["top1"], profile["teacher"]["top1"], profile.get("top1_delta")
    if delta is not None:
        return f"top-1 {delta:+.1f} points ({student:.1f}% vs {teacher:.1f}%)"
    if profile["source"]["kind"] == "config":
        return "top-1 not known (a config: fresh weights)"
    missing = [who for who, value in (("student", student), ("teacher", teacher)) if value is None]
    return f"top-1 not known for the {' and '.join(missing)} (--evaluate measures it)"


def summary_line(profile: dict[str, Any]) -> str:
    """``student resnet8 vs teacher resnet20: 3.5x smaller, 4.2x fewer MACs, 2.6x faster (batch 1, 1 thread),
    top-1 -1.4 points (95.1% vs 96.5%)``."""
    ratio = profile["ratios"]
    parts = [
        _times(ratio["params"], "smaller", "larger"),
        _times(ratio["macs"], "fewer MACs", "more MACs"),
        None if ratio["latency"] is None else
        f"{_times(ratio['latency'], 'faster', 'slower')} (batch 1, {_threads(profile['settings']['threads'])})",
        _top1_words(profile),
    ]
    return f"{_who(profile)}: " + ", ".join(part for part in parts if part)


def _count(value: Optional[float]) -> str:
    """``272.5K``, ``1.53M``, ``4.1G``: parameter and MAC counts at a glance."""
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:g}"


def _ms(latency: dict[str, Any]) -> str:
    return f"{latency['median_ms']:.3g} [{latency['p25_ms']:.3g}-{latency['p75_ms']:.3g}]"


def _top1(entry: dict[str, Any]) -> str:
    return "-" if entry.get("top1") is None else f"{entry['top1']:.2f}"


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(profile: dict[str, Any]) -> list[list[str]]:
    """Header and one row per measured quantity: what, teacher, student, teacher/student."""
    teacher, student, ratio = profile["teacher"], profile["student"], profile["ratios"]
    batch = profile["settings"]["batch_size"]
    return [
        ["", f"teacher {teacher['name']}", f"student {student['name']}", "teacher/student"],
        ["parameters", _count(teacher["params"]), _count(student["params"]), _x(ratio["params"])],
        ["MACs per image", _count(teacher["macs"]), _count(student["macs"]), _x(ratio["macs"])],
        ["size fp32 (MB)", f"{teacher['size_mb']:.3g}", f"{student['size_mb']:.3g}", _x(ratio["size"])],
        ["size fp16 (MB)", f"{teacher['size_mb_fp16']:.3g}", f"{student['size_mb_fp16']:.3g}", ""],
        ["latency batch 1 (ms)", _ms(teacher["latency"]["batch1"]), _ms(student["latency"]["batch1"]),
         _x(ratio["latency"])],
        [f"latency batch {batch} (ms)", _ms(teacher["latency"]["batch"]), _ms(student["latency"]["batch"]),
         _x(ratio["latency_batch"])],
        [f"images/s (batch {batch})", f"{teacher['images_per_second']:.0f}", f"{student['images_per_second']:.0f}",
         _x(None if not ratio["images_per_second"] else 1 / ratio["images_per_second"])],
        ["top-1 %", _top1(teacher), _top1(student),
         "" if profile.get("top1_delta") is None else f"{profile['top1_delta']:+.2f} points"],
    ]


def to_text(profile: dict[str, Any]) -> str:
    """The side-by-side table, the summary, how it was measured and the notes."""
    rows = table_rows(profile)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    settings, source = profile["settings"], profile["source"]
    where = source["checkpoint"] or source["path"]
    head = f"kdlab profile of {where}" + (f" (epoch {source['epoch']})" if source.get("epoch") is not None else "")
    runs = profile["student"]["latency"]["batch1"]["runs"]
    out = [head, "", *lines, "", f"summary: {profile['summary']}", "",
           f"measured on the CPU with {_threads(settings['threads'])} (torch {settings['torch']}), "
           f"{settings['warmup']} warm-up forwards, up to {settings['repeats']} timed (student batch 1: {runs})",
           f"- {settings['latency']}", f"- {settings['macs']}", f"- {settings['size']}"]
    for who in ("teacher", "student"):
        if profile[who].get("top1_source"):
            out.append(f"- {who} top-1: {profile[who]['top1_source']}")
    for key, entry in (profile.get("teachers") or {}).items():
        out.append(f"- teacher {key} ({entry['name']}): {_count(entry['params'])} parameters, "
                   f"{_count(entry['macs'])} MACs, {entry['latency_ms_batch1']:.3g} ms at batch 1, "
                   f"top-1 {_top1(entry)}")
    out += [f"note: {note}" for note in profile.get("notes", [])]
    return "\n".join(out) + "\n"


__all__ = ["summary_line", "table_rows", "to_text"]
